"""Recognition at the level of layers: what a whole dask array is, in boxes of sources.

Interpreting every task of a large rechunk (tens of thousands of ``getitem`` and
``concatenate_shaped`` tasks) costs seconds in Python. Most layers between a source
and a sink are one of a few kinds whose meaning is a fact about the whole layer:

- a rechunk or a basic slice of its only dependency: the layer's array is a box of
  the dependency's array, translated. Every task is checked to be a data-movement
  task (alias, basic ``getitem``, ``concatenate_shaped``), and a sample of output
  chunks (the first and last, every chunk along each axis from the origin, and a
  stride through the rest) is interpreted exactly, in the coordinates of the
  dependency, to find the translation and confirm it;
- anything else made of data-movement tasks (``concatenate``, ``block``, or a layer
  whose sample disagrees): every output chunk is interpreted, in the coordinates of
  the dependencies, then composed with their views.

The result is a :class:`~dask_io.graph.views.View` of the layer's whole array, so a
``store`` layer turns into a handful of atoms instead of one per chunk.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

from dask._task_spec import Alias, Task, TaskRef
from dask.array.core import concatenate_shaped
from dask.blockwise import Blockwise, blockwise_token
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
from dask.layers import ArraySliceDep

from dask_io.graph.recognize import (
    Atom,
    Handles,
    SourceLayer,
    _is_arraylike,
    _original,
    _region_start,
    _unwrap,
)
from dask_io.graph.views import _GETITEM, Box, Piece, Resolver, View, sub_view

Key = Hashable
SAMPLE_STRIDE = 32  # about this many chunks sampled in C order, besides the axes
_MOVERS = (*_GETITEM, concatenate_shaped)


def _starts(chunks: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(itertools.accumulate(c, initial=0)) for c in chunks)


def _box(starts: tuple[tuple[int, ...], ...], index: Sequence[int]) -> Box:
    return tuple((s[i], s[i + 1]) for s, i in zip(starts, index))


def whole_view(shape: tuple[int, ...], source: int) -> View:
    """The view of a whole source array of ``shape``."""
    return View(shape, (Piece(tuple((0, n) for n in shape), source, (0,) * len(shape)),))


class _Array:
    """A layer that is a dask array: the name of its keys and its chunks."""

    def __init__(self, layer: str, key: str, chunks: tuple[tuple[int, ...], ...]) -> None:
        self.layer = layer
        self.key = key
        self.chunks = chunks
        self.starts = _starts(chunks)
        self.shape = tuple(s[-1] for s in self.starts)
        self.numblocks = tuple(len(c) for c in chunks)

    def keys(self) -> list[Key]:
        return [(self.key, *i) for i in itertools.product(*map(range, self.numblocks))]


def is_data_movement(node: Any) -> bool:
    """Whether a task only moves data: an alias, basic ``getitem`` or ``concatenate_shaped``."""
    if isinstance(node, Alias):
        return True
    if isinstance(node, Task):
        return node.func in _MOVERS and not node.kwargs
    return isinstance(node, tuple) and bool(node) and isinstance(node[0], str)


def all_data_movement(nodes: Iterable[Any]) -> bool:
    """Whether every node is a data-movement task (:func:`is_data_movement`), checked
    by type and function in bulk."""
    nodes = list(nodes)
    types = {type(n) for n in nodes}
    if types <= {Alias, Task}:
        if Task not in types:
            return True
        funcs = {n.func for n in nodes if type(n) is Task}
        return funcs <= set(_MOVERS) and not any(n.kwargs for n in nodes if type(n) is Task)
    return all(is_data_movement(n) for n in nodes)


class LayerViews:
    """Views of whole layers of ``hlg`` in terms of its ``sources``, memoized."""

    def __init__(self, hlg: HighLevelGraph, sources: dict[str, SourceLayer]) -> None:
        self.hlg = hlg
        self.sources = sources
        self._arrays: dict[str, _Array | None] = {}
        self._by_key: dict[str, str] | None = None
        self._memo: dict[str, View | None] = {}
        self._roots: dict[str, tuple[str, tuple[int, ...]]] = {}

    def root(self, name: str) -> tuple[str, tuple[int, ...]]:
        """(layer, start): the array that layer ``name`` is a translated box of, through
        slices and rechunks, and where the box starts in it (itself at 0 if none)."""
        arr = self.array(name)
        ndim = 0 if arr is None else len(arr.shape)
        return self._roots.get(name, (name, (0,) * ndim))

    # -- which layer holds an array -------------------------------------------------
    def layer_of(self, key_name: str) -> str | None:
        """The layer that produces the chunks ``(key_name, i, j, ...)``."""
        if self._by_key is None:
            self._by_key = {}
            for name in self.hlg.layers:
                arr = self.array(name)
                if arr is not None:
                    self._by_key.setdefault(arr.key, name)
        return self._by_key.get(key_name)

    def array(self, name: str) -> _Array | None:
        """The array a layer produces (name of its keys, chunks), or None."""
        if name in self._arrays:
            return self._arrays[name]
        out = None
        src = self.sources.get(name)
        if src is not None:
            out = _Array(name, src.name, src.chunks)
        else:
            layer = self.hlg.layers[name]
            ann = getattr(layer, "collection_annotations", None) or {}
            chunks = ann.get("chunks")
            if isinstance(layer, MaterializedLayer) and chunks is not None:
                chunks = tuple(tuple(int(c) for c in axis) for axis in chunks)
                zeros = (0,) * len(chunks)
                for key in (name, name.rsplit("-", 1)[0]):
                    if (key, *zeros) in layer.mapping:
                        out = _Array(name, key, chunks)
                        break
        self._arrays[name] = out
        return out

    # -- views --------------------------------------------------------------------------
    def view(self, name: str) -> View | None:
        """The view of the whole array of layer ``name``, or None if it is not a copy."""
        if name in self._memo:
            return self._memo[name]
        self._memo[name] = None  # guards against cycles while resolving
        view = self._compute(name)
        self._memo[name] = view
        return view

    def _compute(self, name: str) -> View | None:
        src = self.sources.get(name)
        if src is not None:
            return whole_view(tuple(s[-1] for s in src.starts), src.handle)
        arr = self.array(name)
        if arr is None or any(n == 0 for n in arr.shape):
            return None
        layer = self.hlg.layers[name]
        deps = sorted(self.hlg.dependencies.get(name, ()))
        dep_arrays = [self.array(d) for d in deps]
        dep_views = [self.view(d) for d in deps]
        if not deps or any(a is None for a in dep_arrays) or any(v is None for v in dep_views):
            return None
        if not all_data_movement(layer.mapping.values()):
            return None
        resolver = _dependency_resolver(layer.mapping, dep_arrays)  # type: ignore[arg-type]
        if len(deps) == 1:
            box = _translation(arr, resolver, dep_arrays[0])  # type: ignore[arg-type]
            if box is not None:
                root, start = self.root(deps[0])
                self._roots[name] = (root, tuple(s + a for s, (a, _) in zip(start, box)))
                return sub_view(dep_views[0], box)  # type: ignore[arg-type]
        return _mosaic(arr, resolver, dep_views)  # type: ignore[arg-type]


def _dependency_resolver(mapping: Any, deps: Sequence[_Array]) -> Resolver:
    """Resolve keys of one layer in terms of the chunks of its dependencies."""
    by_key = {d.key: (n, d) for n, d in enumerate(deps)}

    def source_view(key: Key) -> View | None:
        if not isinstance(key, tuple) or not key or key[0] not in by_key:
            return None
        number, dep = by_key[key[0]]
        index = key[1:]
        if len(index) != len(dep.numblocks) or any(
            not isinstance(i, int) or not 0 <= i < n for i, n in zip(index, dep.numblocks)
        ):
            return None
        box = _box(dep.starts, index)
        shape = tuple(b - a for a, b in box)
        return View(shape, (Piece(tuple((0, n) for n in shape), number, tuple(a for a, _ in box)),))

    return Resolver(mapping.__getitem__, source_view)


def sample_indices(numblocks: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Chunks checked for a translation: the origin, every chunk along each axis from
    it, the last chunk and about :data:`SAMPLE_STRIDE` more in C order.

    >>> sample_indices((2, 3))
    [(0, 0), (1, 0), (0, 1), (0, 2), (1, 2), (1, 1)]
    """
    ndim = len(numblocks)
    zeros = (0,) * ndim
    seen = dict.fromkeys([zeros])
    for d in range(ndim):
        for i in range(1, numblocks[d]):
            seen[(*zeros[:d], i, *zeros[d + 1 :])] = None
    seen[tuple(n - 1 for n in numblocks)] = None
    total = math.prod(numblocks)
    step = max(1, total // SAMPLE_STRIDE)
    for flat in range(step // 2, total, step):
        index = []
        for n in reversed(numblocks):
            flat, i = divmod(flat, n)
            index.append(i)
        seen[tuple(reversed(index))] = None
    return list(seen)


def _translation(arr: _Array, resolver: Resolver, dep: _Array) -> Box | None:
    """The box of ``dep``'s array that ``arr`` is, if the sampled chunks agree."""
    offset: tuple[int, ...] | None = None
    for index in sample_indices(arr.numblocks):
        chunk = _box(arr.starts, index)
        view = resolver.resolve((arr.key, *index))
        if view is None or view.shape != tuple(b - a for a, b in chunk):
            return None
        volume = 0
        for p in view.pieces:
            shift = tuple(s - a - c for s, (a, _), (c, _) in zip(p.start, p.box, chunk))
            if offset is None:
                offset = shift
            if shift != offset or p.source != 0:
                return None
            volume += math.prod(b - a for a, b in p.box)
        if volume != math.prod(view.shape):
            return None
    assert offset is not None
    box = tuple((o, o + n) for o, n in zip(offset, arr.shape))
    if any(a < 0 or b > n for (a, b), n in zip(box, dep.shape)):
        return None
    return box


def _mosaic(arr: _Array, resolver: Resolver, dep_views: Sequence[View]) -> View | None:
    """The view of ``arr`` from every one of its chunks, composed with the dependencies'."""
    pieces: list[Piece] = []
    for index in itertools.product(*map(range, arr.numblocks)):
        view = resolver.resolve((arr.key, *index))
        chunk = _box(arr.starts, index)
        if view is None or view.shape != tuple(b - a for a, b in chunk):
            return None
        for p in view.pieces:
            region = tuple((s, s + b - a) for s, (a, b) in zip(p.start, p.box))
            origin = [c + a for (c, _), (a, _) in zip(chunk, p.box)]
            for q in sub_view(dep_views[p.source], region).pieces:
                box = tuple((a + o, b + o) for (a, b), o in zip(q.box, origin))
                pieces.append(Piece(box, q.source, q.start))
    return View(arr.shape, tuple(pieces))


# -- sinks -------------------------------------------------------------------------------


def store_layer_atoms(
    hlg: HighLevelGraph, name: str, layer: Any, views: LayerViews, handles: Handles
) -> list[Atom] | None:
    """The atoms of a whole ``store`` layer (``load_store_chunk`` over an array), or None.

    Recognised: a Blockwise whose task is ``load_store_chunk(chunk, target, index)``
    with the chunk from one array layer, the target an array-like and the index an
    ``ArraySliceDep`` over the same chunks, storing (``return_stored`` false) into
    ``region`` of the target. Culled layers give one atom per block they still hold.
    """
    parsed = _parse_store(hlg, name, layer)
    if parsed is None:
        return None
    key_name, target, chunks, kwargs = parsed
    source_layer = views.layer_of(key_name)
    if source_layer is None:
        return None
    view = views.view(source_layer)
    shape = tuple(sum(c) for c in chunks)
    if view is None or view.shape != shape:
        return None
    tgt = handles.add(target, writable=True, lock=kwargs.get("lock"))
    shift = _region_start(kwargs.get("region"), len(shape))
    tshape = handles[tgt].shape
    if shift is None or len(tshape) != len(shape):
        return None
    if any(s + n > t for s, n, t in zip(shift, shape, tshape)):
        return None  # out of the target's bounds: Dask reports it
    starts = _starts(chunks)
    blocks = layer.output_blocks
    root = views.root(source_layer)
    if blocks is None:
        keys = tuple((layer.output, *i) for i in itertools.product(*map(range, map(len, chunks))))
        return _atoms(keys, name, view, (0,) * len(shape), shift, tgt, root)
    atoms = []
    for index in sorted(blocks):
        box = _box(starts, index)
        lo = tuple(a for a, _ in box)
        atoms.extend(_atoms(((layer.output, *index),), name, sub_view(view, box), lo, shift, tgt, root))
    return atoms


def _atoms(keys: tuple[Key, ...], layer: str, view: View, lo: tuple[int, ...],
           shift: tuple[int, ...], target: int, root: tuple[str, tuple[int, ...]]) -> list[Atom]:
    out = []
    for p in view.pieces:
        arr = tuple(o + a for o, (a, _) in zip(lo, p.box))
        dst = tuple(a + s for a, s in zip(arr, shift))
        extent = tuple(b - a for a, b in p.box)
        at = (root[0], tuple(a + r for a, r in zip(arr, root[1])))
        out.append(Atom(keys, layer, p.source, p.start, target, dst, arr, extent, at))
    return out


def _parse_store(hlg: HighLevelGraph, name: str, layer: Any) -> tuple[str, Any, Any, dict] | None:
    """(name of the stored array's keys, target, chunks, keyword arguments) of a store layer."""
    if not isinstance(layer, Blockwise) or layer.new_axes or layer.concatenate:
        return None
    task = layer.task
    kwargs = {k: _unwrap(v) for k, v in task.kwargs.items()}
    if kwargs.get("return_stored") or set(kwargs) - {"region", "lock", "return_stored", "load_stored"}:
        return None
    expected = [blockwise_token(i) for i in range(3)]
    if len(task.args) != 3 or any(
        not isinstance(a, TaskRef) or a.key != e for a, e in zip(task.args, expected)
    ):
        return None
    if len(layer.indices) < 3:  # map_blocks may append arguments the task never uses
        return None
    (arr, arr_ind), (target, target_ind), (dep, dep_ind) = layer.indices[:3]
    out_ind = tuple(layer.output_indices)
    slices = layer.io_deps.get(dep)
    if not isinstance(arr, str) or arr_ind is None or tuple(arr_ind) != out_ind:
        return None
    if target_ind is not None or dep_ind is None or tuple(dep_ind) != out_ind:
        return None
    if not isinstance(slices, ArraySliceDep):
        return None
    target = _original(hlg, name, target) if isinstance(target, TaskRef) else _unwrap(target)
    if not _is_arraylike(target) or not hasattr(target, "__setitem__"):
        return None
    if getattr(target.dtype, "hasobject", True):
        return None
    chunks = tuple(tuple(int(c) for c in axis) for axis in slices.chunks)
    return arr, target, chunks, kwargs
