"""resplit / split / merge: endpoints, bad input caught before writing, resume, overwrite."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

from dask_io.errors import (
    DaskIOError,
    InsufficientMemoryError,
    InvalidChunksError,
    StoreExistsError,
    StoreMismatchError,
    StoreNotFoundError,
)
from dask_io.execute.api import merge, resplit, split
from dask_io.storage.blocks import MANIFEST, BlockStore
from dask_io.storage.endpoints import open_source
from dask_io.storage.files import TMP_SUFFIX
from dask_io.testing.data import check_path, full, write_block_store

SHAPE, IN, OUT = (20, 18, 16), (10, 6, 8), (7, 8, 5)


@pytest.fixture
def blocks(tmp_path):
    path = str(tmp_path / "in")
    write_block_store(path, SHAPE, IN)
    return path


def _tmp_files(folder):
    return [f for _, _, files in os.walk(folder) for f in files if f.endswith(TMP_SUFFIX)]


def test_split_resplit_merge_round_trip(tmp_path):
    array = full(SHAPE, "uint16")
    np.save(tmp_path / "a.npy", array)
    r1 = split(str(tmp_path / "a.npy"), str(tmp_path / "b"), IN, max_mem=40_000)
    r2 = resplit(str(tmp_path / "b"), str(tmp_path / "c"), OUT, max_mem=40_000, format="hdf5")
    r3 = merge(str(tmp_path / "c"), str(tmp_path / "m.h5:/g/d"), max_mem=40_000)
    with h5py.File(tmp_path / "m.h5", "r") as f:
        np.testing.assert_array_equal(f["g/d"][...], array)
    for r in (r1, r2, r3):
        assert r.mismatches() == {}
        assert r.elapsed > 0 and "opens" in r.summary()
    assert open_source(str(tmp_path / "c")).kind == "hdf5"
    assert json.loads((tmp_path / "b" / MANIFEST).read_text())["complete"] is True


@pytest.mark.parametrize("target", ["m.npy", "m.h5", "m.zarr"])
def test_merge_targets(blocks, tmp_path, target):
    report = merge(blocks, str(tmp_path / target), max_mem=60_000)
    check_path(str(tmp_path / target))
    assert report.plan.out_grid.nblocks == 1
    assert not os.path.exists(str(tmp_path / target) + TMP_SUFFIX)


def test_zarr_sharded_and_v2_targets(blocks, tmp_path):
    resplit(blocks, str(tmp_path / "s.zarr"), (10, 8, 8), 60_000, inner_chunks=(5, 4, 4))
    arr = zarr.open_array(str(tmp_path / "s.zarr"), mode="r")
    assert arr.shards == (10, 8, 8) and arr.chunks == (5, 4, 4)
    resplit(blocks, str(tmp_path / "v2.zarr"), OUT, 60_000, zarr_format=2)
    assert zarr.open_array(str(tmp_path / "v2.zarr"), mode="r").metadata.zarr_format == 2
    for name in ("s.zarr", "v2.zarr"):
        check_path(str(tmp_path / name))


def test_chunked_hdf5_target(blocks, tmp_path):
    report = resplit(blocks, str(tmp_path / "c.h5:/x"), OUT, 60_000)
    assert report.plan.layout == ("contiguous", "chunked")
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert f["x"].chunks == OUT
    check_path(str(tmp_path / "c.h5:/x"))


# -- bad input: one clear error, nothing written -------------------------------------


def _no_target(tmp_path, name="out"):
    assert not os.path.exists(tmp_path / name)
    assert not os.path.exists(str(tmp_path / name) + TMP_SUFFIX)


def test_missing_source(tmp_path):
    with pytest.raises(StoreNotFoundError, match=r"nope.*does not exist"):
        resplit(str(tmp_path / "nope"), str(tmp_path / "out"), OUT)
    with pytest.raises(StoreNotFoundError, match="does not exist"):
        resplit(str(tmp_path / "nope.h5"), str(tmp_path / "out"), OUT)
    _no_target(tmp_path)


@pytest.mark.parametrize("junk", ["x.npy", "x.h5", "x.zarr", "folder"])
def test_unreadable_source(tmp_path, junk):
    if junk in ("x.zarr", "folder"):
        (tmp_path / junk).mkdir()
        (tmp_path / junk / "zarr.json").write_text("{not json") if junk == "x.zarr" else None
    else:
        (tmp_path / junk).write_bytes(b"garbage, not an array")
    with pytest.raises(StoreNotFoundError, match=junk):
        resplit(str(tmp_path / junk), str(tmp_path / "out"), OUT)
    _no_target(tmp_path)


def test_missing_dataset(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["other"] = np.zeros(3)
    with pytest.raises(StoreNotFoundError, match=r"no dataset '/data'.*other"):
        resplit(str(tmp_path / "a.h5"), str(tmp_path / "out"), (2,))


def test_block_file_disagrees_with_manifest(blocks, tmp_path):
    bad = os.path.join(blocks, "1.0.1.npy")
    np.save(bad, np.zeros((10, 6, 7), "uint16"))
    with pytest.raises(
        StoreMismatchError, match=r"1\.0\.1\.npy.*\(10, 6, 7\).*expects shape \(10, 6, 8\)"
    ):
        resplit(blocks, str(tmp_path / "out"), OUT)
    np.save(bad, np.zeros((10, 6, 8), "float32"))
    with pytest.raises(StoreMismatchError, match=r"float32.*expects.*uint16"):
        resplit(blocks, str(tmp_path / "out"), OUT)
    os.remove(bad)
    with pytest.raises(StoreNotFoundError, match=r"1\.0\.1\.npy"):
        resplit(blocks, str(tmp_path / "out"), OUT)
    _no_target(tmp_path)


def test_incomplete_source_store(blocks, tmp_path):
    fn = os.path.join(blocks, MANIFEST)
    data = json.loads(Path(fn).read_text())
    data.update(complete=False, completed_blocks=[])
    Path(fn).write_text(json.dumps(data))
    with pytest.raises(StoreMismatchError, match="incomplete"):
        resplit(blocks, str(tmp_path / "out"), OUT)


@pytest.mark.parametrize("target", ["out", "out.npy", "out.h5", "out.zarr"])
def test_existing_target_needs_overwrite(blocks, tmp_path, target):
    path = tmp_path / target
    chunks = SHAPE if target in ("out.npy", "out.h5") else OUT
    resplit(blocks, str(path), chunks, 60_000)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(StoreExistsError, match=f"{target}.*already exists.*overwrite"):
        resplit(blocks, str(path), chunks, 60_000)
    assert sorted(os.listdir(tmp_path)) == before
    report = resplit(blocks, str(path), chunks, 60_000, overwrite=True)
    assert report.skipped == 0
    check_path(str(path))


def test_non_empty_folder_is_not_overwritten(blocks, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    with pytest.raises(StoreExistsError, match="already exists"):
        resplit(blocks, str(tmp_path / "out"), OUT)
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("chunks", [(7, 8), (7, 8, 5, 2), (0, 8, 5), "abc"])
def test_wrong_chunks(blocks, tmp_path, chunks):
    with pytest.raises(InvalidChunksError, match="out_chunks"):
        resplit(blocks, str(tmp_path / "out"), chunks)
    _no_target(tmp_path)


def test_memory_too_small(blocks, tmp_path):
    with pytest.raises(InsufficientMemoryError, match="max_mem=20 B is below"):
        resplit(blocks, str(tmp_path / "out"), OUT, max_mem=20)
    with pytest.raises(InvalidChunksError, match="max_mem='lots'"):
        resplit(blocks, str(tmp_path / "out"), OUT, max_mem="lots")
    _no_target(tmp_path)


def test_other_bad_arguments(blocks, tmp_path):
    with pytest.raises(InvalidChunksError, match="strategy='fast'"):
        resplit(blocks, str(tmp_path / "out"), OUT, strategy="fast")
    with pytest.raises(InvalidChunksError, match="format='tiff'"):
        resplit(blocks, str(tmp_path / "out"), OUT, format="tiff")
    with pytest.raises(InvalidChunksError, match="one block"):
        resplit(blocks, str(tmp_path / "out.npy"), OUT)
    with pytest.raises(InvalidChunksError, match="is the source"):
        resplit(blocks, blocks, OUT, overwrite=True)
    with pytest.raises(InvalidChunksError, match="split writes a block store"):
        split(blocks, str(tmp_path / "out.npy"), OUT)
    with pytest.raises(InvalidChunksError, match="merge writes one array"):
        merge(blocks, str(tmp_path / "out"))
    with pytest.raises(InvalidChunksError, match="inner_chunks"):
        resplit(blocks, str(tmp_path / "out.zarr"), OUT, inner_chunks=(3, 3, 3))
    _no_target(tmp_path)
    assert issubclass(StoreExistsError, DaskIOError)


# -- resume ---------------------------------------------------------------------------


class Crash(Exception):
    pass


def _crash_after(monkeypatch, cls, n):
    original = cls.commit
    calls = {"n": 0}

    def commit(self, block):
        if calls["n"] >= n:
            raise Crash(f"stopped after {n} blocks")
        calls["n"] += 1
        original(self, block)

    monkeypatch.setattr(cls, "commit", commit)


@pytest.mark.parametrize("strategy", ["naive", "keep"])
def test_resume_block_store(blocks, tmp_path, monkeypatch, strategy):
    out = str(tmp_path / "out")
    _crash_after(monkeypatch, BlockStore, 5)
    with pytest.raises(Crash):
        resplit(blocks, out, OUT, 30_000, strategy, prefetch=False)
    manifest = json.loads(Path(out, MANIFEST).read_text())
    assert manifest["complete"] is False
    monkeypatch.undo()
    with pytest.raises(StoreMismatchError, match="incomplete"):
        open_source(out)
    report = resplit(blocks, out, OUT, 30_000, strategy)
    assert report.skipped >= 5
    assert report.measured.bytes_written < report.plan.cost.bytes_written
    check_path(out)
    assert _tmp_files(out) == []
    assert json.loads(Path(out, MANIFEST).read_text())["complete"] is True


def test_resume_refuses_another_job(blocks, tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    _crash_after(monkeypatch, BlockStore, 2)
    with pytest.raises(Crash):
        resplit(blocks, out, OUT, 30_000, "naive")
    monkeypatch.undo()
    with pytest.raises(StoreExistsError, match=r"unfinished run of another job.*out_chunks"):
        resplit(blocks, out, (5, 5, 5), 30_000)
    resplit(blocks, out, (5, 5, 5), 30_000, overwrite=True)
    check_path(out)


def test_resume_zarr(blocks, tmp_path, monkeypatch):
    from dask_io.storage.zarr_store import ZarrStore

    out = str(tmp_path / "out.zarr")
    _crash_after(monkeypatch, ZarrStore, 4)
    with pytest.raises(Crash):
        resplit(blocks, out, OUT, 30_000, "naive")
    monkeypatch.undo()
    assert not os.path.exists(out) and os.path.isdir(out + TMP_SUFFIX)
    report = resplit(blocks, out, OUT, 30_000, "naive")
    assert report.skipped >= 1
    check_path(out)
    assert not os.path.exists(out + TMP_SUFFIX)


def test_single_file_target_restarts(blocks, tmp_path, monkeypatch):
    from dask_io.storage.single import NpyFile

    out = str(tmp_path / "m.npy")
    _crash_after(monkeypatch, NpyFile, 0)
    with pytest.raises(Crash):
        merge(blocks, out, 60_000)
    monkeypatch.undo()
    assert not os.path.exists(out) and os.path.exists(out + TMP_SUFFIX)
    report = merge(blocks, out, 60_000)
    assert report.removed == [out + TMP_SUFFIX]
    check_path(out)
    assert not os.path.exists(out + TMP_SUFFIX)
