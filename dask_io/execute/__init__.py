"""Run resplit plans on real files: the sequential executor and ``resplit``/``split``/``merge``."""

from dask_io.execute.api import Report, merge, resplit, split
from dask_io.execute.executor import Executor

__all__ = ["Executor", "Report", "merge", "resplit", "split"]
