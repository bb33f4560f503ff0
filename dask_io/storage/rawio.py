"""Raw reads and writes of regions of a C-order array stored contiguously in a file.

The array's data starts at byte ``offset`` of the file (after a ``.npy`` header, or at
an HDF5 contiguous dataset's address). A region of it is accessed in *runs*, exactly
as :func:`dask_io.plan.grid.run_count` counts them: one contiguous byte range per
run, read with ``os.preadv`` / written with ``os.pwrite``. When the memory side of a
run is contiguous the call goes straight into (or out of) it; otherwise the data
goes straight to its rows with ``preadv`` / ``pwritev`` (:mod:`dask_io.storage.iov`)
when rows are long enough, and otherwise passes through a *staging* array, several
small runs at a time; a run longer than the staging array is then moved in several
calls (still one run: one byte range).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from dask_io.plan.ops import Region
from dask_io.storage import direct, iov
from dask_io.storage.base import IOCounters, Pieces, gather, local_region, single_view

_MAX_CALL = 1 << 30  # bytes per read/write call (Linux caps one call at 2 GiB - 4 KiB)


@dataclass(frozen=True)
class RawArray:
    """Where a C-order array lives in a file: ``path``, data ``offset``, ``shape``, ``dtype``."""

    path: str
    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @property
    def strides(self) -> tuple[int, ...]:
        """Byte strides of the array in the file."""
        out, step = [], self.dtype.itemsize
        for n in reversed(self.shape):
            out.append(step)
            step *= n
        return tuple(reversed(out))


class _Mover:
    """Moves bytes between one open file and memory, counting calls."""

    def __init__(self, fd: int, reading: bool, staging: npt.NDArray[np.uint8] | None):
        self.fd = fd
        self.reading = reading
        self.staging = staging if staging is not None else np.empty(0, np.uint8)
        self.calls = 0

    def direct(self, mem: npt.NDArray[Any], pos: int) -> None:
        """Move a C-contiguous array to or from bytes ``[pos, pos + mem.nbytes)``."""
        view = memoryview(mem.reshape(-1).view(np.uint8).data)
        done = 0
        while done < len(view):
            part = view[done : done + _MAX_CALL]
            if self.reading:
                n = os.preadv(self.fd, [part], pos + done)
            else:
                n = os.pwrite(self.fd, part, pos + done)
            self.calls += 1
            if n <= 0:
                raise OSError(f"short {'read' if self.reading else 'write'} at byte {pos + done}")
            done += n

    def staged(self, mem: npt.NDArray[Any], pos: int) -> None:
        """Move one contiguous byte range whose memory side ``mem`` may be strided."""
        if mem.flags.c_contiguous:
            self.direct(mem, pos)
        elif mem.nbytes <= self.staging.nbytes:
            tmp = self.staging[: mem.nbytes].view(mem.dtype).reshape(mem.shape)
            if self.reading:
                self.direct(tmp, pos)
                np.copyto(mem, tmp)
            else:
                np.copyto(tmp, mem)
                self.direct(tmp, pos)
        else:
            row = mem[0].nbytes
            k = max(1, self.staging.nbytes // row) if row else 1
            for j in range(0, mem.shape[0], k):
                part = mem[j : j + k]
                if k == 1 and part.nbytes > self.staging.nbytes:
                    self.staged(mem[j], pos + j * row)
                else:
                    self.staged(part, pos + j * row)

    def batch(self, mem: npt.NDArray[Any], pos: int, step: int) -> None:
        """Move ``mem.shape[0]`` runs, run ``j`` at byte ``pos + j * step``, via staging."""
        run = mem[0].nbytes
        k = self.staging.nbytes // run if run else 0
        if k <= 1 or mem[0].flags.c_contiguous:
            for j in range(mem.shape[0]):
                self.staged(mem[j], pos + j * step)
            return
        for j0 in range(0, mem.shape[0], k):
            part = mem[j0 : j0 + k]
            tmp = self.staging[: part.nbytes].view(mem.dtype).reshape(part.shape)
            if not self.reading:
                np.copyto(tmp, part)
            for j in range(part.shape[0]):
                self.direct(tmp[j], pos + (j0 + j) * step)
            if self.reading:
                np.copyto(part, tmp)


@dataclass(frozen=True)
class _RunLayout:
    split: int  # axes before ``split`` enumerate runs
    start: int  # byte position of the region's first element
    steps: tuple[int, ...]  # byte strides of the array on the run axes
    run_bytes: int
    nruns: int


def run_layout(arr: RawArray, local: Region) -> _RunLayout:
    """How ``local`` (a region in the array's own coordinates) splits into runs."""
    last = -1
    for d, ((a, b), n) in enumerate(zip(local, arr.shape, strict=False)):
        if (a, b) != (0, n):
            last = d
    split = max(last, 0)
    strides = arr.strides
    start = arr.offset + sum(a * s for (a, _), s in zip(local, strides, strict=False))
    ext = [b - a for a, b in local]
    run_bytes = math.prod(ext[split:]) * arr.dtype.itemsize
    return _RunLayout(split, start, strides[:split], run_bytes, math.prod(ext[:split]))


def _outer(shape: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    yield from np.ndindex(*shape)


def _move(mover: _Mover, arr: RawArray, local: Region, mem: npt.NDArray[Any]) -> int:
    lay = run_layout(arr, local)
    if lay.split == 0:
        mover.staged(mem, lay.start)
        return 1
    outer_steps = lay.steps[:-1]
    for idx in _outer(mem.shape[: lay.split - 1]):
        pos = lay.start + sum(i * s for i, s in zip(idx, outer_steps, strict=False))
        mover.batch(mem[idx], pos, lay.steps[-1])
    return lay.nruns


def read_region(
    arr: RawArray,
    fd: int,
    local: Region,
    out: npt.NDArray[Any],
    staging: npt.NDArray[np.uint8] | None,
    counters: IOCounters,
) -> None:
    """Read ``local`` of ``arr`` from open file ``fd`` into ``out``."""
    if _rows_apart(out):
        runs = run_layout(arr, local).nruns
        calls = iov.transfer(
            fd, True, *iov.merge_rows(*iov.segments(arr.offset, arr.strides, local, out))
        )
    else:
        mover = _Mover(fd, True, staging)
        runs = _move(mover, arr, local, out)
        calls = mover.calls
    counters.add(runs=runs, read_runs=runs, syscalls=calls, bytes_read=out.nbytes)


def _rows_apart(mem: npt.NDArray[Any]) -> bool:
    """Whether ``mem`` is strided with rows long enough for scatter/gather calls."""
    if mem.flags.c_contiguous or mem.ndim == 0:
        return False
    return mem.shape[-1] * mem.itemsize >= iov.MIN_ROW_BYTES and mem.strides[-1] == mem.itemsize


def write_region(
    arr: RawArray,
    fd: int,
    local: Region,
    origin: tuple[int, ...],
    region: Region,
    pieces: Pieces,
    staging: npt.NDArray[np.uint8] | None,
    counters: IOCounters,
) -> None:
    """Write ``local`` of ``arr`` (``region`` in array coordinates) from ``pieces``.

    ``origin`` is the array coordinate of the file's element 0.
    """
    view = single_view(pieces, region)
    nbytes = int(np.prod([b - a for a, b in local])) * arr.dtype.itemsize
    lay = run_layout(arr, local)
    dfd = direct.open_direct(arr.path) if lay.run_bytes >= direct.MIN_DIRECT else None
    if dfd is not None:
        try:
            calls = _write_direct(arr, fd, dfd, local, origin, pieces, view, lay)
        finally:
            os.close(dfd)
        counters.add(runs=lay.nruns, write_runs=lay.nruns, syscalls=calls, bytes_written=nbytes)
        return
    mover = _Mover(fd, False, staging)
    rows = None if view is not None else _gathered_rows(arr, local, origin, region, pieces)
    if view is not None and _rows_apart(view):
        runs = run_layout(arr, local).nruns
        mover.calls = iov.transfer(
            fd, False, *iov.merge_rows(*iov.segments(arr.offset, arr.strides, local, view))
        )
    elif view is not None:
        runs = _move(mover, arr, local, view)
    elif rows is not None and int(rows[2].sum()) == nbytes:
        runs = run_layout(arr, local).nruns
        mover.calls = iov.transfer(fd, False, *iov.merge_rows(*rows))
    else:
        runs = run_layout(arr, local).nruns
        _write_gathered(mover, arr, local, origin, pieces)
    counters.add(runs=runs, write_runs=runs, syscalls=mover.calls, bytes_written=nbytes)


def _write_direct(
    arr: RawArray,
    fd: int,
    dfd: int,
    local: Region,
    origin: tuple[int, ...],
    pieces: Pieces,
    view: npt.NDArray[Any] | None,
    lay: _RunLayout,
) -> int:
    """Write each (long) run through a :class:`~dask_io.storage.direct.DirectStream`."""
    calls = 0
    itemsize = arr.dtype.itemsize
    for idx in _outer(tuple(b - a for a, b in local[: lay.split])):
        pos = lay.start + sum(i * s for i, s in zip(idx, lay.steps, strict=False))
        run = (
            tuple((a + i, a + i + 1) for (a, _), i in zip(local, idx, strict=False))
            + local[lay.split :]
        )
        stream = direct.DirectStream(fd, dfd, pos)
        for part in c_order_slabs(run, itemsize, stream.capacity):
            shape = tuple(b - a for a, b in part)
            if view is not None:
                stream.put(view[local_region(part, [a for a, _ in local])])
                continue
            n = math.prod(shape) * itemsize
            dst = stream.reserve(n).view(arr.dtype).reshape(shape)
            gather(
                pieces, tuple((a + o, b + o) for (a, b), o in zip(part, origin, strict=False)), dst
            )
            stream.commit(n)
        calls += stream.close()
    return calls


def c_order_slabs(region: Region, itemsize: int, max_bytes: int) -> Iterator[Region]:
    """Cut ``region`` into consecutive (C order) boxes of at most ``max_bytes`` each.

    Boxes follow each other in memory and file order: each cut is along the first
    axis with more than one element, the axes before it having one.
    """
    ext = [b - a for a, b in region]
    if math.prod(ext) * itemsize <= max_bytes:
        yield region
        return
    d = next(i for i, n in enumerate(ext) if n > 1)
    row = math.prod(ext[d + 1 :]) * itemsize
    a, b = region[d]
    if row <= max_bytes:
        k = max_bytes // row
        for lo in range(a, b, k):
            yield (*region[:d], (lo, min(lo + k, b)), *region[d + 1 :])
        return
    for i in range(a, b):
        yield from c_order_slabs((*region[:d], (i, i + 1), *region[d + 1 :]), itemsize, max_bytes)


def _gathered_rows(
    arr: RawArray, local: Region, origin: tuple[int, ...], region: Region, pieces: Pieces
) -> tuple[Any, Any, Any] | None:
    """The rows of ``region`` as held by ``pieces`` (None when some rows are too short)."""
    parts = []
    for piece_region, data in pieces:
        common = tuple(
            (max(a, c), min(b, d)) for (a, b), (c, d) in zip(region, piece_region, strict=False)
        )
        if any(lo >= hi for lo, hi in common):
            continue
        if (common[-1][1] - common[-1][0]) * arr.dtype.itemsize < iov.MIN_ROW_BYTES:
            return None
        mem = data[local_region(common, [c for c, _ in piece_region])]
        if mem.strides[-1] != mem.itemsize:
            return None
        box = tuple((a - o, b - o) for (a, b), o in zip(common, origin, strict=False))
        parts.append(iov.segments(arr.offset, arr.strides, box, mem))
    if not parts:
        return None
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))  # type: ignore[return-value]


def _write_gathered(
    mover: _Mover, arr: RawArray, local: Region, origin: tuple[int, ...], pieces: Pieces
) -> None:
    """Write ``local`` (runs of it) assembled from several pieces, through staging."""
    lay = run_layout(arr, local)
    ext = tuple(b - a for a, b in local)
    for idx in _outer(ext[: lay.split]):
        sub = (
            tuple((a + i, a + i + 1) for (a, _), i in zip(local, idx, strict=False))
            + local[lay.split :]
        )
        pos = lay.start + sum(i * s for i, s in zip(idx, lay.steps, strict=False))
        _gather_run(mover, arr, sub, pos, origin, pieces)


def _gather_run(
    mover: _Mover,
    arr: RawArray,
    sub: Region,
    pos: int,
    origin: tuple[int, ...],
    pieces: Pieces,
) -> None:
    """Write the contiguous run ``sub``, cutting it along its first long axis to fit staging."""
    nbytes = int(np.prod([b - a for a, b in sub])) * arr.dtype.itemsize
    region = tuple((a + o, b + o) for (a, b), o in zip(sub, origin, strict=False))
    if nbytes <= mover.staging.nbytes:
        shape = tuple(b - a for a, b in sub)
        tmp = mover.staging[:nbytes].view(arr.dtype).reshape(shape)
        gather(pieces, region, tmp)
        mover.direct(tmp, pos)
        return
    axis = next((d for d, (a, b) in enumerate(sub) if b - a > 1), len(sub) - 1)
    row = nbytes // (sub[axis][1] - sub[axis][0])
    k = max(1, mover.staging.nbytes // row)
    if k == 1 and row > mover.staging.nbytes and axis == len(sub) - 1:
        tmp = np.empty([b - a for a, b in sub], arr.dtype)  # no staging at all: 1-D fallback
        gather(pieces, region, tmp)
        mover.direct(tmp, pos)
        return
    a0, b0 = sub[axis]
    for j in range(a0, b0, k):
        part = (*sub[:axis], (j, min(j + k, b0)), *sub[axis + 1 :])
        _gather_run(mover, arr, part, pos + (j - a0) * row, origin, pieces)
