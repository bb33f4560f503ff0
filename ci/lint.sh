#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check .
mypy dask_io/plan dask_io/sketches dask_io/storage dask_io/errors.py
