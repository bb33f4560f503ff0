#!/usr/bin/env bash
# The test command: install, then run the whole suite (under 15 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${DASK_IO_SKIP_INSTALL:-0}" != "1" ]; then bash ci/install.sh; fi
python -m pytest -q -p no:cacheprovider "$@"
