"""Exact simulation of the write side of a plan, with or without keeping.

Buffers are visited in a lexicographic order of their grid (``order`` names the
axes from slowest to fastest). Because the buffers that touch an output block
form a product of per-axis ranges, the first and last of them in any such order
are the corners of that range, so "this buffer completes this block" is a
per-axis fact combined by broadcasting.

Keeping: when a buffer first touches an output block it does not complete, the
block is either *kept* (its pieces stay in memory until the buffer that completes
it, then it is written whole in one run) or *flushed* (each piece is written at
once). A kept block reserves, at its first touch, the memory its pieces will
occupy until completion, so admission never has to be undone and the kept data
never exceeds the budget. Among the blocks a buffer touches for the first time,
those that save the most seeks per reserved byte are admitted first.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from dask_io.plan.axes import AxisPairs

NEW, KEPT, FLUSHED = 0, 1, 2


@dataclass
class BufferDecision:
    """What happens to the output blocks touched by one buffer (flat arrays)."""

    index: tuple[int, ...]  # buffer multi-index
    blocks: np.ndarray  # flat output block indices
    piece: np.ndarray  # piece size in elements
    runs: np.ndarray  # runs to write the piece partially (contiguous layout)
    action: np.ndarray  # WRITE_WHOLE, WRITE_KEPT, WRITE_PARTIAL or KEEP
    first_write: np.ndarray  # a partial write that is the first write to its block


WRITE_WHOLE, WRITE_KEPT, WRITE_PARTIAL, KEEP = 0, 1, 2, 3


@dataclass
class WriteTotals:
    opens: int = 0
    runs: int = 0
    nbytes: int = 0
    rmw_bytes: int = 0
    kept_peak: int = 0  # elements


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
        self.numblocks = tuple(len(p.blk) - 1 for p in self.pairs)
        self.strides = np.cumprod((1, *self.numblocks[:0:-1]))[::-1].astype(np.int64)
        lengths = [np.diff(p.blk) for p in self.pairs]
        self.block_elems = self._outer_prod(lengths)
        if kept_cap > 0:
            self.reserve = self.block_elems - self._outer_prod(
                [p.last_extent_per_block() for p in self.pairs]
            )
            self.priority = self._flush_savings(lengths) / np.maximum(self.reserve, 1)

    @staticmethod
    def _outer_prod(arrays: Sequence[np.ndarray]) -> np.ndarray:
        out = np.ones((), dtype=np.int64)
        for a in _broadcast([np.asarray(x, dtype=np.int64) for x in arrays]):
            out = out * a
        return out.ravel()

    def _flush_savings(self, lengths: Sequence[np.ndarray]) -> np.ndarray:
        """Seeks saved per block by keeping it rather than writing its pieces at once."""
        touches = [p.touches_per_block() for p in self.pairs]
        pieces = self._outer_prod(touches)
        if self.chunked:
            flushed = 3 * pieces - 1  # opens + writes + read-modify-write reads
        else:
            full = [t == 1 for t in touches]
            ext = [np.asarray(x, dtype=np.int64) for x in lengths]
            # runs of all pieces of a block: sum over the last non-spanning axis
            runs = np.zeros_like(pieces)
            n = len(ext)
            for L in range(n):
                term = self._outer_prod(
                    [ext[a] if a < L else (touches[a] - full[a] if a == L else full[a])
                     for a in range(n)]
                )
                runs = runs + term
            runs = runs + self._outer_prod(full)
            flushed = runs + pieces
        return np.maximum(flushed - 2, 0).astype(np.float64)

    def priority_levels(self, count: int = 6) -> list[float]:
        """Thresholds worth trying for ``min_priority``: 0 and log-spaced levels."""
        if self.kept_cap <= 0:
            return [0.0]
        positive = self.priority[self.priority > 0]
        if positive.size == 0:
            return [0.0]
        lo, hi = float(positive.min()), float(positive.max())
        if hi <= lo * 1.5:
            return [0.0]
        levels = np.geomspace(lo, hi, count + 2)[1:-1]
        return [0.0, *(float(x) for x in levels)]

    def buffers(self) -> Iterator[tuple[int, ...]]:
        """Buffer multi-indices in plan order."""
        nbuf = [len(p.buf) - 1 for p in self.pairs]
        perm_shape = [nbuf[a] for a in self.order]
        inverse = np.argsort(self.order)
        for idx in np.ndindex(*perm_shape):
            yield tuple(idx[i] for i in inverse)

    def totals(self, limit: int | None = None) -> WriteTotals | None:
        """Run the whole simulation and return its write totals.

        With ``limit``, stop and return None as soon as the seeks of the writes
        (opens + runs) reach it: the caller already has a plan at least as cheap.
        """
        for _ in self.decisions():
            if limit is not None and self._totals.opens + self._totals.runs >= limit:
                return None
        return self._totals

    def decisions(self) -> Iterator[BufferDecision]:
        """Simulate buffer by buffer, yielding what happens to each touched block."""
        return self._simulate()

    def _simulate(self) -> Iterator[BufferDecision]:
        nblocks = int(np.prod(self.numblocks))
        status = np.zeros(nblocks, dtype=np.int8)
        kept = np.zeros(nblocks, dtype=np.int64)
        committed = 0
        kept_total = 0
        t = self._totals = WriteTotals()
        for b in self.buffers():
            sl = [(p.lo[i], p.hi[i]) for p, i in zip(self.pairs, b)]
            ext = [p.extent[i] for p, i in zip(self.pairs, b)]
            full = [p.full[i] for p, i in zip(self.pairs, b)]
            last = [p.last[i] for p, i in zip(self.pairs, b)]
            idx = self._outer_sum(
                [np.arange(lo, hi, dtype=np.int64) * s for (lo, hi), s in zip(sl, self.strides)]
            )
            piece = self._outer_prod(ext)
            complete = self._outer_and(last)
            runs = piece_runs(ext, full).ravel() if not self.chunked else np.ones_like(piece)
            st = status[idx]
            action = np.full(idx.shape, WRITE_PARTIAL, dtype=np.int8)
            whole = complete & (st != FLUSHED)
            action[whole & (st == KEPT)] = WRITE_KEPT
            action[whole & (st == NEW)] = WRITE_WHOLE
            cont = ~complete & (st == KEPT)
            action[cont] = KEEP
            new = ~complete & (st == NEW)
            released = int(kept[idx[action == WRITE_KEPT]].sum())
            if released:
                committed -= int(self.reserve[idx[action == WRITE_KEPT]].sum())
            admitted = np.zeros(0, dtype=np.int64)
            if self.kept_cap > 0 and new.any():
                cand = np.flatnonzero(new)
                cand = cand[self.priority[idx[cand]] >= self.min_priority]
                order = np.argsort(-self.priority[idx[cand]], kind="stable")
                cand = cand[order]
                fits = committed + np.cumsum(self.reserve[idx[cand]]) <= self.kept_cap
                admitted = cand[fits] if fits.all() else cand[: int(np.argmin(fits))]
                action[admitted] = KEEP
                committed += int(self.reserve[idx[admitted]].sum())
            flushed_new = new.copy()
            flushed_new[admitted] = False
            status[idx[flushed_new]] = FLUSHED
            status[idx[admitted]] = KEPT
            keep_now = action == KEEP
            added = int(piece[keep_now].sum())
            kept[idx[keep_now]] += piece[keep_now]
            kept[idx[action == WRITE_KEPT]] = 0
            t.kept_peak = max(t.kept_peak, kept_total + added - released, kept_total)
            kept_total += added - released
            self._count(action, piece, runs, idx, st, flushed_new)
            yield BufferDecision(b, idx, piece, runs, action, flushed_new)

    def _count(self, action, piece, runs, idx, st, flushed_new) -> None:  # type: ignore[no-untyped-def]
        t = self._totals
        isz = self.itemsize
        whole = (action == WRITE_WHOLE) | (action == WRITE_KEPT)
        partial = action == WRITE_PARTIAL
        t.opens += int(whole.sum() + partial.sum())
        if self.chunked:
            t.runs += int(whole.sum() + partial.sum())
            t.nbytes += int(self.block_elems[idx[whole | partial]].sum()) * isz
            rmw = partial & ~flushed_new  # the first write to a chunk reads nothing back
            t.runs += int(rmw.sum())
            t.rmw_bytes += int(self.block_elems[idx[rmw]].sum()) * isz
        else:
            t.runs += int(whole.sum()) + int(runs[partial].sum())
            t.nbytes += (int(self.block_elems[idx[whole]].sum()) + int(piece[partial].sum())) * isz

    def _outer_sum(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((), dtype=np.int64)
        for a in _broadcast(arrays):
            out = out + a
        return out.ravel()

    @staticmethod
    def _outer_and(arrays: Sequence[np.ndarray]) -> np.ndarray:
        out = np.ones((), dtype=bool)
        for a in _broadcast(arrays):
            out = out & a
        return out.ravel()
