"""Picklable handles on the arrays a Dask graph reads from and writes to.

A graph built by ``da.from_array`` or ``da.store`` holds the array-like objects
themselves. h5py objects cannot be pickled, and a pickled ``numpy.memmap`` turns into
an in-memory copy (writes to it are lost), so the tasks dask_io puts in a graph hold an
:class:`ArrayHandle` instead: in the process that built the graph it uses the original
object; in any other process (a ``distributed`` worker) it reopens the array from its
file, through a per-process cache of open files guarded by a lock, as xarray's
``CachingFileManager`` does.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from dask_io.plan.grid import region_slices

Box = tuple[tuple[int, int], ...]

_FILES: dict[tuple[str, str, int], Any] = {}
_STAGING = threading.local()
_UNSET = object()
# smaller datasets are written through h5py: HDF5 may hold their bytes in caches of
# the file (its metadata accumulator, small-data block) that a raw write would not
# update, and their writes are cheap anyway
RAW_TARGET_MIN_BYTES = 4 << 20
_FILES_LOCK = threading.Lock()
_HDF5_LOCK = threading.RLock()


def _open_h5(filename: str, mode: str) -> Any:
    """The process's open ``h5py.File`` for ``filename`` (one per mode and process)."""
    import h5py

    key = (os.path.abspath(filename), mode, os.getpid())
    with _FILES_LOCK:
        f = _FILES.get(key)
        if f is None or not f.id.valid:
            f = h5py.File(filename, mode)
            _FILES[key] = f
        return f


def close_files() -> None:
    """Close every file this process opened through a handle (they reopen on demand)."""
    with _FILES_LOCK:
        for f in _FILES.values():
            if f.id.valid:
                f.close()
        _FILES.clear()


class ArrayHandle:
    """A picklable reference to an array-like that a graph reads or writes.

    Parameters
    ----------
    obj : array-like
        An h5py dataset, a zarr array, a numpy memmap or any object with numpy-style
        ``__getitem__`` / ``__setitem__``.
    writable : bool
        Whether tasks write through this handle (h5py files reopen in ``r+``).
    lock : lock-like or None
        The lock the user gave to ``from_array`` / ``store``, held around each access.
    """

    def __init__(self, obj: Any, writable: bool = False, lock: Any = None) -> None:
        self.kind = _kind(obj)
        self.writable = writable
        self.lock = lock if lock not in (None, False, True) else None
        self.shape = tuple(int(n) for n in obj.shape)
        self.dtype = np.dtype(obj.dtype)
        self.chunks = _storage_chunks(obj, self.kind)
        self._obj: Any = obj
        self._pid = os.getpid()
        self._spec = _reopen_spec(obj, self.kind)
        # where a source's bytes are, for raw reads (None: read through the object)
        self.raw = None if writable else _raw_location(obj, self.kind)

    # -- pickling: h5py and memmaps travel as how to reopen them ---------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self.kind in ("h5py", "memmap"):
            state["_obj"] = None
        state.pop("_raw_target", None)  # decided again where the handle lands
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @property
    def obj(self) -> Any:
        """The array-like, reopened from its file when this process did not build it."""
        obj = self._obj
        local = obj is not None and (self._pid == os.getpid() or self.kind not in ("h5py", "memmap"))
        if local and (self.kind != "h5py" or obj.id.valid):
            return obj
        return self._reopen()

    def _reopen(self) -> Any:
        if self.kind == "h5py":
            filename, name = self._spec
            return _open_h5(filename, "r+" if self.writable else "r")[name]
        if self.kind == "memmap":
            filename, offset, order = self._spec
            mode = "r+" if self.writable else "r"
            return np.memmap(filename, self.dtype, mode, offset, self.shape, order)
        raise RuntimeError(f"{self!r} lost its array and cannot reopen it")

    @property
    def identity(self) -> tuple[Any, ...]:
        """What makes two handles refer to the same stored array."""
        if self.kind == "h5py":
            return ("h5py", *self._spec)
        if self.kind == "memmap":
            return ("memmap", *self._spec, self.shape, str(self.dtype))
        return (self.kind, id(self._obj))

    def __dask_tokenize__(self) -> Any:
        from dask.base import tokenize

        if self.kind in ("h5py", "memmap"):
            return (self.identity, self.shape, str(self.dtype), self.writable)
        return (tokenize(self._obj), self.writable)

    def __repr__(self) -> str:
        return f"ArrayHandle({self.kind}, shape={self.shape}, dtype={self.dtype})"

    @property
    def file_path(self) -> str | None:
        """The plain file holding the array (h5py in a regular file, memmap), else None."""
        if self.kind == "memmap":
            return str(self._spec[0])
        if self.kind == "h5py":
            path = str(self._spec[0])
            return path if os.path.isfile(path) else None
        return None

    @property
    def layout(self) -> str:
        """The cost model of this array's storage: ``contiguous`` or ``chunked``."""
        return "contiguous" if self.chunks is None else "chunked"

    # -- I/O ----------------------------------------------------------------
    def _locked(self, fn: Callable[[], Any]) -> Any:
        lock = self.lock
        if self.kind == "h5py":
            with _HDF5_LOCK:
                return fn() if lock is None else _with(lock, fn)
        return fn() if lock is None else _with(lock, fn)

    def read_into(self, box: Box, dest: np.ndarray, dest_sel: tuple[slice, ...]) -> None:
        """Copy ``box`` of the array (its own coordinates) into ``dest[dest_sel]``."""
        obj = self.obj
        sel = region_slices(box)
        view = dest[(*dest_sel, Ellipsis)]  # a view even of a 0-d array (dest[()] is a scalar)
        if self.kind == "h5py" and view.flags.c_contiguous:
            # straight into the buffer; a strided memory selection would make HDF5
            # read the file row by row, so other regions go through a temporary
            self._locked(lambda: obj.read_direct(dest, sel, dest_sel))
        else:
            self._locked(lambda: _copy(view, obj[sel]))

    def read(self, box: Box) -> np.ndarray:
        """Return ``box`` of the array as a new numpy array."""
        out = np.empty(tuple(b - a for a, b in box), self.dtype)
        self.read_into(box, out, tuple(slice(None) for _ in box))
        return out

    def write(self, box: Box, data: np.ndarray) -> None:
        """Write ``data`` (of ``box``'s shape) into ``box`` of the array.

        A contiguous, unfiltered HDF5 dataset in a plain file is written at its byte
        offset (:meth:`raw_target`), long runs with ``O_DIRECT``; anything else
        through the array object.
        """
        if math.prod(data.shape) == 0:
            return
        if self.write_pieces(box, box, [(box, data)]):
            return
        obj = self.obj
        sel = region_slices(box)
        if self.kind == "h5py" and not data.flags.c_contiguous:
            # HDF5 gathers a strided memory selection row by row, under its global
            # lock; one numpy copy (outside the lock) is several times faster
            data = np.ascontiguousarray(data)

        def put() -> None:
            obj[sel] = data

        self._locked(put)


    def write_pieces(self, box: Box, region: Box, pieces: list[tuple[Box, np.ndarray]]) -> bool:
        """Write ``region`` (in the pieces' coordinates) into ``box`` of the array, raw.

        The pieces (``(region, data)`` pairs) are gathered straight into the write,
        without assembling the box in memory first. Returns False, writing nothing,
        when the array cannot be written raw (see :meth:`raw_target`).
        """
        raw = self.raw_target()
        if raw is None or any(data.dtype != raw.dtype for _, data in pieces):
            return False
        from dask_io.storage.base import IOCounters
        from dask_io.storage.rawio import write_region

        staging = getattr(_STAGING, "buf", None)
        if staging is None:
            staging = _STAGING.buf = np.empty(1 << 20, np.uint8)
        origin = tuple(r - b for (r, _), (b, _) in zip(region, box))
        fd = os.open(raw.path, os.O_WRONLY)
        try:
            write_region(raw, fd, box, origin, region, pieces, staging, IOCounters())
        finally:
            os.close(fd)
        return True

    def raw_target(self) -> Any:
        """Where to write this array's bytes directly (a ``RawArray``), or None.

        Only writable, contiguous, unfiltered h5py datasets of a plain file, of at
        least :data:`RAW_TARGET_MIN_BYTES`, qualify.
        A dataset without storage yet (HDF5 allocates contiguous storage at the
        first write) gets it by writing its last element through h5py (the fill
        value, which is what reading it returned anyway); the file is then flushed
        and the dataset refreshed, so that neither a dirty HDF5 sieve buffer can later
        overwrite the raw writes nor a stale one serve old bytes to h5py reads.
        Decided once per handle (and again in each process it is unpickled in).
        """
        if self.kind != "h5py" or not self.writable or self.chunks is not None:
            return None
        if math.prod(self.shape) * self.dtype.itemsize < RAW_TARGET_MIN_BYTES:
            return None
        cached = self.__dict__.get("_raw_target", _UNSET)
        if cached is _UNSET:
            with _HDF5_LOCK:
                cached = self.__dict__.get("_raw_target", _UNSET)
                if cached is _UNSET:
                    cached = self._locked(lambda: _prepare_raw_target(self.obj))
                    self.__dict__["_raw_target"] = cached
        return cached


def _prepare_raw_target(dataset: Any) -> Any:
    from dask_io.graph.rawread import h5py_raw

    if dataset.file.mode != "r+" or dataset.size == 0 or dataset.id.get_offset() is not None:
        # allocated storage may sit behind a dirty sieve buffer: flush it, then refresh
        pass
    else:
        try:
            last = tuple(n - 1 for n in dataset.shape)
            fill = dataset.fillvalue
            dataset[last] = fill
        except (TypeError, ValueError, OSError):
            return None
    raw = h5py_raw(dataset)  # flushes the file
    if raw is None:
        return None
    try:
        dataset.refresh()
    except (AttributeError, ValueError, RuntimeError, OSError):
        return None  # without a refresh h5py reads could see stale bytes
    return raw


def _copy(out: np.ndarray, data: Any) -> None:
    np.copyto(out, np.asarray(data), casting="unsafe")


def _with(lock: Any, fn: Callable[[], Any]) -> Any:
    lock.acquire()
    try:
        return fn()
    finally:
        lock.release()


def _kind(obj: Any) -> str:
    module = type(obj).__module__ or ""
    if module.startswith("h5py"):
        return "h5py"
    if module.startswith("zarr"):
        return "zarr"
    if isinstance(obj, np.memmap) and getattr(obj, "filename", None) is not None:
        base_ok = obj.base is not None and getattr(obj.base, "__class__", None).__name__ == "mmap"
        return "memmap" if base_ok and obj.flags.c_contiguous else "array"
    if isinstance(obj, np.ndarray):
        return "numpy"
    return "array"


def _storage_chunks(obj: Any, kind: str) -> tuple[int, ...] | None:
    """The chunk shape of chunked storage, or None for contiguous storage."""
    if kind == "h5py":
        return None if obj.chunks is None else tuple(int(c) for c in obj.chunks)
    if kind == "zarr":
        shards = getattr(obj, "shards", None)
        return tuple(int(c) for c in (shards or obj.chunks))
    return None


def _raw_location(obj: Any, kind: str) -> Any:
    from dask_io.graph.rawread import h5py_raw, memmap_raw

    if kind == "h5py":
        return h5py_raw(obj)
    if kind == "memmap":
        return memmap_raw(obj)
    return None


def _reopen_spec(obj: Any, kind: str) -> tuple[Any, ...]:
    if kind == "h5py":
        return (os.path.abspath(obj.file.filename), obj.name)
    if kind == "memmap":
        return (os.path.abspath(obj.filename), int(obj.offset), "C")
    return ()


def is_file_backed(obj: Any) -> bool:
    """Whether reading ``obj`` is I/O worth clustering (anything but an in-memory ndarray)."""
    return _kind(obj) in ("h5py", "zarr", "memmap", "array")
