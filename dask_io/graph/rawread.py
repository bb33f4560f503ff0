"""Raw reads of arrays stored contiguously in a file, straight into a buffer.

h5py reads a box of a contiguous dataset through HDF5's 64 KiB sieve buffer, and a
strided memory selection row by row. When the data is one C-order array at a known
byte offset (a contiguous, unfiltered HDF5 dataset in a plain file, a ``.npy`` file,
a numpy memmap), a box is read here in exactly the runs the plan's cost model counts, by
:func:`dask_io.storage.rawio.read_region`: ``os.preadv`` of each contiguous byte
range, scattered straight into the rows of the buffer, or through a small staging
array when rows are very short. The calls release the GIL, so the reads of one
buffer run on several threads (:func:`read_many`).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from dask_io.storage.base import IOCounters
from dask_io.storage.rawio import RawArray, read_region, run_layout

Box = tuple[tuple[int, int], ...]
MIN_PART = 8 << 20  # a read is cut for threads into parts of at least this many bytes

COUNTERS = IOCounters()  # what raw reads did in this process (runs, calls, bytes)
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
_LOCAL = threading.local()


def read_threads() -> int:
    """Threads that read the parts of one buffer (``DASK_IO_READ_THREADS``, else 4 to 8).

    They mostly wait for the device, so there are at least 4 even on a 2-core machine
    (cold 2 GiB resplit on 2 cores: reads 2.3 s of task time with 2 threads, 1.9 s with 4).
    """
    value = os.environ.get("DASK_IO_READ_THREADS")
    return max(1, int(value)) if value else max(4, min(8, os.cpu_count() or 1))


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(read_threads(), thread_name_prefix="dask_io-read")
        return _POOL


# -- where an array's bytes are ------------------------------------------------------------


def h5py_raw(dataset: Any) -> RawArray | None:
    """The raw location of an h5py dataset, if it is contiguous in a plain file, else None.

    Unflushed writes of the file are flushed first, so that reading the file sees them.
    """
    import h5py

    try:
        f = dataset.file
        if f.driver != "sec2" or not os.path.isfile(f.filename):
            return None
        plist = dataset.id.get_create_plist()
        if plist.get_layout() != h5py.h5d.CONTIGUOUS or plist.get_nfilters() or plist.get_external_count():
            return None
        dtype = np.dtype(dataset.dtype)
        ftype = dataset.id.get_type()
        if dtype.kind not in "biuf" or ftype.get_size() != dtype.itemsize:
            return None
        if dtype.itemsize > 1:
            big = ftype.get_order() == h5py.h5t.ORDER_BE
            if dtype != dtype.newbyteorder(">" if big else "<"):
                return None
        if f.mode == "r+":
            f.flush()
        offset = dataset.id.get_offset()
    except (AttributeError, ValueError, RuntimeError, OSError):
        return None
    if offset is None:
        return None
    return RawArray(os.path.abspath(f.filename), int(offset), tuple(int(n) for n in dataset.shape), dtype)


def memmap_raw(arr: np.memmap) -> RawArray | None:
    """The raw location of a C-contiguous numpy memmap."""
    if not arr.flags.c_contiguous or arr.dtype.hasobject or arr.dtype.kind not in "biuf":
        return None
    return RawArray(os.path.abspath(arr.filename), int(arr.offset), tuple(arr.shape), np.dtype(arr.dtype))


# -- reading -------------------------------------------------------------------------------


def read_raw(raw: RawArray, box: Box, dest: np.ndarray, staging: int) -> None:
    """Read ``box`` of ``raw`` into ``dest`` (an array of the box's shape, maybe strided).

    Through :func:`dask_io.storage.rawio.read_region`: rows of 64 bytes or more go
    straight into ``dest`` with ``preadv``, shorter ones through this thread's staging
    array of ``staging`` bytes.
    """
    scratch = IOCounters()
    fd = os.open(raw.path, os.O_RDONLY)
    try:
        read_region(raw, fd, box, dest, _staging(staging), scratch)
    finally:
        os.close(fd)
    COUNTERS.add(opens=1, syscalls=scratch.syscalls, bytes_read=dest.nbytes)


def _staging(nbytes: int) -> np.ndarray:
    buf = getattr(_LOCAL, "staging", None)
    if buf is None or buf.nbytes != nbytes:
        buf = _LOCAL.staging = np.empty(nbytes, np.uint8)
    return buf


def split_box(box: Box, parts: int) -> list[tuple[Box, tuple[slice, ...]]]:
    """Cut ``box`` along its first axis longer than 1 into about ``parts`` boxes, with
    the slices of each in the box's own coordinates.

    >>> split_box(((0, 4), (0, 3)), 2)
    [(((0, 2), (0, 3)), (slice(0, 2, None), slice(0, 3, None))), (((2, 4), (0, 3)), (slice(2, 4, None), slice(0, 3, None)))]
    """
    whole = tuple(slice(0, b - a) for a, b in box)
    axis = next((d for d, (a, b) in enumerate(box) if b - a > 1), None)
    if axis is None or parts <= 1:
        return [(box, whole)]
    a, b = box[axis]
    n = b - a
    cuts = [a + (n * i) // min(parts, n) for i in range(min(parts, n) + 1)]
    out = []
    for lo, hi in itertools.pairwise(cuts):
        sub = (*box[:axis], (lo, hi), *box[axis + 1 :])
        local = (*whole[:axis], slice(lo - a, hi - a), *whole[axis + 1 :])
        out.append((sub, local))
    return out


def read_many(items: Sequence[tuple[RawArray, Box, np.ndarray]], staging: int) -> None:
    """Read every ``(raw, box, dest)`` item, on several threads, each read cut in parts.

    Runs are counted per item as the cost model counts them (cutting a run for threads
    makes more calls, not more runs).
    """
    threads = read_threads()
    total = sum(d.nbytes for _, _, d in items)
    parts = []
    for raw, box, dest in items:
        COUNTERS.add(runs=run_layout(raw, box).nruns, read_runs=run_layout(raw, box).nruns)
        n = min(threads * 2, max(1, dest.nbytes // MIN_PART)) if total >= MIN_PART else 1
        for sub, local in split_box(box, n):
            parts.append((raw, sub, dest[local]))
    per_thread = max(1 << 20, staging // threads)
    if threads == 1 or len(parts) == 1:
        for raw, box, dest in parts:
            read_raw(raw, box, dest, per_thread)
        return
    futures = [_pool().submit(read_raw, raw, box, dest, per_thread) for raw, box, dest in parts]
    for fut in futures:
        fut.result()


def _fdatasync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def sync_files(paths: Sequence[str]) -> None:
    """``fdatasync`` every file of ``paths`` (on the read threads when there are several)."""
    if len(paths) <= 1 or read_threads() == 1:
        for path in paths:
            _fdatasync(path)
        return
    for fut in [_pool().submit(_fdatasync, path) for path in paths]:
        fut.result()
