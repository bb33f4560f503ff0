"""The pass's settings, read from Dask config under ``dask_io.*``, and query planning.

Defaults live in ``dask_io/dask_io.yaml`` (registered by :mod:`dask_io.config`).
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass

import dask.config

import dask_io.config  # noqa: F401  (registers the dask_io.* defaults)
from dask_io.errors import InvalidChunksError, QueryPlanningWarning
from dask_io.plan import STRATEGIES
from dask_io.plan.units import parse_bytes

CLUSTER_LIMIT = 2**30  # no cluster read buffer is larger than 1 GiB
_warned = False


@dataclass(frozen=True)
class Settings:
    """A snapshot of the ``dask_io.*`` settings the pass uses."""

    enabled: bool
    strategy: str
    max_mem: int
    cluster_reads: bool
    pipeline: bool = True
    sync_writes: bool = True

    @property
    def cluster_bytes(self) -> int:
        """The largest buffer one clustered read may fill."""
        return min(self.max_mem // 4, CLUSTER_LIMIT)


def available_memory() -> int:
    """Bytes of memory available now (psutil, else /proc/meminfo, else 4 GiB)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil comes with distributed
        pass
    try:  # pragma: no cover
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover
        pass
    return 4 * 2**30  # pragma: no cover


def read_settings() -> Settings:
    """The current settings; ``max-mem: null`` means a quarter of the available memory."""
    strategy = dask.config.get("dask_io.strategy", "auto")
    if strategy not in (*STRATEGIES, "auto"):
        raise InvalidChunksError(
            f"dask_io.strategy={strategy!r} is unknown; expected one of "
            f"{', '.join((*STRATEGIES, 'auto'))}"
        )
    raw = dask.config.get("dask_io.max-mem", None)
    max_mem = available_memory() // 4 if raw is None else parse_bytes(raw, "dask_io.max-mem")
    return Settings(
        enabled=bool(dask.config.get("dask_io.enabled", True)),
        strategy=strategy,
        max_mem=max_mem,
        cluster_reads=bool(dask.config.get("dask_io.cluster-reads", True)),
        pipeline=bool(dask.config.get("dask_io.pipeline", True)),
        sync_writes=bool(dask.config.get("dask_io.sync-writes", True)),
    )


def query_planning_active() -> bool:
    """Whether dask arrays are expression-based (``array.query-planning``), so that no
    ``array_optimize`` hook runs."""
    module = sys.modules.get("dask.array")
    if module is not None and getattr(module, "ARRAY_EXPR_ENABLED", None) is not None:
        return bool(module.ARRAY_EXPR_ENABLED)
    return dask.config.get("array.query-planning", None) is True


def check_query_planning() -> bool:
    """Warn once with :class:`~dask_io.errors.QueryPlanningWarning` when query planning
    is on; return whether it is."""
    global _warned
    active = query_planning_active()
    if active and not _warned:
        _warned = True
        warnings.warn(
            "dask's array query planning is on (array.query-planning=True): dask never "
            "calls array_optimize, so dask_io.optimize cannot rewrite these graphs. Set "
            "dask.config.set({'array.query-planning': False}) before dask.array is first "
            "imported (or DASK_ARRAY__QUERY_PLANNING=False), or call dask_io.resplit directly.",
            QueryPlanningWarning,
            stacklevel=3,
        )
    return active


def reset_warning() -> None:
    """Let :func:`check_query_planning` warn again (for tests)."""
    global _warned
    _warned = False
