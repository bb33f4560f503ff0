"""The pass on the Zarr path: ``from_zarr -> rechunk -> to_zarr`` (and ``da.store`` of a
stored array into a whole Zarr array) runs on the rechunk executor.

The oracle is the source itself (numpy), and plain Dask where plain Dask is right;
the misaligned-shard cases are where it is not.
"""

from __future__ import annotations

import os
from collections import Counter

import dask
import dask.array as da
import h5py
import numpy as np
import pytest

import dask_io
from dask_io.execute.distributed import run_group

zarr = pytest.importorskip("zarr")

SHAPE = (48, 40, 36)


def _data(shape=SHAPE, dtype="u2"):
    n = int(np.prod(shape))
    return (np.arange(n, dtype=np.int64).reshape(shape) * 7919 % 65521).astype(dtype)


def _source(path, data, chunks=(16, 16, 16), **kwargs):
    arr = zarr.create_array(str(path), shape=data.shape, chunks=chunks, dtype=data.dtype, **kwargs)
    arr[...] = data
    return str(path)


def _optimized_funcs(obj):
    (opt,) = dask.optimize(obj)
    return [getattr(t, "func", None) for t in dict(opt.__dask_graph__()).values()]


def _leftovers(folder):
    return sorted(n for n in os.listdir(folder) if "dask_io" in n)


@pytest.mark.parametrize(
    ("src_kwargs", "dst_kwargs"),
    [
        ({"zarr_format": 2, "compressors": None}, {"zarr_format": 2, "compressors": None}),
        ({"zarr_format": 3, "compressors": None}, {"zarr_format": 3}),  # zstd target
        ({"zarr_format": 3}, {"zarr_format": 2}),
        ({"zarr_format": 3, "shards": (32, 32, 32)}, {"zarr_format": 3, "compressors": None}),
    ],
    ids=["v2-v2-raw", "v3-raw-to-zstd", "v3-zstd-to-v2", "sharded-source"],
)
def test_from_zarr_rechunk_to_zarr(tmp_path, src_kwargs, dst_kwargs):
    data = _data()
    src = _source(tmp_path / "src.zarr", data, **src_kwargs)
    dst = str(tmp_path / "dst.zarr")
    with dask_io.optimizing(max_mem="64KiB"):
        y = da.from_zarr(src).rechunk((20, 15, 36))
        stored = y.to_zarr(dst, compute=False, **dst_kwargs)
        assert run_group in _optimized_funcs(stored)  # the executor, not Dask's tasks
        stored.compute()
    out = zarr.open_array(dst, mode="r")
    assert tuple(out.chunks) == (20, 15, 36)
    np.testing.assert_array_equal(out[...], data)
    assert _leftovers(tmp_path) == []  # the executor's state folder is gone


def test_each_source_chunk_is_read_once(tmp_path, monkeypatch):
    from dask_io.execute.rechunk import ArraySource

    data = _data()
    src = _source(tmp_path / "src.zarr", data, chunks=(12, 10, 9), zarr_format=2)
    reads: Counter[tuple] = Counter()
    original = ArraySource.read

    def counting(self, block, region, out, staging=None):
        reads[tuple(map(tuple, region))] += 1
        return original(self, block, region, out, staging)

    monkeypatch.setattr(ArraySource, "read", counting)
    with dask_io.optimizing(max_mem="1MiB"):
        da.from_zarr(src).rechunk((16, 20, 12)).to_zarr(str(tmp_path / "d.zarr"), zarr_format=2)
    chunks = {
        ((i, i + 12), (j, j + 10), (k, k + 9))
        for i in range(0, 48, 12)
        for j in range(0, 40, 10)
        for k in range(0, 36, 9)
    }
    assert set(reads) == chunks and set(reads.values()) == {1}  # whole chunks, once each
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "d.zarr"))[...], data)


@pytest.mark.parametrize("chunks", [(15, 13, 36), (7, 40, 11)])
def test_sharded_target_with_chunks_straddling_shards(tmp_path, chunks):
    """Plain Dask writes a shard from several tasks at once (dask#12583): under the pass a
    sharded target is written by whole shards from the planned groups."""
    data = _data()
    src = _source(tmp_path / "src.zarr", data, zarr_format=3, compressors=None)
    z = zarr.create_array(
        str(tmp_path / "dst.zarr"),
        shape=SHAPE,
        dtype="u2",
        chunks=(8, 8, 12),
        shards=(16, 16, 36),
        zarr_format=3,
    )
    with dask_io.optimizing(max_mem="256KiB"):
        da.store(da.from_zarr(src).rechunk(chunks), z, lock=False)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "dst.zarr"))[...], data)


def test_hdf5_source_into_zarr(tmp_path):
    data = _data(dtype="f4")
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f.create_dataset("x", data=data, chunks=(16, 8, 36))
        f.create_dataset("c", data=data)  # contiguous
    with h5py.File(tmp_path / "s.h5", "r") as f:
        for name in ("x", "c"):
            dst = str(tmp_path / f"{name}.zarr")
            with dask_io.optimizing(max_mem="128KiB"):
                stored = da.from_array(f[name], chunks=(16, 8, 36)).rechunk((10, 40, 9))
                stored = stored.to_zarr(dst, compute=False, zarr_format=3)
                assert run_group in _optimized_funcs(stored)
                stored.compute()
            np.testing.assert_array_equal(zarr.open_array(dst)[...], data)


def test_results_equal_plain_dask_and_partial_targets_fall_back(tmp_path):
    """Region writes, in-memory targets and computed values are not whole copies: the
    buffer subgraph or Dask does them, with the same bytes as plain Dask."""
    data = _data()
    src = _source(tmp_path / "src.zarr", data, zarr_format=2, compressors=None)

    def run(folder):
        os.makedirs(folder)
        big = zarr.create_array(
            os.path.join(folder, "big.zarr"),
            shape=(60, 40, 36),
            chunks=(12, 10, 36),
            dtype="u2",
            zarr_format=2,
        )
        x = da.from_zarr(src)
        x.rechunk((12, 20, 36)).to_zarr(big, region=(slice(12, 60),))
        mem = zarr.create_array(
            zarr.storage.MemoryStore(), shape=SHAPE, chunks=(9, 9, 9), dtype="u2"
        )
        da.store(x.rechunk((9, 9, 9)), mem, lock=False)
        (x.rechunk((24, 20, 36)) + 1).to_zarr(os.path.join(folder, "plus.zarr"))
        return big[...], mem[...], zarr.open_array(os.path.join(folder, "plus.zarr"))[...]

    plain = run(str(tmp_path / "plain"))
    with dask_io.optimizing(max_mem="64KiB"):
        passed = run(str(tmp_path / "pass"))
    for a, b in zip(plain, passed, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(passed[0][12:], data)
    np.testing.assert_array_equal(passed[1], data)


def test_recompute_starts_from_scratch(tmp_path):
    """A second computation of the same graph (the target recreated in between) does
    not trust markers of the first one."""
    data = _data()
    src = _source(tmp_path / "src.zarr", data, zarr_format=2, compressors=None)
    dst = str(tmp_path / "dst.zarr")
    with dask_io.optimizing(max_mem="64KiB"):
        stored = da.from_zarr(src).rechunk((20, 15, 36)).to_zarr(dst, compute=False)
        stored.compute()
        zarr.create_array(dst, shape=SHAPE, chunks=(20, 15, 36), dtype="u2", overwrite=True)
        stored.compute()
    np.testing.assert_array_equal(zarr.open_array(dst)[...], data)


def test_xarray_to_zarr_every_variable(tmp_path):
    xr = pytest.importorskip("xarray")
    data = _data()
    ds = xr.Dataset(
        {
            "a": (("t", "y", "x"), data, {"units": "K"}),
            "b": (("t", "y", "x"), data.astype("f4") / 3),
        },
        coords={"t": np.arange(SHAPE[0]), "y": np.linspace(0, 1, SHAPE[1])},
        attrs={"title": "test"},
    )
    src = str(tmp_path / "src.zarr")
    ds.chunk({"t": 16, "y": 20, "x": 36}).to_zarr(src, zarr_format=2)
    opened = xr.open_zarr(src).drop_encoding()
    opened.chunk({"t": 24, "y": 8}).to_zarr(str(tmp_path / "plain.zarr"), zarr_format=2)
    with dask_io.optimizing(max_mem="64KiB"):
        opened = xr.open_zarr(src).drop_encoding()
        rechunked = opened.chunk({"t": 24, "y": 8})
        for name in ("a", "b"):
            assert run_group in _optimized_funcs(
                rechunked[name].data.to_zarr(str(tmp_path / f"probe-{name}.zarr"), compute=False)
            )
        rechunked.to_zarr(str(tmp_path / "pass.zarr"), zarr_format=2)
    plain = xr.open_zarr(str(tmp_path / "plain.zarr"))
    passed = xr.open_zarr(str(tmp_path / "pass.zarr"))
    xr.testing.assert_identical(passed, plain)
    for name in ("a", "b"):
        p = zarr.open_array(str(tmp_path / "plain.zarr" / name))
        q = zarr.open_array(str(tmp_path / "pass.zarr" / name))
        assert dict(q.attrs) == dict(p.attrs) and repr(q.metadata) == repr(p.metadata)
        np.testing.assert_array_equal(q[...], p[...])
    assert _leftovers(tmp_path) == []


def test_on_a_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    data = _data()
    src = _source(tmp_path / "src.zarr", data, zarr_format=3, compressors=None)
    dst = str(tmp_path / "dst.zarr")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
        dask_io.optimizing(max_mem="64KiB"),
    ):
        da.from_zarr(src).rechunk((20, 15, 36)).to_zarr(dst)
    np.testing.assert_array_equal(zarr.open_array(dst)[...], data)
    assert _leftovers(tmp_path) == []
