"""The distributed keep algorithm: cut one resplit into groups that workers run.

The paper leaves the distributed keep algorithm open (its §T). This module
closes it. It is pure (stdlib + numpy): it plans, the executors run.

The problem
-----------
An array of shape ``R`` stored as input blocks ``I`` is rewritten as output blocks
``O`` by ``W`` workers, each with a memory budget ``m``. Each worker runs the
sequential keep executor on a *group*: a box of the array. Three goals pull
against each other:

1. every input block is read exactly once (a chunked store charges a whole
   chunk for any part of it read);
2. every output block is written exactly once, whole, by one task (a chunked
   store charges a read-modify-write for a partial write, and two tasks writing
   parts of one chunk race);
3. enough groups that ``W`` workers are busy, each group's own keep plan fits
   ``m`` at the sequential lower bound (every block of the group accessed once,
   whole).

The algorithm
-------------
**Groups own inputs.** Group boundaries are cut only on input block
boundaries, so every input block lies in exactly one group and is read once
(goal 1, always). A cut that is *also* an output block boundary (a *clean* cut)
costs nothing more. A cut that is not splits the output blocks it crosses; those
outputs are *seams*.

**Seams are finished through one small hand-off.** A group writes the outputs
that lie wholly inside it straight to the target, whole. For a seam, each group
it crosses writes its *piece* (the intersection of the output block with the
group) to an intermediate store, whole, in one access; a finishing task then
reads the pieces (one access each) and writes the output block whole, once. The
extra operations are exactly ``2 x pieces`` accesses and ``2 x seam bytes``;
nothing is read twice from the source and nothing is written twice to the
target. The intermediate store exists only when there is at least one seam.
Pieces are kept in the group's memory like any output block by the group's keep
plan, since a piece is simply an output block of the group's sub-problem.

**Choosing the cuts.** Let ``P`` be the number of groups wanted: at least ``W``,
and at least ``ceil(array bytes / group cap)``. Per axis ``d`` the array is cut
into ``k_d`` parts; starting from ``k = (1, ..., 1)``, the greedy step raises by
one the ``k_d`` whose new cut set adds the fewest seam bytes (ties: the most
groups gained, then the slowest axis, whose slabs are contiguous in C order),
until ``prod(k) >= P`` or no axis can be cut further. For ``k_d`` parts the cut
positions are chosen near the equal split ``j R_d / k_d``: the nearest clean cut
within half a part, otherwise the nearest input boundary. Seam bytes are exact:
an output block is a seam when a non-clean cut lies strictly inside it on some
axis, so the non-seam volume is the product over axes of the lengths of
uncut output blocks.

**Checking the groups.** Each group sub-problem (its input chunks and its
output chunks clipped to the group, with seam pieces as edge blocks) is planned
by :func:`dask_io.plan.plan_resplit` under ``m``. If any group's plan reads an
input block twice, goal 1 is broken: ``P`` doubles and the cuts are chosen
again, whatever the seams cost. If the plan of the largest group (or of the
group with the most blocks) is otherwise above the sequential lower bound (a
partial write), ``P`` doubles only while the seam bytes of the finer grouping
stay below the extra bytes the coarse plan pays. Plans are made
lazily and identical sub-problems are planned once, so the executors can plan
each group on the worker that runs it.

**Finishing tasks** batch seams by the set of groups they depend on, up to ``m``
bytes of outputs per task (and at most ``1 / 2W`` of all seam bytes, so every
worker gets a share), so a batch starts as soon as its groups are done. A
finishing task reads the next seam's pieces while it writes the current one, so
its memory is at most two output blocks.

**Planning cost.** Cut positions are found by bisection among the free input
boundaries (``O(k log n)`` per axis for ``k`` parts of ``n`` boundaries), and the
doubling loop compares candidate groupings by their seam bytes computed from the
cuts alone; seams and their pieces are listed once, for the grouping chosen. A
1 TiB pancake-to-pencil resplit ((1, 8192, 8192) -> (8192, 256, 256), 4 GiB, 64
workers: 512 groups, 524 288 pieces) plans in about 3 s; the earlier
implementation (a linear scan per cut, seams rebuilt per candidate) did not
finish in 5 minutes.

**Balance.** Groups are equal boxes of the input, but their cost is not: a Zarr
target stores edge chunks at full size, so the group holding the array's far
edge writes more bytes than the others (in the 1024³ (200, 300, 350) case 688
rows of padded output against 512). With writes that go through the page cache
this made the two groups of that case take 10.2 s and 7.2 s. The executors now
write whole chunks and pieces with ``O_DIRECT`` (no page-cache pages), which
makes writing cheap enough that the two groups run within 3 % of each other
(7.6 s and 7.8 s, before further I/O changes), so the plan keeps ``W`` groups
where cutting finer would add seams (there, four groups would put 0.9 GiB
through the intermediate store instead of 0.4 GiB).

The result, :class:`GroupPlan`, is data: groups, seams, finishing batches and an
exact cost summary. :meth:`GroupPlan.simulate` assigns groups to ``W`` workers
(longest first) and reports per-worker operations and peak memory, so a plan for
1 TiB on 64 workers can be inspected without data.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

from dask_io.errors import InvalidChunksError
from dask_io.plan.grid import ChunksLike, Grid, normalize_chunks, normalize_shape
from dask_io.plan.ops import BlockIndex, Region
from dask_io.plan.planner import Plan, plan_resplit
from dask_io.plan.units import format_bytes, parse_bytes

__all__ = ["Group", "GroupPlan", "Seam", "plan_groups"]

IntArray = np.ndarray


@dataclass(frozen=True)
class Group:
    """A box of the array that one task rewrites with the sequential executor.

    ``in_blocks`` and ``out_blocks`` are, per axis, the half-open ranges of input
    and output block indices the group touches. The group's sub-problem has the
    input chunks ``in_chunks`` and the output chunks ``out_chunks`` (the output
    grid clipped to the group: a clipped block is a seam piece).
    """

    index: int
    region: Region
    in_blocks: tuple[tuple[int, int], ...]
    out_blocks: tuple[tuple[int, int], ...]
    in_chunks: tuple[tuple[int, ...], ...]
    out_chunks: tuple[tuple[int, ...], ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(b - a for a, b in self.region)

    @property
    def origin(self) -> tuple[int, ...]:
        return tuple(a for a, _ in self.region)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def input_blocks(self) -> Iterator[BlockIndex]:
        """Global indices of the input blocks of this group, in C order."""
        for idx in np.ndindex(*(b - a for a, b in self.in_blocks)):
            yield tuple(int(i) + a for i, (a, _) in zip(idx, self.in_blocks, strict=True))

    def local_out_block(self, local: BlockIndex) -> BlockIndex:
        """The global output block of a block of the group's output sub-grid."""
        return tuple(int(i) + a for i, (a, _) in zip(local, self.out_blocks, strict=True))

    def plan(
        self, dtype: Any, max_mem: int, layout: Any = "chunked", strategy: str = "auto"
    ) -> Plan:
        """The sequential plan of this group's sub-problem, in group coordinates.

        Plans are cached per process (sub-problems repeat across groups and jobs).
        """
        pair = (layout, layout) if isinstance(layout, str) else tuple(layout)
        return _plan_cached(
            self.shape,
            self.in_chunks,
            self.out_chunks,
            np.dtype(dtype).str,
            int(max_mem),
            pair,
            strategy,
        )


@dataclass(frozen=True)
class Seam:
    """An output block cut by group boundaries: ``pieces`` are (group, region) pairs."""

    block: BlockIndex
    region: Region
    pieces: tuple[tuple[int, Region], ...]

    @property
    def groups(self) -> tuple[int, ...]:
        return tuple(sorted(g for g, _ in self.pieces))


@dataclass
class GroupPlan:
    """A resplit cut into groups, with the seams that join them. Build with :func:`plan_groups`."""

    in_grid: Grid
    out_grid: Grid
    dtype: np.dtype[Any]
    max_mem: int
    layout: tuple[str, str]
    cuts: tuple[tuple[int, ...], ...]
    groups: tuple[Group, ...]
    seams: tuple[Seam, ...]
    batches: tuple[tuple[int, ...], ...]
    plan_cache: dict[Any, Plan] = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.in_grid.shape

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    @cached_property
    def seam_of_block(self) -> dict[BlockIndex, int]:
        """Output block index -> index of its seam, for every seam."""
        return {s.block: i for i, s in enumerate(self.seams)}

    @property
    def n_pieces(self) -> int:
        return sum(len(s.pieces) for s in self.seams)

    @property
    def seam_bytes(self) -> int:
        """Bytes of the output blocks finished through the intermediate store."""
        isz = self.dtype.itemsize
        return sum(_size(s.region) for s in self.seams) * isz

    @property
    def needs_intermediate(self) -> bool:
        return bool(self.seams)

    def plan_of(self, group: Group) -> Plan:
        """The sequential plan of ``group`` (made on first use, cached per sub-problem)."""
        key = (group.in_chunks, group.out_chunks)
        if key not in self.plan_cache:
            self.plan_cache[key] = group.plan(self.dtype, self.max_mem, self.layout)
        return self.plan_cache[key]

    @property
    def peak_mem(self) -> int:
        """The largest peak memory of any task (group or finishing batch)."""
        peaks = [self.plan_of(g).cost.peak_mem for g in self.groups]
        peaks += [self.batch_bytes(b) for b in self.batches]
        return max(peaks)

    def batch_bytes(self, batch: Sequence[int]) -> int:
        """Memory of a finishing task: its largest output block, twice when the batch
        has more than one (the next seam's pieces are read while one is written)."""
        isz = self.dtype.itemsize
        largest = max(_size(self.seams[i].region) for i in batch) * isz
        return largest * min(2, len(batch))

    def summary(self) -> dict[str, int]:
        """Exact totals of the distributed plan, in operations and bytes.

        ``reads``/``writes`` are source and target accesses (the sum of the groups'
        plans plus the finishing writes); ``piece_writes``/``piece_reads`` are the
        intermediate accesses; ``extra_bytes`` the intermediate bytes moved.
        """
        reads = writes = 0
        for g in self.groups:
            c = self.plan_of(g).cost
            reads += c.read_runs
            writes += c.write_runs
        pieces = self.n_pieces
        return {
            "groups": len(self.groups),
            "seams": len(self.seams),
            "pieces": pieces,
            "finish_tasks": len(self.batches),
            "reads": reads,
            "writes": writes - pieces + len(self.seams),
            "piece_writes": pieces,
            "piece_reads": pieces,
            "extra_bytes": 2 * self.seam_bytes,
            "peak_mem": self.peak_mem,
        }

    def simulate(self, n_workers: int) -> list[dict[str, int]]:
        """Assign tasks to ``n_workers`` (longest first) and report each worker's load.

        Returns one dict per worker: ``tasks``, ``reads``, ``writes`` (target and
        intermediate), ``bytes`` moved and ``peak_mem`` (the largest task's peak).
        """
        loads = [dict(tasks=0, reads=0, writes=0, bytes=0, peak_mem=0) for _ in range(n_workers)]
        for cost in sorted(self._task_costs(), key=lambda c: -c["bytes"]):
            w = min(loads, key=lambda x: x["bytes"])
            w["tasks"] += 1
            for key in ("reads", "writes", "bytes"):
                w[key] += cost[key]
            w["peak_mem"] = max(w["peak_mem"], cost["peak_mem"])
        return loads

    def _task_costs(self) -> Iterator[dict[str, int]]:
        isz = self.dtype.itemsize
        for g in self.groups:
            c = self.plan_of(g).cost
            yield dict(
                reads=c.read_runs,
                writes=c.write_runs,
                bytes=c.bytes_read + c.bytes_written,
                peak_mem=c.peak_mem,
            )
        for b in self.batches:
            n = sum(_size(self.seams[i].region) for i in b) * isz
            yield dict(
                reads=sum(len(self.seams[i].pieces) for i in b),
                writes=len(b),
                bytes=2 * n,
                peak_mem=self.batch_bytes(b),
            )

    def __repr__(self) -> str:
        return (
            f"<GroupPlan groups={len(self.groups)} seams={len(self.seams)} "
            f"pieces={self.n_pieces} intermediate={format_bytes(self.seam_bytes)} "
            f"peak_mem={format_bytes(self.peak_mem)}>"
        )


@lru_cache(maxsize=512)
def _plan_cached(
    shape: tuple[int, ...],
    in_chunks: tuple[tuple[int, ...], ...],
    out_chunks: tuple[tuple[int, ...], ...],
    dtype: str,
    max_mem: int,
    layout: tuple[str, str],
    strategy: str,
) -> Plan:
    return plan_resplit(
        shape, in_chunks, out_chunks, dtype, max_mem, strategy=strategy, layout=layout,
        warn=False,  # one group of many: the job's own plan says it once
    )


# -- cut selection -------------------------------------------------------------


def _size(region: Region) -> int:
    return math.prod(b - a for a, b in region)


def _place_cuts(in_b: IntArray, out_b: IntArray, parts: int) -> tuple[int, ...]:
    """Interior cut positions on one axis for ``parts`` parts (fewer if impossible).

    Cut ``j`` goes to the free clean cut nearest ``j R / parts`` if one lies within
    half a part, otherwise to the free input boundary nearest it (ties: the lower).
    Nearest-free searches bisect the sorted candidates: O(parts log n), not O(parts n).
    """
    extent = int(in_b[-1])
    candidates: list[int] = np.asarray(in_b[1:-1], dtype=np.int64).tolist()
    if parts <= 1 or not candidates:
        return ()
    clean: list[int] = np.intersect1d(in_b[1:-1], out_b).astype(np.int64).tolist()
    half = extent / parts / 2
    chosen: set[int] = set()
    for j in range(1, parts):
        if len(chosen) == len(candidates):
            break
        ideal = j * extent / parts
        pick = _nearest_free(clean, ideal, chosen)
        if pick is None or abs(pick - ideal) > half:
            pick = _nearest_free(candidates, ideal, chosen)
        assert pick is not None
        chosen.add(pick)
    return tuple(sorted(chosen))


def _nearest_free(values: Sequence[int], target: float, taken: set[int]) -> int | None:
    """The element of sorted ``values`` not in ``taken`` nearest ``target`` (ties: lower)."""
    i = bisect.bisect_left(values, target)
    left, right = i - 1, i
    while left >= 0 and values[left] in taken:
        left -= 1
    while right < len(values) and values[right] in taken:
        right += 1
    best: int | None = None
    for k in (left, right):
        if 0 <= k < len(values):
            c = values[k]
            if best is None or (abs(c - target), c) < (abs(best - target), best):
                best = c
    return best


def _cut_outputs(out_b: IntArray, cuts: Sequence[int]) -> IntArray:
    """Boolean mask of the output blocks of one axis that a cut lies strictly inside."""
    mask = np.zeros(len(out_b) - 1, dtype=bool)
    for c in cuts:
        j = int(np.searchsorted(out_b, c, side="right")) - 1
        if out_b[j] != c:
            mask[j] = True
    return mask


def _seam_elems(out_grid: Grid, cuts: Sequence[Sequence[int]]) -> int:
    clean = 1
    for b, c in zip(out_grid.bounds, cuts, strict=True):
        lengths = np.diff(b)
        clean *= int(lengths[~_cut_outputs(b, c)].sum())
    return math.prod(out_grid.shape) - clean


def _choose_cuts(in_grid: Grid, out_grid: Grid, wanted: int) -> tuple[tuple[int, ...], ...]:
    ndim = in_grid.ndim
    parts = [1] * ndim
    cuts: list[tuple[int, ...]] = [()] * ndim
    seam = 0
    while (count := math.prod(len(c) + 1 for c in cuts)) < wanted:
        best: tuple[Any, ...] | None = None
        for d in range(ndim):
            if len(cuts[d]) >= in_grid.numblocks[d] - 1:
                continue
            trial = _place_cuts(in_grid.bounds[d], out_grid.bounds[d], parts[d] + 1)
            if len(trial) <= len(cuts[d]):
                continue
            new = [*cuts[:d], trial, *cuts[d + 1 :]]
            gain = math.prod(len(c) + 1 for c in new)
            added = _seam_elems(out_grid, new) - seam
            score = (added / math.log(gain / count), -gain, d, added)
            if best is None or score < best[0]:
                best = (score, d, trial)
        if best is None:
            break
        score, d, trial = best
        seam += score[3]
        parts[d] += 1
        cuts[d] = trial
    return tuple(cuts)


# -- building groups and seams ---------------------------------------------------


def _axis_parts(bounds: IntArray, cuts: Sequence[int]) -> list[tuple[int, int]]:
    edges = [0, *cuts, int(bounds[-1])]
    return list(itertools.pairwise(edges))


def _block_range(bounds: IntArray, lo: int, hi: int) -> tuple[int, int]:
    first = int(np.searchsorted(bounds, lo, side="right")) - 1
    last = int(np.searchsorted(bounds, hi, side="left"))
    return first, last


def _clipped_chunks(bounds: IntArray, lo: int, hi: int) -> tuple[int, ...]:
    i = int(np.searchsorted(bounds, lo, side="right"))
    k = int(np.searchsorted(bounds, hi, side="left"))
    edges = [lo, *(int(x) for x in bounds[i:k]), hi]
    return tuple(b - a for a, b in itertools.pairwise(edges))


def _make_groups(in_grid: Grid, out_grid: Grid, cuts: Sequence[Sequence[int]]) -> list[Group]:
    per_axis = [_axis_parts(b, c) for b, c in zip(in_grid.bounds, cuts, strict=True)]
    groups = []
    for n, idx in enumerate(np.ndindex(*(len(p) for p in per_axis))):
        region = tuple(per_axis[d][i] for d, i in enumerate(idx))
        groups.append(
            Group(
                index=n,
                region=region,
                in_blocks=tuple(
                    _block_range(b, lo, hi)
                    for b, (lo, hi) in zip(in_grid.bounds, region, strict=True)
                ),
                out_blocks=tuple(
                    _block_range(b, lo, hi)
                    for b, (lo, hi) in zip(out_grid.bounds, region, strict=True)
                ),
                in_chunks=tuple(
                    _clipped_chunks(b, lo, hi)
                    for b, (lo, hi) in zip(in_grid.bounds, region, strict=True)
                ),
                out_chunks=tuple(
                    _clipped_chunks(b, lo, hi)
                    for b, (lo, hi) in zip(out_grid.bounds, region, strict=True)
                ),
            )
        )
    return groups


def _make_seams(
    out_grid: Grid, cuts: Sequence[Sequence[int]], groups: Sequence[Group]
) -> list[Seam]:
    """Every output block a non-clean cut crosses, with its pieces (group, region).

    Per axis, each group's output blocks are listed once with their clipped extents
    and whether a cut crosses them; a group's pieces are the product of those lists
    (no per-block region arithmetic).
    """
    masks = [_cut_outputs(b, c) for b, c in zip(out_grid.bounds, cuts, strict=True)]
    bounds = [[int(x) for x in b] for b in out_grid.bounds]
    pieces: dict[BlockIndex, list[tuple[int, Region]]] = {}
    for g in groups:
        per_axis = [
            [(j, (max(bd[j], lo), min(bd[j + 1], hi)), bool(m[j])) for j in range(a, b)]
            for bd, m, (a, b), (lo, hi) in zip(bounds, masks, g.out_blocks, g.region, strict=True)
        ]
        for combo in itertools.product(*per_axis):
            if any(cut for _, _, cut in combo):
                blk = tuple(j for j, _, _ in combo)
                pieces.setdefault(blk, []).append((g.index, tuple(r for _, r, _ in combo)))
    return [Seam(blk, out_grid.block_region(blk), tuple(p)) for blk, p in sorted(pieces.items())]


def _make_batches(
    seams: Sequence[Seam], itemsize: int, max_mem: int, n_workers: int
) -> list[tuple[int, ...]]:
    total = sum(_size(s.region) for s in seams) * itemsize
    max_mem = max(1, min(max_mem, -(-total // (2 * n_workers))))  # every worker gets some
    by_deps: dict[tuple[int, ...], list[int]] = {}
    for i, s in enumerate(seams):
        by_deps.setdefault(s.groups, []).append(i)
    batches: list[tuple[int, ...]] = []
    for members in by_deps.values():
        current: list[int] = []
        total = 0
        for i in members:
            nbytes = _size(seams[i].region) * itemsize
            if current and total + nbytes > max_mem:
                batches.append(tuple(current))
                current, total = [], 0
            current.append(i)
            total += nbytes
        batches.append(tuple(current))
    return batches


# -- planning -----------------------------------------------------------------------


def _above_bound(plan: Plan) -> int:
    """Extra bytes the plan moves beyond reading and writing every block once, whole."""
    c = plan.cost
    nbytes = math.prod(plan.shape) * plan.dtype.itemsize
    over_seeks = c.seeks > plan.lower_bound
    extra = c.bytes_read + c.bytes_written - 2 * nbytes
    return max(extra, 0) + (1 if over_seeks and extra <= 0 else 0)


def _plan_groups_once(
    in_grid: Grid,
    out_grid: Grid,
    dt: np.dtype[Any],
    mem: int,
    layout: tuple[str, str],
    wanted: int,
    cache: dict[Any, Plan],
) -> GroupPlan:
    """A candidate grouping: cuts and groups, no seams yet (see :func:`_with_seams`)."""
    cuts = _choose_cuts(in_grid, out_grid, wanted)
    groups = _make_groups(in_grid, out_grid, cuts)
    return GroupPlan(in_grid, out_grid, dt, mem, layout, cuts, tuple(groups), (), (), cache)


def _with_seams(gp: GroupPlan, n_workers: int) -> GroupPlan:
    """The chosen grouping with its seams and finishing batches."""
    seams = _make_seams(gp.out_grid, gp.cuts, gp.groups)
    batches = _make_batches(seams, gp.dtype.itemsize, gp.max_mem, n_workers)
    return GroupPlan(
        gp.in_grid,
        gp.out_grid,
        gp.dtype,
        gp.max_mem,
        gp.layout,
        gp.cuts,
        gp.groups,
        tuple(seams),
        tuple(batches),
        gp.plan_cache,
    )


def _seam_bytes(gp: GroupPlan) -> int:
    """Seam bytes of a candidate, from its cuts (equal to ``seam_bytes`` once built)."""
    return _seam_elems(gp.out_grid, gp.cuts) * gp.dtype.itemsize


def _representatives(groups: Sequence[Group]) -> list[Group]:
    """The largest group and the group with the most blocks: the hardest to fit."""

    def nblocks(g: Group) -> int:
        return math.prod(len(c) for c in g.in_chunks) + math.prod(len(c) for c in g.out_chunks)

    return list(
        {g.index: g for g in (max(groups, key=lambda g: g.size), max(groups, key=nblocks))}.values()
    )


def plan_groups(
    shape: Sequence[int],
    in_chunks: ChunksLike,
    out_chunks: ChunksLike,
    dtype: Any,
    max_mem: int | str,
    n_workers: int = 1,
    group_cap: int | str | None = None,
    layout: str | tuple[str, str] = "chunked",
) -> GroupPlan:
    """Cut a resplit into groups for ``n_workers`` workers of ``max_mem`` each.

    Parameters
    ----------
    shape : tuple of int
    in_chunks, out_chunks : tuple of int, or tuple of tuples of int
        Input and output block shapes, or dask-style block lengths per axis.
    dtype : numpy dtype or name
    max_mem : int or str
        Memory budget of one task (one worker thread).
    n_workers : int
        Parallel task slots; at least this many groups are made when possible.
    group_cap : int or str, optional
        Largest group wanted, in bytes (for example when a group's inputs must
        be held in memory at once). Default: no cap beyond what ``max_mem`` needs.
    layout : {"chunked", "contiguous"} or a pair
        The cost model of the sequential plans (see :func:`plan_resplit`).

    Returns
    -------
    GroupPlan

    Examples
    --------
    >>> gp = plan_groups((8, 8), (2, 8), (4, 4), "uint8", 1024, n_workers=2)
    >>> len(gp.groups), len(gp.seams)
    (2, 0)
    """
    shp = normalize_shape(shape)
    in_grid = Grid(shp, normalize_chunks(in_chunks, shp, "in_chunks"))
    out_grid = Grid(shp, normalize_chunks(out_chunks, shp, "out_chunks"))
    if not isinstance(n_workers, int) or n_workers < 1:
        raise InvalidChunksError(f"n_workers={n_workers!r} must be a positive integer")
    dt = np.dtype(dtype)
    mem = parse_bytes(max_mem)
    nbytes = math.prod(shp) * dt.itemsize
    wanted = n_workers
    if group_cap is not None:
        wanted = max(wanted, -(-nbytes // parse_bytes(group_cap, "group_cap")))
    layouts = (layout, layout) if isinstance(layout, str) else tuple(layout)
    if len(layouts) != 2:
        raise InvalidChunksError(f"layout={layout!r} must be a layout name or a pair of them")
    pair = (str(layouts[0]), str(layouts[1]))
    cache: dict[Any, Plan] = {}
    best = _plan_groups_once(in_grid, out_grid, dt, mem, pair, wanted, cache)
    while len(best.groups) < in_grid.nblocks:
        rereads = _rereads(best)
        over = sum(_above_bound(best.plan_of(g)) for g in _representatives(best.groups))
        if not rereads and over == 0:
            break
        finer = _plan_groups_once(in_grid, out_grid, dt, mem, pair, 2 * len(best.groups), cache)
        if len(finer.groups) <= len(best.groups):
            break
        if not rereads and 2 * (_seam_bytes(finer) - _seam_bytes(best)) >= over:
            break
        best = finer
    return _with_seams(best, n_workers)


def _rereads(gp: GroupPlan) -> bool:
    """Whether some group's plan reads an input block more than once (largest first)."""
    for g in sorted(gp.groups, key=lambda g: -g.size):
        if (
            gp.plan_of(g).cost.bytes_read - gp.plan_of(g).cost.rmw_bytes
            > g.size * gp.dtype.itemsize
        ):
            return True
    return False
