"""Exact simulation of the write side of a plan, with or without keeping.

Buffers are visited in a lexicographic order of their grid (``order`` names the
axes from slowest to fastest). Because the buffers that touch an output block
form a product of per-axis ranges, the first and last of them in any such order
are the corners of that range, so "this buffer completes this block" is a
per-axis fact combined by broadcasting.

Keeping: when a buffer first touches an output block it does not complete, the
block gets a *level* ``k``. Level 0 keeps the block's pieces in memory until the
buffer that completes it, then writes it whole in one run. Level ``k`` keeps
pieces only until a *unit* is complete: the part of the block that shares the
buffer's position on axes ``0..k-1`` and spans the block on axes ``k..``. A unit
spans the fast axes of its block, so it is written in few runs (one when ``k``
is 1), for far less memory than the whole block. Level ``ndim`` keeps nothing:
each piece is written at once. Level ``k`` is offered only when the buffer order
visits axes ``k..`` faster than the others, so one unit of a block at most is in
memory at a time.

A unit reserves, at its first piece, the memory its pieces can occupy until it
is complete, so a kept unit never has to be given up and kept data never exceeds
the budget; a unit whose reservation does not fit is written piece by piece.
Among the blocks a buffer touches for the first time, those that save the most
seeks per reserved element get the lowest level that fits.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from dask_io.plan.axes import AxisPairs


@dataclass
class BufferDecision:
    """What happens to the output blocks touched by one buffer (flat arrays)."""

    index: tuple[int, ...]  # buffer multi-index
    blocks: np.ndarray  # flat output block indices
    piece: np.ndarray  # piece size in elements
    runs: np.ndarray  # runs to write the piece partially (contiguous layout)
    action: np.ndarray  # WRITE_WHOLE, WRITE_KEPT, WRITE_PARTIAL or KEEP
    first_write: np.ndarray  # a partial write that is the first write to its block
    level: np.ndarray  # the block's keep level (ndim: nothing kept)
    unit_runs: np.ndarray  # runs of the unit a WRITE_KEPT writes
    held: np.ndarray  # elements kept before this buffer (released by WRITE_KEPT)


WRITE_WHOLE, WRITE_KEPT, WRITE_PARTIAL, KEEP = 0, 1, 2, 3


@dataclass
class _Step:
    """The geometry of one buffer: what it touches, independent of keep decisions."""

    b: tuple[int, ...]
    ext: list[np.ndarray]
    full: list[np.ndarray]
    idx: np.ndarray
    piece: np.ndarray
    suffix: np.ndarray  # row k: the piece completes its level-k unit
    runs: np.ndarray
    first_suffix: np.ndarray  # row k: the piece starts its level-k unit
    unit_runs: dict[int, np.ndarray] = field(default_factory=dict)


@dataclass
class WriteTotals:
    opens: int = 0
    runs: int = 0
    nbytes: int = 0
    rmw_bytes: int = 0
    kept_peak: int = 0  # elements
    kept_total: int = 0  # elements ever kept


def _broadcast(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    n = len(arrays)
    return [a.reshape((1,) * d + (-1,) + (1,) * (n - d - 1)) for d, a in enumerate(arrays)]


def piece_runs(extent: Sequence[np.ndarray], full: Sequence[np.ndarray]) -> np.ndarray:
    """Runs of every piece in a product of per-axis pieces (a broadcast N-D array).

    A piece costs the product of its extents on the axes before its last
    non-spanning axis ``L`` (1 when ``L`` is 0 or it spans its block).
    """
    ext = _broadcast(extent)
    spans = _broadcast(full)
    shape = np.broadcast_shapes(*(e.shape for e in ext))
    prefix = [ext[0]]
    for a in range(1, len(ext)):
        prefix.append(prefix[-1] * ext[a])
    runs = np.ones(shape, dtype=np.int64)
    suffix_spans = np.ones(shape, dtype=bool)
    for L in range(len(ext) - 1, 0, -1):
        runs = np.where(suffix_spans & ~spans[L], prefix[L - 1], runs)
        suffix_spans = suffix_spans & spans[L]
    return runs


class WriteSimulator:
    """Simulate the writes of a plan over an output grid, exactly.

    Parameters
    ----------
    pairs : per-axis :class:`AxisPairs` of the buffer partition against the output grid
    order : axis permutation, slowest-varying first
    itemsize : bytes per element
    chunked : whether the output is a chunked store (read-modify-write on partial writes)
    kept_cap : elements of kept data allowed at once (0: keep nothing)
    min_priority : blocks that save fewer seeks per reserved element than this are
        never kept, which leaves room for those that save more
    """

    def __init__(
        self,
        pairs: Sequence[AxisPairs],
        order: Sequence[int],
        itemsize: int,
        chunked: bool,
        kept_cap: int,
        min_priority: float = 0.0,
    ) -> None:
        self.pairs = list(pairs)
        self.order = tuple(order)
        self.itemsize = itemsize
        self.chunked = chunked
        self.kept_cap = kept_cap
        self.min_priority = min_priority
        self.ndim = n = len(self.pairs)
        self.numblocks = tuple(len(p.blk) - 1 for p in self.pairs)
        self.strides = np.cumprod((1, *self.numblocks[:0:-1]))[::-1].astype(np.int64)
        self.lengths = [np.diff(p.blk).astype(np.int64) for p in self.pairs]
        self.block_elems = _outer_prod(self.lengths)
        self._geometry: list[_Step] = []
        self._buffer_iter = self.buffers()
        self.levels: list[int] = []
        if kept_cap > 0:
            self.levels = [0] if chunked else [
                k for k in range(n) if set(self.order[k:]) == set(range(k, n))
            ]
            self._prepare_levels()

    def _prepare_levels(self) -> None:
        touches = [p.touches_per_block() for p in self.pairs]
        full = [(t == 1).astype(np.int64) for t in touches]
        maxext = [p.max_extent_per_block() for p in self.pairs]
        lastext = [p.last_extent_per_block() for p in self.pairs]
        n = self.ndim
        flushed = self._seeks_at(n, touches, full)
        self.reserve: dict[int, np.ndarray] = {}
        self.priority: dict[int, np.ndarray] = {}
        for k in self.levels:
            reserve = _outer_prod_full(maxext, self.lengths, k, lastext)
            savings = flushed - self._seeks_at(k, touches, full)
            self.reserve[k] = np.maximum(reserve, 1)
            self.priority[k] = np.where(savings > 0, savings / self.reserve[k], 0.0)

    def _seeks_at(self, k: int, touches: list[np.ndarray], full: list[np.ndarray]) -> np.ndarray:
        """Seeks to write every block as units of level ``k`` (``ndim``: piece by piece)."""
        n = self.ndim
        one = [np.ones_like(t) for t in touches]
        units = _outer_prod([touches[a] if a < k else one[a] for a in range(n)])
        if self.chunked:
            return 2 * units if k == 0 else 3 * units - 1  # opens + writes + read-modify-writes
        zero = [np.zeros_like(t) for t in touches]
        P = [touches[a] - full[a] if a < k else zero[a] for a in range(n)]
        F = [full[a] if a < k else one[a] for a in range(n)]
        runs = _outer_prod(F)
        for L in range(min(k, n)):
            runs = runs + _outer_prod([*self.lengths[:L], P[L], *F[L + 1 :]])
        total: np.ndarray = runs + units
        return total

    def priority_levels(self, count: int = 8) -> list[float]:
        """Thresholds worth trying for ``min_priority``.

        0 (keep whatever fits), up to ``count`` of the distinct priorities at evenly
        spaced quantiles (a threshold just at a priority decides whether that group
        of blocks may use memory that better groups could use), and a few
        log-spaced values between them.
        """
        if not self.levels:
            return [0.0]
        positive = np.unique(np.concatenate([p[p > 0] for p in self.priority.values()]))
        if positive.size == 0:
            return [0.0]
        picks = positive[np.linspace(0, positive.size - 1, count).round().astype(int)]
        spaced: list[float] = []
        if positive.size > 1:
            spaced = np.geomspace(positive[0], positive[-1], 6)[1:-1].tolist()
        return [0.0, *sorted({float(x) for x in (*picks[1:], *spaced)})]

    def buffers(self) -> Iterator[tuple[int, ...]]:
        """Buffer multi-indices in plan order."""
        nbuf = [len(p.buf) - 1 for p in self.pairs]
        inverse = np.argsort(self.order)
        for idx in np.ndindex(*(nbuf[a] for a in self.order)):
            yield tuple(idx[i] for i in inverse)

    def totals(self, limit: int | None = None) -> WriteTotals | None:
        """Run the whole simulation and return its write totals.

        With ``limit``, stop and return None as soon as the seeks of the writes
        (opens + runs) pass it: the caller already has a cheaper plan.
        """
        for _ in self.decisions():
            if limit is not None and self._totals.opens + self._totals.runs > limit:
                return None
        return self._totals

    def decisions(self) -> Iterator[BufferDecision]:
        """Simulate buffer by buffer, yielding what happens to each touched block."""
        return self._simulate()

    def _simulate(self) -> Iterator[BufferDecision]:
        n = self.ndim
        nblocks = len(self.block_elems)
        level = np.full(nblocks, -1, dtype=np.int8)
        held = np.zeros(nblocks, dtype=np.int64)  # elements kept for the current unit
        reserved = np.zeros(nblocks, dtype=np.int64)  # reservation of the current unit
        spilled = np.zeros(nblocks, dtype=bool)  # current unit did not fit: written piecewise
        self._committed = 0
        kept_total = 0
        self._totals = t = WriteTotals()
        for step in self._steps():
            b, idx, piece, suffix, runs = step.b, step.idx, step.piece, step.suffix, step.runs
            rows = np.arange(len(idx))
            lev = level[idx]
            new = lev < 0
            old = ~new & (lev < n)
            # units completed by this buffer free their reservation before anything
            # first touched here asks for memory (their WriteKept comes first, too)
            done_old = old & suffix[np.where(old, lev, n), rows]
            self._committed -= int(reserved[idx[done_old]].sum())
            reserved[idx[done_old]] = 0
            if new.any():
                lev = self._admit(idx, lev, new, suffix)
                level[idx] = lev
                admitted = new & (lev < n) & ~suffix[np.minimum(lev, n), rows]
                for k in self.levels:
                    sel = admitted & (lev == k)
                    reserved[idx[sel]] = self.reserve[k][idx[sel]]
            self._start_units(step, idx, lev, old, reserved, spilled)
            unit_done = suffix[np.minimum(lev, n), rows]
            before = held[idx]
            piecewise = (lev == n) | spilled[idx]
            action = np.full(len(idx), KEEP, dtype=np.int8)
            action[piecewise] = WRITE_PARTIAL
            done_kept = unit_done & ~piecewise
            action[done_kept & (before > 0)] = WRITE_KEPT
            direct = done_kept & (before == 0)
            action[direct & (lev == 0)] = WRITE_WHOLE
            action[direct & (lev > 0)] = WRITE_PARTIAL
            spilled[idx[unit_done]] = False
            unit_runs = self._unit_runs(step, lev, action == WRITE_KEPT)
            keep = action == KEEP
            wk = action == WRITE_KEPT
            released = int(before[wk].sum())
            added = int(piece[keep].sum())
            held[idx[keep]] += piece[keep]
            held[idx[wk]] = 0
            t.kept_peak = max(t.kept_peak, kept_total, kept_total + added - released)
            kept_total += added - released
            t.kept_total += added
            first_write = new & (lev == n)
            self._count(action, piece, runs, unit_runs, before, idx, first_write)
            yield BufferDecision(b, idx, piece, runs, action, first_write, lev, unit_runs, before)

    def _start_units(self, step: _Step, idx: np.ndarray, lev: np.ndarray, old: np.ndarray,
                     reserved: np.ndarray, spilled: np.ndarray) -> None:
        """Blocks seen before whose next unit starts here reserve its memory, or spill it."""
        rows = np.arange(len(idx))
        starts = old & step.first_suffix[np.where(old, lev, self.ndim), rows]
        starts &= ~step.suffix[np.where(old, lev, self.ndim), rows]  # one-piece units keep nothing
        for k in self.levels:
            cand = np.flatnonzero(starts & (lev == k))
            if cand.size == 0:
                continue
            need = np.cumsum(self.reserve[k][idx[cand]])
            fits = self._committed + need <= self.kept_cap
            take = cand[: len(fits) if fits.all() else int(np.argmin(fits))]
            reserved[idx[take]] = self.reserve[k][idx[take]]
            self._committed += int(reserved[idx[take]].sum())
            spilled[idx[np.setdiff1d(cand, take)]] = True

    def _steps(self) -> Iterator[_Step]:
        """The geometry of every buffer, computed once and reused by every simulation."""
        yield from self._geometry
        for b in self._buffer_iter:
            ext = [p.extent[i] for p, i in zip(self.pairs, b)]
            full = [p.full[i] for p, i in zip(self.pairs, b)]
            last = [p.last[i] for p, i in zip(self.pairs, b)]
            idx = _outer_sum([np.arange(p.lo[i], p.hi[i], dtype=np.int64) * s
                              for p, i, s in zip(self.pairs, b, self.strides)])
            piece = _outer_prod(ext)
            suffix = _suffix_and(last)  # suffix[k]: the piece completes its level-k unit
            first_suffix = _suffix_and([p.first[i] for p, i in zip(self.pairs, b)])
            runs = np.ones_like(piece) if self.chunked else piece_runs(ext, full).ravel()
            step = _Step(b, ext, full, idx, piece, suffix, runs, first_suffix)
            self._geometry.append(step)
            yield step

    def _admit(self, idx: np.ndarray, lev: np.ndarray, new: np.ndarray,
               suffix: np.ndarray) -> np.ndarray:
        """Give every block touched for the first time its keep level."""
        n = self.ndim
        lev = lev.copy()
        complete = suffix[0]
        lev[new & complete] = 0  # whole inside this buffer: written at once, nothing kept
        todo = new & ~complete
        for k in self.levels:
            cand = np.flatnonzero(todo)
            if cand.size == 0:
                break
            prio = self.priority[k][idx[cand]]
            cand = cand[(prio >= self.min_priority) & (prio > 0)]
            if cand.size == 0:
                continue
            cand = cand[np.argsort(-self.priority[k][idx[cand]], kind="stable")]
            need = np.cumsum(self.reserve[k][idx[cand]])
            fits = self._committed + need <= self.kept_cap
            take = cand[: len(fits) if fits.all() else int(np.argmin(fits))]
            if take.size:
                lev[take] = k
                todo[take] = False
                self._committed += int(self.reserve[k][idx[take]].sum())
        lev[todo] = n
        return lev

    def _unit_runs(self, step: _Step, lev: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = np.ones(len(lev), dtype=np.int64)
        if self.chunked or not mask.any():
            return out
        for k in np.unique(lev[mask]).tolist():
            if k == 0:
                continue
            runs = step.unit_runs.get(k)
            if runs is None:
                spans = [f if a < k else np.ones_like(f) for a, f in enumerate(step.full)]
                runs = step.unit_runs[k] = piece_runs(step.ext, spans).ravel()
            sel = mask & (lev == k)
            out[sel] = runs[sel]
        return out

    def _count(self, action: np.ndarray, piece: np.ndarray, runs: np.ndarray,
               unit_runs: np.ndarray, before: np.ndarray, idx: np.ndarray,
               first_write: np.ndarray) -> None:
        t = self._totals
        isz = self.itemsize
        whole = action == WRITE_WHOLE
        kept = action == WRITE_KEPT
        partial = action == WRITE_PARTIAL
        t.opens += int(whole.sum() + kept.sum() + partial.sum())
        if self.chunked:
            writes = whole | kept | partial
            t.runs += int(writes.sum())
            t.nbytes += int(self.block_elems[idx[writes]].sum()) * isz
            rmw = partial & ~first_write  # the first write to a chunk reads nothing back
            t.runs += int(rmw.sum())
            t.rmw_bytes += int(self.block_elems[idx[rmw]].sum()) * isz
            return
        t.runs += int(whole.sum()) + int(unit_runs[kept].sum()) + int(runs[partial].sum())
        elems = self.block_elems[idx[whole]].sum() + (before + piece)[kept].sum()
        t.nbytes += int(elems + piece[partial].sum()) * isz


def _outer_prod(arrays: Sequence[np.ndarray]) -> np.ndarray:
    out = np.ones((), dtype=np.int64)
    for a in _broadcast([np.asarray(x, dtype=np.int64) for x in arrays]):
        out = out * a
    return out.ravel()


def _outer_prod_full(maxext: Sequence[np.ndarray], lengths: Sequence[np.ndarray], k: int,
                     lastext: Sequence[np.ndarray]) -> np.ndarray:
    """Reserve of level ``k``: the largest unit, less the smallest last piece of it."""
    n = len(lengths)
    unit = _outer_prod([*maxext[:k], *lengths[k:]])
    last = _outer_prod([*maxext[:k], *lastext[k:]]) if k < n else unit
    reserve: np.ndarray = unit - last
    return reserve


def _outer_sum(arrays: Sequence[np.ndarray]) -> np.ndarray:
    out = np.zeros((), dtype=np.int64)
    for a in _broadcast(arrays):
        out = out + a
    return out.ravel()


def _suffix_and(last: Sequence[np.ndarray]) -> np.ndarray:
    """Row ``k``: the piece is the last along every axis from ``k`` on (row ndim: True)."""
    n = len(last)
    shape = tuple(len(x) for x in last)
    rows = np.ones((n + 1, math.prod(shape)), dtype=bool)
    acc = np.ones(shape, dtype=bool)
    for k, a in zip(range(n - 1, -1, -1), reversed(_broadcast(list(last)))):
        acc = acc & a
        rows[k] = acc.ravel()
    return rows
