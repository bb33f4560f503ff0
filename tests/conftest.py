"""Shared fixtures: one LocalCluster with worker processes for the whole session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def cluster():
    """A LocalCluster with 2 worker processes (so pickling is real), shared by all tests."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        memory_limit="4GiB",
    ) as cluster:
        yield cluster


@pytest.fixture
def client(cluster):
    """A client on the shared cluster; closed after each test."""
    distributed = pytest.importorskip("distributed")
    with distributed.Client(cluster, set_as_default=False) as client:
        yield client
