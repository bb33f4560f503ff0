"""Single-array endpoints: one ``.npy`` file, one HDF5 dataset.

A single ``.npy`` file and a contiguous HDF5 dataset are one block covering the whole
array, read and written in raw runs (:mod:`dask_io.storage.raw`). A chunked or
compressed HDF5 dataset goes through h5py, one chunk per block (layout ``"chunked"``).

As targets, these are written under ``<file>.dask_io-tmp`` and renamed into place
when complete; an interrupted run restarts the file from scratch.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from dask_io.plan.grid import Grid, region_slices
from dask_io.plan.ops import BlockIndex, Region
from dask_io.storage.base import IOCounters, Layout, Pieces, assemble, region_nbytes
from dask_io.storage.files import (
    TMP_SUFFIX,
    fsync_dir,
    fsync_path,
    hdf5_info,
    io_errors,
    read_npy_header,
)
from dask_io.storage.raw import RawBlocks
from dask_io.storage.rawio import RawArray


def split_h5_path(path: str) -> tuple[str, str]:
    """``"f.h5:/a/b"`` -> ``("f.h5", "/a/b")``; the dataset defaults to ``"/data"``."""
    for ext in (".h5:", ".hdf5:", ".hdf:"):
        i = path.find(ext)
        if i >= 0:
            return path[: i + len(ext) - 1], path[i + len(ext) :] or "/data"
    return path, "/data"


class NpyFile(RawBlocks):
    """One ``.npy`` file: a single block covering the whole array."""

    kind = "npy"

    @classmethod
    def open(cls, path: str) -> NpyFile:
        """Open an existing ``.npy`` file for reading."""
        raw = read_npy_header(path)
        store = cls(path, Grid.from_chunks(raw.shape, raw.shape), raw.dtype, writable=False)
        store._raws[store.origin_block] = raw
        store._stamp(path)
        return store

    @classmethod
    def create(cls, path: str, shape: tuple[int, ...], dtype: Any) -> NpyFile:
        """A new ``.npy`` target (written under a temporary name)."""
        return cls(path, Grid.from_chunks(shape, shape), np.dtype(dtype), writable=True)

    @property
    def origin_block(self) -> BlockIndex:
        return (0,) * len(self.shape)

    def block_path(self, block: BlockIndex) -> str:
        return self.path

    def _locate(self, block: BlockIndex) -> RawArray:
        self.counters.add(meta_opens=1)
        return read_npy_header(self.path)

    def finalize(self) -> None:
        """The one block was committed (renamed) already: make the rename durable."""
        fsync_dir(os.path.dirname(os.path.abspath(self.path)))


class HDF5File(RawBlocks):
    """One contiguous, uncompressed HDF5 dataset, accessed in raw runs at its byte offset."""

    kind = "hdf5"

    def __init__(
        self, path: str, dataset: str, grid: Grid, dtype: Any, writable: bool = False
    ) -> None:
        super().__init__(path, grid, dtype, writable)
        self.dataset = dataset

    @classmethod
    def create(cls, path: str, dataset: str, shape: tuple[int, ...], dtype: Any) -> HDF5File:
        """A new HDF5 file with one contiguous dataset (written under a temporary name)."""
        return cls(path, dataset, Grid.from_chunks(shape, shape), np.dtype(dtype), writable=True)

    def block_path(self, block: BlockIndex) -> str:
        return self.path

    def _locate(self, block: BlockIndex) -> RawArray:
        shape, dtype, offset, _ = hdf5_info(self.path, self.dataset)
        self.counters.add(meta_opens=1)
        if offset is None:
            raise ValueError(f"{self.path}:{self.dataset} is not contiguous")
        return RawArray(self.path, offset, shape, dtype)

    def finalize(self) -> None:
        """Make the rename of the finished file durable."""
        fsync_dir(os.path.dirname(os.path.abspath(self.path)))


class HDF5Chunked:
    """A chunked (possibly compressed) HDF5 dataset, read and written through h5py.

    Each chunk is a block; every block touched counts as one open and one run, as in
    the plan's ``"chunked"`` cost model. h5py handles are opened once per process.
    """

    layout: Layout = "chunked"

    def __init__(
        self,
        path: str,
        dataset: str,
        grid: Grid,
        dtype: Any,
        writable: bool = False,
        compression: str | None = None,
    ) -> None:
        self.path, self.dataset, self.grid = path, dataset, grid
        self.shape, self.dtype = grid.shape, np.dtype(dtype)
        self.writable, self.compression = writable, compression
        self.counters = IOCounters()
        self.completed: set[BlockIndex] = set()
        self._file: Any = None
        self._touched: set[BlockIndex] = set()
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str, dataset: str) -> HDF5Chunked:
        """Open an existing chunked dataset for reading."""
        shape, dtype, _, chunks = hdf5_info(path, dataset)
        return cls(path, dataset, Grid.from_chunks(shape, chunks or shape), dtype)

    @classmethod
    def create(
        cls, path: str, dataset: str, grid: Grid, dtype: Any, compression: str | None = None
    ) -> HDF5Chunked:
        """A new chunked dataset with chunks ``grid.block_shape``, written under a temp name."""
        return cls(path, dataset, grid, dtype, writable=True, compression=compression)

    @property
    def _file_path(self) -> str:
        return self.path + TMP_SUFFIX if self.writable else self.path

    def _ds(self) -> Any:
        import h5py

        if self._file is None:
            if self.writable and not os.path.exists(self._file_path):
                f = h5py.File(self._file_path, "w", libver="latest")
                f.create_dataset(
                    self.dataset,
                    shape=self.shape,
                    dtype=self.dtype,
                    chunks=self.grid.block_shape,
                    compression=self.compression,
                )
            else:
                f = h5py.File(self._file_path, "r+" if self.writable else "r")
            self.counters.add(meta_opens=1)
            self._file = f
        return self._file[self.dataset]

    def read(
        self,
        block: BlockIndex,
        region: Region,
        out: npt.NDArray[Any],
        staging: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        """Read ``region`` of chunk ``block`` through h5py."""
        with self._lock:
            out[...] = self._ds()[region_slices(region)]
        n = region_nbytes(self.grid.block_region(block), self.dtype.itemsize)
        self.counters.add(opens=1, runs=1, read_runs=1, syscalls=1, bytes_read=n)

    def write(
        self,
        block: BlockIndex,
        region: Region,
        pieces: Pieces,
        staging: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        """Write ``region`` of chunk ``block`` through h5py (HDF5 updates partial chunks)."""
        if not self.writable:
            raise PermissionError(f"store {self.path!r} is open read-only")
        data = assemble(pieces, region, self.dtype)
        with self._lock, io_errors(self._file_path):
            self._ds()[region_slices(region)] = data
        n = region_nbytes(self.grid.block_region(block), self.dtype.itemsize)
        with self._lock:
            whole = region == self.grid.block_region(block)
            rmw = n if (not whole and block in self._touched) else 0
            self._touched.add(block)
        runs = 2 if rmw else 1  # cost model: a partial chunk update reads the chunk back
        self.counters.add(
            opens=1, runs=runs, write_runs=runs, syscalls=runs, bytes_written=n, rmw_bytes=rmw
        )

    def commit(self, block: BlockIndex) -> None:
        """Record ``block`` complete (the file becomes durable as a whole at the end)."""
        with self._lock:
            self.completed.add(block)

    def finalize(self) -> None:
        """Close, fsync and rename the finished file into place."""
        with io_errors(self._file_path):
            self.close()
            fsync_path(self._file_path)
            os.replace(self._file_path, self.path)
        fsync_dir(os.path.dirname(os.path.abspath(self.path)))

    def discard_partial(self) -> list[str]:
        """Remove the temporary file of an interrupted run."""
        tmp = self.path + TMP_SUFFIX
        if os.path.exists(tmp):
            os.remove(tmp)
            return [tmp]
        return []

    def close(self) -> None:
        """Close the h5py file of this process."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state.pop("_lock")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
