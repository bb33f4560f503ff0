"""An injecting wrapper of the storage layer's write calls: fail after N bytes.

:class:`Injector` replaces the ``os`` module seen by dask_io's storage and execute
modules with a proxy whose ``pwrite``, ``write`` and ``fsync`` count bytes (and calls),
the ctypes ``pwritev`` of :mod:`dask_io.storage.iov`, and the ``open`` of
:mod:`dask_io.storage.files` (JSON manifests and progress files). Once ``budget``
bytes have been written, the call that crosses it writes what fits (a short write, as
a full disk does) and every later write fails with ``errno``. ``fsync_fail`` makes the
k-th fsync fail instead. ``paths`` records every file written to.
"""

from __future__ import annotations

import builtins
import ctypes
import errno as errno_mod
import fcntl
import os
import types
from typing import Any

import numpy as np

import dask_io.execute.distributed as dx
import dask_io.storage.direct as direct
import dask_io.storage.files as files
import dask_io.storage.iov as iov
import dask_io.storage.raw as raw
import dask_io.storage.rawio as rawio
import dask_io.storage.zarr_store as zarr_store

MODULES = (rawio, direct, files, raw, zarr_store, dx)


def fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


class Injector:
    def __init__(
        self,
        budget: float = float("inf"),
        code: int = errno_mod.ENOSPC,
        fsync_fail: int | None = None,
    ) -> None:
        self.budget, self.code, self.fsync_fail = budget, code, fsync_fail
        self.written = 0
        self.fsyncs = 0
        self.failed: str | None = None  # the file of the first failed call
        self.failures: set[str] = set()  # every file a call failed on (threads race)
        self.paths: set[str] = set()
        self._pwritev = iov._CALLS[False]

    # -- accounting ----------------------------------------------------------------
    def _allow(self, path: str, n: int) -> int:
        """How many of ``n`` bytes to write to ``path`` (raises when nothing fits)."""
        self.paths.add(path)
        left = self.budget - self.written
        if left <= 0:
            if self.failed is None:
                self.failed = path
            self.failures.add(path)
            raise OSError(self.code, os.strerror(self.code))
        k = int(min(n, left))
        self.written += k
        return k

    def clear(self) -> None:
        self.budget, self.fsync_fail = float("inf"), None

    # -- the wrapped calls -------------------------------------------------------------
    def pwrite(self, fd: int, data: Any, pos: int) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        if fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0):
            left = self.budget - self.written  # a short O_DIRECT write is whole pages
            n = n if left >= n else int(max(left, 0)) // 4096 * 4096
            if n == 0:
                self.budget = self.written
        k = self._allow(fd_path(fd), n)
        return os.pwrite(fd, view[:k], pos)

    def write(self, fd: int, data: Any) -> int:
        view = memoryview(data).cast("B")
        k = self._allow(fd_path(fd), len(view))
        return os.write(fd, view[:k])

    def fsync(self, fd: int) -> None:
        self.fsyncs += 1
        if self.fsync_fail is not None and self.fsyncs >= self.fsync_fail:
            if self.failed is None:
                self.failed = fd_path(fd)
            self.failures.add(fd_path(fd))
            raise OSError(self.code, os.strerror(self.code))
        os.fsync(fd)

    def pwritev(self, fd: int, base: int, count: int, pos: int) -> int:
        vec = np.frombuffer(
            (ctypes.c_char * (count * iov._IOVEC.itemsize)).from_address(base), iov._IOVEC
        )
        total = int(vec["len"].sum())
        try:
            k = self._allow(fd_path(fd), total)
        except OSError:
            ctypes.set_errno(self.code)
            return -1
        if k == total:
            return int(self._pwritev(fd, base, count, pos))
        short = vec.copy()
        cum = np.cumsum(short["len"].astype(np.int64))
        i = int(np.searchsorted(cum, k, side="left"))
        short["len"][i] -= int(cum[i]) - k
        return int(self._pwritev(fd, short.ctypes.data, i + 1, pos))

    def open(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = builtins.open(file, mode, *args, **kwargs)  # noqa: SIM115 - closed by the wrapper
        if not any(c in mode for c in "wax+"):
            return f
        injector, name = self, os.fspath(file)

        class Wrapped:
            def __enter__(self) -> Any:
                return self

            def __exit__(self, *exc: Any) -> None:
                f.close()

            def write(self, text: Any) -> int:
                n = len(text)
                k = injector._allow(name, n)
                if k < n:
                    f.write(text[:k])
                    f.flush()
                    injector._allow(name, 1)  # raises: nothing is left
                return int(f.write(text))

            def __getattr__(self, attr: str) -> Any:
                return getattr(f, attr)

        return Wrapped()

    # -- installing ----------------------------------------------------------------------
    def install(self, monkeypatch: Any) -> Injector:
        proxy = types.SimpleNamespace(pwrite=self.pwrite, write=self.write, fsync=self.fsync)

        class OSProxy(types.ModuleType):
            def __getattr__(self, name: str) -> Any:
                return getattr(os, name)

        mod = OSProxy("os")
        mod.__dict__.update(vars(proxy))
        for m in MODULES:
            monkeypatch.setattr(m, "os", mod)
        monkeypatch.setitem(iov._CALLS, False, self.pwritev)
        monkeypatch.setattr(files, "open", self.open, raising=False)
        return self


def tmp_files(root: str) -> list[str]:
    """Files under ``root`` with a temporary or partial name."""
    out = []
    for d, _, names in os.walk(root):
        out += [
            os.path.join(d, n) for n in names if n.endswith((files.TMP_SUFFIX, ".partial", ".tmp"))
        ]
    return sorted(out)
