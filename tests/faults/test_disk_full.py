"""Item 1 of issue 15: a full disk (ENOSPC) or an I/O error (EIO) at any point of a
split, merge, resplit or ``dask_io.rechunk``.

The storage layer's write calls are wrapped (:mod:`_inject`) to fail after N bytes,
N at several points of the run. What the user must see: one line naming the file and
the errno, exit status 1, no file half-written under a final name, a manifest that
parses and lists only complete blocks, no temporary files left; and once the fault
clears, the same command finishes, redoing only the blocks that were not complete.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from _inject import Injector, tmp_files

from dask_io.cli import main
from dask_io.storage.blocks import MANIFEST
from dask_io.storage.files import TMP_SUFFIX
from dask_io.testing.data import check_path, full, write_block_store, write_npy

SHAPE, IN, OUT = (24, 30, 20), (8, 15, 20), (6, 10, 10)
FRACTIONS = (0.0, 0.3, 0.7, 0.98, 1.0)  # 1.0: total - 1 bytes, the last write fails
CODES = {"ENOSPC": errno.ENOSPC, "EIO": errno.EIO}
REASON = {"ENOSPC": "No space left on device", "EIO": "Input/output error"}


def _argv(cmd, tmp_path):
    mem = ["--max-mem", "40KiB", "--no-progress", "--prefetch", "off", "--strategy", "naive"]
    if cmd == "split":
        return [
            "split",
            str(tmp_path / "a.npy"),
            str(tmp_path / "out"),
            "--out-chunks",
            "6,10,10",
            *mem,
        ]
    if cmd == "merge":
        return [
            "merge",
            str(tmp_path / "in"),
            str(tmp_path / "m.npy"),
            *mem[2:],
            "--max-mem",
            "64KiB",
        ]
    if cmd == "resplit-zarr":
        return [
            "resplit",
            str(tmp_path / "in"),
            str(tmp_path / "out.zarr"),
            "--out-chunks",
            "6,10,10",
            *mem,
        ]
    return ["resplit", str(tmp_path / "in"), str(tmp_path / "out"), "--out-chunks", "6,10,10", *mem]


def _target(argv):
    return argv[2]


def _sources(tmp_path):
    write_npy(str(tmp_path / "a.npy"), SHAPE)
    write_block_store(str(tmp_path / "in"), SHAPE, IN)


def _total_bytes(tmp_path, cmd, monkeypatch):
    """Bytes one clean run writes through the wrapped calls (the run is then undone)."""
    import shutil

    argv = _argv(cmd, tmp_path)
    with monkeypatch.context() as m:
        inj = Injector().install(m)
        assert main(argv) == 0
    target = _target(argv)
    shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
    return inj.written


def _final_blocks(target):
    """Block files under their final names, each checked to hold the source's values."""
    if not os.path.isdir(target):
        return []
    names = sorted(n for n in os.listdir(target) if n.endswith(".npy"))
    sample = full(SHAPE)
    for n in names:
        idx = tuple(int(i) for i in n[: -len(".npy")].split("."))
        sl = tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, OUT, strict=True))
        np.testing.assert_array_equal(np.load(os.path.join(target, n)), sample[sl])
    return names


@pytest.mark.parametrize("code", list(CODES))
@pytest.mark.parametrize("cmd", ["split", "resplit", "resplit-zarr", "merge"])
def test_write_fault_then_resume(tmp_path, monkeypatch, capsys, cmd, code):
    _sources(tmp_path)
    total = _total_bytes(tmp_path, cmd, monkeypatch)
    argv = _argv(cmd, tmp_path)
    target = _target(argv)
    nblocks = 4 * 3 * 2
    for fraction in FRACTIONS:
        budget = total - 1 if fraction == 1.0 else int(total * fraction)
        capsys.readouterr()
        with monkeypatch.context() as m:
            inj = Injector(budget=budget, code=CODES[code]).install(m)
            rc = main(argv)
        err = capsys.readouterr().err
        assert inj.failed is not None, f"N={budget} of {total}: nothing failed"
        assert rc == 1, err
        lines = {  # the file of a failed call (the committer thread may race the writer)
            f"dask-io {argv[0]}: error: cannot write {os.path.realpath(name)!r}: "
            f"{REASON[code]} (errno {CODES[code]} {code})\n"
            for name in inj.failures
        }
        assert err in lines
        assert tmp_files(str(tmp_path)) == []
        assert not os.path.exists(target) or cmd not in ("merge", "resplit-zarr")
        done = _final_blocks(target)  # every block under its final name is whole
        if os.path.exists(os.path.join(target, MANIFEST)):
            manifest = json.loads(Path(target, MANIFEST).read_text())
            assert manifest["complete"] is False
            listed = {".".join(map(str, b)) + ".npy" for b in manifest["completed_blocks"]}
            assert listed <= set(done)
        with monkeypatch.context() as m:  # the fault cleared: the same command again
            inj = Injector().install(m)
            assert main(argv) == 0
        out = capsys.readouterr().out
        written = {os.path.basename(p) for p in inj.paths}
        if done:
            assert "already complete" in out
        assert not {d + TMP_SUFFIX for d in done} & written, "a complete block was redone"
        if cmd in ("split", "resplit"):  # exactly the blocks not complete were written
            redone = {w for w in written if w.endswith(".npy" + TMP_SUFFIX)}
            assert len(redone) == nblocks - len(done)
        check_path(target)
        assert tmp_files(str(tmp_path)) == []
        _remove(target)


def _remove(path):
    import shutil

    for p in (path, path + TMP_SUFFIX):
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)


@pytest.mark.parametrize("cmd", ["resplit", "merge"])
def test_fsync_eio_then_resume(tmp_path, monkeypatch, capsys, cmd):
    """EIO from fsync (a block's commit, or the manifest's): the same one line."""
    _sources(tmp_path)
    argv = _argv(cmd, tmp_path)
    failures = 0
    ks = (1, 3, 8) if cmd == "resplit" else (1,)  # merge: the one file's fsync
    for k in ks:
        with monkeypatch.context() as m:
            inj = Injector(code=errno.EIO, fsync_fail=k).install(m)
            rc = main(argv)
        err = capsys.readouterr().err
        if inj.failed is None:  # fewer fsyncs than k in this run
            assert rc == 0
        else:
            failures += 1
            assert rc == 1
            assert err in {
                f"dask-io {argv[0]}: error: cannot write {os.path.realpath(name)!r}: "
                f"Input/output error (errno 5 EIO)\n"
                for name in inj.failures
            }, err
            assert tmp_files(str(tmp_path)) == []
            _final_blocks(_target(argv))
            assert main(argv) == 0
        capsys.readouterr()
        check_path(_target(argv))
        _remove(_target(argv))
    assert failures == len(ks)


# -- dask_io.rechunk ------------------------------------------------------------------


RSHAPE, RIN, ROUT, RMEM = (48, 30, 20), (4, 10, 20), (5, 15, 10), 8_000  # plans with seams


def _zarr_source(tmp_path):
    import zarr

    x = full(RSHAPE)
    src = zarr.create_array(str(tmp_path / "src.zarr"), shape=RSHAPE, dtype=x.dtype, chunks=RIN)
    src[...] = x
    return zarr.open_array(str(tmp_path / "src.zarr"), mode="r"), x


def _rechunk(src, out, executor="synchronous"):
    import dask_io.execute.rechunk as rk

    return rk.rechunk(src, ROUT, out, RMEM, executor=executor)


@pytest.mark.parametrize("code", list(CODES))
def test_rechunk_write_fault_then_resume(tmp_path, monkeypatch, code):
    import dask_io.execute.distributed as dx
    from dask_io.errors import StoreIOError

    src, x = _zarr_source(tmp_path)
    out = str(tmp_path / "out.zarr")
    with monkeypatch.context() as m:
        inj = Injector().install(m)
        job = _rechunk(src, out)
        assert job.plan["seams"] > 0, "expected a plan with intermediate pieces"
        job.execute(progress=False)
    total = inj.written
    _remove(out)
    for fraction in FRACTIONS:
        budget = total - 1 if fraction == 1.0 else int(total * fraction)
        job = _rechunk(src, out)
        with monkeypatch.context() as m:
            inj = Injector(budget=budget, code=CODES[code]).install(m)
            with pytest.raises(StoreIOError) as info:
                job.execute(progress=False)
        assert str(info.value) in {
            f"cannot write {os.path.realpath(p)!r}: {REASON[code]} (errno {CODES[code]} {code})"
            for p in inj.failures
        }, str(info.value)
        assert not os.path.exists(out)  # the array moves into place only when complete
        assert [f for f in tmp_files(str(tmp_path)) if not f.endswith(".partial")] == []
        a = job.arrays[0]
        done = {i for i in range(len(a.gp.groups)) if os.path.exists(f"{a.state}/groups/{i}.done")}
        ran: list[int] = []
        with monkeypatch.context() as m:
            m.setattr(dx, "run_group", _recording(dx.run_group, ran))
            result = _rechunk(src, out).execute(progress=False)
        assert not set(ran) & done, "a finished group was run again"
        np.testing.assert_array_equal(result[...], x)
        assert tmp_files(str(tmp_path)) == []
        _remove(out)


def _recording(run_group, ran):
    def run(job, index, *rest):
        ran.append(index)
        return run_group(job, index, *rest)

    return run
