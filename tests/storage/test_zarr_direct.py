"""Whole Zarr chunks written by dask_io itself (O_DIRECT), read back by zarr."""

from __future__ import annotations

import os

import dask
import numpy as np
import pytest
import zarr

from dask_io.plan.grid import Grid, region_slices
from dask_io.storage import direct
from dask_io.storage import zarr_store as zs
from dask_io.storage.zarr_store import ZarrStore, chunk_files

SHAPE = (13, 10, 9)
CHUNKS = (4, 6, 5)  # partial edge chunks on every axis


@pytest.fixture
def small_direct(monkeypatch):
    """Direct writes for small chunks, through a bounce buffer of a few pages."""
    monkeypatch.setattr(direct, "MIN_DIRECT", 0)
    monkeypatch.setattr(direct, "BOUNCE_BYTES", 3 * direct.ALIGN)
    monkeypatch.setattr(direct._local, "bounce", None, raising=False)
    yield
    direct._local.bounce = None


def _create(path, fmt, sep, dtype, fill=0, **kwargs):
    name = "v2" if fmt == 2 else "default"
    return zarr.create_array(
        path,
        shape=SHAPE,
        chunks=CHUNKS,
        dtype=dtype,
        compressors=None,
        zarr_format=fmt,
        fill_value=fill,
        chunk_key_encoding={"name": name, "separator": sep},
        **kwargs,
    )


def _values(dtype):
    rng = np.random.default_rng(7)
    x = rng.integers(0, 100, SHAPE).astype(dtype)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.integers(0, 100, SHAPE)
    return x.astype(dtype)


def _write_all(store, x, split=False):
    for block in store.grid.blocks():
        region = store.grid.block_region(block)
        if split:  # the block from two pieces, cut along the last axis
            (a, b), last = region[-1], region[:-1]
            m = (a + b) // 2
            pieces = [
                ((*last, (a, m)), x[region_slices((*last, (a, m)))]),
                ((*last, (m, b)), x[region_slices((*last, (m, b)))]),
            ]
        else:
            pieces = [(tuple((0, n) for n in x.shape), x)]
        store.write(block, region, pieces)
        store.commit(block)


@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize("sep", [".", "/"])
@pytest.mark.parametrize("dtype", ["uint8", "<u2", "int32", "float64", "complex64", "bool"])
@pytest.mark.parametrize("small", [False, True])
def test_direct_chunks_read_back(tmp_path, request, fmt, sep, dtype, small):
    if small:
        request.getfixturevalue("small_direct")
    x = _values(dtype)
    path = str(tmp_path / "a.zarr")
    grid = Grid.from_chunks(SHAPE, CHUNKS)
    store = ZarrStore(path, grid, x.dtype, writable=True)
    _create(store.work_path, fmt, sep, x.dtype, fill=1 if dtype != "bool" else True)
    files = store.chunk_files()
    assert files is not None
    _write_all(store, x, split=dtype == "int32")
    assert store.counters.bytes_written == x.nbytes  # data bytes, as the plan counts
    arr = zarr.open_array(store.work_path, mode="r")
    np.testing.assert_array_equal(arr[...], x)
    # every chunk sits under its key, full size, padded with the fill value
    for block in grid.blocks():
        key = arr.metadata.encode_chunk_key(block)
        path_ = os.path.join(store.work_path, *key.split("/"))
        raw = np.fromfile(path_, dtype=x.dtype)
        assert raw.size == np.prod(CHUNKS)
        chunk = raw.reshape(CHUNKS)
        region = grid.block_region(block)
        inside = tuple(slice(0, b - a) for a, b in region)
        np.testing.assert_array_equal(chunk[inside], x[region_slices(region)])
        pad = np.ones(CHUNKS, bool)
        pad[inside] = False
        assert (chunk[pad] == (True if dtype == "bool" else 1)).all()
    leftovers = [n for _, _, fs in os.walk(store.work_path) for n in fs if "tmp" in n]
    assert leftovers == []


def test_fill_none_pads_with_zero(tmp_path):
    x = _values("uint16")
    grid = Grid.from_chunks(SHAPE, CHUNKS)
    store = ZarrStore(str(tmp_path / "a.zarr"), grid, x.dtype, writable=True)
    _create(store.work_path, 2, ".", x.dtype, fill=None)
    _write_all(store, x)
    np.testing.assert_array_equal(zarr.open_array(store.work_path, mode="r")[...], x)
    edge = np.fromfile(os.path.join(store.work_path, "3.1.1"), dtype=x.dtype).reshape(CHUNKS)
    assert (edge[1:] == 0).all()


def test_partial_writes_update_the_chunk_file(tmp_path, monkeypatch):
    """A partial write reads the chunk file (fill value when absent), gathers into it
    and writes it whole: one chunk of memory instead of zarr's read-modify-write."""
    x = _values("uint16")
    grid = Grid.from_chunks(SHAPE, CHUNKS)
    store = ZarrStore(str(tmp_path / "a.zarr"), grid, x.dtype, writable=True)
    _create(store.work_path, 3, "/", x.dtype)
    calls = []
    real = zs.write_chunk
    monkeypatch.setattr(zs, "write_chunk", lambda *a: calls.append(a[1]) or real(*a))
    monkeypatch.setattr(zarr.Array, "__setitem__", lambda *a: pytest.fail("went through zarr"))
    blocks = list(grid.blocks())
    for block in blocks:
        region = grid.block_region(block)
        half = (*region[:-1], (region[-1][0], region[-1][0] + 1))
        rest = (*region[:-1], (region[-1][0] + 1, region[-1][1]))
        store.write(block, half, [(tuple((0, n) for n in SHAPE), x)])
        first = zarr.open_array(store.work_path, mode="r")[region_slices(region)]
        np.testing.assert_array_equal(first[..., :1], x[region_slices(half)])
        assert (first[..., 1:] == 0).all()  # the rest of a new chunk: the fill value
        store.write(block, rest, [(tuple((0, n) for n in SHAPE), x)])
    assert calls == [b for b in blocks for _ in range(2)]
    assert store.counters.rmw_bytes > 0
    np.testing.assert_array_equal(zarr.open_array(store.work_path, mode="r")[...], x)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fmt": 3, "compressors": zarr.codecs.ZstdCodec()},
        {"fmt": 2, "compressors": {"id": "zlib", "level": 1}},
        {"fmt": 3, "shards": (8, 12, 10)},
        {"fmt": 3, "serializer": zarr.codecs.BytesCodec(endian="big")},
        {"fmt": 2, "order": "F"},
        {"fmt": 2, "dtype": ">u2"},
    ],
    ids=["v3-zstd", "v2-zlib", "sharded", "big-endian", "fortran", "v2-big-endian"],
)
def test_other_arrays_go_through_zarr(tmp_path, monkeypatch, kwargs):
    kwargs = dict(kwargs)
    fmt = kwargs.pop("fmt")
    dtype = kwargs.pop("dtype", "uint16")
    x = _values("uint16").astype(dtype)
    path = str(tmp_path / "a.zarr")
    shards = kwargs.get("shards")
    grid = Grid.from_chunks(SHAPE, shards or CHUNKS)
    store = ZarrStore(path, grid, x.dtype, writable=True)
    if "compressors" in kwargs:
        arr = zarr.create_array(
            store.work_path, shape=SHAPE, chunks=CHUNKS, dtype=dtype, zarr_format=fmt, **kwargs
        )
    else:
        arr = zarr.create_array(
            store.work_path,
            shape=SHAPE,
            chunks=CHUNKS,
            dtype=dtype,
            zarr_format=fmt,
            compressors=None,
            **kwargs,
        )
    assert chunk_files(arr) is None
    monkeypatch.setattr(zs, "write_chunk", pytest.fail)
    _write_all(store, x)
    np.testing.assert_array_equal(zarr.open_array(store.work_path, mode="r")[...], x)


def test_config_turns_direct_chunks_off(tmp_path, monkeypatch):
    x = _values("uint16")
    grid = Grid.from_chunks(SHAPE, CHUNKS)
    store = ZarrStore(str(tmp_path / "a.zarr"), grid, x.dtype, writable=True)
    _create(store.work_path, 2, ".", x.dtype)
    monkeypatch.setattr(zs, "write_chunk", pytest.fail)
    with dask.config.set({"dask_io.direct-writes": False}):
        assert store.chunk_files() is None
        _write_all(store, x)
    np.testing.assert_array_equal(zarr.open_array(store.work_path, mode="r")[...], x)


def test_not_a_local_store(tmp_path):
    arr = zarr.create_array(
        zarr.storage.MemoryStore(), shape=SHAPE, chunks=CHUNKS, dtype="u2", compressors=None
    )
    assert chunk_files(arr) is None


def test_array_in_a_group(tmp_path):
    """An array below the store's root writes under its own folder."""
    x = _values("uint16")
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w", zarr_format=3)
    arr = g.create_array("sub/x", shape=SHAPE, chunks=CHUNKS, dtype="u2", compressors=None)
    files = chunk_files(arr)
    assert files is not None
    assert files.root == os.path.join(str(tmp_path / "g.zarr"), "sub", "x")
    grid = Grid.from_chunks(SHAPE, CHUNKS)
    made: set[str] = set()
    for block in grid.blocks():
        region = grid.block_region(block)
        zs.write_chunk(files, block, region, [(tuple((0, n) for n in SHAPE), x)], made)
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "g.zarr"))["sub/x"][...], x)
