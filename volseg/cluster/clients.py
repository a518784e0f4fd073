"""Make or connect a dask.distributed cluster for :func:`volseg.segment`.

The only module that creates clusters. Three ways in:

* :func:`local`: worker processes on this machine — one per visible GPU, each
  pinned to its device with ``CUDA_VISIBLE_DEVICES`` and offering ``GPU`` slots
  (tasks ask for ``GPU=1``); otherwise CPU workers with one torch thread per dask
  thread.
* :func:`slurm`: workers submitted as SLURM jobs with dask-jobqueue.
* :func:`connect`: an existing scheduler (for example one started inside an
  sbatch allocation, see ``examples/hpc/``).

What the workers compute is decided by :func:`volseg.segment`; where they run is
decided here. What each worker process gets (threads, environment, GPU) is in
:mod:`volseg.cluster.workers`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from volseg.conventions import usable_cores

from .workers import DASK_TRIM_CONFIG, PinGPU, gpu_count, thread_env, worker_environment

__all__ = ["connect", "local", "slurm"]

log = logging.getLogger(__name__)


def local(
    n_workers: int | None = None,
    gpus: int | str = "auto",
    threads_per_worker: int = 1,
    memory_limit: str | float = "auto",
    dashboard_address: str | None = ":0",
    **kwargs: Any,
):
    """Start a cluster of worker processes on this machine and return a client.

    Parameters
    ----------
    n_workers : int, optional
        CPU workers: number of processes (default: one per core). With GPUs:
        ignored, one worker per GPU.
    gpus : "auto", int
        ``"auto"``: use every visible GPU; ``0``: CPU workers even if GPUs exist;
        ``n``: the first ``n`` GPUs.
    threads_per_worker : int
        dask threads per worker. CPU workers get ``cores // n_workers`` torch
        threads in total, so dask threads x torch threads never exceed the cores.
    memory_limit : str or float
        Per worker, as in :class:`distributed.LocalCluster`.
    dashboard_address : str or None
        Where to serve the dask dashboard (``None``: no dashboard).
    **kwargs
        Passed to the cluster class.

    Returns
    -------
    distributed.Client
        Close it (and its cluster) with ``client.close(); client.cluster.close()``.

    Examples
    --------
    One CPU worker process (``gpus=0``: also on a machine with GPUs):

    >>> client = local(n_workers=1, gpus=0)
    >>> len(client.scheduler_info()["workers"]), client.submit(sum, [1, 2]).result()
    (1, 3)
    >>> client.close(); client.cluster.close()
    """
    for name, value in (("n_workers", n_workers), ("threads_per_worker", threads_per_worker)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(
                f"{name}={value!r} (--workers / threads) must be a positive integer, e.g. 2."
            )
    from distributed import Client, LocalCluster, Nanny, Scheduler, SpecCluster

    cores = usable_cores()
    visible = gpu_count()
    use = visible if gpus == "auto" else min(int(gpus), visible)
    if gpus not in ("auto", 0) and int(gpus) > visible:
        raise ValueError(f"gpus={gpus!r} asked for more GPUs than the {visible} visible here.")
    if use > 0:
        # One process per GPU: each sees only its own device as cuda:0. Two dask threads
        # (and GPU=2 slots, every task taking one) let a worker prepare the next block
        # while the GPU computes the current one.
        nthreads = max(2, threads_per_worker)
        torch_threads = max(1, cores // (use * nthreads))
        workers = {
            f"gpu-{index}": {
                "cls": Nanny,
                "options": {
                    "nthreads": nthreads,
                    "resources": {"GPU": nthreads},
                    "memory_limit": memory_limit,
                    "env": {"CUDA_VISIBLE_DEVICES": str(index)},
                },
            }
            for index in range(use)
        }
        scheduler = {"cls": Scheduler, "options": {"dashboard_address": dashboard_address}}
        with worker_environment(thread_env(torch_threads)):
            cluster = SpecCluster(workers=workers, scheduler=scheduler, **kwargs)
        log.info("local cluster: %d GPU workers", use)
    else:
        n_workers = n_workers or cores
        torch_threads = max(1, cores // (n_workers * max(1, threads_per_worker)))
        with worker_environment(thread_env(torch_threads)):
            cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=threads_per_worker,
                processes=True,
                memory_limit=memory_limit,
                dashboard_address=dashboard_address,
                **kwargs,
            )
        log.info("local cluster: %d CPU workers x %d threads", n_workers, threads_per_worker)
    return Client(cluster)


def slurm(
    jobs: int,
    cores: int,
    memory: str,
    gpus_per_job: int = 0,
    walltime: str = "01:00:00",
    queue: str | None = None,
    account: str | None = None,
    processes: int | None = None,
    job_extra_directives: list[str] | None = None,
    job_script_prologue: list[str] | None = None,
    python: str | None = None,
    local_directory: str | None = None,
    log_directory: str | None = None,
    wait: bool = True,
    timeout: float = 600,
    **kwargs: Any,
):
    """Submit dask workers as SLURM jobs (dask-jobqueue) and return a client.

    Parameters
    ----------
    jobs : int
        Number of SLURM jobs (nodes or node shares) to start.
    cores, memory : int, str
        Per job, e.g. ``16`` and ``"64GB"``.
    gpus_per_job : int
        GPUs per job (``--gres=gpu:N``); one worker process per GPU, each pinned
        to its device and offering one ``GPU`` slot per dask thread (every task
        takes one), so blocks are prepared while others compute.
    walltime : str
        ``HH:MM:SS``.
    queue, account : str, optional
        Partition and account; no site-specific default is assumed.
    processes : int, optional
        Worker processes per job (default: ``gpus_per_job`` or 1).
    job_extra_directives : list of str, optional
        More ``#SBATCH`` options (e.g. ``["--constraint=a100"]``).
    job_script_prologue : list of str, optional
        Shell lines run before the worker starts (``module load ...``, activate
        an environment).
    python : str, optional
        Python executable on the compute nodes (default: this one).
    local_directory, log_directory : str, optional
        Worker scratch space and where SLURM writes the job logs.
    wait : bool
        Wait until every worker has connected.
    timeout : float
        Seconds to wait for the workers.
    **kwargs
        Passed to :class:`dask_jobqueue.SLURMCluster`.

    Returns
    -------
    distributed.Client

    Examples
    --------
    On a SLURM login node (not run here: it submits jobs), two jobs of four GPUs each;
    the job script shows what every job runs:

    >>> client = slurm(jobs=2, cores=16, memory="64GB", gpus_per_job=4, queue="gpu",
    ...                job_script_prologue=["module load cuda"])  # doctest: +SKIP
    >>> print(client.cluster.job_script())  # doctest: +SKIP
    #!/usr/bin/env bash
    #SBATCH -J dask-worker
    #SBATCH -p gpu
    #SBATCH -n 1
    #SBATCH --cpus-per-task=16
    #SBATCH --mem=60G
    #SBATCH -t 01:00:00
    #SBATCH --gres=gpu:4
    export OMP_NUM_THREADS=1
    ...
    module load cuda
    python -m distributed.cli.dask_worker tcp://... --nworkers 4 ... --resources GPU=4

    ``tests/test_slurm.py`` runs it against a real SLURM controller. Arguments are
    checked before anything is submitted:

    >>> slurm(jobs=0, cores=16, memory="64GB")
    Traceback (most recent call last):
    ...
    ValueError: jobs=0 and cores=16 must be at least 1.
    """
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    if jobs < 1 or cores < 1:
        raise ValueError(f"jobs={jobs} and cores={cores} must be at least 1.")
    processes = processes or max(1, gpus_per_job)
    directives = list(job_extra_directives or [])
    worker_args = []
    # dask-jobqueue gives each worker cores // processes dask threads; every dask thread
    # runs its own forward pass with one torch thread, so threads never exceed the cores.
    dask_threads = max(1, cores // processes)
    if gpus_per_job:
        directives.append(f"--gres=gpu:{gpus_per_job}")
        worker_args += ["--resources", f"GPU={dask_threads}"]
    prologue = [
        f"export {k}={v}" if v is not None else f"unset {k}" for k, v in thread_env(1).items()
    ]
    prologue.append(f"export {DASK_TRIM_CONFIG}=None")
    prologue += list(job_script_prologue or [])
    cluster = SLURMCluster(
        cores=cores,
        memory=memory,
        processes=processes,
        walltime=walltime,
        queue=queue,
        account=account,
        job_extra_directives=directives,
        job_script_prologue=prologue,
        worker_extra_args=worker_args,
        python=python,
        local_directory=local_directory,
        log_directory=log_directory,
        **kwargs,
    )
    client = Client(cluster)
    if gpus_per_job:
        client.register_plugin(PinGPU())
    cluster.scale(jobs=jobs)
    if wait:
        client.wait_for_workers(jobs * processes, timeout=timeout)
    return client


def connect(address: str, timeout: float = 30):
    """Connect to a running scheduler (``tcp://host:port`` or a scheduler file path).

    Parameters
    ----------
    address : str
        ``tcp://host:port`` of the scheduler, or the path of its scheduler file
        (``dask scheduler --scheduler-file``, as in ``examples/hpc/``).
    timeout : float
        Seconds to wait for the scheduler to answer.

    Returns
    -------
    distributed.Client

    Raises
    ------
    ValueError
        The address is empty, or no scheduler answers there.

    Examples
    --------
    >>> from distributed import LocalCluster
    >>> running = LocalCluster(n_workers=1, processes=False, dashboard_address=":0")
    >>> client = connect(running.scheduler_address)
    >>> client.submit(sum, [1, 2]).result()
    3
    >>> client.close(); running.close()
    """
    from distributed import Client

    if not isinstance(address, str) or not address:
        raise ValueError(f"scheduler address {address!r} must be 'tcp://host:port' or a file.")
    if os.path.isfile(address):
        return Client(scheduler_file=address, timeout=timeout)
    try:
        return Client(address, timeout=timeout)
    except OSError as exc:
        raise ValueError(
            f"could not reach the dask scheduler at {address!r} ({exc}); check that it runs and "
            "that the address and port are right."
        ) from exc
