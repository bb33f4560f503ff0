"""Scatter/gather I/O: move a file byte range to or from many memory rows in few calls.

A region of a C-order array in a file is a set of *rows* (the contiguous last-axis
segments); in memory the same rows may sit in a strided view of the executor's
buffer, or in several kept pieces. Instead of copying them through a staging
array, :func:`segments` lists every row as ``(file offset, memory address,
length)`` with numpy (no Python loop over rows), merges rows that are contiguous on
both sides, and :func:`transfer` moves them with ``preadv`` / ``pwritev`` (up to
``IOV_MAX`` rows per call, never spanning a gap in the file), called through
``ctypes`` so that the GIL is released during the copy.

Worth it when rows are long enough that the per-row cost in the kernel stays below
the cost of a user-space copy: :data:`MIN_ROW_BYTES`.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from dask_io.plan.ops import Region

MIN_ROW_BYTES = 64  # shorter rows go through the staging array instead
IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024
_MAX_CALL = 1 << 30

_libc = ctypes.CDLL(None, use_errno=True)
_IOVEC = np.dtype([("base", np.uintp), ("len", np.uintp)])
_CALLS: dict[bool, Any] = {}
for _name, _reading in (("preadv", True), ("pwritev", False)):
    _fn = getattr(_libc, _name)
    _fn.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong)
    _fn.restype = ctypes.c_ssize_t
    _CALLS[_reading] = _fn


def address(arr: npt.NDArray[Any]) -> int:
    """Address of ``arr``'s first element."""
    return int(arr.__array_interface__["data"][0])


def segments(
    file_start: int,
    file_strides: Sequence[int],
    local: Region,
    mem: npt.NDArray[Any],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uintp], npt.NDArray[np.int64]]:
    """File offsets, memory addresses and lengths of the rows of ``mem``.

    ``mem`` holds the box ``local`` (in the file array's coordinates) of an array
    whose element 0 is at byte ``file_start`` and whose byte strides are
    ``file_strides``. Rows are merged where both sides are contiguous.
    """
    ext = [b - a for a, b in local]
    outer = len(ext) - 1
    foff = np.full([1] * outer, sum(a * s for (a, _), s in zip(local, file_strides, strict=True)))
    foff += file_start
    moff = np.full([1] * outer, address(mem), np.int64)
    for d in range(outer):
        shape = [1] * outer
        shape[d] = ext[d]
        steps = np.arange(ext[d], dtype=np.int64).reshape(shape)
        foff = foff + steps * file_strides[d]
        moff = moff + steps * mem.strides[d]
    foff, moff = foff.astype(np.int64).reshape(-1), moff.reshape(-1)
    lens = np.full(foff.shape, ext[-1] * mem.itemsize, np.int64)
    return foff, moff.astype(np.uintp), lens


def merge_rows(
    foff: npt.NDArray[np.int64], moff: npt.NDArray[np.uintp], lens: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uintp], npt.NDArray[np.int64]]:
    """Sort rows by file offset and merge neighbours contiguous in file and memory.

    >>> f, m, n = merge_rows(np.array([10, 0, 5]), np.array([110, 100, 105], np.uintp),
    ...                      np.array([5, 5, 5]))
    >>> f.tolist(), m.tolist(), n.tolist()
    ([0], [100], [15])
    """
    order = np.argsort(foff, kind="stable")
    foff, moff, lens = foff[order], moff[order], lens[order]
    if len(foff) < 2:
        return foff, moff, lens
    ends = foff[:-1] + lens[:-1]
    joined = (ends == foff[1:]) & (
        moff[:-1].astype(np.int64) + lens[:-1] == moff[1:].astype(np.int64)
    )
    starts = np.flatnonzero(np.concatenate(([True], ~joined)))
    total = np.add.reduceat(lens, starts)
    return foff[starts], moff[starts], total


def transfer(
    fd: int,
    reading: bool,
    foff: npt.NDArray[np.int64],
    moff: npt.NDArray[np.uintp],
    lens: npt.NDArray[np.int64],
) -> int:
    """Move the sorted, merged rows; return the number of system calls made.

    One call covers at most ``IOV_MAX`` rows and ``_MAX_CALL`` bytes, contiguous in
    the file. The caller keeps the arrays behind ``moff`` alive.
    """
    n = len(foff)
    if n == 0:
        return 0
    gaps = np.flatnonzero(foff[:-1] + lens[:-1] != foff[1:]) + 1
    starts = np.concatenate(([0], gaps))
    counts = np.diff(np.append(starts, n)).tolist()
    totals = np.add.reduceat(lens, starts).tolist()
    iov = np.empty(n, _IOVEC)
    iov["base"] = moff
    iov["len"] = lens
    fn, base, size = _CALLS[reading], iov.ctypes.data, _IOVEC.itemsize
    calls = 0
    for lo, count, total, pos in zip(
        starts.tolist(), counts, totals, foff[starts].tolist(), strict=True
    ):
        if count <= IOV_MAX and total <= _MAX_CALL:
            calls += 1
            if fn(fd, base + lo * size, count, pos) == total:
                continue
        # large, or short: again in pieces (moving the same bytes twice is harmless)
        calls += _range(fd, reading, iov[lo : lo + count], pos)
    return calls


def _range(fd: int, reading: bool, iov: npt.NDArray[Any], pos: int) -> int:
    """Move one contiguous file range described by ``iov`` (rows in file order)."""
    fn = _CALLS[reading]
    orig, cur = iov, iov
    cum = np.cumsum(iov["len"].astype(np.int64))
    calls = done = i = 0
    while i < len(cur):
        limit = int(np.searchsorted(cum, done + _MAX_CALL, side="right"))
        j = max(i + 1, min(len(cur), i + IOV_MAX, limit))
        want = int(cum[j - 1]) - done
        got = fn(fd, cur[i:j].ctypes.data, j - i, pos)
        calls += 1
        if got < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{'preadv' if reading else 'pwritev'}: {os.strerror(err)}")
        if got == 0:
            raise OSError(f"short {'read' if reading else 'write'} at byte {pos}")
        pos += got
        done += got
        if got == want:
            i = j
            continue
        # short transfer: restart at the row it stopped in, trimmed of its done part
        i = int(np.searchsorted(cum, done, side="right"))
        cut = done - (int(cum[i - 1]) if i else 0)
        cur = orig.copy()
        cur["base"][i] += cut
        cur["len"][i] -= cut
    return calls
