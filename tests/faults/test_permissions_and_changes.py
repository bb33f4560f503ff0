"""Item 2 of issue 15: read-only targets, permission denied, and a source that changes
under a running job: a clear error before (or at) the first byte of the affected block."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from _inject import tmp_files

from dask_io.cli import main
from dask_io.storage.blocks import BlockStore
from dask_io.testing.data import check_path, write_block_store, write_npy

SHAPE, IN = (24, 30, 20), (8, 15, 20)
# root ignores permission bits: drop the capabilities that let it
UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def _cli(argv, prefix=()):
    cmd = [*prefix, sys.executable, "-m", "dask_io.cli", *argv, "--no-progress"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _prefix(probe_dir):
    prefix = UNPRIVILEGED if os.geteuid() == 0 else []
    if prefix and shutil.which("setpriv") is None:
        pytest.skip("root ignores permission bits and setpriv is not installed")
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", f"open({str(probe_dir / 'x')!r}, 'w')"],
        capture_output=True,
    )
    if probe.returncode == 0:
        pytest.skip("permission bits are not enforced here")
    return prefix


def test_read_only_directory(tmp_path):
    write_block_store(str(tmp_path / "in"), SHAPE, IN)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        prefix = _prefix(ro)
        target = str(ro / "out")
        got = _cli(["resplit", str(tmp_path / "in"), target, "--out-chunks", "6,10,10"], prefix)
        assert got.returncode == 1, got.stderr
        assert got.stderr == (
            f"dask-io resplit: error: cannot write '{target}.dask_io-lock': "
            "Permission denied (errno 13 EACCES)\n"
        )
        assert os.listdir(ro) == []  # nothing written
    finally:
        ro.chmod(0o755)


def test_unfinished_target_made_read_only(tmp_path, monkeypatch):
    """The target directory of an interrupted run was made read-only: the resume stops
    at the first block it would write, naming that file."""
    write_block_store(str(tmp_path / "in"), SHAPE, IN)
    target = tmp_path / "out"
    commit, calls = BlockStore.commit, []

    def crash(self, block):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(block)
        commit(self, block)

    argv = ["resplit", str(tmp_path / "in"), str(target), "--out-chunks", "6,10,10"]
    argv += ["--strategy", "naive", "--prefetch", "off", "--max-mem", "64KiB"]
    with monkeypatch.context() as m:
        m.setattr(BlockStore, "commit", crash)
        with pytest.raises(KeyboardInterrupt):
            main([*argv, "--no-progress"])
    for n in os.listdir(target):  # as a killed run leaves it
        if n.endswith(".dask_io-tmp"):
            os.remove(target / n)
    target.chmod(0o555)
    try:
        prefix = _prefix(target)
        got = _cli(argv, prefix)
        assert got.returncode == 1, got.stderr
        first = sorted(set(BlockStore.resume(str(target)).grid.blocks()) - set(calls))
        name = str(target / (".".join(map(str, first[0])) + ".npy.dask_io-tmp"))
        assert got.stderr == (
            f"dask-io resplit: error: cannot write {name!r}: Permission denied (errno 13 EACCES)\n"
        )
    finally:
        target.chmod(0o755)
    got = _cli(argv)
    assert got.returncode == 0, got.stderr
    check_path(str(target))


def test_read_only_file_system(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    write_npy(str(tmp_path / "a.npy"), SHAPE)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    got = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)], capture_output=True
    )
    if got.returncode != 0:
        pytest.skip(f"mount refused: {got.stderr.decode().strip()}")
    try:
        target = str(mnt / "out")
        got = _cli(["split", str(tmp_path / "a.npy"), target, "--out-chunks", "6,10,10"])
        assert got.returncode == 1, got.stderr
        assert got.stderr == (
            f"dask-io split: error: cannot write '{target}.dask_io-lock': "
            "Read-only file system (errno 30 EROFS)\n"
        )
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("change", ["size", "mtime"])
def test_source_changed_under_a_running_job(tmp_path, monkeypatch, capsys, change):
    write_block_store(str(tmp_path / "in"), SHAPE, IN)
    src = str(tmp_path / "in" / "2.1.0.npy")  # the last source block: read late
    target = str(tmp_path / "out")
    argv = ["resplit", str(tmp_path / "in"), target, "--out-chunks", "6,10,10",
            "--strategy", "naive", "--prefetch", "off", "--max-mem", "40KiB",
            "--no-progress"]  # fmt: skip
    read, calls = BlockStore.read, []
    planned = os.stat(src)

    def read_then_change(self, block, *args):
        calls.append(block)
        if len(calls) == 2:  # another program touches the source mid-job
            if change == "size":
                with open(src, "ab") as f:
                    f.write(b"\0" * 64)
            else:
                os.utime(src, ns=(planned.st_atime_ns, planned.st_mtime_ns + 10**9))
        return read(self, block, *args)

    with monkeypatch.context() as m:
        m.setattr(BlockStore, "read", read_then_change)
        assert main(argv) == 2
    err = capsys.readouterr().err
    now = os.stat(src)
    from dask_io.storage.raw import _when

    assert err == (
        f"dask-io resplit: error: source file {src!r} changed while the job ran (now "
        f"{now.st_size} bytes, modified {_when(now.st_mtime_ns)}; planned with "
        f"{planned.st_size} bytes, modified {_when(planned.st_mtime_ns)}): stopped before "
        "reading block (2, 1, 0); run again with --overwrite (overwrite=True) to start from "
        "the new source\n"
    )
    # the same command again is refused: the blocks written came from the old source
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"dask-io resplit: error: target {target!r} holds an unfinished run from a source "
        "whose files changed since (size or mtime); pass overwrite=True (--overwrite) to "
        "start again\n"
    )
    assert main([*argv, "--overwrite"]) == 0
    check_path(target)
    assert tmp_files(str(tmp_path)) == []
