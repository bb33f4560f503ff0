"""dask_io: move big N-D arrays between on-disk layouts with few I/O operations,
and Spark-style batch recipes for ``dask.bag``.

Public names are imported lazily (PEP 562), so ``import dask_io.plan`` or
``import dask_io.sketches`` never imports dask, h5py or zarr.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "plan_resplit": "dask_io.plan",
    "Report": "dask_io.api",
    "Plan": "dask_io.plan",
    "Cost": "dask_io.plan",
    "resplit": "dask_io.api",
    "split": "dask_io.api",
    "merge": "dask_io.api",
    "rechunk": "dask_io.api",
    "optimize": "dask_io.api",
    "optimizing": "dask_io.api",
    "DaskIOError": "dask_io.errors",
    "InvalidChunksError": "dask_io.errors",
    "InsufficientMemoryError": "dask_io.errors",
    "StoreNotFoundError": "dask_io.errors",
    "StoreExistsError": "dask_io.errors",
    "StoreMismatchError": "dask_io.errors",
    "QueryPlanningWarning": "dask_io.errors",
    "ExcessiveIOWarning": "dask_io.errors",
    "Machine": "dask_io.plan",
    "SketchError": "dask_io.errors",
    "IncompatibleSketchError": "dask_io.errors",
}

__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dask_io' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
