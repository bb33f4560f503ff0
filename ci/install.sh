#!/usr/bin/env bash
# Install dask_io with its test extra from the project's own files.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet -e ".[test]"
