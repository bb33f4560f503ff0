"""The pure planner: block grids, the I/O cost model, strategies and exact simulation.

This package imports only the standard library and numpy.
"""

from dask_io.plan.cost import Cost
from dask_io.plan.grid import Grid
from dask_io.plan.planner import LAYOUTS, OBJECTIVES, STRATEGIES, Plan, plan_resplit
from dask_io.plan.timing import Machine
from dask_io.plan.units import format_bytes, parse_bytes

__all__ = [
    "LAYOUTS",
    "OBJECTIVES",
    "STRATEGIES",
    "Cost",
    "Grid",
    "Machine",
    "Plan",
    "format_bytes",
    "parse_bytes",
    "plan_resplit",
]
