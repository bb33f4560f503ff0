"""Buffer partitions of each strategy, and the candidates the keep search scores.

A buffer partition is, per axis, the array of buffer boundaries. Buffers tile the
array; the nominal buffer shape is the longest buffer on each axis.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np

from dask_io.plan.axes import group_bounds
from dask_io.plan.grid import Grid, IntArray

Bounds = tuple[IntArray, ...]


def nominal_shape(bounds: Bounds) -> tuple[int, ...]:
    return tuple(int(np.diff(b).max()) for b in bounds)


def buffer_elems(bounds: Bounds) -> int:
    return math.prod(nominal_shape(bounds))


def input_aggregate(in_grid: Grid, out_grid: Grid) -> tuple[int, ...]:
    """Λ: per axis, the longest run of whole input blocks needed to cover one output block.

    >>> input_aggregate(Grid.from_chunks((10,), (3,)), Grid.from_chunks((10,), (4,)))
    (6,)
    """
    out = []
    for ib, ob in zip(in_grid.bounds, out_grid.bounds):
        first = np.searchsorted(ib, ob[:-1], side="right") - 1
        last = np.searchsorted(ib, ob[1:], side="left")
        out.append(int((ib[last] - ib[first]).max()))
    return tuple(out)


def grow_whole_blocks(unit: Grid, shape: tuple[int, ...], avail: int) -> Bounds | None:
    """Clustered (``unit`` = input grid) or multiple (``unit`` = output grid) buffers.

    Start from one block on every axis and grow by whole blocks in storage order:
    the last axis to its full extent first, then the next. None when one block
    does not fit in ``avail`` elements.
    """
    base = list(unit.block_shape)
    if math.prod(base) > avail:
        return None
    target = list(base)
    for d in reversed(range(len(shape))):
        lim = avail // (math.prod(target) // target[d])
        if lim >= shape[d]:  # the whole axis, edge block included
            target[d] = shape[d]
            continue
        target[d] = max(1, lim // base[d]) * base[d]
        break
    return _bounds(unit.bounds, target)


def _bounds(unit_bounds: Sequence[IntArray], target: Sequence[int]) -> Bounds:
    return tuple(group_bounds(b, t) for b, t in zip(unit_bounds, target))


def grow_keep(in_grid: Grid, out_grid: Grid, avail: int) -> Bounds | None:
    """The keep buffer for a budget of ``avail`` elements (DESIGN.md §1, paper §H–I).

    From the fastest axis to the slowest, take the input aggregate Λ when it fits;
    otherwise the largest multiple of the input block that fits (or of the output
    block, or any length), with the slower axes one element thick. Once B = Λ,
    grow by whole input blocks along the axis whose buffer face carries the most
    extra data, up to the array's extent, then the next axis.
    """
    shape, lam = in_grid.shape, input_aggregate(in_grid, out_grid)
    ib, ob = in_grid.block_shape, out_grid.block_shape
    n = len(shape)
    B = [1] * n
    bounds: list[IntArray] = [np.array([0, r], dtype=np.int64) for r in shape]
    for d in reversed(range(n)):
        lim = min(avail // math.prod(B), shape[d])
        if lim >= lam[d]:
            B[d] = lam[d]
            bounds[d] = group_bounds(in_grid.bounds[d], lam[d])
            continue
        if lim >= shape[d]:
            B[d] = shape[d]
            bounds[d] = np.array([0, shape[d]], dtype=np.int64)
        elif lim >= ib[d]:
            B[d] = lim // ib[d] * ib[d]
            bounds[d] = group_bounds(in_grid.bounds[d], B[d])
        elif lim >= ob[d]:
            B[d] = lim // ob[d] * ob[d]
            bounds[d] = group_bounds(out_grid.bounds[d], B[d])
        elif lim >= 1:
            B[d] = lim
            bounds[d] = group_bounds(in_grid.bounds[d], lim)
        else:
            return None
        for slower in range(d):
            bounds[slower] = np.arange(shape[slower] + 1, dtype=np.int64)
        return tuple(bounds)
    for d in _axes_by_overlap(bounds, out_grid):
        while B[d] < shape[d] and math.prod(B) // B[d] * min(B[d] + ib[d], shape[d]) <= avail:
            B[d] = min(B[d] + ib[d], shape[d])
        bounds[d] = group_bounds(in_grid.bounds[d], B[d])
    return tuple(bounds)


def overlap_lengths(bounds: Sequence[IntArray], out_grid: Grid) -> list[int]:
    """Per axis, the longest part of an output block cut off by a buffer boundary."""
    out = []
    for bb, ob in zip(bounds, out_grid.bounds):
        inner = bb[1:-1]
        start = ob[np.searchsorted(ob, inner, side="right") - 1]
        out.append(int((inner - start).max()) if inner.size else 0)
    return out


def _axes_by_overlap(bounds: Sequence[IntArray], out_grid: Grid) -> list[int]:
    """Axes sorted by decreasing extra-data volume on the buffer face across them."""
    shape = nominal_shape(tuple(bounds))
    lengths = overlap_lengths(bounds, out_grid)
    volume = [lengths[d] * math.prod(shape) // shape[d] for d in range(len(shape))]
    return sorted(range(len(shape)), key=lambda d: (-volume[d], -d))


def buffer_orders(bounds: Bounds, out_grid: Grid) -> list[tuple[int, ...]]:
    """Buffer orders worth simulating, the default first.

    The default visits buffers fastest along the axis with the most extra data, so
    kept pieces are released soonest (paper §L–M). With at most three axes every
    permutation is tried; beyond that, a few.
    """
    n = len(bounds)
    default = tuple(reversed(_axes_by_overlap(bounds, out_grid)))
    c_order = tuple(range(n))
    if n <= 3:
        rest = [p for p in itertools.permutations(range(n)) if p not in (default, c_order)]
        return list(dict.fromkeys([default, c_order, *rest]))
    return list(dict.fromkeys([default, c_order, tuple(reversed(c_order)), default[::-1]]))


def aligned_shapes(in_grid: Grid, out_grid: Grid, avail: int, most: int = 64) -> Iterator[Bounds]:
    """Buffers of one input block, the input aggregate, half or the whole extent on each axis.

    With room for slabs that span the fast axes, a buffer one input block thick
    on the slow axes often beats the aggregate everywhere: its units complete one
    slab at a time. Only shapes that fit in ``avail`` elements are given.
    """
    lam = input_aggregate(in_grid, out_grid)
    choices = [
        sorted({i, a, r, min(r, -(-r // (2 * i)) * i)})
        for i, a, r in zip(in_grid.block_shape, lam, in_grid.shape)
    ]
    shapes = [s for s in itertools.product(*choices) if math.prod(s) <= avail]
    shapes.sort(key=math.prod, reverse=True)
    for shape in shapes[:most]:
        yield _bounds(in_grid.bounds, shape)


def keep_candidates(
    in_grid: Grid, out_grid: Grid, avail: int, extra: Sequence[Bounds | None]
) -> Iterator[Bounds]:
    """Distinct keep buffer partitions: grown at several budgets, aligned shapes, ``extra``."""
    seen: set[tuple[bytes, ...]] = set()
    fractions = (1.0, 0.7, 0.5, 0.35, 0.25, 0.15, 0.08, 0.04)
    grown = (grow_keep(in_grid, out_grid, int(avail * f)) for f in fractions)
    aligned = aligned_shapes(in_grid, out_grid, avail)
    for bounds in itertools.chain(grown, aligned, extra):
        if bounds is None or buffer_elems(bounds) > avail:
            continue
        key = tuple(b.tobytes() for b in bounds)
        if key not in seen:
            seen.add(key)
            yield bounds
