"""Clustered reads: one read per buffer of neighbouring chunks, chunks sliced in memory.

A ``from_array`` layer reads each chunk with its own small access, which for a
contiguous file is one short run per row of the chunk. Here the chunks the graph
still needs (after culling) are grouped into clusters, boxes of whole chunks grown in
storage order (last axis first, to its full extent, then the next) up to a byte
budget; each cluster is read once, as the bounding box of its needed chunks, and
every chunk task becomes a slice of that buffer.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np
from dask._task_spec import DataNode, Task, TaskRef
from dask.base import tokenize

from dask_io.graph.handles import ArrayHandle
from dask_io.graph.recognize import SourceLayer

Key = Hashable
Box = tuple[tuple[int, int], ...]


def read_box(handle: ArrayHandle, box: Box) -> np.ndarray:
    """Read ``box`` of an array into a new numpy array (one access)."""
    return handle.read(box)


def take(buf: np.ndarray, local: tuple[slice, ...]) -> np.ndarray:
    """The chunk ``buf[local]`` (a view of the cluster's buffer)."""
    return buf[local]


def cluster_shape(chunks: tuple[tuple[int, ...], ...], itemsize: int, budget: int) -> tuple[int, ...]:
    """Chunks per axis of a cluster: grown from the last axis while ``budget`` allows.

    >>> cluster_shape(((4, 4), (4, 4, 4)), 1, 64)
    (1, 3)
    >>> cluster_shape(((4, 4), (4, 4, 4)), 1, 1000)
    (2, 3)
    """
    ndim = len(chunks)
    nominal = [max(c) for c in chunks]
    shape = [1] * ndim
    size = math.prod(nominal) * itemsize
    for d in range(ndim - 1, -1, -1):
        fit = max(1, budget // size)
        shape[d] = min(len(chunks[d]), fit)
        size *= shape[d]
        if shape[d] < len(chunks[d]):
            break
    return tuple(shape)


def cluster_layer(
    src: SourceLayer, handle: ArrayHandle, needed: Iterable[tuple[int, ...]], budget: int
) -> dict[Key, Task]:
    """The tasks replacing source layer ``src`` for the ``needed`` chunk indices."""
    cshape = cluster_shape(src.chunks, handle.dtype.itemsize, budget)
    groups: dict[tuple[int, ...], list[tuple[int, ...]]] = defaultdict(list)
    for index in needed:
        groups[tuple(i // c for i, c in zip(index, cshape))].append(index)
    tasks: dict[Key, Task] = {}
    handle_node = DataNode(None, handle)
    for members in groups.values():
        lo = [min(m[d] for m in members) for d in range(len(cshape))]
        hi = [max(m[d] for m in members) for d in range(len(cshape))]
        box = tuple((s[a], s[b + 1]) for s, a, b in zip(src.starts, lo, hi))
        read_key = f"dask_io-read-{tokenize(src.name, box)}"
        tasks[read_key] = Task(read_key, read_box, handle_node, DataNode(None, box))
        for index in members:
            chunk = src.box(index)
            local = tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(chunk, box))
            key = (src.name, *index)
            tasks[key] = Task(key, take, TaskRef(read_key), DataNode(None, local))
    return tasks


def needed_indices(layer: Any) -> list[tuple[int, ...]]:
    """The chunk indices a (culled) source layer still produces."""
    return [tuple(k[1:]) for k in layer.get_output_keys()]
