"""What the output store costs at terabyte scale: 10^5 processing blocks.

A 1 TB uint16 scan in blocks of 8 x 512 x 512 voxels has about 10^5 blocks. This
benchmark measures the output *store*, not the network, so no model runs:

1. **Full scale, layout 2 (the default).** An output with a 100 x 32 x 32 block grid
   (102,400 blocks; each block is 1 x 8 x 8 voxels so the mask stays small). It times
   creating the group, writing every block's record (two threads, as tasks would), the
   client writing the consolidated table, reading the stats table of the complete
   output (``volseg.open_result(...).stats``), checking completeness, and planning a
   resume after a killed client: (a) the table lags 1,024 records behind (the client
   writes it every 10 s), (b) the worst case, the table was never written.
2. **Files and folders per block**, counted on disk after every block wrote its mask and
   record through :meth:`volseg.io.output.OutputGroup.write_block` on a 4 x 32 x 32 grid,
   for layout 2, layout 2 with ``shards`` (the block is the shard, 4 chunks inside), and
   layout 1 (volseg 0.1: one ``stats/<field>`` array per statistic). The same grid
   times reading the complete stats with layout 1 against layout 2 (one run, ratio).

Run from the repository root::

    python benchmarks/scale.py            # about 3-6 minutes on 2 shared cores
    python benchmarks/scale.py --quick    # 10 x 32 x 32 grid for part 1 too

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import volseg  # noqa: E402
from volseg import io as vio  # noqa: E402

BLOCK = (1, 8, 8)


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - started


def count(path: Path) -> tuple[int, int]:
    files = folders = 0
    for _, dirs, names in os.walk(path):
        files += len(names)
        folders += len(dirs)
    return files, folders + 1


def make_output(path: Path, grid, **kwargs):
    shape = tuple(g * b for g, b in zip(grid, BLOCK))
    return vio.create_output(
        path,
        shape,
        BLOCK,
        attrs={"input": "benchmark", "parameters": {"has_truth": True}},
        has_truth=True,
        **kwargs,
    )


def counts_of(index) -> dict:
    """What a task with truth stores (nonzero, as in a real run)."""
    return {
        "ni_voxels": sum(index) + 1,
        "uncertain_voxels": 1,
        **{key: 16 for key in ("tp", "fp", "fn", "tn")},
        "seconds": 0.01,
        "refined": False,
    }


def write_records(output, grid, threads=2):
    """Every block's record, written the way tasks write them (no mask)."""
    indices = list(np.ndindex(*grid))

    def write(index):
        record = output.encode(counts_of(index))
        output.records[index] = record[None, None, None, :]
        return index, record

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(write, indices, chunksize=256))


def full_scale(root: Path, grid) -> dict:
    out = root / "full.zarr"
    output, create_s = timed(make_output, out, grid)
    results, records_s = timed(write_records, output, grid)
    run = vio.RunTable(output, reused=False)
    for result in results:
        run.table[tuple(result[0])] = result[1]
    _, table_write_s = timed(run.flush)
    output.update_attrs(status="complete")
    _, read_array_s = timed(lambda: vio.open_output(out).read_stats())
    stats, read_table_s = timed(lambda: volseg.open_result(out).stats)
    assert len(stats) == int(np.prod(grid)) and stats["done"].all()
    _, complete_s = timed(vio.check_complete, vio.open_output(out))
    files, folders = count(out)
    # A killed client: its table lags 1,024 records behind.
    output.update_attrs(status="running")
    lagging = run.table.copy()
    lagging.reshape(-1, lagging.shape[-1])[-1024:] = 0
    output.write_table(lagging)
    plan, plan_s = timed(vio.load_table, vio.open_output(out), True)
    assert (plan[..., -1] == 1).all()
    # Worst case: the client died before it ever wrote the table.
    output.write_table(np.zeros_like(lagging))
    plan, plan_worst_s = timed(vio.load_table, vio.open_output(out), True)
    assert (plan[..., -1] == 1).all()
    n = int(np.prod(grid))
    return {
        "grid": list(grid),
        "blocks": n,
        "create_seconds": round(create_s, 3),
        "write_every_record_seconds": round(records_s, 2),
        "write_records_per_second": round(n / records_s),
        "client_writes_table_seconds": round(table_write_s, 3),
        "read_stats_table_seconds": round(read_array_s, 3),
        "open_result_stats_dataframe_seconds": round(read_table_s, 3),
        "check_complete_seconds": round(complete_s, 3),
        "plan_resume_table_lagging_1024_seconds": round(plan_s, 3),
        "plan_resume_no_table_seconds": round(plan_worst_s, 3),
        "stats_files_per_block": round((files - 4) / n, 3),  # less zarr.json of group+arrays
    }


def write_blocks(output, grid):
    block = np.ones(output.chunks, dtype=np.uint8)

    def write(index):
        region = tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, output.chunks))
        output.write_block(index, region, block, None, counts_of(index))

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(write, list(np.ndindex(*grid)), chunksize=64))
    output.update_attrs(status="complete")


def layouts(root: Path, grid) -> dict:
    figures = {}
    for name, kwargs, _block in (
        ("layout2", {}, BLOCK),
        ("layout2_shards", {"stored_chunks": (1, 4, 4)}, BLOCK),
        ("layout1", {"layout": 1}, BLOCK),
    ):
        out = root / f"{name}.zarr"
        output = make_output(out, grid, **kwargs)
        _, write_s = timed(write_blocks, output, grid)
        if not output.legacy:
            run = vio.RunTable(output, reused=True)
            run.flush()
        stats, read_s = timed(lambda o=out: volseg.open_result(o).stats)
        assert stats["done"].all()
        files, folders = count(out)
        n = int(np.prod(grid))
        figures[name] = {
            "files_per_block": round(files / n, 3),
            "folders_per_block": round(folders / n, 3),
            "write_blocks_seconds": round(write_s, 2),
            "read_stats_seconds": round(read_s, 3),
        }
    figures["layout1_over_layout2_read_stats"] = round(
        figures["layout1"]["read_stats_seconds"] / figures["layout2"]["read_stats_seconds"], 1
    )
    figures["grid"] = list(grid)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 x 32 x 32 grid for part 1")
    parser.add_argument("--keep", action="store_true", help="keep the outputs")
    args = parser.parse_args()
    grid = (10, 32, 32) if args.quick else (100, 32, 32)
    root = Path(tempfile.mkdtemp(prefix="volseg-scale-"))
    try:
        result = {
            "benchmark": "output store at scale",
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "note": "shared by 4 concurrent jobs; local disk; no model runs",
            },
            "full_scale_layout2": full_scale(root, grid),
            "layouts": layouts(root, (4, 32, 32)),
        }
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
