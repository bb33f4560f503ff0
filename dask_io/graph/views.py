"""What the value of a task is, in terms of the source arrays it copies.

Dask expresses rechunking, slicing, ``concatenate`` and ``block`` as tasks that only
move data: aliases, ``getitem`` with basic slices, and ``concatenate_shaped``. A
:class:`View` describes the value of such a task as a mosaic of boxes of source
arrays, so a sink can be traced back to the regions of the files it copies, whatever
chain of data-movement layers lies between them. Anything else (arithmetic,
fancy indexing, reductions) has no view: the pass leaves it to Dask.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from dask._task_spec import Alias, DataNode, List, Task, TaskRef
from dask.array.chunk import getitem as chunk_getitem
from dask.array.core import concatenate_shaped

Box = tuple[tuple[int, int], ...]
Key = Hashable


@dataclass(frozen=True, slots=True)
class Piece:
    """``box`` of a value (value coordinates) is ``source``'s box starting at ``start``."""

    box: Box
    source: int
    start: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class View:
    """A value of ``shape`` made of ``pieces`` that tile it."""

    shape: tuple[int, ...]
    pieces: tuple[Piece, ...]


_GETITEM = (chunk_getitem, operator.getitem)


def _ref(node: Any) -> Key | None:
    """The key a task argument refers to, or None when it is not a plain reference."""
    if isinstance(node, Alias):
        return node.target
    if isinstance(node, TaskRef):
        return node.key
    return None


class Resolver:
    """Find the :class:`View` of graph keys, memoized.

    Parameters
    ----------
    lookup : callable
        ``lookup(key)`` returns the task of ``key`` (a GraphNode or a legacy value),
        or raises KeyError when ``key`` is not in a data-movement layer.
    source_view : callable
        ``source_view(key)`` returns the View of a key of a source layer, or None.
    """

    def __init__(
        self,
        lookup: Callable[[Key], Any],
        source_view: Callable[[Key], View | None],
    ) -> None:
        self._lookup = lookup
        self._source_view = source_view
        self._memo: dict[Key, View | None] = {}

    def resolve(self, key: Key) -> View | None:
        """The view of ``key``, or None when its value is not a copy of sources."""
        memo = self._memo
        if key in memo:
            return memo[key]
        view = self._source_view(key)
        if view is None:
            try:
                node = self._lookup(key)
            except KeyError:
                node = None
            view = None if node is None else self._interpret(node)
        memo[key] = view
        return view

    def _interpret(self, node: Any) -> View | None:
        target = _ref(node)
        if target is not None:
            return self.resolve(target)
        if isinstance(node, tuple) and node and isinstance(node[0], str):
            return self.resolve(node)  # legacy alias: a value that is another key
        if not isinstance(node, Task) or node.kwargs:
            return None
        if node.func in _GETITEM and len(node.args) == 2:
            return self._getitem(node.args[0], node.args[1])
        if node.func is concatenate_shaped and len(node.args) == 2:
            return self._concatenate(node.args[0], node.args[1])
        return None

    def _getitem(self, arg: Any, index: Any) -> View | None:
        key = _ref(arg)
        if key is None:
            return None
        view = self.resolve(key)
        if view is None:
            return None
        if isinstance(index, DataNode):
            index = index.value
        box = basic_box(index, view.shape)
        return None if box is None else sub_view(view, box)

    def _concatenate(self, arrays: Any, shape: Any) -> View | None:
        if isinstance(shape, DataNode):
            shape = shape.value
        if not isinstance(arrays, List):
            return None
        keys = [_ref(a) for a in arrays.args]
        if any(k is None for k in keys):
            return None
        views = [self.resolve(k) for k in keys]
        if any(v is None for v in views):
            return None
        return concatenate_views(views, tuple(int(n) for n in shape))  # type: ignore[arg-type]


def basic_box(index: Any, shape: Sequence[int]) -> Box | None:
    """The box that ``value[index]`` selects, for a tuple of plain slices; else None.

    >>> basic_box((slice(1, 3), slice(None)), (4, 5))
    ((1, 3), (0, 5))
    >>> basic_box((slice(0, 4, 2),), (4,)) is None
    True
    """
    if not isinstance(index, tuple) or len(index) != len(shape):
        return None
    box = []
    for s, n in zip(index, shape):
        if not isinstance(s, slice) or s.step not in (None, 1):
            return None
        start = 0 if s.start is None else s.start
        stop = n if s.stop is None else s.stop
        if not (_is_int(start) and _is_int(stop)):
            return None
        start, stop = int(start), int(stop)
        if start < 0 or stop < 0:
            return None
        stop = min(stop, n)
        if start > stop:
            return None
        box.append((start, stop))
    return tuple(box)


def sub_view(view: View, box: Box) -> View:
    """The view of ``box`` of ``view``'s value."""
    pieces = []
    origin = [a for a, _ in box]
    for p in view.pieces:
        common = tuple((max(a, c), min(b, d)) for (a, b), (c, d) in zip(p.box, box))
        if any(lo >= hi for lo, hi in common):
            continue
        start = tuple(s + lo - a for s, (lo, _), (a, _) in zip(p.start, common, p.box))
        local = tuple((lo - o, hi - o) for (lo, hi), o in zip(common, origin))
        pieces.append(Piece(local, p.source, start))
    return View(tuple(b - a for a, b in box), tuple(pieces))


def concatenate_views(views: Sequence[View], grid: tuple[int, ...]) -> View | None:
    """The view of the C-order arrangement of ``views`` on a block grid of shape ``grid``.

    Returns None when the views do not line up (a row of blocks of unequal heights).
    """
    ndim = len(grid)
    n = 1
    for g in grid:
        n *= g
    if len(views) != n or any(len(v.shape) != ndim for v in views):
        return None
    extents: list[list[int | None]] = [[None] * g for g in grid]
    position = [0] * ndim
    for v in views:
        for d in range(ndim):
            seen = extents[d][position[d]]
            if seen is None:
                extents[d][position[d]] = v.shape[d]
            elif seen != v.shape[d]:
                return None
        _advance(position, grid)
    offsets = [_cumsum(e) for e in extents]  # type: ignore[arg-type]
    pieces = []
    position = [0] * ndim
    for v in views:
        shift = [offsets[d][position[d]] for d in range(ndim)]
        for p in v.pieces:
            box = tuple((a + s, b + s) for (a, b), s in zip(p.box, shift))
            pieces.append(Piece(box, p.source, p.start))
        _advance(position, grid)
    shape = tuple(o[-1] for o in offsets)
    return View(shape, tuple(pieces))


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _advance(position: list[int], grid: tuple[int, ...]) -> None:
    for d in range(len(grid) - 1, -1, -1):
        position[d] += 1
        if position[d] < grid[d]:
            return
        position[d] = 0


def _cumsum(values: Sequence[int]) -> list[int]:
    out = [0]
    for v in values:
        out.append(out[-1] + v)
    return out
