"""Run a plan through stores, exactly as planned, in bounded memory.

The executor allocates one buffer of ``plan.buffer_shape`` (an edge buffer is a
contiguous prefix of it, so whole-block reads land in it with one call), one staging
array of ``plan.staging_bytes``, and a separate array for each kept piece, freed on
``Release`` (freed arrays are kept in a pool, up to the plan's kept peak, and reused
for pieces of the same size: fresh memory costs a page fault per page, which on a
virtual machine is slower than the copy itself). With ``prefetch``, a second buffer and staging array let a background
thread read buffer ``k + 1`` while buffer ``k`` is written (the lecture's read-ahead).

Output blocks are committed (fsync, rename into place, recorded in the manifest) by a
second background thread as soon as their last byte is written. ``skip`` lists output
blocks already complete from an earlier, interrupted run: every operation on them is
left out, and so is every read that no remaining operation needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

from dask_io.plan.grid import intersect
from dask_io.plan.ops import (
    BlockIndex,
    Keep,
    LoadBuffer,
    Operation,
    Read,
    Region,
    Release,
    Write,
    WriteKept,
)
from dask_io.storage.base import local_region

Buffer = list[Operation]


class KeptPool:
    """Arrays for kept pieces, reused by size so their pages stay mapped.

    Live plus pooled bytes stay within ``limit`` (the plan's kept peak): a request
    that does not fit frees pooled arrays first, the least recently pooled size
    first. A request larger than what is left is still served (the executor never
    fails for want of a pool).

    >>> pool = KeptPool(100)
    >>> a = pool.take(60)
    >>> pool.give(a); pool.take(60) is a
    True
    >>> pool.give(a); b = pool.take(50); (pool.pooled, b.nbytes)
    (0, 50)
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.live = 0
        self.pooled = 0
        self.hits = 0
        self.misses = 0
        self._free: dict[int, list[npt.NDArray[np.uint8]]] = {}

    def take(self, nbytes: int) -> npt.NDArray[np.uint8]:
        """A uint8 array of ``nbytes`` (reused when one of that size is pooled)."""
        stack = self._free.get(nbytes)
        if stack:
            arr = stack.pop()
            if not stack:
                del self._free[nbytes]
            self.pooled -= nbytes
            self.hits += 1
        else:
            while self._free and self.live + self.pooled + nbytes > self.limit:
                size = next(iter(self._free))
                self._free[size].pop()
                self.pooled -= size
                if not self._free[size]:
                    del self._free[size]
            arr = np.empty(nbytes, np.uint8)
            self.misses += 1
        self.live += nbytes
        return arr

    def give(self, arr: npt.NDArray[np.uint8]) -> None:
        """Return ``arr`` (from :meth:`take`) to the pool."""
        self.live -= arr.nbytes
        self.pooled += arr.nbytes
        self._free.setdefault(arr.nbytes, []).append(arr)


def _size(region: Region) -> int:
    return math.prod(b - a for a, b in region)


def filter_buffer(ops: Buffer, skip: set[BlockIndex] | frozenset[BlockIndex]) -> Buffer | None:
    """Drop the operations on complete output blocks and the reads nothing needs.

    Returns None when nothing is left to do in this buffer.

    >>> from dask_io.plan.ops import LoadBuffer, Read, Write
    >>> ops = [LoadBuffer(0, ((0, 4),)), Read((0,), ((0, 4),), 1, 4),
    ...        Write((0,), ((0, 2),), 1, 2, True), Write((1,), ((2, 4),), 1, 2, False)]
    >>> [type(op).__name__ for op in filter_buffer(ops, {(0,)})]
    ['LoadBuffer', 'Read', 'Write']
    >>> filter_buffer(ops, {(0,), (1,)}) is None
    True
    """
    if not skip:
        return ops
    outputs = [op for op in ops if not isinstance(op, (LoadBuffer, Read)) and op.block not in skip]
    needed = [op.region for op in outputs if not isinstance(op, Release)]
    reads = [
        op for op in ops if isinstance(op, Read) and any(intersect(op.region, r) for r in needed)
    ]
    if not outputs:
        return None
    return [ops[0], *reads, *outputs]


class Executor:
    """Perform a plan's operations through ``source`` and ``target`` stores.

    Parameters
    ----------
    plan : dask_io.plan.Plan
    source, target : stores (see :mod:`dask_io.storage.base`)
    skip : set of output block indices already complete
    prefetch : read the next buffer on a background thread (needs a second buffer)
    on_buffer : called with the bytes of each buffer once it is done (progress bars)
    """

    def __init__(
        self,
        plan: Any,
        source: Any,
        target: Any,
        skip: Iterable[BlockIndex] = (),
        prefetch: bool = False,
        on_buffer: Callable[[int], None] | None = None,
    ) -> None:
        self.plan, self.source, self.target = plan, source, target
        self.skip = frozenset(tuple(b) for b in skip)
        self.prefetch = prefetch
        self.on_buffer = on_buffer
        self.dtype = np.dtype(plan.dtype)
        nbuf = 2 if prefetch else 1
        elems = math.prod(plan.buffer_shape)
        self._flat = [np.empty(elems, self.dtype) for _ in range(nbuf)]
        self._staging = [np.empty(plan.staging_bytes, np.uint8) for _ in range(nbuf)]
        self._kept: dict[BlockIndex, list[tuple[Region, npt.NDArray[Any]]]] = {}
        self._owned: dict[BlockIndex, list[npt.NDArray[np.uint8]]] = {}
        self.pool = KeptPool(plan.cost.kept_peak)
        self._remaining: dict[BlockIndex, int] = {}
        self._commits: list[Future[None]] = []
        self.kept_bytes = 0
        self.kept_peak = 0

    # -- driving ------------------------------------------------------------------
    def buffers(self) -> Iterator[Buffer]:
        """The plan's buffers with the work already done left out."""
        for ops in self.plan.buffers():
            kept = filter_buffer(ops, self.skip)
            if kept is not None:
                yield kept

    def run(self) -> None:
        """Execute every buffer, then wait until every output block is committed."""
        with ThreadPoolExecutor(1, "dask_io-commit") as committer:
            self._committer = committer
            if self.prefetch:
                with ThreadPoolExecutor(1, "dask_io-read") as reader:
                    self._run_prefetch(reader)
            else:
                for ops in self.buffers():
                    self._apply(ops, self._load(ops, 0))
            for fut in self._commits:
                fut.result()

    def _run_prefetch(self, reader: ThreadPoolExecutor) -> None:
        it = self.buffers()
        current = next(it, None)
        slot = 0
        pending = reader.submit(self._load, current, slot) if current is not None else None
        while current is not None and pending is not None:
            view = pending.result()
            following = next(it, None)
            if following is not None:
                pending = reader.submit(self._load, following, 1 - slot)
            try:
                self._apply(current, view, staging=slot)
            except BaseException:
                if following is not None:
                    pending.cancel()
                raise
            current, slot = following, 1 - slot

    # -- one buffer ------------------------------------------------------------------
    def _load(self, ops: Buffer, slot: int) -> npt.NDArray[Any]:
        load = ops[0]
        assert isinstance(load, LoadBuffer)
        shape = tuple(b - a for a, b in load.region)
        view = self._flat[slot][: math.prod(shape)].reshape(shape)
        origin = [a for a, _ in load.region]
        staging = self._staging[slot]
        for op in ops[1:]:
            if isinstance(op, Read):
                self.source.read(
                    op.block, op.region, view[local_region(op.region, origin)], staging
                )
        return view

    def _apply(self, ops: Buffer, view: npt.NDArray[Any], staging: int = 0) -> None:
        load = ops[0]
        assert isinstance(load, LoadBuffer)
        piece = [(load.region, view)]
        origin = [a for a, _ in load.region]
        st = self._staging[staging]
        for op in ops[1:]:
            if isinstance(op, Write):
                self.target.write(op.block, op.region, piece, st)
                self._written(op.block, _size(op.region))
            elif isinstance(op, WriteKept):
                pieces = [*self._kept.get(op.block, []), *piece]
                self.target.write(op.block, op.unit, pieces, st)
                self._written(op.block, _size(op.unit))
            elif isinstance(op, Keep):
                src = view[local_region(op.region, origin)]
                raw = self.pool.take(src.nbytes)
                data = raw.view(self.dtype).reshape(src.shape)
                np.copyto(data, src, casting="no")
                self._kept.setdefault(op.block, []).append((op.region, data))
                self._owned.setdefault(op.block, []).append(raw)
                self.kept_bytes += data.nbytes
                self.kept_peak = max(self.kept_peak, self.kept_bytes)
            elif isinstance(op, Release):
                freed = self._kept.pop(op.block, [])
                self.kept_bytes -= sum(d.nbytes for _, d in freed)
                for raw in self._owned.pop(op.block, []):
                    self.pool.give(raw)
        if self.on_buffer is not None:
            self.on_buffer(view.nbytes)

    def _written(self, block: BlockIndex, elems: int | None) -> None:
        """Count what ``block`` still lacks; commit it when nothing is left."""
        if elems is None:
            left = 0
        else:
            left = self._remaining.get(block, self.target.grid.block_size(block)) - elems
        if left > 0:
            self._remaining[block] = left
            return
        self._remaining.pop(block, None)
        self._commits.append(self._committer.submit(self.target.commit, block))
        if len(self._commits) > 64:
            self._drain_done()

    def _drain_done(self) -> None:
        done = [f for f in self._commits if f.done()]
        for fut in done:
            fut.result()
        self._commits = [f for f in self._commits if not f.done()]


def incomplete_blocks(target: Any, expected: Sequence[BlockIndex]) -> list[BlockIndex]:
    """Output blocks of ``expected`` that ``target`` has not recorded complete."""
    return [b for b in expected if b not in target.completed]
