"""Per-axis tables: how a partition of one axis into buffers meets a block grid.

Everything N-D in the planner is a product of per-axis facts: the pieces a buffer
cuts out of the blocks it touches are products of per-axis intervals, and the
cost of a piece depends only on which axes it spans fully. So the planner works
on one small table per axis and combines them by broadcasting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dask_io.plan.grid import IntArray


def group_bounds(bounds: IntArray, target: int) -> IntArray:
    """Boundaries of groups of consecutive blocks, each group at most ``target`` long.

    A block longer than ``target`` is cut into pieces of ``target`` (the last one
    shorter), so a group never straddles a block boundary it could have kept.

    >>> group_bounds(np.array([0, 2, 4, 6, 7]), 4).tolist()
    [0, 4, 7]
    >>> group_bounds(np.array([0, 5, 10]), 2).tolist()
    [0, 2, 4, 5, 7, 9, 10]
    """
    out = [0]
    start = 0
    for stop in bounds[1:].tolist():
        length = stop - out[-1]
        if length <= target:
            start = stop
            continue
        if start > out[-1]:
            out.append(start)
        out.extend(range(start + target, stop, target))
        start = stop
        if stop - out[-1] == target:
            out.append(stop)
    if out[-1] != int(bounds[-1]):
        out.append(int(bounds[-1]))
    return np.asarray(out, dtype=np.int64)


@dataclass
class AxisPairs:
    """How buffers (``buf``) along one axis meet the blocks (``blk``) of a grid.

    For buffer ``i`` the touched blocks are ``lo[i]:hi[i]``; ``extent[i]`` holds
    the length of each piece, ``full[i]`` whether the piece spans its block,
    ``first[i]``/``last[i]`` whether buffer ``i`` is the first/last buffer to
    touch that block along this axis.
    """

    buf: IntArray
    blk: IntArray
    lo: IntArray = field(init=False)
    hi: IntArray = field(init=False)
    extent: list[IntArray] = field(init=False)
    full: list[np.ndarray] = field(init=False)
    first: list[np.ndarray] = field(init=False)
    last: list[np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        buf, blk = self.buf, self.blk
        self.lo = np.searchsorted(blk, buf[:-1], side="right") - 1
        self.hi = np.searchsorted(blk, buf[1:], side="left")
        self.extent, self.full, self.first, self.last = [], [], [], []
        for i in range(len(buf) - 1):
            b0, b1 = int(buf[i]), int(buf[i + 1])
            s, e = blk[self.lo[i] : self.hi[i]], blk[self.lo[i] + 1 : self.hi[i] + 1]
            ext = np.minimum(e, b1) - np.maximum(s, b0)
            self.extent.append(ext)
            self.full.append(ext == e - s)
            self.first.append(s >= b0)
            self.last.append(e <= b1)

    @property
    def npairs(self) -> int:
        return int((self.hi - self.lo).sum())

    @property
    def nfull(self) -> int:
        return int(sum(int(f.sum()) for f in self.full))

    def block_weight_sum(self) -> int:
        """Sum over pairs of the touched block's length (bytes of whole-chunk access)."""
        lengths = np.diff(self.blk)
        return int(sum(int(lengths[lo:hi].sum()) for lo, hi in zip(self.lo, self.hi)))

    def touches_per_block(self) -> IntArray:
        """How many buffers touch each block along this axis."""
        counts = np.zeros(len(self.blk) - 1, dtype=np.int64)
        for lo, hi in zip(self.lo, self.hi):
            counts[lo:hi] += 1
        return counts

    def max_extent_per_block(self) -> IntArray:
        """Length of each block's longest piece along this axis."""
        out = np.zeros(len(self.blk) - 1, dtype=np.int64)
        for lo, hi, ext in zip(self.lo, self.hi, self.extent):
            out[lo:hi] = np.maximum(out[lo:hi], ext)
        return out

    def last_extent_per_block(self) -> IntArray:
        """Length of each block's piece in the last buffer that touches it."""
        out = np.zeros(len(self.blk) - 1, dtype=np.int64)
        for lo, hi, ext in zip(self.lo, self.hi, self.extent):
            out[lo:hi] = ext  # later buffers overwrite earlier ones
        return out


def product_runs(S: Sequence[int], P: Sequence[int], F: Sequence[int]) -> int:
    """Total runs over a product of per-axis piece sets (DESIGN.md §1 cost model).

    Per axis: ``S`` is the summed piece extent, ``P`` the number of pieces that do
    not span their block and ``F`` the number that do. A piece costs the product of
    its extents before its last non-spanning axis.

    >>> product_runs([4, 10], [0, 1], [1, 0])   # one (4, 5) piece of a (4, 10) block
    4
    """
    n = len(S)
    total = math.prod(F)
    prefix = 1
    for L in range(n):
        total += prefix * P[L] * math.prod(F[L + 1 :])
        prefix *= S[L]
    return total
