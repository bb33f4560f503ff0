"""The common part of stores whose blocks are files holding one contiguous C-order array.

Block stores (``npy`` and ``hdf5`` block files), one ``.npy`` file and one contiguous
HDF5 dataset all read and write with :mod:`dask_io.storage.rawio`: every read or write
opens the block's file once and moves its runs with positioned calls, so the counters
match the plan's cost model.

As a target, a block is written under a temporary name (``<name>.dask_io-tmp``) and
committed (fsync, rename to its final name) once complete.
"""

from __future__ import annotations

import datetime
import os
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from dask_io.errors import StoreMismatchError
from dask_io.plan.grid import Grid
from dask_io.plan.ops import BlockIndex, Region
from dask_io.storage.base import IOCounters, Layout, Pieces
from dask_io.storage.files import TMP_SUFFIX, create_hdf5, create_npy, fsync_path, io_errors
from dask_io.storage.rawio import RawArray, read_region, write_region


class RawBlocks:
    """Base class: blocks are raw C-order arrays at a known offset of their file.

    Subclasses define :meth:`block_path`, :meth:`_locate` (find a source block's data)
    and, for targets, ``kind`` (``"npy"`` or ``"hdf5"``) and ``dataset``.
    """

    layout: Layout = "contiguous"
    kind: str = "npy"
    dataset: str = "data"

    def __init__(self, path: str, grid: Grid, dtype: np.dtype[Any], writable: bool) -> None:
        self.path = path
        self.grid = grid
        self.shape = grid.shape
        self.dtype = np.dtype(dtype)
        self.writable = writable
        self.counters = IOCounters()
        self.completed: set[BlockIndex] = set()
        self._raws: dict[BlockIndex, RawArray] = {}
        self._stamps: dict[str, tuple[int, int]] = {}  # source file: (size, mtime_ns)
        self._lock = threading.Lock()

    # -- naming -------------------------------------------------------------------
    def block_path(self, block: BlockIndex) -> str:
        raise NotImplementedError

    def tmp_path(self, block: BlockIndex) -> str:
        return self.block_path(block) + TMP_SUFFIX

    def _locate(self, block: BlockIndex) -> RawArray:
        raise NotImplementedError

    def raw(self, block: BlockIndex) -> RawArray:
        """Where the data of ``block`` is (parsing its header once per process)."""
        raw = self._raws.get(block)
        if raw is None:
            raw = self._locate(block)
            self._raws[block] = raw
            self._stamp(raw.path)
        return raw

    def _stamp(self, path: str) -> None:
        """Remember the size and mtime of source file ``path`` as planned."""
        if not self.writable and path not in self._stamps:
            st = os.stat(path)
            self._stamps[path] = (st.st_size, st.st_mtime_ns)

    def stamps(self) -> dict[str, list[int]]:
        """``{file: [size, mtime_ns]}`` of the source files located so far."""
        return {p: list(v) for p, v in sorted(self._stamps.items())}

    def _check_unchanged(self, fd: int, path: str, block: BlockIndex) -> None:
        want = self._stamps.get(path)
        if want is None:
            return
        st = os.fstat(fd)
        if (st.st_size, st.st_mtime_ns) != want:
            raise StoreMismatchError(
                f"source file {path!r} changed while the job ran (now {st.st_size} bytes, "
                f"modified {_when(st.st_mtime_ns)}; planned with {want[0]} bytes, modified "
                f"{_when(want[1])}): stopped before reading block {block}; run again with "
                "--overwrite (overwrite=True) to start from the new source"
            )

    # -- I/O ----------------------------------------------------------------------
    def read(
        self,
        block: BlockIndex,
        region: Region,
        out: npt.NDArray[Any],
        staging: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        """Read ``region`` of ``block`` into ``out`` in the runs the cost model counts."""
        raw = self.raw(block)
        origin = tuple(a for a, _ in self.grid.block_region(block))
        local = tuple((a - o, b - o) for (a, b), o in zip(region, origin, strict=False))
        with io_errors(raw.path, "read"):
            fd = os.open(raw.path, os.O_RDONLY)
            self.counters.add(opens=1)
            try:
                self._check_unchanged(fd, raw.path, block)
                read_region(raw, fd, local, out, staging, self.counters)
            finally:
                os.close(fd)

    def write(
        self,
        block: BlockIndex,
        region: Region,
        pieces: Pieces,
        staging: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        """Write ``region`` of ``block`` from ``pieces`` into the block's temporary file."""
        if not self.writable:
            raise PermissionError(f"store {self.path!r} is open read-only")
        block_region = self.grid.block_region(block)
        origin = tuple(a for a, _ in block_region)
        local = tuple((a - o, b - o) for (a, b), o in zip(region, origin, strict=False))
        with io_errors(self.tmp_path(block)):
            fd, raw = self._open_for_write(block, block_region)
            try:
                write_region(raw, fd, local, origin, region, pieces, staging, self.counters)
            finally:
                os.close(fd)

    def _open_for_write(self, block: BlockIndex, block_region: Region) -> tuple[int, RawArray]:
        tmp = self.tmp_path(block)
        raw = self._raws.get(block)
        shape = tuple(b - a for a, b in block_region)
        if raw is not None:
            fd = os.open(tmp, os.O_WRONLY)
        elif self.kind == "npy":
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            offset = create_npy(fd, shape, self.dtype)
            self.counters.add(syscalls=2)
            raw = self._raws[block] = RawArray(tmp, offset, shape, self.dtype)
        else:
            offset = create_hdf5(tmp, self.dataset, shape, self.dtype)
            self.counters.add(meta_opens=1)
            raw = self._raws[block] = RawArray(tmp, offset, shape, self.dtype)
            fd = os.open(tmp, os.O_WRONLY)
        self.counters.add(opens=1)
        return fd, raw

    # -- commit ---------------------------------------------------------------------
    def commit(self, block: BlockIndex) -> None:
        """fsync the finished temporary file of ``block`` and rename it into place."""
        tmp = self.tmp_path(block)
        with io_errors(tmp):
            fsync_path(tmp)
            os.replace(tmp, self.block_path(block))
        with self._lock:
            self._raws.pop(block, None)
            self.completed.add(block)
        self._record(block)

    def _record(self, block: BlockIndex) -> None:
        """Hook: remember that ``block`` is complete (block stores update their manifest)."""

    def discard_partial(self) -> list[str]:
        """Remove temporary files left by an interrupted run; return their paths."""
        removed = []
        for block in self.grid.blocks():
            if block in self.completed:
                continue
            tmp = self.tmp_path(block)
            if os.path.exists(tmp):
                os.remove(tmp)
                removed.append(tmp)
        return removed

    def close(self) -> None:
        """Nothing stays open between operations."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_lock")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, shape={self.shape}, dtype={self.dtype})"


def _when(mtime_ns: int) -> str:
    t = datetime.datetime.fromtimestamp(mtime_ns / 1e9, datetime.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
