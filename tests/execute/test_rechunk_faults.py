"""dask_io.rechunk under faults: a worker killed mid-job, a client interrupted mid-job."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import numpy as np
import pytest
from test_rechunk_support import chunk_key, counted_zarr, data, reads

import dask_io.execute.rechunk as rk
from dask_io.plan.ops import Read

SHAPE, IN_CHUNKS, OUT_CHUNKS, MEM = (48, 30, 20), (4, 10, 20), (5, 15, 10), 8_000


def _group_keys(src, job):
    """Per group, the store keys of its input chunks."""
    gp = job.arrays[0].gp
    return {g.index: {chunk_key(src, b) for b in g.input_blocks()} for g in gp.groups}


def _planned_reads(src, job):
    """Per store key, how often one uninterrupted run reads it (a group's plan may read
    a chunk in parts, and neighbouring groups may share a chunk)."""
    gp = job.arrays[0].gp
    counts: Counter[str] = Counter()
    for g in gp.groups:
        first = tuple(a for a, _ in g.in_blocks)
        for ops in gp.plan_of(g).buffers():
            for op in ops:
                if isinstance(op, Read):
                    glob = tuple(i + f for i, f in zip(op.block, first, strict=True))
                    counts[chunk_key(src, glob)] += 1
    return counts


def _check_not_redone(counts, groups, finished, once):
    """Chunks read by finished groups only were read as often as in one run."""
    users: dict[str, set[int]] = {}
    for g, keys in groups.items():
        for k in keys:
            users.setdefault(k, set()).add(g)
    done_only = {k for g in finished for k in groups[g] if users[k] <= finished}
    assert done_only, "expected chunks read by finished groups only"
    for k in done_only:
        assert counts[k] == once[k], f"{k} was read again ({counts[k]} reads, not {once[k]})"


def _done(job):
    a = job.arrays[0]
    return {
        i
        for i in range(len(a.gp.groups))
        if os.path.exists(os.path.join(a.state, "groups", f"{i}.done"))
    }


@pytest.mark.parametrize(
    "executor",
    [
        "synchronous",
        pytest.param("cluster", marks=pytest.mark.xfail(
            reason="flaky on a loaded machine: distributed may retry the task whose read "
            "fails once, so the job can finish on its first execute (issue 15 follow-up)",
            strict=False)),
    ],
)
def test_interrupted_job_redoes_only_unfinished_outputs(tmp_path, executor, request):
    x = data(SHAPE, seed=5)
    log = str(tmp_path / "reads.log")
    src0 = counted_zarr(str(tmp_path / "src.zarr"), x, IN_CHUNKS, log)
    ex = request.getfixturevalue("client") if executor == "cluster" else executor
    job = rk.rechunk(src0, OUT_CHUNKS, str(tmp_path / "out.zarr"), MEM, executor=ex)
    groups = _group_keys(src0, job)
    assert len(groups) >= 3 and job.plan["seams"] > 0
    last = max(groups)
    fail_key = sorted(groups[last])[-1]  # the last chunk of the last group fails, once
    once = _planned_reads(src0, job)
    src = counted_zarr(str(tmp_path / "src.zarr"), x, IN_CHUNKS, log, fail_key=fail_key)
    open(log, "w").close()
    job = rk.rechunk(src, OUT_CHUNKS, str(tmp_path / "out.zarr"), MEM, executor=ex)
    with pytest.raises(RuntimeError, match="injected failure"):
        job.execute(progress=False)
    finished = _done(job)
    assert last not in finished and finished, "expected some groups done, the last not"
    out = job.execute(progress=False)
    np.testing.assert_array_equal(out[...], x)
    counts = reads(log)
    _check_not_redone(counts, groups, finished, once)
    assert set(counts) == set().union(*groups.values())


@pytest.mark.cluster
@pytest.mark.timeout(240)
def test_worker_killed_mid_job_finishes_byte_exact(tmp_path):
    distributed = pytest.importorskip("distributed")
    x = data(SHAPE, seed=6)
    log = str(tmp_path / "reads.log")
    src = counted_zarr(str(tmp_path / "src.zarr"), x, IN_CHUNKS, log, delay=0.05)
    # a cluster of its own: the shared one must stay healthy for other tests
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        job = rk.rechunk(src, OUT_CHUNKS, str(tmp_path / "out.zarr"), MEM, executor=client)
        groups = _group_keys(src, job)
        result: dict[str, object] = {}

        def run():
            try:
                result["out"] = job.execute(progress=False)
            except BaseException as e:  # reported by the assertion below
                result["error"] = e

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 60
        while not _done(job) and time.monotonic() < deadline:
            time.sleep(0.02)
        finished = _done(job)
        busy = [w for w, tasks in client.processing().items() if tasks]
        pids = client.run(os.getpid, workers=busy[:1])
        os.kill(next(iter(pids.values())), signal.SIGKILL)
        thread.join(180)
    assert "error" not in result, result.get("error")
    assert finished and len(finished) < len(groups)
    np.testing.assert_array_equal(result["out"][...], x)
    _check_not_redone(reads(log), groups, finished, _planned_reads(src, job))
    assert set(reads(log)) == set().union(*groups.values())
