"""One writer per target: an advisory lock file ``<target>.dask_io-lock``.

The file holds the writer's pid, host and start time (JSON) and is ``flock``-ed for
as long as the job runs; the kernel drops the lock when the process dies, however it
dies. A second job on the same target finds the lock held and is refused at once,
with a message naming the running job. A lock file left by a job that died (its lock
no longer held) is taken over, with a :class:`~dask_io.errors.DaskIOWarning` naming
the dead job; the file is removed when the job ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import warnings
from collections.abc import Iterator
from typing import Any

from dask_io.errors import DaskIOWarning, StoreExistsError
from dask_io.storage.files import io_errors

LOCK_SUFFIX = ".dask_io-lock"


def lock_path(target: str) -> str:
    """The lock file of ``target`` (beside it: it exists before the target does)."""
    return os.path.abspath(target).rstrip("/") + LOCK_SUFFIX


def _holder(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 4096, 0).decode()
        info = json.loads(data) if data else {}
    except (OSError, ValueError):
        info = {}
    return info if isinstance(info, dict) else {}


def _describe(info: dict[str, Any]) -> str:
    started = info.get("started")
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
        if isinstance(started, (int, float))
        else "at an unknown time"
    )
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {when}"


@contextlib.contextmanager
def target_lock(target: str, display: str | None = None) -> Iterator[str]:
    """Hold the lock of ``target`` while the block runs; yield the lock file's path.

    Raises :class:`StoreExistsError` when another running job holds it.
    """
    path = lock_path(target)
    shown = display or target
    while True:
        with io_errors(path):
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _holder(fd)
            os.close(fd)
            raise StoreExistsError(
                f"target {shown!r} is being written by another job ({_describe(info)}; "
                f"lock {path!r}); wait for it to finish or stop it"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:  # the file may have been removed (a job ending) between open and flock
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        old = _holder(fd)
        if old:
            warnings.warn(
                f"took over the stale lock {path!r} of a job that is no longer running "
                f"({_describe(old)})",
                DaskIOWarning,
                stacklevel=3,
            )
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        data = json.dumps(mine).encode()
        with io_errors(path):
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)
        os.close(fd)
