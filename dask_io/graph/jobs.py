"""Turn the copies a graph's sinks make into resplit problems the planner can solve.

A :class:`Job` is one virtual array: boxes of it come from source arrays and go to
target arrays, each by a translation. Its input grid holds the boundaries of the
sources and of their storage blocks (a contiguous file is one block, a Zarr array
or a chunked HDF5 dataset is its chunks); its output grid the same for the targets.
Every block of either grid then lies in one array, so each operation of a plan maps
to one read or one write of one array.

The virtual coordinates are those of the only source (split), else of the only
target (merge), else of the one dask array that every stored array is a slice of
(a resplit stored block by block), else of each stored dask array in turn.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dask_io.graph.handles import ArrayHandle
from dask_io.graph.recognize import Atom

Key = Hashable
Box = tuple[tuple[int, int], ...]
MAX_CELLS = 2_000_000


@dataclass
class Groups:
    """Disjoint boxes of the virtual array, each one array placed by a translation."""

    bounds: tuple[list[int], ...]
    cell_group: np.ndarray
    members: list[tuple[int, tuple[int, ...]]]  # (handle, offset: array coord - virtual coord)
    boxes: list[Box]

    def locate(self, region: Box) -> tuple[int, tuple[int, ...]]:
        """The (handle, offset) of the group that holds ``region``."""
        cell = tuple(bisect.bisect_right(b, lo) - 1 for b, (lo, _) in zip(self.bounds, region))
        return self.members[int(self.cell_group[cell])]


@dataclass
class Job:
    """One resplit: a virtual array, its input and output grids, and where boxes live."""

    shape: tuple[int, ...]
    in_chunks: tuple[tuple[int, ...], ...]
    out_chunks: tuple[tuple[int, ...], ...]
    dtype: np.dtype[Any]
    layout: tuple[str, str]
    sources: Groups
    targets: Groups
    keys: list[Key] = field(default_factory=list)


def build_jobs(atoms: Sequence[Atom], handles: Sequence[ArrayHandle]) -> list[Job]:
    """Group ``atoms`` into jobs; atoms that fit no job are left out (Dask keeps them)."""
    if not atoms:
        return []
    if _overlapping_io(atoms, handles):
        return []
    sources = {a.source for a in atoms}
    targets = {a.target for a in atoms}
    if len(sources) == 1:
        job = make_job(atoms, handles, lambda a: a.src)
        if job is not None:
            return [job]
    if len(targets) == 1:
        job = make_job(atoms, handles, lambda a: a.dst)
        if job is not None:
            return [job]
    roots = {a.root[0] if a.root else None for a in atoms}
    if len(roots) == 1 and None not in roots:  # slices of one dask array, stored apart
        job = make_job(atoms, handles, lambda a: a.root[1])
        if job is not None:
            return [job]
    by_layer: dict[str, list[Atom]] = defaultdict(list)
    for a in atoms:
        by_layer[a.layer].append(a)
    jobs = []
    for layer in sorted(by_layer):
        job = make_job(by_layer[layer], handles, lambda a: a.arr)
        if job is not None:
            jobs.append(job)
    return jobs


def _overlapping_io(atoms: Sequence[Atom], handles: Sequence[ArrayHandle]) -> bool:
    """Whether an array is both read and written (an in-place update: left to Dask)."""
    read = {handles[a.source].identity for a in atoms}
    return any(handles[a.target].identity in read for a in atoms)


def make_job(atoms: Sequence[Atom], handles: Sequence[ArrayHandle], coords: Any) -> Job | None:
    """A job over ``atoms`` in the coordinates ``coords(atom)`` gives, or None if they
    do not tile a box exactly once, or sources disagree on dtype."""
    starts = [coords(a) for a in atoms]
    ndim = len(starts[0])
    lo = tuple(min(s[d] for s in starts) for d in range(ndim))
    hi = tuple(max(s[d] + a.extent[d] for s, a in zip(starts, atoms)) for d in range(ndim))
    shape = tuple(h - low for h, low in zip(hi, lo))
    vboxes = [tuple((s[d] - lo[d], s[d] - lo[d] + a.extent[d]) for d in range(ndim))
              for s, a in zip(starts, atoms)]
    if not _tiles(vboxes, shape):
        return None
    dtypes = {handles[a.source].dtype for a in atoms}
    if len(dtypes) != 1:
        return None
    src_members = [(a.source, _offset(a.src, v)) for a, v in zip(atoms, vboxes)]
    tgt_members = [(a.target, _offset(a.dst, v)) for a, v in zip(atoms, vboxes)]
    sources = _groups(vboxes, src_members, shape)
    targets = _groups(vboxes, tgt_members, shape)
    if sources is None or targets is None:
        return None
    in_chunks = _grid(sources, handles, shape)
    out_chunks = _grid(targets, handles, shape)
    layout = (_layout(sources, handles), _layout(targets, handles))
    keys = list(dict.fromkeys(k for a in atoms for k in a.keys))
    return Job(shape, in_chunks, out_chunks, dtypes.pop(), layout, sources, targets, keys)


def _offset(start: tuple[int, ...], vbox: Box) -> tuple[int, ...]:
    return tuple(s - a for s, (a, _) in zip(start, vbox))


def _volume(box: Box) -> int:
    return math.prod(b - a for a, b in box)


def _refined(boxes: Sequence[Box], shape: tuple[int, ...]) -> tuple[list[int], ...]:
    bounds = []
    for d in range(len(shape)):
        values = {0, shape[d]}
        for box in boxes:
            values.update(box[d])
        bounds.append(sorted(values))
    return tuple(bounds)


def _cell_slices(box: Box, bounds: tuple[list[int], ...]) -> tuple[slice, ...]:
    return tuple(
        slice(bisect.bisect_left(b, lo), bisect.bisect_left(b, hi)) for b, (lo, hi) in zip(bounds, box)
    )


def _tiles(boxes: Sequence[Box], shape: tuple[int, ...]) -> bool:
    """Whether ``boxes`` cover the box of ``shape`` exactly once."""
    if sum(_volume(b) for b in boxes) != math.prod(shape):
        return False
    bounds = _refined(boxes, shape)
    cells = math.prod(len(b) - 1 for b in bounds)
    if cells > MAX_CELLS:
        return False
    count = np.zeros([len(b) - 1 for b in bounds], np.int32)
    for box in boxes:
        count[_cell_slices(box, bounds)] += 1
    return bool((count == 1).all())


def _groups(
    vboxes: Sequence[Box], members: Sequence[tuple[int, tuple[int, ...]]], shape: tuple[int, ...]
) -> Groups | None:
    """Merge the boxes that share an array and translation; None unless the merged
    boxes are disjoint boxes themselves."""
    ndim = len(shape)
    merged: dict[tuple[int, tuple[int, ...]], list[list[int]]] = {}
    volume: dict[tuple[int, tuple[int, ...]], int] = defaultdict(int)
    for box, m in zip(vboxes, members):
        volume[m] += _volume(box)
        cur = merged.get(m)
        if cur is None:
            merged[m] = [[a for a, _ in box], [b for _, b in box]]
        else:
            for d in range(ndim):
                cur[0][d] = min(cur[0][d], box[d][0])
                cur[1][d] = max(cur[1][d], box[d][1])
    order = list(merged)
    boxes = [tuple(zip(merged[m][0], merged[m][1])) for m in order]
    if any(_volume(b) != volume[m] for b, m in zip(boxes, order)):
        return None
    bounds = _refined(boxes, shape)
    cell_group = np.full([len(b) - 1 for b in bounds], -1, np.int64)
    for i, box in enumerate(boxes):
        cell_group[_cell_slices(box, bounds)] = i
    return Groups(bounds, cell_group, order, boxes)


def _grid(groups: Groups, handles: Sequence[ArrayHandle], shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Per axis block lengths: group boundaries plus the storage chunks of each array."""
    bounds = [set(b) for b in groups.bounds]
    for (handle, offset), box in zip(groups.members, groups.boxes):
        chunks = handles[handle].chunks
        if chunks is None:
            continue
        for d, ((lo, hi), c, off) in enumerate(zip(box, chunks, offset)):
            first = -(-(lo + off) // c) * c  # the first chunk boundary at or after lo
            bounds[d].update(range(first - off, hi, c))
    out = []
    for d in range(len(shape)):
        b = sorted(x for x in bounds[d] if 0 <= x <= shape[d])
        out.append(tuple(y - x for x, y in itertools.pairwise(b)))
    return tuple(out)


def _layout(groups: Groups, handles: Sequence[ArrayHandle]) -> str:
    layouts = {handles[h].layout for h, _ in groups.members}
    return "chunked" if "chunked" in layouts else "contiguous"
