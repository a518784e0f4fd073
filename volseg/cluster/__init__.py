"""Make or connect a dask.distributed cluster for :func:`volseg.segment`.

The only package that creates clusters: :mod:`volseg.cluster.clients` starts or
connects one (:func:`local`, :func:`slurm`, :func:`connect`);
:mod:`volseg.cluster.workers` sets up each worker process (threads, environment,
GPU). Names are loaded on first use (PEP 562): ``distributed`` is imported only then.

>>> from volseg import cluster
>>> cluster.local.__module__
'volseg.cluster.clients'
"""

from __future__ import annotations

from volseg._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "DASK_TRIM_CONFIG": "workers",
        "PinGPU": "workers",
        "connect": "clients",
        "gpu_count": "workers",
        "local": "clients",
        "slurm": "clients",
        "thread_env": "workers",
        "worker_environment": "workers",
    },
)
