"""The executor: byte-for-byte equal to numpy, and exactly the planned I/O.

Every strategy x every store x 1-D to 4-D, with partial edge blocks and several
dtypes; the oracle is the numpy array the source was written from.
"""

from __future__ import annotations

import math
import os

import h5py
import numpy as np
import pytest
import zarr

from dask_io.execute.api import resplit
from dask_io.execute.executor import Executor, filter_buffer
from dask_io.plan import plan_resplit
from dask_io.plan.grid import Grid
from dask_io.storage.blocks import BlockStore
from dask_io.storage.endpoints import open_source
from dask_io.storage.files import TMP_SUFFIX
from dask_io.testing.data import full

STRATEGIES = ["naive", "clustered", "multiple", "keep", "auto"]
CASES = {  # ndim: (shape, in_chunks, out_chunks, dtype)
    1: ((103,), (10,), (7,), "complex128"),
    2: ((23, 19), (5, 6), (7, 4), "float32"),
    3: ((13, 11, 9), (4, 5, 3), (3, 4, 5), "uint16"),
    4: ((7, 6, 5, 4), (3, 2, 3, 4), (2, 4, 2, 3), "float64"),
}
DTYPES_3D = ["uint8", "uint16", "float32", "float64", "complex64"]


def _budget(shape, in_chunks, out_chunks, dtype):
    isz = np.dtype(dtype).itemsize
    return (math.prod(shape) // 2 + 2 * math.prod(in_chunks) + 2 * math.prod(out_chunks)) * isz


def _write_source(kind, folder, array, chunks):
    if kind in ("npy", "hdf5"):
        grid = Grid.from_chunks(array.shape, chunks)
        store = BlockStore.create(str(folder / "src"), grid, array.dtype, kind)
        whole = tuple((0, n) for n in array.shape)
        for block in grid.blocks():
            store.write(block, grid.block_region(block), [(whole, array)])
            store.commit(block)
        store.finalize()
        return str(folder / "src")
    if kind == "zarr":
        arr = zarr.create_array(
            str(folder / "src.zarr"), shape=array.shape, chunks=chunks, dtype=array.dtype
        )
        arr[...] = array
        return str(folder / "src.zarr")
    if kind == "single-npy":
        np.save(folder / "src.npy", array)
        return str(folder / "src.npy")
    with h5py.File(folder / "src.h5", "w") as f:
        f.create_dataset("x", data=array)
    return str(folder / "src.h5") + ":/x"


def _read(path):
    store = open_source(path)
    out = np.empty(store.shape, store.dtype)
    for block in store.grid.blocks():
        region = store.grid.block_region(block)
        store.read(block, region, out[tuple(slice(a, b) for a, b in region)])
    return out


STORES = {  # name: (source kind, target name, target format)
    "npy-blocks": ("npy", "dst", None),
    "hdf5-blocks": ("hdf5", "dst", None),
    "zarr": ("zarr", "dst.zarr", None),
    "npy-to-hdf5-blocks": ("single-npy", "dst", "hdf5"),
    "h5-to-npy-blocks": ("single-h5", "dst", "npy"),
}


MATRIX = [
    pytest.param(strategy, store, ndim, id=f"{strategy}-{store}-{ndim}d")
    for strategy in STRATEGIES
    for store in STORES
    for ndim in sorted(CASES)
    if strategy != "auto" or store == "npy-blocks"  # auto is one of the others: once suffices
]


@pytest.mark.parametrize(("strategy", "store", "ndim"), MATRIX)
def test_resplit_equals_numpy(tmp_path, strategy, store, ndim):
    shape, in_chunks, out_chunks, dtype = CASES[ndim]
    src_kind, target_name, fmt = STORES[store]
    array = full(shape, dtype)
    if src_kind.startswith("single"):
        in_chunks = shape
    source = _write_source(src_kind, tmp_path, array, in_chunks)
    target = str(tmp_path / target_name)
    mem = _budget(shape, in_chunks, out_chunks, dtype)
    report = resplit(source, target, out_chunks, mem, strategy, format=fmt)
    result = _read(target)
    assert result.dtype == array.dtype
    np.testing.assert_array_equal(result, array)
    assert open_source(target).grid.chunks == Grid.from_chunks(shape, out_chunks).chunks
    assert report.mismatches() == {}, report.summary()  # every store counts as planned
    assert not [f for f in os.listdir(tmp_path / target_name) if f.endswith(TMP_SUFFIX)]


@pytest.mark.parametrize(
    ("dtype", "strategy"),
    [(d, "naive") for d in DTYPES_3D] + [("uint8", "keep"), ("complex64", "keep")],
)
def test_dtypes_and_measured_cost(tmp_path, dtype, strategy):
    shape, in_chunks, out_chunks = (17, 12, 10), (5, 5, 4), (4, 7, 3)
    array = full(shape, dtype)
    source = _write_source("npy", tmp_path, array, in_chunks)
    mem = _budget(shape, in_chunks, out_chunks, dtype)
    report = resplit(source, str(tmp_path / "dst"), out_chunks, mem, strategy)
    np.testing.assert_array_equal(_read(str(tmp_path / "dst")), array)
    c, m = report.plan.cost, report.measured
    assert (m.opens, m.runs, m.bytes_read, m.bytes_written) == (
        c.opens,
        c.runs,
        c.bytes_read,
        c.bytes_written,
    )
    assert m.read_runs == c.read_runs and m.write_runs == c.write_runs
    assert m.syscalls >= m.runs


def test_irregular_dask_style_chunks(tmp_path):
    array = full((20, 9), "int16")
    source = _write_source("npy", tmp_path, array, ((3, 10, 7), (4, 5)))
    out = ((1, 2, 17), (9,))
    report = resplit(source, str(tmp_path / "dst"), out, 10_000, "keep")
    assert open_source(str(tmp_path / "dst")).grid.chunks == out
    np.testing.assert_array_equal(_read(str(tmp_path / "dst")), array)
    assert report.mismatches() == {}


@pytest.mark.parametrize("prefetch", [False, True], ids=["sequential", "read-ahead"])
def test_prefetch_same_result_and_cost(tmp_path, prefetch):
    shape, in_chunks, out_chunks = (30, 20, 16), (10, 10, 8), (7, 9, 16)
    array = full(shape, "uint16")
    source = _write_source("npy", tmp_path, array, in_chunks)
    report = resplit(source, str(tmp_path / "dst"), out_chunks, 200_000, "naive", prefetch=prefetch)
    assert report.prefetch is prefetch
    assert report.plan.n_buffers > 1
    np.testing.assert_array_equal(_read(str(tmp_path / "dst")), array)
    assert report.mismatches() == {}


def test_executor_uses_one_buffer_and_bounded_kept_memory(tmp_path):
    shape, in_chunks, out_chunks = (24, 24), (5, 7), (6, 4)
    array = full(shape, "float64")
    source = open_source(_write_source("npy", tmp_path, array, in_chunks))
    plan = plan_resplit(shape, in_chunks, out_chunks, "float64", 2500, "keep")
    target = BlockStore.create(str(tmp_path / "dst"), plan.out_grid, plan.dtype)
    ex = Executor(plan, source, target)
    assert len(ex._flat) == 1 and ex._flat[0].size == math.prod(plan.buffer_shape)
    ex.run()
    target.finalize()
    assert ex.kept_peak == plan.cost.kept_peak
    assert ex.kept_bytes == 0
    np.testing.assert_array_equal(_read(str(tmp_path / "dst")), array)


def test_filter_buffer_skips_done_blocks():
    plan = plan_resplit((12,), (4,), (3,), "uint8", 100, "naive")
    buffers = list(plan.buffers())
    done = {(0,), (1,)}  # output elements 0..6 complete
    kept = [filter_buffer(ops, done) for ops in buffers]
    assert kept[0] is None  # input block 0 feeds only output blocks 0 and 1
    assert [type(op).__name__ for op in kept[1]].count("Read") == 1
    assert all(
        op.block not in done for ops in kept if ops for op in ops[1:] if hasattr(op, "whole")
    )


@pytest.mark.parametrize("rows", ["scatter-gather", "staging"])
@pytest.mark.parametrize("strategy", ["naive", "clustered", "keep"])
@pytest.mark.parametrize("kind", ["npy", "hdf5"])
def test_row_io_paths_equal_numpy_and_plan(tmp_path, monkeypatch, rows, strategy, kind):
    """Rows moved with preadv/pwritev (forced) or through staging (forced): same bytes, same cost."""
    from dask_io.storage import iov

    monkeypatch.setattr(iov, "MIN_ROW_BYTES", 0 if rows == "scatter-gather" else 1 << 40)
    monkeypatch.setattr(iov, "IOV_MAX", 5)
    shape, in_chunks, out_chunks, dtype = CASES[4]
    array = full(shape, dtype)
    source = _write_source(kind, tmp_path, array, in_chunks)
    mem = _budget(shape, in_chunks, out_chunks, dtype)
    report = resplit(source, str(tmp_path / "dst"), out_chunks, 3 * mem, strategy, prefetch=True)
    np.testing.assert_array_equal(_read(str(tmp_path / "dst")), array)
    assert report.mismatches() == {}, report.summary()
    assert report.measured.syscalls >= report.measured.runs


def test_kept_pool_stays_within_its_limit_and_reuses():
    from dask_io.execute.executor import KeptPool

    rng = np.random.default_rng(0)
    pool = KeptPool(1000)
    held = []
    for _ in range(500):
        if held and rng.random() < 0.5:
            pool.give(held.pop(int(rng.integers(len(held)))))
        else:
            size = int(rng.choice([40, 90, 130]))
            if pool.live + size <= pool.limit:
                held.append(pool.take(size))
                assert held[-1].nbytes == size
        assert pool.live == sum(a.nbytes for a in held)
        assert pool.live + pool.pooled <= pool.limit
    assert pool.hits > pool.misses
    ids = {id(a) for a in held}
    assert len(ids) == len(held)  # no array handed out twice


def test_keep_reuses_kept_arrays(tmp_path):
    shape, in_chunks, out_chunks = (60, 12, 10), (5, 6, 10), (6, 4, 10)
    array = full(shape, "float64")
    source = open_source(_write_source("npy", tmp_path, array, in_chunks))
    plan = plan_resplit(shape, in_chunks, out_chunks, "float64", 6000, "keep")
    target = BlockStore.create(str(tmp_path / "dst"), plan.out_grid, plan.dtype)
    ex = Executor(plan, source, target)
    ex.run()
    target.finalize()
    np.testing.assert_array_equal(_read(str(tmp_path / "dst")), array)
    assert plan.cost.kept_peak > 0 and ex.kept_peak == plan.cost.kept_peak
    assert ex.pool.hits > 0 and ex.pool.live == 0
    assert ex.pool.pooled <= plan.cost.kept_peak
