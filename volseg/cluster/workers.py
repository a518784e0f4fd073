"""What every volseg worker process gets: its environment, its thread count, its GPU.

Workers must be set up before they start (torch reads its thread count at import,
glibc its malloc settings at process start) or, for the GPU of a SLURM worker,
before any task initialises CUDA. :mod:`volseg.cluster.clients` starts the
workers with these pieces.

>>> thread_env(2)["OMP_NUM_THREADS"]
'2'
"""

from __future__ import annotations

import contextlib
import os

import dask
from distributed import WorkerPlugin

__all__ = ["DASK_TRIM_CONFIG", "PinGPU", "gpu_count", "thread_env", "worker_environment"]


def gpu_count() -> int:
    """Number of CUDA devices visible to this process (0 without torch CUDA).

    Returns
    -------
    int
        ``torch.cuda.device_count()`` when CUDA works, else 0 (a missing or broken
        CUDA install counts as no GPU).

    Examples
    --------
    >>> import torch
    >>> gpu_count() == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    True
    """
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken CUDA install counts as no GPU
        return 0


# dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in every worker. Any fixed value turns
# off glibc's dynamic mmap threshold, so every tile-sized buffer is mmapped, zeroed and
# unmapped again: segment tasks ran 1.7x slower. volseg's workers keep glibc's default.
DASK_TRIM_CONFIG = "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON__MALLOC_TRIM_THRESHOLD_"


def thread_env(threads: int) -> dict[str, str | None]:
    """Environment that caps torch/BLAS threads in a worker process.

    Parameters
    ----------
    threads : int
        Threads each worker process may use for torch, OpenMP, MKL and OpenBLAS
        (at least 1).

    Returns
    -------
    dict of str to str or None
        For :func:`worker_environment`; ``MALLOC_TRIM_THRESHOLD_`` maps to None
        (not set at all, see ``DASK_TRIM_CONFIG``).

    Examples
    --------
    >>> thread_env(0)["OMP_NUM_THREADS"], thread_env(4)["MKL_NUM_THREADS"]
    ('1', '4')
    """
    value = str(max(1, threads))
    return {
        "OMP_NUM_THREADS": value,
        "MKL_NUM_THREADS": value,
        "OPENBLAS_NUM_THREADS": value,
        "MALLOC_TRIM_THRESHOLD_": None,  # None: not set at all (see DASK_TRIM_CONFIG)
    }


@contextlib.contextmanager
def worker_environment(values: dict[str, str | None]):
    """Set environment variables for worker processes started inside the ``with`` block.

    Workers must get them before they start: torch reads its thread count at import,
    glibc its malloc settings at process start. distributed sets
    ``distributed.nanny.pre-spawn-environ`` in the spawning process and lets
    variables already in ``os.environ`` win, so both are set for the duration of the
    cluster start and restored afterwards.

    Parameters
    ----------
    values : dict of str to str or None
        Variable -> value; None removes the variable.

    Examples
    --------
    >>> import os, dask
    >>> before = os.environ.get("OMP_NUM_THREADS")
    >>> with worker_environment({"OMP_NUM_THREADS": "2", "MALLOC_TRIM_THRESHOLD_": None}):
    ...     spawn = dask.config.get("distributed.nanny.pre-spawn-environ")
    ...     os.environ["OMP_NUM_THREADS"], spawn["OMP_NUM_THREADS"]
    ...     "MALLOC_TRIM_THRESHOLD_" in os.environ
    ('2', '2')
    False
    >>> os.environ.get("OMP_NUM_THREADS") == before
    True
    """
    saved = {key: os.environ.get(key) for key in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        with dask.config.set(
            {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in values.items()}
        ):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class PinGPU(WorkerPlugin):
    """Worker plugin: pin each worker process of a multi-GPU job to one device.

    dask-jobqueue starts ``processes`` workers per job, named ``<job>-<i>``; the
    plugin sets ``CUDA_VISIBLE_DEVICES`` to the ``i``-th GPU of the job before
    any task initialises CUDA, so ``cuda`` in that process means its own GPU.
    :func:`slurm` registers it on jobs with GPUs.

    Examples
    --------
    The third worker process (index 2) of a job with GPUs 4 to 7:

    >>> import os
    >>> from types import SimpleNamespace
    >>> with worker_environment({"CUDA_VISIBLE_DEVICES": "4,5,6,7"}):
    ...     PinGPU().setup(SimpleNamespace(name="SLURMCluster-3-2"))
    ...     os.environ["CUDA_VISIBLE_DEVICES"]
    '6'
    """

    name = "volseg-pin-gpu"

    def setup(self, worker) -> None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        devices = [d for d in visible.split(",") if d.strip()] if visible else []
        if not devices:
            return
        try:
            index = int(str(worker.name).rsplit("-", 1)[-1])
        except ValueError:
            index = 0
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[index % len(devices)]
