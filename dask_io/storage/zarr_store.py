"""Zarr arrays (zarr >= 3; formats 2 and 3, sharded or not) as stores.

A block is a chunk, or a shard for sharded arrays (the shard is the unit zarr writes).
The layout is ``"chunked"``: each block touched is one open and one run, and writing
part of a block already holding data makes zarr read it back first (counted in
``rmw_bytes``). Counts are computed from the geometry: zarr does the file access.

As a target, the array is built in ``<path>.dask_io-tmp``, with a progress file
listing the blocks complete, and renamed into place at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from dask_io.errors import InvalidChunksError, StoreNotFoundError
from dask_io.plan.grid import Grid, region_slices
from dask_io.plan.ops import BlockIndex, Region
from dask_io.storage.base import IOCounters, Layout, Pieces, assemble, region_nbytes
from dask_io.storage.files import TMP_SUFFIX, fsync_dir, write_json_atomic

PROGRESS = "dask_io-progress.json"
JOURNAL = "dask_io-done.log"  # one line per committed block, appended as they complete


def is_zarr(path: str) -> bool:
    """Whether ``path`` looks like a Zarr array (v2 or v3 metadata, or a ``.zarr`` name)."""
    meta = ("zarr.json", ".zarray")
    return path.rstrip("/").endswith(".zarr") or any(
        os.path.isfile(os.path.join(path, m)) for m in meta
    )


def regular_chunks(grid: Grid) -> tuple[int, ...]:
    """The regular chunk shape of ``grid``, or InvalidChunksError if it has none."""
    shape = grid.block_shape
    expected = Grid.from_chunks(grid.shape, shape).chunks
    if expected != grid.chunks:
        raise InvalidChunksError(
            f"chunks={grid.chunks} are irregular; a Zarr array needs regular chunks"
        )
    return shape


class ZarrStore:
    """A Zarr array, read and written one chunk (or shard) at a time."""

    layout: Layout = "chunked"

    def __init__(self, path: str, grid: Grid, dtype: Any, writable: bool = False) -> None:
        self.path, self.grid = path, grid
        self.shape, self.dtype = grid.shape, np.dtype(dtype)
        self.writable = writable
        self.counters = IOCounters()
        self.completed: set[BlockIndex] = set()
        self.job: dict[str, Any] = {}
        self._arr: Any = None
        self._touched: set[BlockIndex] = set()
        self._lock = threading.Lock()
        self._progress_time = 0.0

    # -- constructors ------------------------------------------------------------
    @classmethod
    def open(cls, path: str) -> ZarrStore:
        """Open an existing Zarr array for reading."""
        arr = _open_array(path, "r")
        unit = arr.shards or arr.chunks
        store = cls(path, Grid.from_chunks(tuple(arr.shape), unit), arr.dtype)
        store._arr = arr
        return store

    @classmethod
    def create(
        cls,
        path: str,
        grid: Grid,
        dtype: Any,
        zarr_format: int = 3,
        inner_chunks: tuple[int, ...] | None = None,
        job: dict[str, Any] | None = None,
    ) -> ZarrStore:
        """A new array with chunks (or shards, given ``inner_chunks``) ``grid``'s blocks."""
        import zarr

        unit = regular_chunks(grid)
        if inner_chunks is not None and zarr_format != 3:
            raise InvalidChunksError("sharded Zarr arrays need zarr_format=3")
        if inner_chunks is not None and (
            len(inner_chunks) != len(unit)
            or any(s % c for s, c in zip(unit, inner_chunks, strict=False))
        ):
            raise InvalidChunksError(
                f"inner_chunks={tuple(inner_chunks)} must divide the shard shape {unit}"
            )
        store = cls(path, grid, dtype, writable=True)
        store.job = dict(job or {})
        zarr.create_array(
            store.work_path,
            shape=grid.shape,
            dtype=store.dtype,
            chunks=inner_chunks or unit,
            shards=unit if inner_chunks else None,
            compressors=None,
            zarr_format=zarr_format,  # type: ignore[arg-type]
            fill_value=0,
            overwrite=True,
        )
        store.write_progress()
        return store

    @classmethod
    def resume(cls, path: str) -> ZarrStore:
        """Reopen the unfinished target of ``path``, with its blocks already complete."""
        work = path + TMP_SUFFIX
        arr = _open_array(work, "r+")
        unit = arr.shards or arr.chunks
        store = cls(path, Grid.from_chunks(tuple(arr.shape), unit), arr.dtype, writable=True)
        store._arr = arr
        with open(os.path.join(work, PROGRESS)) as f:
            data = json.load(f)
        store.job = data.get("job", {})
        store.completed = {tuple(b) for b in data.get("completed_blocks", [])}
        store.completed |= _read_journal(os.path.join(work, JOURNAL))
        return store

    @property
    def work_path(self) -> str:
        return self.path + TMP_SUFFIX if self.writable else self.path

    def _array(self) -> Any:
        if self._arr is None:
            self._arr = _open_array(self.work_path, "r+" if self.writable else "r")
            self.counters.add(meta_opens=1)
        return self._arr

    # -- I/O ----------------------------------------------------------------------
    def read(
        self,
        block: BlockIndex,
        region: Region,
        out: npt.NDArray[Any],
        staging: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        """Read ``region`` of chunk ``block``."""
        out[...] = self._array()[region_slices(region)]
        n = region_nbytes(self.grid.block_region(block), self.dtype.itemsize)
        self.counters.add(opens=1, runs=1, read_runs=1, syscalls=1, bytes_read=n)

    def write(
        self,
        block: BlockIndex,
        region: Region,
        pieces: Pieces,
        staging: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        """Write ``region`` of chunk ``block`` (zarr reads the chunk back if partial)."""
        if not self.writable:
            raise PermissionError(f"store {self.path!r} is open read-only")
        data = assemble(pieces, region, self.dtype)
        self._array()[region_slices(region)] = data
        n = region_nbytes(self.grid.block_region(block), self.dtype.itemsize)
        whole = region == self.grid.block_region(block)
        with self._lock:
            rmw = n if (not whole and block in self._touched) else 0
            self._touched.add(block)
        runs = 2 if rmw else 1  # a read-modify-write reads the chunk back first
        self.counters.add(
            opens=1, runs=runs, write_runs=runs, syscalls=runs, bytes_written=n, rmw_bytes=rmw
        )

    # -- progress -------------------------------------------------------------------
    def write_progress(self) -> None:
        """Record the complete blocks in the work directory's progress file."""
        with self._lock:
            done = [list(b) for b in sorted(self.completed)]
        write_json_atomic(
            os.path.join(self.work_path, PROGRESS), {"job": self.job, "completed_blocks": done}
        )
        self._progress_time = time.monotonic()

    def commit(self, block: BlockIndex) -> None:
        """Record ``block`` complete (zarr already wrote it atomically) in the journal."""
        line = (".".join(str(i) for i in block) + "\n").encode()
        fd = os.open(os.path.join(self.work_path, JOURNAL), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        with self._lock:
            self.completed.add(block)
        if time.monotonic() - self._progress_time > 0.5:
            self.write_progress()

    def finalize(self) -> None:
        """fsync every file, drop the progress file and move the array into place."""
        os.remove(os.path.join(self.work_path, PROGRESS))
        if os.path.exists(os.path.join(self.work_path, JOURNAL)):
            os.remove(os.path.join(self.work_path, JOURNAL))
        for root, _, files in os.walk(self.work_path):
            for name in files:
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
        self._arr = None
        os.replace(self.work_path, self.path)
        fsync_dir(os.path.dirname(os.path.abspath(self.path)))

    def discard_partial(self) -> list[str]:
        """Remove zarr's own temporary files left by a killed run."""
        removed = []
        for root, _, files in os.walk(self.work_path):
            for name in files:
                if name.endswith(".partial") or name.endswith(TMP_SUFFIX):
                    removed.append(os.path.join(root, name))
                    os.remove(removed[-1])
        return removed

    def close(self) -> None:
        """Drop the zarr array handle of this process."""
        self._arr = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arr"] = None
        state.pop("_lock")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def _read_journal(path: str) -> set[BlockIndex]:
    """Blocks listed in a journal; a torn last line (a killed write) is ignored."""
    if not os.path.exists(path):
        return set()
    done = set()
    with open(path) as f:
        for line in f:
            if line.endswith("\n"):
                done.add(tuple(int(i) for i in line.strip().split(".")))
    return done


def _open_array(path: str, mode: str) -> Any:
    import zarr

    if not os.path.exists(path):
        raise StoreNotFoundError(f"{path!r} does not exist")
    try:
        return zarr.open_array(path, mode=mode)
    except Exception as e:  # zarr raises several types for unreadable metadata
        raise StoreNotFoundError(f"{path!r} is not a readable Zarr array: {e}") from None


def remove_tree(path: str) -> None:
    """Remove a file or directory tree if it exists."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)
