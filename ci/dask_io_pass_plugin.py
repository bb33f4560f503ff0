"""pytest plugin: run a test suite with dask_io's graph pass as Dask's array optimizer.

Load it with ``python -m pytest -p dask_io_pass_plugin`` (``ci/`` on ``sys.path``)
to run, for instance, the installed dask's own array tests with every dask array
computation going through :func:`dask_io.optimize` (``ci/dask_suite.sh``).
"""

from __future__ import annotations

import dask

import dask_io

_CONFIG: list = []


def pytest_configure(config) -> None:
    cm = dask.config.set(array_optimize=dask_io.optimize)
    _CONFIG.append(cm)


def pytest_terminal_summary(terminalreporter) -> None:
    # printed even with -q: ci/dask_suite.sh checks that the pass was on
    terminalreporter.write_line(
        f"dask_io pass: array_optimize = {dask.config.get('array_optimize')!r}"
    )


def pytest_unconfigure(config) -> None:
    while _CONFIG:
        _CONFIG.pop().__exit__(None, None, None)
