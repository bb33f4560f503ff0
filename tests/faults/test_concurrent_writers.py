"""Item 3 of issue 15: a second job on a target being written is refused at once,
naming the running job; the lock of a job that died is taken over with a notice."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from dask_io.cli import main
from dask_io.errors import DaskIOWarning, StoreExistsError
from dask_io.storage.lock import lock_path
from dask_io.testing.data import check_path, full, write_block_store

SHAPE, IN = (24, 30, 20), (8, 15, 20)

HOLDER = r"""
import sys, time
from dask_io.storage.lock import target_lock
with target_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def _holder(target):
    """A process holding the lock of ``target`` (as a running job does)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, target], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline() == "locked\n"
    return proc


def _when(started):
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))


def _argv(tmp_path):
    return ["resplit", str(tmp_path / "in"), str(tmp_path / "out"), "--out-chunks", "6,10,10",
            "--max-mem", "64KiB", "--no-progress"]  # fmt: skip


def test_second_writer_refused_then_stale_lock_taken_over(tmp_path, capsys):
    write_block_store(str(tmp_path / "in"), SHAPE, IN)
    target = str(tmp_path / "out")
    lock = lock_path(target)
    proc = _holder(target)
    try:
        info = json.loads(open(lock).read())  # noqa: SIM115
        assert info["pid"] == proc.pid and info["host"] == socket.gethostname()
        assert main(_argv(tmp_path)) == 2
        err = capsys.readouterr().err
        assert err == (
            f"dask-io resplit: error: target {target!r} is being written by another job "
            f"(pid {proc.pid} on {socket.gethostname()}, started {_when(info['started'])}; "
            f"lock {lock!r}); wait for it to finish or stop it\n"
        )
        assert not os.path.exists(target)  # refused before anything was written
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert os.path.exists(lock)  # a killed job leaves its lock file
    assert main(_argv(tmp_path)) == 0
    err = capsys.readouterr().err
    assert err == (
        f"dask-io resplit: warning: took over the stale lock {lock!r} of a job that is no "
        f"longer running (pid {proc.pid} on {socket.gethostname()}, "
        f"started {_when(info['started'])})\n"
    )
    check_path(target)
    assert not os.path.exists(lock)


def test_rechunk_refused_while_another_job_writes(tmp_path):
    import dask_io.execute.rechunk as rk

    x = full(SHAPE)
    target = str(tmp_path / "out.zarr")
    proc = _holder(target)
    try:
        job = rk.rechunk(x, (6, 10, 10), target, "64KiB", executor="synchronous")
        with pytest.raises(StoreExistsError, match=f"pid {proc.pid} on "):
            job.execute(progress=False)
        assert not os.path.exists(target) and not os.path.exists(target + ".dask_io-tmp")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with pytest.warns(DaskIOWarning, match=f"stale lock .*[(]pid {proc.pid} on "):
        out = job.execute(progress=False)
    np.testing.assert_array_equal(out[...], x)
    assert not os.path.exists(lock_path(target))
