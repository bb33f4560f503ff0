"""Item 6 of issue 15: resume state found by a re-run in a NEW process.

The pieces folder of ``dask_io.rechunk`` with a ``temp_store`` used to be named with
Python's salted ``hash()``: a new process looked in another folder and lost the pieces
of the interrupted job. Each run here is a fresh interpreter with its own hash seed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import zarr

SCRIPT = r"""
import json, sys
import numpy as np, zarr
import dask_io.execute.rechunk as rk
import dask_io.execute.distributed as dx

src, out, tmp, mode, log = sys.argv[1:6]
ran = []
run_group, finish_batch = dx.run_group, dx.finish_batch
def group(job, index, *rest):
    ran.append(index)
    return run_group(job, index, *rest)
calls = {"n": 0}
def finish(job, batch, *deps):
    calls["n"] += 1
    if mode == "crash" and calls["n"] == 2:
        raise RuntimeError("injected crash in a finishing task")
    return finish_batch(job, batch, *deps)
dx.run_group, dx.finish_batch = group, finish
job = rk.rechunk(zarr.open_array(src, mode="r"), (5, 15, 10), out, 8000, temp_store=tmp,
                 executor="synchronous")
try:
    job.execute(progress=False)
    status = "ok"
except RuntimeError as e:
    status = str(e)
a = job.arrays[0]
done = sorted(i for i in range(len(a.gp.groups))
              if __import__("os").path.exists(f"{a.state}/groups/{i}.done"))
json.dump({"status": status, "ran": ran, "done": done, "seams": len(a.gp.seams)},
          open(log, "w"))
"""


def _run(tmp_path, mode, seed):
    log = str(tmp_path / f"{mode}.json")
    env = {**os.environ, "PYTHONHASHSEED": str(seed)}
    args = [str(tmp_path / "src.zarr"), str(tmp_path / "out.zarr"), str(tmp_path / "tmp"), mode]
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args, log],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    with open(log) as f:
        return json.load(f)


def _files(root):
    return sorted(
        os.path.relpath(os.path.join(d, n), root) for d, _, ns in os.walk(root) for n in ns
    )


def test_temp_store_pieces_found_by_a_new_process(tmp_path):
    rng = np.random.default_rng(15)
    x = rng.integers(0, 2**16, size=(48, 30, 20), dtype="uint16")
    src = zarr.create_array(
        str(tmp_path / "src.zarr"), shape=x.shape, dtype=x.dtype, chunks=(4, 10, 20)
    )
    src[...] = x
    first = _run(tmp_path, "crash", seed=1)
    assert first["status"] == "injected crash in a finishing task"
    assert first["seams"] > 0 and first["done"], first
    folders = os.listdir(tmp_path / "tmp")
    assert len(folders) == 1 and _files(tmp_path / "tmp"), "expected pieces of the crashed job"
    second = _run(tmp_path, "resume", seed=2)
    assert second["status"] == "ok"
    assert not set(second["ran"]) & set(first["done"]), "finished groups were run again"
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...], x)
    assert _files(tmp_path / "tmp") == []  # the pieces folder is removed once done
    assert not os.path.exists(str(tmp_path / "out.zarr") + ".dask_io-tmp")
    assert not [f for f in _files(tmp_path / "out.zarr") if "tmp" in f or "partial" in f]
