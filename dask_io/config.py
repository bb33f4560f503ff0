"""Dask configuration of dask_io: defaults from ``dask_io.yaml``, read under ``dask_io.*``."""

from __future__ import annotations

import os
from typing import Any

import dask.config
import yaml

_FN = os.path.join(os.path.dirname(__file__), "dask_io.yaml")

with open(_FN) as f:
    defaults = yaml.safe_load(f)

dask.config.update_defaults(defaults)


def get(key: str, default: Any = None) -> Any:
    """Return the setting ``dask_io.<key>`` from Dask config."""
    return dask.config.get(f"dask_io.{key}", default)
