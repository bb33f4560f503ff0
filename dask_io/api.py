"""The public entry points of dask_io, gathered in one place.

``plan_resplit`` is pure; ``resplit``/``split``/``merge`` run a plan through the
stores; ``rechunk`` is the lazy, rechunker-style job that also runs on a
``dask.distributed`` cluster; ``optimize`` is the ``array_optimize`` pass. Each is
imported from its layer on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from dask_io.plan import plan_resplit

_WHERE = {
    "resplit": "dask_io.execute.api",
    "split": "dask_io.execute.api",
    "merge": "dask_io.execute.api",
    "Report": "dask_io.execute.api",
    "rechunk": "dask_io.execute.rechunk",
    "optimize": "dask_io.graph.optimize",
    "optimizing": "dask_io.graph.optimize",
}

__all__ = ["plan_resplit", *_WHERE]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'dask_io.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
