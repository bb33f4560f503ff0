"""``plan_resplit``: choose a strategy and a buffer partition, exactly costed."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from dask_io.errors import ExcessiveIOWarning, InsufficientMemoryError, InvalidChunksError
from dask_io.plan import search
from dask_io.plan import strategies as st
from dask_io.plan.axes import AxisPairs
from dask_io.plan.cost import Cost, side_cost
from dask_io.plan.grid import ChunksLike, Grid, normalize_chunks, normalize_shape, run_count
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
from dask_io.plan.simulate import KEEP, WRITE_KEPT, WRITE_WHOLE, BufferDecision, WriteSimulator
from dask_io.plan.timing import (
    Machine,
    Timing,
    current_machine,
    current_objective,
    pipelined,
    predict,
)
from dask_io.plan.units import format_bytes, parse_bytes

STRATEGIES = ("naive", "clustered", "multiple", "keep")
LAYOUTS = ("contiguous", "chunked")
OBJECTIVES = ("seconds", "seeks")
STAGING_LIMIT = 16 * 2**20
EXCESSIVE_RATIO = 100  # warn when the best plan costs more seeks than this times the bound
KEEP_FINALISTS = 8  # keep plans refined with every keep threshold
KEEP_SLACK = 4.0  # ... among those within this many times the best seeks at first sight
KEEP_STEPS = 12000  # buffers simulated before the keep search narrows to the paper's rules
KEEP_BUDGET = 20000  # ... and before it stops (about 0.1-0.2 ms per buffer simulated)
BOX_EXTRAS = 6  # best box-search partitions keeping nothing, costed exactly
BOX_KEEP_TRIALS = 64  # box partitions simulated with keeping, at most
BOX_KEEP_STEPS = 4000  # ... and buffers simulated in all (planning time is about linear in it)


@dataclass(frozen=True, eq=False)
class Plan:
    """A resplit plan: a buffer partition, a buffer order and what to keep, exactly costed.

    Build one with :func:`plan_resplit`. ``operations()`` lists what an executor
    must do, in order; ``cost`` is what those operations cost. Plans compare by
    identity (their buffer boundaries are numpy arrays); compare ``cost``,
    ``buffer_shape`` and ``order`` to compare what they do.
    """

    in_grid: Grid
    out_grid: Grid
    dtype: np.dtype[Any]
    max_mem: int
    layout: tuple[str, str]
    strategy: str
    buffer_bounds: tuple[np.ndarray, ...]
    order: tuple[int, ...]
    cost: Cost
    kept_cap: int = 0  # elements of kept data allowed (0: keep nothing)
    min_priority: float = 0.0  # blocks saving fewer seeks per element are never kept
    planning_time: float = 0.0
    alternatives: dict[str, Plan | str] = field(default_factory=dict, repr=False)
    machine: Machine | None = field(default=None, repr=False)

    @property
    def timing(self) -> Timing:
        """Predicted seconds by what they are spent on (:mod:`dask_io.plan.timing`)."""
        return predict(self.cost, self.layout, self.machine)

    @property
    def seconds(self) -> float:
        """Predicted wall seconds of the plan on the calibrated (or default) machine."""
        return self.timing.seconds

    @property
    def shape(self) -> tuple[int, ...]:
        return self.in_grid.shape

    @property
    def in_chunks(self) -> tuple[tuple[int, ...], ...]:
        return self.in_grid.chunks

    @property
    def out_chunks(self) -> tuple[tuple[int, ...], ...]:
        return self.out_grid.chunks

    @property
    def buffer_shape(self) -> tuple[int, ...]:
        return st.nominal_shape(self.buffer_bounds)

    @property
    def n_buffers(self) -> int:
        return math.prod(len(b) - 1 for b in self.buffer_bounds)

    @property
    def staging_bytes(self) -> int:
        return self.cost.staging_bytes

    @property
    def lower_bound(self) -> int:
        """Seeks of the ideal resplit: every block opened once and accessed in one run."""
        return 2 * (self.in_grid.nblocks + self.out_grid.nblocks)

    def __repr__(self) -> str:
        c = self.cost
        return (
            f"<Plan {self.strategy} buffer={self.buffer_shape} buffers={self.n_buffers} "
            f"seeks={c.seeks} (opens={c.opens}, runs={c.runs}) "
            f"peak_mem={format_bytes(c.peak_mem)} predicted={self.seconds:.3g} s>"
        )

    def buffer_regions(self) -> Iterator[Region]:
        """The region of every buffer, in plan order."""
        for b in self._simulator(keep=False).buffers():
            yield self._buffer_region(b)

    def operations(self) -> Iterator[Operation]:
        """Every operation of the plan, in order (see :mod:`dask_io.plan.ops`)."""
        for ops in self.buffers():
            yield from ops

    def buffers(self) -> Iterator[list[Operation]]:
        """The operations grouped by buffer, each list starting with its ``LoadBuffer``."""
        in_pairs = self._pairs(self.in_grid)
        sim = self._simulator(keep=self.kept_cap > 0)
        for number, decision in enumerate(sim.decisions()):
            region = self._buffer_region(decision.index)
            ops: list[Operation] = [LoadBuffer(number, region)]
            ops.extend(self._reads(in_pairs, decision.index, region))
            ops.extend(self._writes(decision, region))
            yield ops

    # -- internals -------------------------------------------------------
    def _pairs(self, grid: Grid) -> list[AxisPairs]:
        return [AxisPairs(bb, gb) for bb, gb in zip(self.buffer_bounds, grid.bounds)]

    def _simulator(self, keep: bool) -> WriteSimulator:
        chunked = self.layout[1] == "chunked"
        cap = self.kept_cap if keep else 0
        return WriteSimulator(
            self._pairs(self.out_grid), self.order, self.dtype.itemsize, chunked, cap,
            self.min_priority,
        )

    def _buffer_region(self, index: BlockIndex) -> Region:
        return tuple((int(b[i]), int(b[i + 1])) for b, i in zip(self.buffer_bounds, index))

    def _reads(
        self, in_pairs: Sequence[AxisPairs], index: BlockIndex, region: Region
    ) -> Iterator[Read]:
        chunked = self.layout[0] == "chunked"
        isz = self.dtype.itemsize
        ranges = [range(p.lo[i], p.hi[i]) for p, i in zip(in_pairs, index)]
        for block in np.ndindex(*(len(r) for r in ranges)):
            blk = tuple(r[j] for r, j in zip(ranges, block))
            block_region = self.in_grid.block_region(blk)
            piece = _intersect(region, block_region)
            if chunked:
                yield Read(blk, piece, 1, self.in_grid.block_size(blk) * isz)
            else:
                yield Read(blk, piece, run_count(piece, block_region), _size(piece) * isz)

    def _writes(self, decision: BufferDecision, region: Region) -> Iterator[Operation]:
        chunked = self.layout[1] == "chunked"
        isz = self.dtype.itemsize
        grid = self.out_grid
        blocks = [tuple(int(i) for i in np.unravel_index(f, grid.numblocks)) for f in decision.blocks]
        later: list[Operation] = []
        keeps: list[Operation] = []
        for k, (blk, action) in enumerate(zip(blocks, decision.action.tolist())):
            block_region = grid.block_region(blk)
            piece = _intersect(region, block_region)
            block_bytes = grid.block_size(blk) * isz
            if action == WRITE_KEPT:
                unit = _unit(piece, block_region, int(decision.level[k]))
                yield WriteKept(blk, piece, int(decision.unit_runs[k]), _size(unit) * isz, unit,
                                unit == block_region)
                yield Release(blk, int(decision.held[k]) * isz)
            elif action == WRITE_WHOLE:
                later.append(Write(blk, piece, 1, block_bytes, True))
            elif action == KEEP:
                keeps.append(Keep(blk, piece, _size(piece) * isz))
            elif chunked:
                rmw = 0 if decision.first_write[k] else block_bytes
                later.append(Write(blk, piece, 1, block_bytes, False, rmw))
            else:
                runs = int(decision.runs[k])
                later.append(Write(blk, piece, runs, _size(piece) * isz, False))
        yield from later
        yield from keeps

    def plot(self, ax: Any = None) -> Any:
        """Draw a 2-D section of the blocks and buffers (:func:`dask_io.viz.plot_plan`)."""
        from dask_io.viz import plot_plan  # matplotlib stays optional; dask_io.plan stays pure

        return plot_plan(self, ax)


def _unit(piece: Region, block: Region, level: int) -> Region:
    """The unit of level ``level``: the piece's extent on the slow axes, the block's on the rest."""
    return tuple(piece[a] if a < level else block[a] for a in range(len(block)))


def _intersect(a: Region, b: Region) -> Region:
    return tuple((max(x0, y0), min(x1, y1)) for (x0, x1), (y0, y1) in zip(a, b))


def _size(region: Region) -> int:
    return math.prod(b - a for a, b in region)


# -- planning ----------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    in_grid: Grid
    out_grid: Grid
    dtype: np.dtype[Any]
    max_mem: int
    layout: tuple[str, str]
    machine: Machine | None = None
    objective: str = "seconds"

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    def score(self, plan: Plan) -> tuple[float, ...]:
        """What ``auto`` minimises: predicted seconds (then seeks, memory), or seeks."""
        c = plan.cost
        if self.objective == "seeks":
            return (c.seeks, c.bytes_read + c.bytes_written, c.peak_mem)
        return (predict(c, self.layout, self.machine).seconds, c.seeks, c.peak_mem)

    def box_problem(self) -> search.BoxProblem:
        return search.BoxProblem(self.in_grid, self.out_grid, self.itemsize, self.layout,
                                 self.avail)

    @property
    def staging_bytes(self) -> int:
        """The one staging array an executor may use for copies (counted in peak memory).

        A chunked store hands over whole chunks, so it needs a chunk; contiguous
        files are copied through at most 16 MiB (or one row, whichever is more).
        """
        isz = self.itemsize
        sizes = []
        for grid, layout in zip((self.in_grid, self.out_grid), self.layout):
            block = math.prod(grid.block_shape) * isz
            if layout == "chunked":
                sizes.append(block)
            else:
                row = grid.block_shape[-1] * isz
                sizes.append(min(block, max(row, min(STAGING_LIMIT, self.max_mem // 16))))
        return max(sizes)

    @property
    def avail(self) -> int:
        """Elements of buffer plus kept data the budget allows."""
        return max(0, (self.max_mem - self.staging_bytes) // self.itemsize)


def _evaluate(
    pb: _Problem,
    bounds: st.Bounds,
    order: tuple[int, ...],
    keep: bool,
    min_priority: float = 0.0,
    limit: int | None = None,
    sim: WriteSimulator | None = None,
) -> tuple[Cost, int] | None:
    """The exact cost of a plan, or None when it cannot cost fewer than ``limit`` seeks."""
    isz = pb.itemsize
    in_pairs = [AxisPairs(bb, gb) for bb, gb in zip(bounds, pb.in_grid.bounds)]
    out_pairs = [AxisPairs(bb, gb) for bb, gb in zip(bounds, pb.out_grid.bounds)]
    read = side_cost(in_pairs, isz, pb.layout[0] == "chunked", write=False)
    buf = st.buffer_elems(bounds)
    n_buffers = math.prod(len(b) - 1 for b in bounds)
    cap = pb.avail - buf if keep else 0
    read_seeks = read.opens + read.runs
    if limit is not None and read_seeks + 2 * pb.out_grid.nblocks > limit:
        return None
    if cap > 0:
        if sim is None:
            sim = WriteSimulator(out_pairs, order, isz, pb.layout[1] == "chunked", cap)
        sim.min_priority = min_priority
        w = sim.totals(None if limit is None else limit - read_seeks)
        if w is None:
            return None
        opens, runs, nbytes, rmw, kept = w.opens, w.runs, w.nbytes, w.rmw_bytes, w.kept_peak
        kept_all = w.kept_total
    else:
        ws = side_cost(out_pairs, isz, pb.layout[1] == "chunked", write=True)
        opens, runs, nbytes, rmw, kept = ws.opens, ws.runs, ws.nbytes, ws.rmw_bytes, 0
        kept_all = 0
    cost = Cost(
        read_opens=read.opens,
        kept_bytes=kept_all * isz,
        opens=read.opens + opens,
        read_runs=read.runs,
        write_runs=runs,
        bytes_read=read.nbytes + rmw,
        bytes_written=nbytes,
        buffer_bytes=buf * isz,
        kept_peak=kept * isz,
        staging_bytes=pb.staging_bytes,
        rmw_bytes=rmw,
        n_buffers=n_buffers,
    )
    return cost, max(cap, 0)


def _seek_score(cost: Cost) -> tuple[int, int, int]:
    return (cost.seeks, cost.bytes_read + cost.bytes_written, cost.peak_mem)


def _make(
    pb: _Problem,
    strategy: str,
    bounds: st.Bounds,
    order: tuple[int, ...],
    keep: bool,
    min_priority: float = 0.0,
    limit: int | None = None,
    sim: WriteSimulator | None = None,
) -> Plan | None:
    result = _evaluate(pb, bounds, order, keep, min_priority, limit, sim)
    if result is None:
        return None
    cost, cap = result
    return Plan(pb.in_grid, pb.out_grid, pb.dtype, pb.max_mem, pb.layout, strategy,
                bounds, order, cost, kept_cap=cap, min_priority=min_priority,
                machine=pb.machine)


def without_keeping(plan: Plan) -> Plan:
    """``plan``'s buffers in ``plan``'s order, keeping nothing.

    Every piece is written as soon as its buffer is read: more writes than the keep
    plan (output blocks cut by buffers are written in parts), but no copies of kept
    pieces and less memory. Worth it when the runs are long anyway.
    """
    pb = _Problem(plan.in_grid, plan.out_grid, plan.dtype, plan.max_mem, plan.layout,
                  plan.machine)
    out = _make(pb, plan.strategy, plan.buffer_bounds, plan.order, keep=False)
    assert out is not None  # no limit given: never None
    return out


def fewer_copies(plan: Plan) -> Plan:
    """``plan``, or its buffers keeping nothing when that is predicted to be faster.

    Keeping costs a copy of every kept piece and of its gathering; the same buffers
    without keeping cost more seeks instead. The time model weighs the two
    (:mod:`dask_io.plan.timing`); ``plan_resplit`` already does, so this matters only
    for plans made by hand or with ``objective="seeks"``.
    """
    if not plan.cost.kept_peak or plan.layout[1] != "contiguous":
        return plan  # a chunked target written in parts would be read-modified-written
    plain = without_keeping(plan)
    return plain if plain.seconds < plan.seconds else plan


def faster_pipelined(half: Plan, full: Plan) -> bool:
    """Whether ``half`` (planned within about half the memory) with two buffers in flight,
    the reads of one beside the writes of the other, is predicted faster than ``full``
    one buffer at a time. The one rule every executor uses for double buffering."""
    return pipelined(half.cost, half.layout, half.machine) < full.seconds


def _keep_simulator(pb: _Problem, bounds: st.Bounds, order: tuple[int, ...]) -> WriteSimulator:
    cap = pb.avail - st.buffer_elems(bounds)
    pairs = [AxisPairs(bb, gb) for bb, gb in zip(bounds, pb.out_grid.bounds)]
    return WriteSimulator(pairs, order, pb.itemsize, pb.layout[1] == "chunked", max(cap, 0))


def _c_order(pb: _Problem) -> tuple[int, ...]:
    return tuple(range(pb.in_grid.ndim))


def _plan_simple(pb: _Problem, strategy: str) -> Plan | None:
    shape = pb.in_grid.shape
    if strategy == "naive":
        bounds: st.Bounds | None = pb.in_grid.bounds
    elif strategy == "clustered":
        bounds = st.grow_whole_blocks(pb.in_grid, shape, pb.avail)
    else:
        bounds = st.grow_whole_blocks(pb.out_grid, shape, pb.avail)
    if bounds is None or st.buffer_elems(bounds) > pb.avail:
        return None
    return _make(pb, strategy, bounds, _c_order(pb), keep=False)  # never None without a limit


def _plan_keep(pb: _Problem, simple: Sequence[Plan | None]) -> Plan | None:
    """Search buffer partitions, buffer orders and keep thresholds; keep the cheapest.

    Every candidate is scored by exact simulation, largest buffers first. First
    each partition with its default and C buffer orders, keeping whatever fits;
    then the best few with every keep threshold, then with every other order. A
    candidate is dropped as soon as its seeks pass the best found so far, and the
    search stops once a plan reaches the lower bound.
    """
    extra = [p.buffer_bounds for p in simple if p is not None]
    candidates = sorted(
        st.keep_candidates(pb.in_grid, pb.out_grid, pb.avail, extra), key=st.buffer_elems,
        reverse=True,
    )
    best = min((p for p in simple if p is not None), key=lambda p: _seek_score(p.cost), default=None)
    floor = 2 * (pb.in_grid.nblocks + pb.out_grid.nblocks)

    def better(plan: Plan | None) -> None:
        nonlocal best
        if plan is not None and (best is None or _seek_score(plan.cost) < _seek_score(best.cost)):
            best = plan

    tried: list[tuple[Plan, WriteSimulator]] = []
    steps = 0  # buffers simulated: planning time grows with them
    for bounds in candidates:
        if best is not None and best.cost.seeks <= floor:
            return _as_keep(pb, best)  # the lower bound: nothing is cheaper
        if steps > KEEP_BUDGET:
            break
        if best is not None and _read_seeks(pb, bounds) + 2 * pb.out_grid.nblocks > best.cost.seeks:
            continue
        for order in st.buffer_orders(bounds, pb.out_grid)[:2]:
            sim = _keep_simulator(pb, bounds, order)
            plan = None
            # keeping whatever fits first; when that loses, a middle threshold (keeping
            # only the blocks that save most) before the candidate is given up
            slack = KEEP_SLACK if steps < KEEP_STEPS else 1.0
            for level in _first_levels(sim) if slack > 1 else [0.0]:
                steps += _n_buffers(bounds)
                plan = _make(pb, "keep", bounds, order, True, level, _limit(best, slack), sim)
                if plan is not None:
                    break
            if plan is not None:
                tried.append((plan, sim))
            better(plan)
    tried.sort(key=lambda ps: _seek_score(ps[0].cost))
    for plan, sim in tried[:KEEP_FINALISTS if steps < KEEP_STEPS else 3]:
        for level in sim.priority_levels()[1:]:
            steps += plan.n_buffers
            if steps > KEEP_BUDGET:
                break
            better(_make(pb, "keep", plan.buffer_bounds, plan.order, True, level, _limit(best),
                         sim))
    finalists = _distinct_bounds([p for p, _ in tried])[:3]
    for plan in finalists:
        for order in st.buffer_orders(plan.buffer_bounds, pb.out_grid)[2:]:
            sim = _keep_simulator(pb, plan.buffer_bounds, order)
            for level in sim.priority_levels():
                steps += plan.n_buffers
                if steps > KEEP_BUDGET:
                    break
                better(_make(pb, "keep", plan.buffer_bounds, order, True, level, _limit(best),
                             sim))
    return None if best is None else _as_keep(pb, best)


def _as_keep(pb: _Problem, best: Plan) -> Plan:
    """The keep plan for ``best``: itself, or the same buffers when keeping adds nothing."""
    if best.strategy == "keep":
        return best
    plan = _make(pb, "keep", best.buffer_bounds, best.order, True)
    assert plan is not None
    return plan


def _first_levels(sim: WriteSimulator) -> list[float]:
    levels = sim.priority_levels()
    return [0.0] if len(levels) < 3 else [0.0, levels[len(levels) // 2]]


def _n_buffers(bounds: st.Bounds) -> int:
    return math.prod(len(b) - 1 for b in bounds)


def _keep_family(pb: _Problem, simple: Sequence[Plan | None]) -> Plan | None:
    """The ``keep`` strategy: the best of every buffer partition with and without keeping.

    Three pools, each costed exactly: the box search's partitions keeping nothing
    (:mod:`dask_io.plan.search`: any extent on any axis, cuts at block boundaries),
    the keep search (grown and aligned buffers, every buffer order, keep
    thresholds) and its winner keeping nothing, and box partitions simulated with
    keeping in the order of a lower bound of their cost, until the bound passes the
    best plan found (branch and bound). ``auto``'s objective picks among them.
    """
    found = search.box_search(pb.box_problem(), pb.machine or current_machine(), pb.objective)
    pool: list[Plan] = []
    for bounds in [] if found is None else found.best(BOX_EXTRAS):
        plan = _make(pb, "keep", bounds, _c_order(pb), keep=False)
        if plan is not None:
            pool.append(plan)
    kept = _plan_keep(pb, simple)
    if kept is not None:
        pool.append(kept)
        if kept.cost.kept_peak and pb.layout[1] == "contiguous":
            pool.append(without_keeping(kept))
    if found is not None:
        pool.extend(_boxes_keeping(pb, found, min(pool, key=pb.score, default=None)))
    return min(pool, key=pb.score, default=None)


def _boxes_keeping(pb: _Problem, found: search.BoxSearch, best: Plan | None) -> Iterator[Plan]:
    """Box partitions simulated with keeping, smallest lower bound first, while the bound
    is below the best plan's score (at most :data:`BOX_KEEP_TRIALS` partitions and
    :data:`BOX_KEEP_STEPS` simulated buffers)."""
    steps = 0
    for bound, bounds in found.by_keep_bound(BOX_KEEP_TRIALS):
        if best is not None and bound >= pb.score(best)[0]:
            return
        for order in st.buffer_orders(bounds, pb.out_grid)[:2]:
            sim = _keep_simulator(pb, bounds, order)
            limit = _limit(best) if pb.objective == "seeks" else None
            for level in (0.0,):
                steps += _n_buffers(bounds)
                if steps > BOX_KEEP_STEPS and limit is None:
                    return  # without a limit every simulation runs to its end
                plan = _make(pb, "keep", bounds, order, True, level, limit, sim)
                if plan is not None and (best is None or pb.score(plan) < pb.score(best)):
                    best = plan
                    yield plan


def _read_seeks(pb: _Problem, bounds: st.Bounds) -> int:
    pairs = [AxisPairs(bb, gb) for bb, gb in zip(bounds, pb.in_grid.bounds)]
    read = side_cost(pairs, pb.itemsize, pb.layout[0] == "chunked", write=False)
    return read.opens + read.runs


def _limit(best: Plan | None, slack: float = 1.0) -> int | None:
    return None if best is None else int(best.cost.seeks * slack)


def _distinct_bounds(plans: Sequence[Plan]) -> list[Plan]:
    seen: set[int] = set()
    out = []
    for p in plans:
        if id(p.buffer_bounds) not in seen:
            seen.add(id(p.buffer_bounds))
            out.append(p)
    return out


def _min_mem(pb: _Problem) -> int:
    """The smallest budget any strategy can work in: one row plus the staging array."""
    row = min(pb.in_grid.block_shape[-1], pb.out_grid.block_shape[-1]) * pb.itemsize
    return row + pb.staging_bytes


def _validate(
    shape: Any, in_chunks: Any, out_chunks: Any, dtype: Any, max_mem: Any,
    strategy: str, layout: Any,
) -> _Problem:
    shape = normalize_shape(shape)
    in_grid = Grid(shape, normalize_chunks(in_chunks, shape, "in_chunks"))
    out_grid = Grid(shape, normalize_chunks(out_chunks, shape, "out_chunks"))
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise InvalidChunksError(f"dtype={dtype!r} is not a numpy dtype") from None
    if dt.itemsize == 0 or dt.hasobject:
        raise InvalidChunksError(f"dtype={dtype!r} has no fixed size; expected a numeric dtype")
    if strategy not in (*STRATEGIES, "auto"):
        raise InvalidChunksError(
            f"strategy={strategy!r} is unknown; expected one of {', '.join((*STRATEGIES, 'auto'))}"
        )
    layouts = (layout, layout) if isinstance(layout, str) else tuple(layout)
    if len(layouts) != 2 or any(x not in LAYOUTS for x in layouts):
        raise InvalidChunksError(
            f"layout={layout!r} is unknown; expected 'contiguous', 'chunked' or a pair of them"
        )
    return _Problem(in_grid, out_grid, dt, parse_bytes(max_mem), (layouts[0], layouts[1]))


def plan_resplit(
    shape: Sequence[int],
    in_chunks: ChunksLike,
    out_chunks: ChunksLike,
    dtype: Any,
    max_mem: int | str,
    strategy: str = "auto",
    layout: str | tuple[str, str] = "contiguous",
    *,
    objective: str | None = None,
    machine: Machine | None = None,
    warn: bool = True,
) -> Plan:
    """Plan the resplit of an array stored as ``in_chunks`` blocks into ``out_chunks`` blocks.

    Parameters
    ----------
    shape : tuple of int
        Shape of the whole array.
    in_chunks, out_chunks : tuple of int, or tuple of tuples of int
        Block shapes (edge blocks smaller), or dask-style block lengths per axis.
    dtype : numpy dtype or name
    max_mem : int or str
        Memory budget in bytes, or a string such as ``"4GiB"``.
    strategy : {"auto", "naive", "clustered", "multiple", "keep"}
        ``auto`` returns the cheapest strategy whose peak memory fits.
    layout : {"contiguous", "chunked"} or a pair (input layout, output layout)
        Block files accessed by contiguous runs, or a chunked store where a
        chunk touched is one access.
    objective : {"seconds", "seeks"}, optional
        What ``auto`` (and the ``keep`` search's final choice) minimises: predicted
        seconds on ``machine`` (seeks and memory break ties), or seeks alone (bytes
        and memory break ties), the paper's measure. By default Dask config's
        ``dask_io.objective`` ("seeks": the time model is not yet validated, see
        ``dask_io.yaml``).
    machine : Machine, optional
        I/O constants of the machine; by default the calibrated one in Dask config
        (``dask-io calibrate``), else :data:`dask_io.plan.timing.DEFAULT`.
    warn : bool
        Emit :class:`~dask_io.errors.ExcessiveIOWarning` when the ``auto`` plan costs
        more than 100 times the lower bound in seeks.

    Returns
    -------
    Plan
        With ``strategy``, ``buffer_shape``, ``cost``, ``seconds`` and ``operations()``.
        ``plan.alternatives`` maps every strategy to its plan, or to the reason it
        is infeasible.

    Examples
    --------
    >>> plan = plan_resplit((8, 8), (4, 4), (8, 8), "uint8", 64)
    >>> plan.strategy, plan.buffer_shape, (plan.cost.runs, plan.cost.opens)
    ('clustered', (4, 8), (6, 6))
    """
    start = time.perf_counter()
    pb = _validate(shape, in_chunks, out_chunks, dtype, max_mem, strategy, layout)
    objective = objective or current_objective()
    if objective not in OBJECTIVES:
        raise InvalidChunksError(
            f"objective={objective!r} is unknown; expected one of {', '.join(OBJECTIVES)}"
        )
    pb = replace(pb, machine=machine, objective=objective)
    needed = _min_mem(pb)
    if pb.max_mem < needed:
        raise InsufficientMemoryError(
            f"max_mem={format_bytes(pb.max_mem)} is below the smallest feasible buffer of "
            f"{format_bytes(needed)} (one row plus a {format_bytes(pb.staging_bytes)} staging "
            f"array) for in_chunks={pb.in_grid.block_shape}, out_chunks={pb.out_grid.block_shape}"
        )
    wanted = STRATEGIES if strategy == "auto" else (strategy,)
    plans: dict[str, Plan | None] = {}
    for name in ("naive", "clustered", "multiple"):
        if name in wanted or "keep" in wanted:
            plans[name] = _plan_simple(pb, name)
    if "keep" in wanted:
        plans["keep"] = _keep_family(pb, [plans[n] for n in ("naive", "clustered", "multiple")])
    feasible = {n: p for n, p in plans.items() if p is not None and n in wanted}
    if not feasible:
        raise InsufficientMemoryError(_infeasible_message(pb, strategy))
    chosen = min(feasible.values(), key=lambda p: (pb.score(p), STRATEGIES.index(p.strategy)))
    alternatives: dict[str, Plan | str] = {
        n: plans[n] or _infeasible_message(pb, n) for n in wanted
    }
    if warn and strategy == "auto" and chosen.cost.seeks > EXCESSIVE_RATIO * chosen.lower_bound:
        _warn_excessive(pb, chosen)
    return replace(chosen, alternatives=alternatives, planning_time=time.perf_counter() - start)


def memory_within(pb: _Problem, ratio: float = 2.0) -> int:
    """The least memory (to 1/16 of it, rounded up) at which a box partition keeping
    nothing costs at most ``ratio`` times the lower bound in seeks.

    An upper bound on what ``auto`` needs for the same (``auto`` searches those
    partitions too). The whole array in one buffer always reaches the bound.
    """
    goal = ratio * 2 * (pb.in_grid.nblocks + pb.out_grid.nblocks)
    seeks_pb = replace(pb, objective="seeks")

    def reaches(mem: int) -> bool:
        trial = replace(seeks_pb, max_mem=mem)
        boxes = search.best_boxes(trial.box_problem(), current_machine(), "seeks", count=1)
        if not boxes:
            return False
        made = _make(trial, "keep", boxes[0], _c_order(trial), keep=False)
        return made is not None and made.cost.seeks <= goal

    whole = math.prod(pb.in_grid.shape) * pb.itemsize + pb.staging_bytes
    lo, hi = pb.max_mem, pb.max_mem
    while hi < whole and not reaches(hi):
        lo, hi = hi, min(whole, hi * 2)
    while hi - lo > max(hi // 16, 1):
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return hi


def _warn_excessive(pb: _Problem, chosen: Plan) -> None:
    need = memory_within(pb)
    warnings.warn(
        f"max_mem={format_bytes(pb.max_mem)} forces {chosen.cost.seeks:,} seeks, "
        f"{chosen.cost.seeks / chosen.lower_bound:,.0f}x the lower bound of "
        f"{chosen.lower_bound:,}; max_mem={format_bytes(need)} would bring it within 2x",
        ExcessiveIOWarning,
        stacklevel=3,
    )


def _infeasible_message(pb: _Problem, strategy: str) -> str:
    isz = pb.itemsize
    if strategy == "naive":
        need = math.prod(pb.in_grid.block_shape) * isz + pb.staging_bytes
        what = "one input block"
    elif strategy == "multiple":
        need = math.prod(pb.out_grid.block_shape) * isz + pb.staging_bytes
        what = "one output block"
    elif strategy == "clustered":
        need = math.prod(pb.in_grid.block_shape) * isz + pb.staging_bytes
        what = "one input block"
    else:
        need = _min_mem(pb)
        what = "one row"
    return (
        f"max_mem={format_bytes(pb.max_mem)} is below the {format_bytes(need)} that strategy="
        f"{strategy!r} needs ({what} plus a {format_bytes(pb.staging_bytes)} staging array) for "
        f"in_chunks={pb.in_grid.block_shape}, out_chunks={pb.out_grid.block_shape}"
    )
