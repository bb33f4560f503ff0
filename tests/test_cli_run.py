"""The resplit / split / merge / demo subcommands, and resuming after ``kill -9``."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from dask_io._cli_run import register
from dask_io.storage.files import TMP_SUFFIX
from dask_io.testing.data import check_path, full, write_block_store


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="dask-io")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def blocks(tmp_path):
    path = str(tmp_path / "in")
    write_block_store(path, (16, 12, 10), (8, 6, 5))
    return path


def test_split_resplit_merge(tmp_path, capsys):
    np.save(tmp_path / "a.npy", full((16, 12, 10), "uint16"))
    assert (
        run_cli(
            [
                "split",
                str(tmp_path / "a.npy"),
                str(tmp_path / "b"),
                "--out-chunks",
                "8,6,5",
                "--max-mem",
                "64KiB",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        run_cli(
            [
                "resplit",
                str(tmp_path / "b"),
                str(tmp_path / "c"),
                "--out-chunks",
                "5,7,3",
                "--strategy",
                "keep",
                "--format",
                "hdf5",
                "--no-progress",
            ]
        )
        == 0
    )
    assert run_cli(["merge", str(tmp_path / "c"), str(tmp_path / "m.zarr"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "strategy   keep" in out and "planned" in out and "MB/s" in out
    check_path(str(tmp_path / "m.zarr"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["resplit", "{tmp}/missing", "{tmp}/o", "--out-chunks", "2,2,2"], "does not exist"),
        (["resplit", "{src}", "{tmp}/o", "--out-chunks", "2,2"], "out_chunks=(2, 2) has 2 dim"),
        (["resplit", "{src}", "{tmp}/o", "--out-chunks", "2,x"], "--out-chunks='2,x'"),
        (
            ["resplit", "{src}", "{tmp}/o", "--out-chunks", "4,4,4", "--max-mem", "10"],
            "max_mem=10 B",
        ),
        (["resplit", "{src}", "{src}2", "--out-chunks", "4,4,4"], "already exists"),
        (["merge", "{src}", "{tmp}/o"], "merge writes one array"),
        (["resplit", "{tmp}/bad", "{tmp}/o", "--out-chunks", "2,2,2"], "expects shape"),
    ],
    ids=["missing", "ndim", "syntax", "memory", "exists", "merge-target", "mismatch"],
)
def test_bad_input_is_one_line_and_status_2(tmp_path, blocks, capsys, argv, message):
    write_block_store(blocks + "2", (4, 4, 4), (2, 2, 2))
    write_block_store(str(tmp_path / "bad"), (4, 4, 4), (2, 2, 2))
    np.save(tmp_path / "bad" / "0.0.0.npy", np.zeros((2, 2, 3), "uint16"))
    argv = [a.format(tmp=tmp_path, src=blocks) for a in argv]
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"dask-io {argv[0]}: error:")
    assert message in err
    assert not os.path.exists(tmp_path / "o")


def test_demo_small(capsys):
    assert run_cli(["demo", "--size", "2MiB"]) == 0
    out = capsys.readouterr().out
    for name in ("naive", "clustered", "keep", "auto="):
        assert name in out
    assert "measured I/O = plan: yes" in out


def _files(folder):
    return [f for _, _, fs in os.walk(folder) for f in fs]


def test_kill_9_then_resume(tmp_path):
    """SIGKILL a resplit mid-run, run the same command again: complete, no temp files."""
    src = str(tmp_path / "in")
    write_block_store(src, (128, 128, 96), (64, 64, 32))
    dst = str(tmp_path / "out")
    cmd = [
        sys.executable,
        "-m",
        "dask_io._cli_run",
        "resplit",
        src,
        dst,
        "--out-chunks",
        "20,30,17",
        "--strategy",
        "naive",
        "--max-mem",
        "4MiB",
        "--no-progress",
        "--prefetch",
        "off",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        names = _files(dst) if os.path.isdir(dst) else []
        done = [n for n in names if n.endswith(".npy")]
        if len(done) >= 3 and any(n.endswith(TMP_SUFFIX) for n in names):
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert any(n.endswith(TMP_SUFFIX) for n in _files(dst))  # killed mid-block
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr
    assert "already complete" in again.stdout
    check_path(dst)
    assert not [n for n in _files(dst) if n.endswith(TMP_SUFFIX)]
