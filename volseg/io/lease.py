"""The writer lease: one live run per output group.

A run holds a lease on its output: the file LEASE_NAME inside the group, holding the
host, pid, start time and a heartbeat refreshed by a thread of the client process. A
second run (plain, resume or overwrite) on an output whose lease is live is refused;
a stale lease (its process is gone from this host, or its heartbeat is older than
LEASE_TIMEOUT) is taken over by --resume / --overwrite. Workers never touch it.
"""

from __future__ import annotations

import contextvars
import functools
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

__all__ = [
    "LEASE_HEARTBEAT",
    "LEASE_NAME",
    "LEASE_TIMEOUT",
    "Lease",
    "LeaseHeldError",
    "holds_leases",
    "lease_state",
    "refuse_live_lease",
]

LEASE_NAME = "volseg.lease.json"
LEASE_HEARTBEAT = 20.0  # seconds between heartbeats
LEASE_TIMEOUT = 120.0  # a heartbeat older than this is stale
_held: contextvars.ContextVar[list | None] = contextvars.ContextVar("volseg_leases", default=None)


class LeaseHeldError(FileExistsError):
    """The output is being written by another live run.

    Examples
    --------
    >>> issubclass(LeaseHeldError, FileExistsError)
    True
    """


def _lease_path(out: Any) -> Path | None:
    if isinstance(out, (str, os.PathLike)) and "://" not in str(out):
        return Path(out) / LEASE_NAME
    return None  # an in-memory store is never shared between processes


def _read_lease(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"host": "?", "pid": -1, "started": 0.0, "heartbeat": 0.0, "damaged": True}


def lease_state(lease: dict[str, Any], now: float | None = None) -> str:
    """``"live"`` or why it is stale: ``"process gone"``, ``"no heartbeat"``.

    Examples
    --------
    >>> import os, socket, time
    >>> mine = {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}
    >>> lease_state(mine), lease_state({**mine, "heartbeat": 0.0})
    ('live', 'no heartbeat')
    """
    now = time.time() if now is None else now
    if lease.get("host") == socket.gethostname() and not _pid_alive(int(lease.get("pid", -1))):
        return "process gone"
    if now - float(lease.get("heartbeat", 0.0)) > LEASE_TIMEOUT:
        return "no heartbeat"
    return "live"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe_lease(out: Any, lease: dict[str, Any]) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(lease.get("started", 0))))
    age = time.time() - float(lease.get("heartbeat", 0.0))
    return (
        f"output {str(out)!r} is being written by process {lease.get('pid')} on host "
        f"{lease.get('host')!r} (started {started}, last heartbeat {age:.0f} s ago)"
    )


def refuse_live_lease(out: Any) -> None:
    """Refuse any run on an output another live run is writing.

    Raises
    ------
    LeaseHeldError
        Naming the host, the process and the fix.

    Examples
    --------
    >>> refuse_live_lease(getfixture("tmp_path") / "none.zarr")  # no lease: nothing to say
    """
    path = _lease_path(out)
    lease = None if path is None else _read_lease(path)
    if lease is None or lease_state(lease) != "live":
        return
    held = _held.get() or []
    if any(own.path == path for own in held):
        return
    raise LeaseHeldError(
        f"{_describe_lease(out, lease)}; two runs must not write one output: wait for it to "
        f"finish or stop it. If that run is dead, its lease goes stale (its process gone from "
        f"this host, or no heartbeat for {LEASE_TIMEOUT:.0f} s) and --resume or --overwrite "
        f"take it over; or delete {str(path)!r} yourself."
    )


class Lease:
    """This process's lease on an output: a heartbeat thread keeps it live.

    Examples
    --------
    >>> import zarr
    >>> out = getfixture("tmp_path") / "o.zarr"
    >>> _ = zarr.open_group(str(out), mode="w")
    >>> lease = Lease.acquire(out)
    >>> (out / LEASE_NAME).exists(), lease_state(_read_lease(out / LEASE_NAME))
    (True, 'live')
    >>> lease.release(); (out / LEASE_NAME).exists()
    False
    """

    def __init__(self, path: Path, record: dict[str, Any]) -> None:
        self.path = path
        self.record = record
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="volseg-lease", daemon=True)
        self._thread.start()

    @classmethod
    def acquire(cls, out: Any) -> Lease | None:
        """Take the lease (a stale one is replaced); None for an in-memory output."""
        path = _lease_path(out)
        if path is None:
            return None
        now = time.time()
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": now,
            "heartbeat": now,
            "token": os.urandom(8).hex(),
        }
        for _ in range(3):
            try:
                handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                refuse_live_lease(out)
                path.unlink(missing_ok=True)  # stale: take it over
                continue
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(record, stream)
            lease = cls(path, record)
            held = _held.get()
            if held is not None:
                held.append(lease)
            return lease
        raise LeaseHeldError(f"output {str(out)!r}: could not take its lease {str(path)!r}.")

    def _beat(self) -> None:
        while not self._stop.wait(LEASE_HEARTBEAT):
            current = _read_lease(self.path)
            if current is None or current.get("token") != self.record["token"]:
                return  # taken over (or removed by --overwrite of another run)
            self.record["heartbeat"] = time.time()
            partial = self.path.with_name(self.path.name + ".partial")
            partial.write_text(json.dumps(self.record), encoding="utf-8")
            os.replace(partial, self.path)

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if it is still this run's."""
        self._stop.set()
        self._thread.join(timeout=5)
        current = _read_lease(self.path)
        if current is not None and current.get("token") == self.record["token"]:
            self.path.unlink(missing_ok=True)


def holds_leases(func: Any) -> Any:
    """Release every lease ``func`` took (:meth:`Lease.acquire`) when it returns or raises.

    Examples
    --------
    >>> @holds_leases
    ... def run():
    ...     return "done"
    >>> run()
    'done'
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = _held.set([])
        try:
            return func(*args, **kwargs)
        finally:
            for lease in _held.get() or []:
                lease.release()
            _held.reset(token)

    return wrapper
