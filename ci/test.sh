#!/usr/bin/env bash
# The test command: install, run the docstring examples (seconds), then the whole suite
# (under 15 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${DASK_IO_SKIP_INSTALL:-0}" != "1" ]; then bash ci/install.sh; fi
python -m pytest --doctest-modules dask_io -q -p no:cacheprovider
python -m pytest -q -p no:cacheprovider "$@"
