"""The rewrite itself: find the patterns, plan them, splice the new layers in.

The input graph is never modified: the result is a new HighLevelGraph that shares
the untouched layers with it.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

from dask._task_spec import Alias, Task, TaskRef
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

from dask_io.errors import InsufficientMemoryError
from dask_io.graph.buffers import SubgraphBuilder, key_digest
from dask_io.graph.cluster import cluster_layer, needed_indices
from dask_io.graph.engine import executor_tasks
from dask_io.graph.jobs import Job, build_jobs
from dask_io.graph.layers import LayerViews, store_layer_atoms
from dask_io.graph.recognize import Handles, find_atoms, find_sources, make_resolver
from dask_io.graph.settings import Settings
from dask_io.plan import Plan, plan_resplit
from dask_io.plan.planner import faster_pipelined

Key = Hashable


def stored(*after: Any) -> None:
    """What a rewritten store task returns: nothing, once its data is written."""
    return None


class _Graph:
    """Layers and dependencies being edited (copies of the input's)."""

    def __init__(self, hlg: HighLevelGraph) -> None:
        self.layers = dict(hlg.layers)
        self.deps = {k: set(v) for k, v in hlg.dependencies.items()}
        self.changed = False

    def put(self, name: str, tasks: dict[Key, Any], deps: set[str], annotations: Any = None) -> None:
        self.layers[name] = MaterializedLayer(tasks, annotations=annotations)
        self.deps[name] = deps
        self.changed = True

    def build(self, keys: Sequence[Key] | None = None) -> HighLevelGraph:
        """The edited graph; with ``keys``, only the layers they can reach.

        Dask's ``HighLevelGraph.cull`` keeps every layer left once no key is wanted any
        more, so layers nothing refers to (the file a rewritten source held) are
        dropped here, by layer dependencies, which the rewrite keeps exact.
        """
        hlg = HighLevelGraph(self.layers, self.deps)
        if keys is None:
            return hlg
        names = {k[0] if isinstance(k, tuple) else k for k in keys}
        if not names <= self.layers.keys():
            return hlg
        return hlg.cull_layers(names)


def rewrite(hlg: HighLevelGraph, keys: Sequence[Key], settings: Settings) -> HighLevelGraph | None:
    """The rewritten graph, or None when nothing in ``hlg`` is recognised."""
    handles = Handles()
    sources = find_sources(hlg, handles)
    if not sources:
        return None
    graph = _Graph(hlg)
    _replace_resplits(hlg, graph, keys, sources, handles, settings)
    if settings.cluster_reads:
        _cluster_reads(graph, keys, sources, handles, settings)
    return graph.build(keys) if graph.changed else None


def _replace_resplits(hlg: HighLevelGraph, graph: _Graph, keys: Sequence[Key],
                      sources: dict[str, Any], handles: Handles, settings: Settings) -> None:
    resolver = make_resolver(hlg, sources)
    views = LayerViews(hlg, sources)
    atoms = find_atoms(hlg, resolver, handles,
                       lambda name, layer: store_layer_atoms(hlg, name, layer, views, handles))
    builder = SubgraphBuilder(handles.handles, settings.sync_writes)
    done: dict[Key, Key] = {}
    for job in build_jobs(atoms, handles.handles):
        run = executor_tasks(job, handles.handles, settings)
        if run is not None:  # a whole array into a whole Zarr array: dask_io.rechunk's way
            tasks, final = run
            builder.tasks.update(tasks)
            done.update(dict.fromkeys(job.keys, final))
            continue
        chosen = choose_plan(job, settings)
        if chosen is None:
            continue
        final = builder.add_job(job, *chosen)
        done.update(dict.fromkeys(job.keys, final))
    if not done:
        return
    name = f"dask_io-resplit-{key_digest(builder.tasks)}"
    graph.put(name, builder.tasks, set())
    for layer_name in sorted({a.layer for a in atoms if a.keys[0] in done}):
        layer = hlg.layers[layer_name]
        outputs = layer.get_output_keys()
        if all(k in done for k in outputs):  # no need to build the layer's own tasks
            # an alias of the token: the value (None) of a store task once it has run
            tasks = {k: Alias(k, done[k]) for k in outputs}
            graph.put(layer_name, tasks, {name}, layer.annotations)
            continue
        tasks = dict(layer)
        for key in tasks:
            if key in done:
                tasks[key] = Task(key, stored, TaskRef(done[key]))
        graph.put(layer_name, tasks, graph.deps[layer_name] | {name}, layer.annotations)


def choose_plan(job: Job, settings: Settings) -> tuple[Plan, int] | None:
    """The plan of ``job`` and how many of its buffers may be alive at once.

    With ``dask_io.pipeline`` on and contiguous targets, a plan within half the
    memory runs two buffers at once (the reads of one overlap the writes of the
    other) when that is predicted faster (:func:`~dask_io.plan.planner.faster_pipelined`,
    the rule every executor uses); buffers of about a quarter of the array are
    tried first.
    """
    def plan(max_mem: int, warn: bool = False) -> Plan:
        return plan_resplit(job.shape, job.in_chunks, job.out_chunks, job.dtype,
                            max_mem, settings.strategy, job.layout, warn=warn)

    try:
        full = plan(settings.max_mem, warn=True)
    except InsufficientMemoryError:
        return None
    if not settings.pipeline or job.layout[1] != "contiguous":
        # chunked targets: two buffers writing parts of one chunk at once would race
        # in its read-modify-write
        return full, 1
    total = math.prod(job.shape) * job.dtype.itemsize
    # smaller buffers overlap better: first try about a quarter of the array each
    for budget in sorted({min(settings.max_mem // 2, total * 5 // 16), settings.max_mem // 2}):
        try:
            candidate = plan(budget)
        except InsufficientMemoryError:
            continue
        if faster_pipelined(candidate, full):
            return candidate, 2
    return full, 1


def _cluster_reads(graph: _Graph, keys: Sequence[Key], sources: dict[str, Any],
                   handles: Handles, settings: Settings) -> None:
    reachable = graph.build(keys).layers
    if not any(name in reachable for name in sources):
        return  # every source was planned away: no need to cull task by task
    culled = graph.build().cull(set(keys))
    # HighLevelGraph.cull names each layer "<name>-<token of the keys>"
    by_name = {name.rsplit("-", 1)[0]: layer for name, layer in culled.layers.items()}
    for name, src in sources.items():
        handle = handles[src.handle]
        if handle.kind == "numpy" or name not in by_name:
            continue
        needed = needed_indices(by_name[name])
        if not needed:
            continue
        tasks = cluster_layer(src, handle, needed, settings.cluster_bytes)
        layer = graph.layers[name]
        graph.put(name, tasks, set(), layer.annotations)
