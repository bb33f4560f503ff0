"""``dask_io.optimize``: Dask's ``array_optimize`` hook, and ``dask_io.optimizing``.

>>> import dask, dask.array as da, numpy as np, zarr, dask_io
>>> source = zarr.create_array(store={}, shape=(4, 6, 8), chunks=(1, 6, 8), dtype="u2")
>>> source[...] = np.arange(4 * 6 * 8, dtype="u2").reshape(4, 6, 8)
>>> target = zarr.create_array(store={}, shape=(4, 6, 8), chunks=(4, 2, 2), dtype="u2")
>>> x = da.from_array(source, chunks=source.chunks)
>>> with dask.config.set(array_optimize=dask_io.optimize):
...     da.store(x.rechunk(target.chunks), target, lock=False)
>>> bool((target[...] == source[...]).all())
True
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Hashable, Iterator
from typing import Any

import dask.config
from dask.array.optimization import optimize as dask_optimize
from dask.core import flatten
from dask.highlevelgraph import HighLevelGraph

from dask_io.graph.rewrite import rewrite
from dask_io.graph.settings import check_query_planning, read_settings

Key = Hashable
_SETTINGS = {"strategy", "max_mem", "enabled", "cluster_reads", "pipeline", "sync_writes"}


def optimize(dsk: Any, keys: Any, **kwargs: Any) -> Any:
    """Rewrite the I/O of a dask array graph, then run Dask's own array optimizer.

    Source → (rechunk, slicing, concatenate) → store patterns become a planned buffer
    subgraph (``dask_io.strategy``, within ``dask_io.max-mem``); other reads of files
    are clustered into buffer reads (``dask_io.cluster-reads``). A graph with nothing
    to rewrite comes back exactly as :func:`dask.array.optimization.optimize` returns it.

    Parameters
    ----------
    dsk : HighLevelGraph or dict
        The graph, as Dask passes it to ``array_optimize``. It is not modified.
    keys : list
        The (possibly nested) output keys.
    **kwargs
        Passed on to :func:`dask.array.optimization.optimize`.

    Returns
    -------
    dict
        The optimized graph.

    Examples
    --------
    The store of a rechunk between two (here in-memory) Zarr arrays becomes buffer
    reads and piece writes:

    >>> import dask, dask.array as da, numpy as np, zarr
    >>> source = zarr.create_array(store={}, shape=(4, 6, 8), chunks=(1, 6, 8), dtype="u2")
    >>> target = zarr.create_array(store={}, shape=(4, 6, 8), chunks=(4, 2, 2), dtype="u2")
    >>> x = da.from_array(source, chunks=source.chunks)
    >>> stored = da.store(x.rechunk(target.chunks), target, lock=False, compute=False)
    >>> with dask.config.set({"optimization.fuse.active": False}):
    ...     graph = optimize(stored.__dask_graph__(), stored.__dask_keys__())
    >>> sorted({task.func.__name__ for task in graph.values() if hasattr(task, "func")})
    ['done', 'read_buffer', 'write_piece']

    To use it for every computation: ``dask.config.set(array_optimize=optimize)``.
    """
    settings = read_settings()
    with _gc_paused():
        if settings.enabled and isinstance(dsk, HighLevelGraph):
            flat = list(flatten(keys)) if isinstance(keys, (list, set, tuple)) else [keys]
            rewritten = rewrite(dsk, flat, settings)
            if rewritten is not None:
                dsk = rewritten
        return dask_optimize(dsk, keys, **kwargs)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Suspend the cyclic garbage collector: the pass allocates many small objects
    and no cycles, and full collections over a large graph cost more than the pass."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextlib.contextmanager
def optimizing(**settings: Any) -> Iterator[None]:
    """Enable the pass (``array_optimize=dask_io.optimize``) with ``dask_io.*`` settings.

    Parameters
    ----------
    **settings
        ``strategy``, ``max_mem`` (bytes or ``"4GiB"``), ``enabled``, ``cluster_reads``,
        ``pipeline`` (two buffers at once, each planned within half the memory),
        ``sync_writes`` (each buffer ends with ``fdatasync`` of the files it wrote):
        set as ``dask_io.<name>`` (underscores become dashes) inside the block.

    Examples
    --------
    >>> import dask, dask.array as da, numpy as np, zarr
    >>> source = zarr.create_array(store={}, shape=(4, 6, 8), chunks=(1, 6, 8), dtype="u2")
    >>> source[...] = np.arange(4 * 6 * 8, dtype="u2").reshape(4, 6, 8)
    >>> target = zarr.create_array(store={}, shape=(4, 6, 8), chunks=(4, 2, 2), dtype="u2")
    >>> x = da.from_array(source, chunks=source.chunks)
    >>> with optimizing(strategy="keep", max_mem="2GiB"):
    ...     print(dask.config.get("dask_io.strategy"), dask.config.get("dask_io.max-mem"))
    ...     da.store(x.rechunk(target.chunks), target, lock=False)
    keep 2GiB
    >>> bool((target[...] == source[...]).all())
    True
    """
    unknown = set(settings) - _SETTINGS
    if unknown:
        raise TypeError(
            f"optimizing() got unknown settings {sorted(unknown)}; expected some of {sorted(_SETTINGS)}"
        )
    check_query_planning()
    values: dict[str, Any] = {"array_optimize": optimize}
    for name, value in settings.items():
        values[f"dask_io.{name.replace('_', '-')}"] = value
    with dask.config.set(values):
        read_settings()  # reject bad values before anything runs
        yield
