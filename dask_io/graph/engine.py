"""Whole-array copies into Zarr, run by the executor of :func:`dask_io.rechunk`.

``da.from_zarr(src).rechunk(chunks).to_zarr(dst)``, ``xarray.Dataset.chunk(...).to_zarr``
and ``da.store`` of a rechunked HDF5 dataset into a Zarr array all make a graph whose
job (:mod:`dask_io.graph.jobs`) copies one stored array, whole, into one Zarr array,
whole. That is exactly the problem ``dask_io.rechunk`` solves, so the pass hands it
to the same code rather than to a second implementation: the same groups and seams
(:func:`dask_io.plan.groups.plan_groups`), direct chunk and whole-shard writes, and the
per-process memory ledger (:mod:`dask_io.execute.ledger`) that keeps concurrent tasks
within ``dask_io.max-mem``. The buffer subgraph of :mod:`dask_io.graph.buffers` runs one
buffer after another, which suits contiguous targets but leaves a chunked target
written by one thread.

The executor's state (group markers, seam pieces) lives in a hidden folder beside
the target's store, created by the first task and removed by the last one, so a
graph that is optimized but never computed leaves nothing behind, and a computation
that starts again starts from scratch (the target may have been recreated since).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Hashable
from typing import Any

from dask_io.errors import InsufficientMemoryError
from dask_io.graph.handles import ArrayHandle
from dask_io.graph.jobs import Job
from dask_io.graph.settings import Settings

Key = Hashable
SOURCE_KINDS = ("zarr", "h5py")


def executor_tasks(
    job: Job, handles: list[ArrayHandle], settings: Settings
) -> tuple[dict[Key, Any], Key] | None:
    """The rechunk executor's tasks for ``job`` and the key of the last one, or None
    when ``job`` is not one whole stored array copied into one whole Zarr array on a
    local file system (the buffer subgraph, or Dask, then does it)."""
    pair = _whole_copy(job, handles)
    if pair is None:
        return None
    src, dst = pair
    root = _store_root(dst.obj)
    source = src.obj if src.kind in SOURCE_KINDS else _stored_array(src.obj)
    if root is None or source is None:
        return None
    from dask.base import tokenize

    from dask_io.execute import distributed as dx
    from dask_io.execute.rechunk import _plan_array
    from dask_io.plan.grid import Grid
    from dask_io.storage.zarr_store import ZarrTarget

    arr = dst.obj
    shards = getattr(arr, "shards", None)
    chunks = tuple(int(c) for c in arr.chunks)
    options = {"shards": shards, "zarr_format": int(arr.metadata.zarr_format)}
    try:
        planned = _plan_array("", root, source, chunks, settings.max_mem, _workers(), options)
    except InsufficientMemoryError:
        return None
    unit = tuple(int(s) for s in (shards or chunks))
    path = os.path.join(root, *[p for p in str(arr.path).split("/") if p])
    target = ZarrTarget(path, Grid.from_chunks(job.shape, unit), arr.dtype, arr)
    token = tokenize("dask_io-executor", job.keys, planned.gp.cuts, path)
    state = f"{root.rstrip(os.sep)}.dask_io-{token[:16]}"
    xjob = dx.Job(
        planned.gp, planned.source, target, state, os.path.join(state, "pieces"), settings.max_mem
    )
    start = f"dask_io-start-{token}"
    tasks, keys = dx.build_graph(xjob, token, after=start)
    tasks[start] = (_start, xjob)
    final = f"dask_io-done-{token}"
    tasks[final] = (_done, xjob, *keys)
    return tasks, final


def _whole_copy(job: Job, handles: list[ArrayHandle]) -> tuple[ArrayHandle, ArrayHandle] | None:
    """(source, target) when ``job`` copies one whole array into one whole Zarr array."""
    if len(job.sources.members) != 1 or len(job.targets.members) != 1:
        return None
    (s, s_off), (t, t_off) = job.sources.members[0], job.targets.members[0]
    src, dst = handles[s], handles[t]
    if dst.kind != "zarr" or any(s_off) or any(t_off):
        return None
    if src.kind not in SOURCE_KINDS and _stored_array(src.obj) is None:
        return None
    if src.shape != job.shape or dst.shape != job.shape or src.dtype != dst.dtype:
        return None
    if src.lock is not None and src.kind != "h5py":  # h5py reads are serialised anyway
        return None
    return src, dst


_XARRAY_PASS_THROUGH = (
    "ImplicitToExplicitIndexingAdapter",
    "CopyOnWriteArray",
    "MemoryCachedArray",
)


def _stored_array(obj: Any) -> Any:
    """The zarr array under xarray's lazy wrappers of a variable opened with
    ``xr.open_zarr``, when they index all of it and decode nothing; else None.

    A variable with CF decoding (scale, offset, masking, times) is wrapped in a
    function array and is not a copy of its stored bytes: it is left alone.
    """
    for _ in range(8):
        module, name = type(obj).__module__, type(obj).__name__
        if module.startswith("zarr"):
            return obj if hasattr(obj, "chunks") and hasattr(obj, "store") else None
        if not module.startswith("xarray"):
            return None
        if name in _XARRAY_PASS_THROUGH:
            obj = obj.array
        elif name == "LazilyIndexedArray":
            key = getattr(getattr(obj, "key", None), "tuple", None)
            if key is None or any(k != slice(None) for k in key):
                return None
            obj = obj.array
        elif name == "ZarrArrayWrapper":
            obj = obj.get_array()
        else:
            return None
    return None


def _store_root(arr: Any) -> str | None:
    """The folder of ``arr``'s store when it is a writable local one, else None."""
    try:
        from zarr.storage import LocalStore
    except ImportError:  # pragma: no cover
        return None
    store = getattr(arr, "store", None)
    if not isinstance(store, LocalStore) or getattr(store, "read_only", False):
        return None
    return os.path.abspath(str(store.root))


def _workers() -> int:
    """Threads the computation will run on: a current distributed client's, else
    the local machine's (the groups are cut so that each has work)."""
    try:
        from distributed import default_client

        client = default_client()
        return max(1, sum(client.nthreads().values()))
    except (ImportError, ValueError):
        return os.cpu_count() or 1


def _start(job: Any) -> None:
    """Begin from scratch: no markers or pieces of an earlier computation count."""
    shutil.rmtree(job.state, ignore_errors=True)
    job.prepare()


def _done(job: Any, *moved: Any) -> None:
    """Remove the executor's state once every group and seam is written."""
    shutil.rmtree(job.state, ignore_errors=True)
