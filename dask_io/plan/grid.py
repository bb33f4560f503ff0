"""Block grids over N-D arrays: validation, per-axis boundaries, block regions.

A grid is stored per axis as the array of block boundaries ``0 = b_0 < b_1 < ...
< b_n = R``. Regular chunks give regular boundaries with a smaller edge block; dask
style chunks (a tuple of block lengths per axis) give any partition.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from dask_io.errors import InvalidChunksError
from dask_io.plan.ops import BlockIndex, Region

IntArray = npt.NDArray[np.int64]
ChunksLike = Sequence[int] | Sequence[Sequence[int]]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def normalize_shape(shape: Any, name: str = "shape") -> tuple[int, ...]:
    """Return ``shape`` as a tuple of positive ints, or raise :class:`InvalidChunksError`.

    >>> normalize_shape([3, 4])
    (3, 4)
    """
    if _is_int(shape):
        shape = (shape,)
    try:
        values = tuple(shape)
    except TypeError:
        raise InvalidChunksError(
            f"{name}={shape!r} is not a shape; expected a tuple of positive integers"
        ) from None
    if not values:
        raise InvalidChunksError(f"{name}={shape!r} is empty; expected at least one dimension")
    for v in values:
        if not _is_int(v) or v <= 0:
            raise InvalidChunksError(
                f"{name}={shape!r} has {v!r}; expected positive integers"
            )
    return tuple(int(v) for v in values)


def normalize_chunks(chunks: Any, shape: tuple[int, ...], name: str) -> tuple[tuple[int, ...], ...]:
    """Return explicit per-axis block lengths (dask's normalized chunks).

    ``chunks`` is a tuple of ints (regular blocks, the edge block smaller) or a
    tuple of tuples of block lengths that sum to the array's extent.

    >>> normalize_chunks((2, 3), (5, 3), "in_chunks")
    ((2, 2, 1), (3,))
    """
    if _is_int(chunks):
        chunks = (chunks,)
    try:
        per_axis = tuple(chunks)
    except TypeError:
        raise InvalidChunksError(
            f"{name}={chunks!r} is not a chunk shape; expected a tuple of positive integers"
        ) from None
    if len(per_axis) != len(shape):
        raise InvalidChunksError(
            f"{name}={chunks!r} has {len(per_axis)} dimensions; expected {len(shape)} "
            f"to match shape={shape}"
        )
    return tuple(_axis_chunks(c, r, name, chunks) for c, r in zip(per_axis, shape))


def _axis_chunks(c: Any, extent: int, name: str, chunks: Any) -> tuple[int, ...]:
    if _is_int(c):
        if c <= 0:
            raise InvalidChunksError(f"{name}={chunks!r} has {c!r}; expected positive integers")
        c = min(int(c), extent)
        size = int(c)
        return (size,) * (extent // size) + ((extent % size,) if extent % size else ())
    try:
        lengths = tuple(c)
    except TypeError:
        raise InvalidChunksError(
            f"{name}={chunks!r} has {c!r}; expected positive integers"
        ) from None
    if not all(_is_int(v) and v > 0 for v in lengths) or sum(lengths) != extent:
        raise InvalidChunksError(
            f"{name}={chunks!r} has block lengths {lengths!r}; expected positive integers "
            f"summing to {extent}"
        )
    return tuple(int(v) for v in lengths)


@dataclass(frozen=True)
class Grid:
    """A partition of an array of ``shape`` into blocks of ``chunks`` (normalized)."""

    shape: tuple[int, ...]
    chunks: tuple[tuple[int, ...], ...]

    @classmethod
    def from_chunks(cls, shape: tuple[int, ...], chunks: ChunksLike, name: str = "chunks") -> Grid:
        return cls(shape, normalize_chunks(chunks, shape, name))

    @cached_property
    def bounds(self) -> tuple[IntArray, ...]:
        """Per axis, the block boundaries ``[0, ..., R]``."""
        return tuple(np.concatenate([[0], np.cumsum(c)]).astype(np.int64) for c in self.chunks)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def numblocks(self) -> tuple[int, ...]:
        return tuple(len(c) for c in self.chunks)

    @property
    def nblocks(self) -> int:
        return math.prod(self.numblocks)

    @property
    def block_shape(self) -> tuple[int, ...]:
        """The largest block length on each axis (the nominal block shape)."""
        return tuple(max(c) for c in self.chunks)

    def block_region(self, index: BlockIndex) -> Region:
        return tuple((int(b[i]), int(b[i + 1])) for b, i in zip(self.bounds, index))

    def block_size(self, index: BlockIndex) -> int:
        return math.prod(c[i] for c, i in zip(self.chunks, index))

    def blocks(self) -> Iterator[BlockIndex]:
        """Every block index in C order."""
        yield from np.ndindex(*self.numblocks)


def region_shape(region: Region) -> tuple[int, ...]:
    return tuple(b - a for a, b in region)


def region_slices(region: Region) -> tuple[slice, ...]:
    """The slices that select ``region`` from an array that starts at the origin.

    >>> region_slices(((2, 5), (0, 3)))
    (slice(2, 5, None), slice(0, 3, None))
    """
    return tuple(slice(a, b) for a, b in region)


def intersect(a: Region, b: Region) -> Region | None:
    """The intersection of two regions, or None when it is empty."""
    out = tuple((max(x0, y0), min(x1, y1)) for (x0, x1), (y0, y1) in zip(a, b))
    return out if all(lo < hi for lo, hi in out) else None


def run_count(piece: Region, block: Region) -> int:
    """Contiguous byte ranges needed to access ``piece`` of a C-order ``block``.

    The product of the piece's extents on the axes before the last axis on which
    it does not span the whole block (1 when it spans the block on every axis
    after the first).

    >>> run_count(((0, 4), (0, 2), (0, 10)), ((0, 4), (0, 8), (0, 10)))
    4
    >>> run_count(((0, 4), (0, 8), (0, 5)), ((0, 4), (0, 8), (0, 10)))
    32
    """
    runs = 1
    last = -1
    for d, ((p0, p1), (b0, b1)) in enumerate(zip(piece, block)):
        if (p0, p1) != (b0, b1):
            last = d
    for d in range(max(last, 0)):
        runs *= piece[d][1] - piece[d][0]
    return runs
