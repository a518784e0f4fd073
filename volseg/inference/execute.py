"""Scheduling the blocks of a run: dask tasks, threads, progress, results as they arrive.

What runs where is kept apart from what is computed (:mod:`volseg.inference.block`):
the local threaded scheduler with dask threads x torch intra-op threads no more
than the cores, or a dask.distributed client (GPU resources when its workers have
them). Each block's record reaches the client's run table as soon as it is done.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import dask
import torch
from dask.callbacks import Callback

from .. import io as vio
from ..conventions import usable_cores
from . import block as vblock
from .plan import plan_block

__all__ = ["block_tasks", "cluster_has_gpus", "local_threads", "run_tasks", "torch_threads"]


def block_tasks(
    blocks: list,
    volume: vio.Scan,
    truth_volume: vio.Scan | None,
    run: vblock.BlockRun,
    output: vio.OutputGroup,
    refine: bool,
) -> list:
    """One delayed :func:`~volseg.inference.block.segment_block` per (index, region).

    Examples
    --------
    >>> block_tasks([], None, None, None, None, refine=False)
    []
    """
    run_token = uuid.uuid4().hex[:12]
    tasks = []
    for index, region in blocks:
        block = plan_block(run.settings, index, region, run.context)
        scan_source = _source_for_task(volume, block.read)
        truth_source = None
        if truth_volume is not None:
            truth_source = _source_for_task(truth_volume, region)
        tasks.append(
            # Looked up on the module when the graph is built (tests replace it).
            dask.delayed(vblock.segment_block, pure=False)(
                block,
                scan_source,
                truth_source,
                run,
                output,
                refine,
                # Unique per run: a cluster must never mistake this block for a block of
                # an earlier run (same model, same index) that it still remembers.
                dask_key_name=f"volseg-block-{run_token}-{'-'.join(map(str, index))}",
            )
        )
    return tasks


def _source_for_task(scan: vio.Scan, region: tuple[slice, slice, slice]) -> Any:
    """A zarr array is read by the task itself; a dask array is sliced into the graph."""
    if scan.direct:
        return scan.array
    return scan.array[region]


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (None: leave them as they are).

    Examples
    --------
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    """
    if n is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def local_threads(device: torch.device) -> tuple[int, int]:
    """(dask threads, torch intra-op threads) that together do not exceed the cores.

    Examples
    --------
    >>> threads, intra = local_threads(torch.device("cpu"))
    >>> intra
    1
    """
    cores = usable_cores()
    if device.type == "cuda":
        # One thread prepares the next block while another waits on the GPU.
        return 2, max(1, cores // 2)
    # Independent forward passes scale better than intra-op threads sharing a core.
    return cores, 1


def run_tasks(
    tasks: list, client: Any, n_threads: int, progress: bool, on_result: Any = None
) -> list:
    """Compute ``tasks`` on ``client`` or on ``n_threads`` local threads.

    Each result reaches ``on_result`` as it arrives (the client's run table).

    Examples
    --------
    >>> run_tasks([dask.delayed(sum)([1, 2])], None, 1, progress=False)
    [3]
    """
    if not tasks:
        return []
    on_result = on_result or (lambda result: None)
    if client is not None:
        return _run_on_cluster(tasks, client, progress, on_result)
    callbacks = []
    if progress:
        from tqdm.dask import TqdmCallback

        callbacks.append(TqdmCallback(desc="segment", unit="task"))
    callbacks.append(_ResultCallback(on_result))
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(n_threads, thread_name_prefix="volseg")
    try:
        with contextlib.ExitStack() as stack:
            for callback in callbacks:
                stack.enter_context(callback)
            return list(dask.compute(*tasks, scheduler="threads", pool=pool))
    finally:
        # On failure, let running blocks finish (they write whole chunks and their done
        # flags) and drop queued ones, so nothing is still writing once segment() returns.
        pool.shutdown(wait=True, cancel_futures=True)


def _run_on_cluster(tasks: list, client: Any, progress: bool, on_result: Any) -> list:
    from distributed import as_completed

    resources = {"GPU": 1} if cluster_has_gpus(client) else None
    futures = client.compute(tasks, resources=resources)
    results = []
    with _progress_bar(len(futures), progress) as bar:
        # Results are fetched here, one by one: a failed task or a failed transfer
        # raises in this thread instead of leaving the loop waiting.
        for future in as_completed(futures):
            results.append(future.result())
            on_result(results[-1])
            bar.update(1)
    return results


class _ResultCallback(Callback):
    """Hands each block's result to the client as it arrives (local scheduler)."""

    def __init__(self, on_result: Any) -> None:
        super().__init__()
        self.on_result = on_result

    def _posttask(self, key, result, dsk, state, worker_id) -> None:
        if isinstance(key, str) and key.startswith("volseg-block-"):
            self.on_result(result)


def cluster_has_gpus(client: Any) -> bool:
    """True when a worker of ``client``'s cluster offers the resource ``GPU``.

    Examples
    --------
    >>> class NoGPUs:
    ...     def scheduler_info(self):
    ...         return {"workers": {"tcp://a": {"resources": {}}}}
    >>> cluster_has_gpus(NoGPUs())
    False
    """
    workers = client.scheduler_info().get("workers", {}).values()
    return any(info.get("resources", {}).get("GPU") for info in workers)


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="segment", unit="chunk", disable=not enabled)
    try:
        yield bar
    finally:
        bar.close()
