"""The Dask graph pass: the only part of dask_io that touches Dask graph internals.

``optimize`` is Dask's ``array_optimize`` hook; ``optimizing`` enables it in a block.
"""

from dask_io.graph.optimize import optimize, optimizing
from dask_io.graph.settings import check_query_planning

__all__ = ["check_query_planning", "optimize", "optimizing"]
