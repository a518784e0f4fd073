"""The HPC batch scripts of examples/hpc/, submitted to a real (one-node) SLURM.

`.ci/slurm-up` starts munged, slurmctld and slurmd on the test machine. Where no SLURM
runs, these tests are skipped with the reason, never passed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

import volseg

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]
HPC = ROOT / "examples" / "hpc"
VENV_BIN = str(Path(sys.executable).parent)


def _slurm_state() -> str | None:
    """None when a SLURM node is up and idle, else why not."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "sbatch/sinfo are not installed (run .ci/slurm-up as root)"
    try:
        state = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed: {exc}"
    if state.returncode != 0:
        return f"no SLURM controller answers: {state.stderr.strip()} (run .ci/slurm-up)"
    states = state.stdout.split()
    if not any(s.startswith(("idle", "mixed")) for s in states):
        return f"no idle SLURM node (states: {states})"
    return None


@pytest.fixture(scope="module")
def slurm():
    reason = _slurm_state()
    if reason:
        pytest.skip(f"SLURM not available: {reason}")


@pytest.fixture(scope="module")
def job_inputs(tmp_path_factory, checkpoint):
    base = tmp_path_factory.mktemp("slurm")
    scan = base / "scan.zarr"
    volseg.synth.write_anode(scan, (4, 100, 120), seed=8, chunks=(2, 50, 60), grain_sigma=4.0)
    local = volseg.segment(
        str(scan / "image"),
        model=checkpoint,
        out=base / "local.zarr",
        tile=64,
        device="cpu",
        progress=False,
    )
    return {"dir": base, "scan": scan, "local": local.mask[...]}


def _job_env(**values: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(values)
    env["VOLSEG_SETUP"] = f'export PATH="{VENV_BIN}:$PATH"'
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    return env


def _sbatch(script: Path, log: Path, env: dict[str, str], *options: str) -> None:
    command = [
        "sbatch",
        "--wait",
        "--export=ALL",
        f"--output={log}",
        "--time=00:15:00",
        *options,
        str(script),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    text = log.read_text() if log.exists() else "(no job log)"
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\njob log:\n{text}"


def test_single_node_sbatch_script_matches_local_result(slurm, job_inputs, checkpoint):
    out = job_inputs["dir"] / "sbatch_ni.zarr"
    env = _job_env(
        VOLSEG_SCAN=str(job_inputs["scan"] / "image"),
        VOLSEG_MODEL=str(checkpoint),
        VOLSEG_OUT=str(out),
        VOLSEG_ARGS="--tile 64 --device cpu",
        VOLSEG_CPU_WORKERS="2",
        VOLSEG_RUN_DIR=str(job_inputs["dir"] / "run"),
    )
    _sbatch(
        HPC / "segment_single_node.sbatch",
        job_inputs["dir"] / "single.log",
        env,
        "--cpus-per-task=2",
    )
    mask = zarr.open(str(out / "mask"), mode="r")[...]
    np.testing.assert_array_equal(mask, job_inputs["local"])
    record = zarr.open_group(str(out), mode="r").attrs["volseg"]
    assert record["status"] == "complete"


def test_jobqueue_recipe_matches_local_result(slurm, job_inputs, checkpoint):
    out = job_inputs["dir"] / "jobqueue_ni.zarr"
    command = [
        sys.executable,
        str(HPC / "segment_jobqueue.py"),
        str(job_inputs["scan"] / "image"),
        "--model",
        str(checkpoint),
        "--out",
        str(out),
        "--tile",
        "64",
        "--jobs",
        "1",
        "--cores",
        "2",
        "--memory",
        "4GB",
        "--walltime",
        "00:15:00",
        "--log-directory",
        str(job_inputs["dir"] / "jq-logs"),
    ]
    done = subprocess.run(
        command, env=_job_env(), capture_output=True, text=True, timeout=900, cwd=job_inputs["dir"]
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    mask = zarr.open(str(out / "mask"), mode="r")[...]
    np.testing.assert_array_equal(mask, job_inputs["local"])


def test_training_sbatch_script_writes_a_checkpoint(slurm, job_inputs):
    out = job_inputs["dir"] / "trained.pt"
    env = _job_env(
        VOLSEG_TRAIN=str(job_inputs["scan"]),
        VOLSEG_OUT=str(out),
        VOLSEG_ARGS="--encoder resnet18 --encoder-depth 3 --decoder-channels 32 16 8 --tile 64 "
        "--batch-size 4 --epochs 1 --steps-per-epoch 2 --device cpu",
    )
    _sbatch(HPC / "train.sbatch", job_inputs["dir"] / "train.log", env, "--cpus-per-task=2")
    loaded = volseg.model.load_checkpoint(out)
    assert loaded.config["encoder"] == "resnet18"
    assert len(loaded.training["history"]) == 1


def test_batch_scripts_hard_code_no_site_values():
    for script in HPC.iterdir():
        text = script.read_text()
        for directive in ("--partition", "--account", "-p ", "-A "):
            assert f"#SBATCH {directive}" not in text, (script.name, directive)
