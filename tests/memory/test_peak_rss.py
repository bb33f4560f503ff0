"""max_mem is a promise: every entry point's peak RSS stays within max_mem + 200 MiB.

Each case runs one entry point in a fresh interpreter (``_child.py``) on a 256 MiB
uint16 Zarr v2 array of 32 MiB chunks, reads the child's VmHWM at its end and checks
the result against the source. The budgets are small (64-128 MiB) so the bound bites:
before the process memory ledger, ``dask_io.rechunk`` peaked near the whole array.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

if not os.path.exists("/proc/self/status"):
    pytest.skip("VmHWM needs Linux /proc", allow_module_level=True)

MiB = 1 << 20
SLACK = 200 * MiB  # the interpreter, numpy, zarr, dask and allocator slack
SHAPE, CHUNKS, OUT = (512, 512, 512), (256, 256, 256), (200, 300, 350)
CHILD = os.path.join(os.path.dirname(__file__), "_child.py")


def _values(lo: int, hi: int) -> np.ndarray:
    i = np.arange(lo, hi, dtype=np.int64)[:, None, None]
    j = np.arange(SHAPE[1], dtype=np.int64)[None, :, None]
    k = np.arange(SHAPE[2], dtype=np.int64)[None, None, :]
    return ((i * 7919 + j * 131 + k * 3) % 65521).astype(np.uint16)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("memory") / "src.zarr")
    arr = zarr.create_array(
        path, shape=SHAPE, chunks=CHUNKS, dtype="uint16", compressors=None, zarr_format=2
    )
    for lo in range(0, SHAPE[0], CHUNKS[0]):
        arr[lo : lo + CHUNKS[0]] = _values(lo, lo + CHUNKS[0])
    return path


def _peak(spec: dict) -> dict:
    """Run ``spec`` in a child interpreter; return its peak RSS reading(s)."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    out = subprocess.run(
        [sys.executable, CHILD, json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _check_same(path: str) -> None:
    """The array at ``path`` equals the source values (compared in slabs)."""
    arr = np.load(path, mmap_mode="r") if path.endswith(".npy") else zarr.open_array(path, mode="r")
    assert tuple(arr.shape) == SHAPE
    for lo in range(0, SHAPE[0], 128):
        np.testing.assert_array_equal(arr[lo : lo + 128], _values(lo, lo + 128))


def _within(peak: int, max_mem: int, what: str) -> None:
    print(f"{what}: peak RSS {peak / MiB:.0f} MiB, max_mem {max_mem / MiB:.0f} MiB")
    assert peak <= max_mem + SLACK, (
        f"{what}: peak RSS {peak / MiB:.0f} MiB exceeds max_mem {max_mem / MiB:.0f} MiB "
        f"+ {SLACK / MiB:.0f} MiB"
    )


@pytest.mark.parametrize("executor", ["synchronous", "threads"])
def test_rechunk_local(source, tmp_path, executor):
    max_mem = 64 * MiB
    dst = str(tmp_path / "dst.zarr")
    spec = {"kind": "rechunk", "executor": executor, "src": source, "dst": dst}
    got = _peak({**spec, "chunks": OUT, "max_mem": max_mem})
    _within(got["peak"], max_mem, f"rechunk {executor}")
    assert tuple(zarr.open_array(dst, mode="r").chunks) == OUT
    _check_same(dst)


def test_rechunk_cluster_per_worker(source, tmp_path):
    pytest.importorskip("distributed")
    max_mem = 64 * MiB
    dst = str(tmp_path / "dst.zarr")
    spec = {"kind": "rechunk", "executor": "cluster", "src": source, "dst": dst}
    got = _peak({**spec, "chunks": OUT, "max_mem": max_mem})
    assert len(got["workers"]) == 1
    _within(got["workers"][0], max_mem, "rechunk LocalCluster worker")
    _check_same(dst)


def test_cli_resplit(source, tmp_path):
    max_mem = 64 * MiB
    dst = str(tmp_path / "r.zarr")
    argv = ["resplit", source, dst, "--out-chunks", ",".join(map(str, OUT)), "--zarr-format", "2"]
    _within(_peak({"kind": "cli", "argv": argv, "max_mem": max_mem})["peak"], max_mem, "resplit")
    assert tuple(zarr.open_array(dst, mode="r").chunks) == OUT
    _check_same(dst)


def test_cli_split_then_merge(source, tmp_path):
    max_mem = 64 * MiB
    blocks, merged = str(tmp_path / "blocks"), str(tmp_path / "m.npy")
    split = ["split", source, blocks, "--out-chunks", ",".join(map(str, OUT))]
    _within(_peak({"kind": "cli", "argv": split, "max_mem": max_mem})["peak"], max_mem, "split")
    merge = ["merge", blocks, merged]
    _within(_peak({"kind": "cli", "argv": merge, "max_mem": max_mem})["peak"], max_mem, "merge")
    _check_same(merged)


def test_graph_pass(source, tmp_path):
    max_mem = 128 * MiB
    dst = str(tmp_path / "g.zarr")
    spec = {"kind": "graph", "src": source, "dst": dst, "chunks": OUT, "max_mem": max_mem}
    _within(_peak(spec)["peak"], max_mem, "graph pass")
    _check_same(dst)
