#!/usr/bin/env bash
# Execute every notebook (they run on small data); fail on the first error.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
for nb in notebooks/*.ipynb; do
  echo "executing $nb"
  python ci/run_notebook.py "$nb"
done
