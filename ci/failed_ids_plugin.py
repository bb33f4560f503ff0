"""pytest plugin: write the ids of the tests that fail or error to ``$FAILED_IDS_FILE``.

One id a line, sorted (a test failing in setup and teardown counts once). Used by
``ci/dask_suite.sh`` to compare the failing tests of two runs of the same suite.
"""

from __future__ import annotations

import os

_FAILED: set[str] = set()


def pytest_runtest_logreport(report) -> None:
    if report.failed and not getattr(report, "wasxfail", None):
        _FAILED.add(report.nodeid)


def pytest_collectreport(report) -> None:
    if report.failed:  # a module that does not import
        _FAILED.add(report.nodeid)


def pytest_sessionfinish(session, exitstatus) -> None:
    path = os.environ.get("FAILED_IDS_FILE")
    if path:
        with open(path, "w") as f:
            f.writelines(f"{i}\n" for i in sorted(_FAILED))
