"""The box search: every buffer partition that can matter, costed exactly and at once.

A plan that keeps nothing costs a closed form of per-axis facts (DESIGN.md §1 and
:func:`dask_io.plan.cost.side_cost`): per axis and per side, the number of pieces
the buffers cut from the blocks, how many of them span their block, and the summed
length of the blocks they touch. So the search builds, per axis, a few hundred
candidate partitions, reduces each to those numbers, drops the candidates another
one beats on every number, and costs every combination of the survivors with one
broadcast numpy expression.

Candidates on one axis of length ``R`` with blocks ``I`` (input) and ``O`` (output):
extents of a few rows, fractions of a block, multiples of either block, 1/16 steps
of the smaller block, a geometric ladder from 1 to ``R`` and the whole axis; each
laid out uniformly, or as groups of consecutive input blocks, output blocks, or
segments between the union of both boundary sets (cut to fit when a block is longer
than the extent). Buffers need not be uniform: groups follow the blocks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dask_io.plan.axes import group_bounds
from dask_io.plan.grid import Grid, IntArray
from dask_io.plan.timing import DIRECT_MIN_BYTES, Machine

Bounds = tuple[IntArray, ...]

EVERY_EXTENT_UP_TO = 64  # axes this short get every extent as a candidate
MAX_COMBINATIONS = 2_000_000  # combinations costed at once (a few tens of MiB of numpy)


@dataclass(frozen=True)
class AxisTable:
    """The candidate partitions of one axis and their per-axis cost facts (arrays)."""

    bounds: list[IntArray]
    nominal: IntArray  # longest buffer
    in_pieces: IntArray
    in_full: IntArray
    in_weight: IntArray  # summed length of the touched input blocks, over pieces
    out_pieces: IntArray
    out_full: IntArray
    out_weight: IntArray

    def __len__(self) -> int:
        return len(self.bounds)

    def take(self, keep: IntArray) -> AxisTable:
        return AxisTable(
            [self.bounds[i] for i in keep.tolist()],
            *(getattr(self, n)[keep] for n in _FACTS),
        )


_FACTS = ("nominal", "in_pieces", "in_full", "in_weight", "out_pieces", "out_full", "out_weight")


def side_facts(buf: IntArray, blk: IntArray) -> tuple[int, int, int]:
    """(pieces, pieces spanning their block, summed length of touched blocks) of one axis.

    Every buffer boundary strictly inside a block cuts one more piece from it; a
    block is spanned by a piece exactly when no boundary falls inside it.

    >>> side_facts(np.array([0, 3, 6]), np.array([0, 2, 4, 6]))
    (4, 2, 8)
    """
    cuts = buf[1:-1]
    j = np.searchsorted(blk, cuts, side="right") - 1
    inner = j[blk[j] != cuts]
    lengths = np.diff(blk)
    nblocks = len(lengths)
    cut_blocks = np.unique(inner).size
    return (
        nblocks + inner.size,
        nblocks - cut_blocks,
        int(lengths.sum()) + int(lengths[inner].sum()),
    )


def extents(length: int, in_block: int, out_block: int, most: int = 48) -> list[int]:
    """Candidate buffer extents along one axis of ``length`` (see the module docstring)."""
    small = min(in_block, out_block)
    found = {1, 2, 3, 4, 6, 8, length}
    for block in (in_block, out_block):
        mults = np.arange(1, length // block + 1) * block
        if mults.size > most:  # keep the first few and a geometric ladder of the rest
            ladder = np.unique(np.geomspace(1, mults.size, most // 2).astype(int)) - 1
            mults = np.unique(np.concatenate([mults[:most // 2], mults[ladder]]))
        found.update(int(m) for m in mults)
        found.update(-(-block // k) for k in range(2, 17))
    found.update(small * j // 16 for j in range(1, 17))
    lcm = math.lcm(in_block, out_block)
    found.update(range(lcm, length + 1, lcm) if length // lcm <= most else ())
    found.update(int(x) for x in np.geomspace(1, length, 32))
    return sorted(x for x in found if 1 <= x <= length)


def axis_table(in_bounds: IntArray, out_bounds: IntArray, limit: int) -> AxisTable:
    """Every distinct candidate partition of one axis with buffers of at most ``limit``."""
    length = int(in_bounds[-1])
    in_block = int(np.diff(in_bounds).max())
    out_block = int(np.diff(out_bounds).max())
    union = np.union1d(in_bounds, out_bounds)
    seen: dict[bytes, IntArray] = {}
    lengths = set(extents(length, in_block, out_block)) | {min(limit, length)}
    if length <= EVERY_EXTENT_UP_TO:
        lengths |= set(range(1, length + 1))
    for t in sorted(lengths):
        if t > limit:
            break
        uniform = np.append(np.arange(0, length, t, dtype=np.int64), length)
        for b in (uniform, group_bounds(in_bounds, t), group_bounds(out_bounds, t),
                  group_bounds(union, t)):
            seen.setdefault(b.tobytes(), b)
    parts = list(seen.values())
    rows = np.array(
        [(int(np.diff(b).max()), *side_facts(b, in_bounds), *side_facts(b, out_bounds))
         for b in parts], dtype=np.int64,
    ).reshape(-1, 7)
    table = AxisTable(parts, *(rows[:, i] for i in range(7)))
    return table.take(_pareto(rows))


def _pareto(rows: np.ndarray) -> IntArray:
    """Rows no other row beats or equals on every column (every column costs)."""
    le = (rows[:, None, :] <= rows[None, :, :]).all(axis=2)  # le[i, j]: i no worse than j
    lt = (rows[:, None, :] < rows[None, :, :]).any(axis=2)
    dominated = (le & lt).any(axis=0)
    # exact duplicates: keep the first
    same = (rows[:, None, :] == rows[None, :, :]).all(axis=2)
    dup = np.triu(same, k=1).any(axis=0)
    return np.flatnonzero(~dominated & ~dup)


def _thin(tables: list[AxisTable], budget: int) -> list[AxisTable]:
    """Fewer candidates on the longest tables until their product fits ``budget``
    (``tables`` itself when it fits already)."""
    if math.prod(len(t) for t in tables) <= budget:
        return tables
    tables = list(tables)
    while math.prod(len(t) for t in tables) > budget:
        d = max(range(len(tables)), key=lambda a: len(tables[a]))
        t = tables[d]
        order = np.argsort(t.nominal, kind="stable")
        keep = order[np.unique(np.linspace(0, len(t) - 1, max(2, len(t) * 3 // 4)).astype(int))]
        tables[d] = t.take(np.sort(keep))
    return tables


@dataclass(frozen=True)
class BoxProblem:
    in_grid: Grid
    out_grid: Grid
    itemsize: int
    layout: tuple[str, str]
    avail: int  # elements of buffer the budget allows


def _mesh(values: Sequence[np.ndarray]) -> list[np.ndarray]:
    n = len(values)
    return [v.astype(np.float64).reshape((1,) * d + (-1,) + (1,) * (n - d - 1))
            for d, v in enumerate(values)]


def _runs(lengths: Sequence[int], P: list[np.ndarray], F: list[np.ndarray]) -> np.ndarray:
    """Vectorised :func:`dask_io.plan.axes.product_runs` (summed extents = axis lengths)."""
    n = len(P)
    total = math.prod(F) if n else np.ones(())
    prefix = 1.0
    for L in range(n):
        tail = math.prod(F[L + 1 :]) if n > L + 1 else 1.0
        total = total + prefix * P[L] * tail
        prefix *= lengths[L]
    return np.asarray(total)


def _side(pb: BoxProblem, tables: list[AxisTable], side: str) -> tuple[Any, Any, Any, Any]:
    """(opens, runs, bytes, rmw bytes) of one side for every combination (broadcast arrays)."""
    grid = pb.in_grid if side == "in" else pb.out_grid
    pieces = math.prod(_mesh([getattr(t, f"{side}_pieces") for t in tables]))
    if pb.layout[0 if side == "in" else 1] == "chunked":
        touched = math.prod(_mesh([getattr(t, f"{side}_weight") for t in tables])) * pb.itemsize
        if side == "in":
            return pieces, pieces, touched, np.zeros(())
        array_bytes = float(math.prod(grid.shape) * pb.itemsize)
        return pieces, 2 * pieces - grid.nblocks, touched, touched - array_bytes
    full = _mesh([getattr(t, f"{side}_full") for t in tables])
    part = [p - f for p, f in zip(_mesh([getattr(t, f"{side}_pieces") for t in tables]), full)]
    nbytes = float(math.prod(grid.shape) * pb.itemsize)
    return pieces, _runs(grid.shape, part, full), np.full((), nbytes), np.zeros(())


def score_boxes(pb: BoxProblem, tables: list[AxisTable], machine: Machine,
                objective: str) -> tuple[np.ndarray, np.ndarray]:
    """(score, seeks) of every combination of per-axis candidates; inf where it does not fit."""
    score, seeks, _ = _scores(pb, tables, machine, objective)
    return score, seeks


def _scores(pb: BoxProblem, tables: list[AxisTable], machine: Machine,
            objective: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(score keeping nothing, seeks, lower bound of any plan keeping) of every combination.

    The bound: the reads are what they are, whatever is kept; the writes cost at
    least one open and one run per output block and the array's bytes.
    """
    r_opens, r_runs, r_bytes, _ = _side(pb, tables, "in")
    w_opens, w_runs, w_bytes, rmw = _side(pb, tables, "out")
    seeks = r_opens + w_opens + r_runs + w_runs  # read-modify-write reads are in w_runs
    elems = math.prod(_mesh([t.nominal for t in tables]))
    n_out = float(pb.out_grid.nblocks)
    out_bytes = float(math.prod(pb.out_grid.shape) * pb.itemsize)
    if objective == "seeks":
        score = seeks + elems / (10.0 * max(pb.avail, 1))  # memory as the tie-break
        bound = r_opens + r_runs + 2 * n_out
    else:
        m = machine
        direct = (pb.layout[1] == "contiguous") & (w_bytes >= DIRECT_MIN_BYTES * w_runs)
        write_bw = np.where(direct, m.direct_write_bw, m.write_bw)
        copied = np.zeros(())
        if pb.layout[0] == "chunked":
            copied = copied + r_bytes
        if pb.layout[1] == "chunked":
            copied = copied + w_bytes + rmw
        read_s = r_opens * m.open_s + r_runs * m.run_s + r_bytes / m.read_bw
        score = (read_s + w_opens * m.open_s + w_runs * m.run_s + rmw / m.read_bw
                 + w_bytes / write_bw + copied / m.copy_bw)
        score = score * (1.0 + 1e-9 * seeks / max(1.0, float(np.max(seeks))))  # seeks break ties
        best_write_bw = max(m.direct_write_bw, m.write_bw)
        bound = read_s + n_out * (m.open_s + m.run_s) + out_bytes / best_write_bw
        if pb.layout[1] == "chunked":
            bound = bound + out_bytes / m.copy_bw
        if pb.layout[0] == "chunked":
            bound = bound + r_bytes / m.copy_bw
    shape = np.broadcast_shapes(np.shape(score), np.shape(elems), np.shape(bound))
    score = np.where(elems <= pb.avail, np.broadcast_to(score, shape), np.inf)
    bound = np.where(elems < pb.avail, np.broadcast_to(bound, shape), np.inf)  # room to keep
    return score, np.broadcast_to(seeks, shape), bound


@dataclass(frozen=True)
class BoxSearch:
    """Every combination of per-axis candidates, scored keeping nothing and bounded keeping."""

    tables: list[AxisTable]
    score: np.ndarray  # keeping nothing; inf where the buffer does not fit
    bound: np.ndarray  # a lower bound of any plan with these buffers that keeps

    def _bounds(self, flat: int) -> Bounds:
        index = np.unravel_index(flat, self.score.shape)
        return tuple(t.bounds[int(i)] for t, i in zip(self.tables, index))

    def best(self, count: int = 8) -> list[Bounds]:
        """The ``count`` best partitions keeping nothing, best first."""
        return [b for _, b in self._smallest(self.score, count)]

    def by_keep_bound(self, count: int) -> list[tuple[float, Bounds]]:
        """The ``count`` partitions of smallest keep bound, with the bound, smallest first.

        Among equal bounds, smaller buffers come first: they leave more memory to keep.
        """
        bound = self.bound.ravel()
        elems = np.broadcast_to(math.prod(_mesh([t.nominal for t in self.tables])),
                                self.bound.shape).ravel()
        finite = np.flatnonzero(np.isfinite(bound))
        if finite.size > 50 * count:  # the smallest bounds (ties at the cut included)
            cut = np.partition(bound[finite], 50 * count)[50 * count]
            finite = finite[bound[finite] <= cut]
        ranked = finite[np.lexsort((elems[finite], bound[finite]))][:count]
        return [(float(bound[f]), self._bounds(f)) for f in ranked.tolist()]

    def _smallest(self, values: np.ndarray, count: int) -> list[tuple[float, Bounds]]:
        flat = values.ravel()
        k = min(count, flat.size)
        if k <= 0:
            return []
        top = np.argpartition(flat, k - 1)[:k] if flat.size > k else np.arange(flat.size)
        top = top[np.argsort(flat[top], kind="stable")]
        return [(float(flat[f]), self._bounds(f)) for f in top.tolist() if np.isfinite(flat[f])]


def box_search(pb: BoxProblem, machine: Machine, objective: str = "seconds") -> BoxSearch | None:
    """Score every box partition of ``pb`` (None when not even one row fits)."""
    n = pb.in_grid.ndim
    limits = [min(pb.avail, r) for r in pb.in_grid.shape]
    tables = [axis_table(pb.in_grid.bounds[d], pb.out_grid.bounds[d], limits[d])
              for d in range(n)]
    if any(len(t) == 0 for t in tables):
        return None
    thin = _thin(tables, MAX_COMBINATIONS)
    score, _, bound = _scores(pb, thin, machine, objective)
    if thin is not tables:  # thinned: refine the best combinations axis by axis, then rescore
        picks = _descend(pb, tables, thin, score, machine, objective)
        thin = [_union(t, full, p) for t, full, p in zip(thin, tables, picks)]
        score, _, bound = _scores(pb, thin, machine, objective)
    return BoxSearch(thin, score, bound)


def _descend(pb: BoxProblem, tables: list[AxisTable], thin: list[AxisTable], score: np.ndarray,
             machine: Machine, objective: str, starts: int = 4) -> list[set[int]]:
    """Coordinate descent over the full per-axis tables from the best thinned combinations:
    per axis, the candidate indices (into ``tables``) it ends on."""
    flat = score.ravel()
    picks: list[set[int]] = [set() for _ in tables]
    for f in np.argsort(flat, kind="stable")[:starts].tolist():
        if not np.isfinite(flat[f]):
            break
        at = [_index_in(full, t, int(i))
              for full, t, i in zip(tables, thin, np.unravel_index(f, score.shape))]
        for _ in range(3):
            moved = False
            for d in range(len(tables)):
                trial = [tables[a].take(np.array([at[a]])) if a != d else tables[d]
                         for a in range(len(tables))]
                s, _, _ = _scores(pb, trial, machine, objective)
                best = int(np.argmin(s.ravel()))
                if best != at[d] and s.ravel()[best] < s.ravel()[at[d]]:
                    at[d], moved = best, True
            if not moved:
                break
        for d, i in enumerate(at):
            picks[d].add(i)
    return picks


def _index_in(full: AxisTable, part: AxisTable, i: int) -> int:
    key = part.bounds[i].tobytes()
    return next(k for k, b in enumerate(full.bounds) if b.tobytes() == key)


def _union(part: AxisTable, full: AxisTable, picks: set[int]) -> AxisTable:
    have = {b.tobytes() for b in part.bounds}
    extra = [i for i in sorted(picks) if full.bounds[i].tobytes() not in have]
    if not extra:
        return part
    keep = [_index_in(full, part, i) for i in range(len(part))] + extra
    return full.take(np.array(sorted(set(keep))))


def best_boxes(pb: BoxProblem, machine: Machine, objective: str = "seconds",
               count: int = 8) -> list[Bounds]:
    """The ``count`` best partitions keeping nothing, best first (those that fit only)."""
    found = box_search(pb, machine, objective)
    return [] if found is None else found.best(count)
