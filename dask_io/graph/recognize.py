"""Find sources, sinks and the data-movement tasks between them in a HighLevelGraph.

Recognition goes by layer type and task function, never by key names:

- a *source* is a ``Blockwise`` layer whose task is one of Dask's getters applied to
  an array-like and an ``ArraySliceDep`` (what ``da.from_array`` builds);
- a *sink* task is a ``load_store_chunk`` task (what ``da.store``, ``to_zarr`` and
  ``to_hdf5`` build) that writes one block and returns nothing;
- between them, :class:`~dask_io.graph.views.Resolver` interprets aliases, basic
  ``getitem`` and ``concatenate_shaped`` tasks (rechunk, slicing, concatenate, block).
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
from dask._task_spec import DataNode, Task, TaskRef
from dask.array.core import getter, getter_inline, getter_nofancy, load_store_chunk
from dask.blockwise import Blockwise, blockwise_token
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
from dask.layers import ArraySliceDep

from dask_io.graph.handles import ArrayHandle
from dask_io.graph.views import Box, Piece, Resolver, View, basic_box

Key = Hashable
GETTERS = (getter, getter_nofancy, getter_inline)


@dataclass
class SourceLayer:
    """A ``from_array`` layer: chunk ``index`` is ``box(index)`` of ``handles[handle]``."""

    name: str
    handle: int
    chunks: tuple[tuple[int, ...], ...]
    starts: tuple[tuple[int, ...], ...]
    lock: Any

    def box(self, index: tuple[int, ...]) -> Box:
        return tuple((s[i], s[i + 1]) for s, i in zip(self.starts, index))


@dataclass(frozen=True)
class Atom:
    """Sink ``keys`` copy a box of ``extent`` from ``source`` at ``src`` to ``target`` at ``dst``.

    An atom found per task has one key; one found for a whole ``store`` layer lists
    every key of the layer (they all depend on the copy being done).
    """

    keys: tuple[Key, ...]
    layer: str
    source: int
    src: tuple[int, ...]
    target: int
    dst: tuple[int, ...]
    arr: tuple[int, ...]  # the same box in the coordinates of the stored dask array
    extent: tuple[int, ...]
    root: tuple[Any, ...] | None = None  # (array it was sliced from, box start in it)


class Handles:
    """The arrays a rewrite touches, numbered; one handle per distinct object."""

    def __init__(self) -> None:
        self.handles: list[ArrayHandle] = []
        self._ids: dict[tuple[int, bool], int] = {}

    def add(self, obj: Any, writable: bool, lock: Any) -> int:
        key = (id(obj), writable)
        if key not in self._ids:
            self._ids[key] = len(self.handles)
            self.handles.append(ArrayHandle(obj, writable=writable, lock=lock))
        return self._ids[key]

    def __getitem__(self, i: int) -> ArrayHandle:
        return self.handles[i]


def _cumsum(chunks: tuple[int, ...]) -> tuple[int, ...]:
    out = [0]
    for c in chunks:
        out.append(out[-1] + c)
    return tuple(out)


def _unwrap(value: Any) -> Any:
    return value.value if isinstance(value, DataNode) else value


def _is_arraylike(obj: Any) -> bool:
    return all(hasattr(obj, a) for a in ("shape", "dtype", "__getitem__"))


def find_sources(hlg: HighLevelGraph, handles: Handles) -> dict[str, SourceLayer]:
    """Every ``from_array`` layer of ``hlg``, by layer name."""
    found = {}
    for name, layer in hlg.layers.items():
        src = _source_layer(hlg, name, layer, handles)
        if src is not None:
            found[name] = src
    return found


def _source_layer(hlg: HighLevelGraph, name: str, layer: Any, handles: Handles) -> SourceLayer | None:
    if not isinstance(layer, Blockwise) or layer.task.func not in GETTERS:
        return None
    task = layer.task
    if len(layer.indices) != 2 or set(task.kwargs) - {"asarray", "lock"}:
        return None
    (arr_ref, arr_ind), (dep, dep_ind) = layer.indices
    slices = layer.io_deps.get(dep)
    if arr_ind is not None or tuple(dep_ind) != tuple(layer.output_indices):
        return None
    if not isinstance(slices, ArraySliceDep) or layer.new_axes or layer.concatenate:
        return None
    expected = (TaskRef(blockwise_token(0)), TaskRef(blockwise_token(1)))
    if len(task.args) != 2 or any(
        not isinstance(a, TaskRef) or a.key != e.key for a, e in zip(task.args, expected)
    ):
        return None
    obj = _original(hlg, name, arr_ref)
    chunks = tuple(tuple(int(c) for c in axis) for axis in slices.chunks)
    if obj is None or not _is_arraylike(obj) or tuple(obj.shape) != tuple(sum(c) for c in chunks):
        return None
    if not obj.shape or any(n == 0 for n in obj.shape) or getattr(obj.dtype, "hasobject", True):
        return None  # 0-d and empty arrays: nothing to plan, and Dask's chunks are exact
    lock = _unwrap(task.kwargs.get("lock"))
    if not _reads_as_ndarray(obj, task.func, _unwrap(task.kwargs.get("asarray", True)), lock):
        return None  # Dask hands on whatever the object's slices are: leave it to Dask
    handle = handles.add(obj, writable=False, lock=lock)
    return SourceLayer(name, handle, chunks, tuple(_cumsum(c) for c in chunks), lock)


def _reads_as_ndarray(obj: Any, getter_fn: Callable[..., Any], asarray: Any, lock: Any) -> bool:
    """Whether Dask's chunks of ``obj`` are plain numpy arrays of ``obj.dtype``.

    h5py datasets, zarr arrays, numpy arrays and memmaps slice to such arrays. For any
    other object Dask's getter returns what the object's ``__getitem__`` returns when
    that is array-like (an xarray DataArray, a masked array, ...) and converts it
    with ``np.asarray`` only otherwise (and only with ``asarray=True``): a planned read
    into numpy buffers would change such results. So the getter itself is asked, on a
    one-element slice, what a chunk is.
    """
    if type(obj).__module__.startswith(("h5py", "zarr")):
        return True
    if type(obj) is np.ndarray or type(obj) is np.memmap:
        return True
    probe = tuple(slice(0, 1) for _ in obj.shape)
    try:
        chunk = getter_fn(obj, probe, asarray=bool(asarray), lock=lock or None)
    except Exception:
        return False
    return type(chunk) is np.ndarray and chunk.dtype == np.dtype(obj.dtype)


def _original(hlg: HighLevelGraph, name: str, ref: Any) -> Any:
    """The array-like a getter layer slices: inline, or the value of a referenced key."""
    if not isinstance(ref, TaskRef):
        return _unwrap(ref)
    for dep in hlg.dependencies.get(name, ()):
        layer = hlg.layers[dep]
        if isinstance(layer, MaterializedLayer) and ref.key in layer.mapping:
            value = layer.mapping[ref.key]
            return None if isinstance(value, Task) else _unwrap(value)
    return None


def source_view_function(sources: dict[str, SourceLayer]):
    """``key -> View`` for the chunks of the source layers."""

    def view(key: Key) -> View | None:
        if not isinstance(key, tuple) or not key or key[0] not in sources:
            return None
        src = sources[key[0]]
        index = key[1:]
        if len(index) != len(src.chunks):
            return None
        box = src.box(index)
        shape = tuple(b - a for a, b in box)
        local = tuple((0, n) for n in shape)
        return View(shape, (Piece(local, src.handle, tuple(a for a, _ in box)),))

    return view


def make_resolver(hlg: HighLevelGraph, sources: dict[str, SourceLayer]) -> Resolver:
    """A resolver over the materialized layers of ``hlg`` (the data-movement candidates)."""
    maps = [
        layer.mapping
        for name, layer in hlg.layers.items()
        if isinstance(layer, MaterializedLayer) and name not in sources
    ]
    chain = ChainMap(*maps)
    return Resolver(chain.__getitem__, source_view_function(sources))


def find_atoms(
    hlg: HighLevelGraph,
    resolver: Resolver,
    handles: Handles,
    whole: Callable[[str, Any], list[Atom] | None] | None = None,
) -> list[Atom]:
    """The copies done by the sink tasks (of culled sink layers: the tasks they still
    hold) whose input is a view of sources.

    Sink keys are rarely the requested keys (``compute`` asks for a finalize task
    that gathers them), so every sink task of the graph is considered. ``whole``,
    when given, is tried first on each sink layer: it returns the atoms of the whole
    layer, or None to fall back to interpreting the layer's tasks one by one.
    """
    atoms: list[Atom] = []
    for name, layer in hlg.layers.items():
        if not isinstance(layer, Blockwise) or layer.task.func is not load_store_chunk:
            continue
        found = None if whole is None else whole(name, layer)
        if found is not None:
            atoms.extend(found)
            continue
        for key in layer.get_output_keys():
            atoms.extend(_sink_atoms(hlg, name, key, layer[key], resolver, handles))
    return atoms


def _sink_atoms(
    hlg: HighLevelGraph, layer: str, key: Key, task: Any, resolver: Resolver, handles: Handles
) -> list[Atom]:
    if not isinstance(task, Task) or task.func is not load_store_chunk or len(task.args) != 3:
        return []
    kw = {k: _unwrap(v) for k, v in task.kwargs.items()}
    if kw.get("return_stored") or set(kw) - {"region", "lock", "return_stored", "load_stored"}:
        return []
    source, target, index = task.args
    target = _original(hlg, layer, target) if isinstance(target, TaskRef) else _unwrap(target)
    index = _unwrap(index)
    if not isinstance(source, TaskRef) or not _is_arraylike(target):
        return []
    if not hasattr(target, "__setitem__") or getattr(target.dtype, "hasobject", True):
        return []
    tgt = handles.add(target, writable=True, lock=kw.get("lock"))
    tshape = handles[tgt].shape  # cached: h5py's shape property is slow
    abox = _index_box(index)
    shift = _region_start(kw.get("region"), len(abox) if abox else 0)
    if abox is None or shift is None:
        return []
    view = resolver.resolve(source.key)
    if view is None or view.shape != tuple(b - a for a, b in abox):
        return []
    if len(tshape) != len(abox) or any(
        s + b > n for s, (_, b), n in zip(shift, abox, tshape)
    ):
        return []  # out of the target's bounds: Dask reports it
    out = []
    for p in view.pieces:
        lo = tuple(a for a, _ in p.box)
        arr = tuple(a + b for (a, _), b in zip(abox, lo))
        dst = tuple(a + s for a, s in zip(arr, shift))
        extent = tuple(b - a for a, b in p.box)
        out.append(Atom((key,), layer, p.source, p.start, tgt, dst, arr, extent))
    return out


def _index_box(index: Any) -> Box | None:
    if not isinstance(index, tuple):
        return None
    stops = [s.stop for s in index if isinstance(s, slice)]
    if len(stops) != len(index) or any(s is None for s in stops):
        return None
    return basic_box(index, stops)


def _region_start(region: Any, ndim: int) -> tuple[int, ...] | None:
    if region is None:
        return (0,) * ndim
    if not isinstance(region, tuple) or len(region) != ndim:
        return None
    starts = []
    for s in region:
        if not isinstance(s, slice) or s.step not in (None, 1):
            return None
        start = 0 if s.start is None else s.start
        if not isinstance(start, int) or start < 0:
            return None
        starts.append(start)
    return tuple(starts)
