"""Item 1 of issue 15 for real: a full tmpfs, mounted by the test (as root), then grown.

Skipped with a reason where mounting is refused (not root, no tmpfs, a container
without CAP_SYS_ADMIN).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from _inject import tmp_files

from dask_io.testing.data import check_path, write_block_store, write_npy

SHAPE, IN = (64, 64, 32), (32, 32, 32)  # 256 KiB of uint16


def _mount(path, size):
    args = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path]
    return subprocess.run(args, capture_output=True, text=True)


@pytest.fixture
def small_fs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    got = _mount(str(mnt), "96k")
    if got.returncode != 0:
        pytest.skip(f"mount refused: {got.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _grow(mnt):
    got = subprocess.run(["mount", "-o", "remount,size=4m", str(mnt)], capture_output=True)
    assert got.returncode == 0, got.stderr


def _cli(*argv):
    cmd = [sys.executable, "-m", "dask_io.cli", *argv, "--max-mem", "96KiB", "--no-progress"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("cmd", ["split", "resplit", "merge"])
def test_full_tmpfs_then_resume(tmp_path, small_fs, cmd):
    write_npy(str(tmp_path / "a.npy"), SHAPE)
    write_block_store(str(tmp_path / "in"), SHAPE, IN)
    if cmd == "merge":
        target = str(small_fs / "m.npy")
        argv = ["merge", str(tmp_path / "in"), target]
    else:
        target = str(small_fs / "out")
        source = str(tmp_path / ("a.npy" if cmd == "split" else "in"))
        argv = [cmd, source, target, "--out-chunks", "16,16,32"]
    first = _cli(*argv)
    assert first.returncode == 1, first.stderr
    line = first.stderr
    assert line.count("\n") == 1 and "Traceback" not in line
    assert line.startswith(f"dask-io {cmd}: error: cannot write '{small_fs}/")
    assert line.endswith(": No space left on device (errno 28 ENOSPC)\n")
    assert tmp_files(str(small_fs)) == []  # the space of unfinished blocks is given back
    assert not os.path.exists(target) or cmd != "merge"
    _grow(small_fs)
    again = _cli(*argv)
    assert again.returncode == 0, again.stderr
    if cmd != "merge":
        assert "already complete" in again.stdout
    check_path(target)
    assert tmp_files(str(small_fs)) == []
