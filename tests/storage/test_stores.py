"""Every store passes the conformance suite of dask_io.testing.conformance."""

from __future__ import annotations

import h5py
import numpy as np
import zarr

from dask_io.plan.grid import Grid
from dask_io.storage.blocks import BlockStore
from dask_io.storage.endpoints import TargetSpec, open_source
from dask_io.storage.single import HDF5Chunked, HDF5File, NpyFile
from dask_io.storage.zarr_store import ZarrStore
from dask_io.testing.conformance import StoreTests


def _write_blocks(path, array, chunks, kind):
    grid = Grid.from_chunks(array.shape, chunks)
    store = BlockStore.create(str(path), grid, array.dtype, kind)
    for block in grid.blocks():
        region = grid.block_region(block)
        store.write(block, region, [(tuple((0, n) for n in array.shape), array)])
        store.commit(block)
    store.finalize()
    return BlockStore.open(str(path))


class TestNpyBlockStore(StoreTests):
    def make_source(self, path, array, chunks):
        return _write_blocks(path, array, chunks, "npy")

    def make_target(self, path, grid, dtype):
        return BlockStore.create(str(path), grid, dtype, "npy")


class TestHDF5BlockStore(StoreTests):
    def make_source(self, path, array, chunks):
        store = _write_blocks(path, array, chunks, "hdf5")
        with h5py.File(store.block_path((0, 0, 0)), "r") as f:  # a real HDF5 file
            np.testing.assert_array_equal(f["data"][...], array[:5, :4, :7])
        return store

    def make_target(self, path, grid, dtype):
        return BlockStore.create(str(path), grid, dtype, "hdf5")


class TestNpyFile(StoreTests):
    single_block = True

    def make_source(self, path, array, chunks):
        fn = f"{path}.npy"
        np.save(fn, array)
        return NpyFile.open(fn)

    def make_target(self, path, grid, dtype):
        return NpyFile.create(f"{path}.npy", grid.shape, dtype)


class TestHDF5Contiguous(StoreTests):
    single_block = True

    def make_source(self, path, array, chunks):
        fn = f"{path}.h5"
        with h5py.File(fn, "w") as f:
            f.create_dataset("group/x", data=array)
        store = open_source(f"{fn}:/group/x")
        assert isinstance(store, HDF5File) and store.layout == "contiguous"
        return store

    def make_target(self, path, grid, dtype):
        return HDF5File.create(f"{path}.h5", "/x", grid.shape, dtype)

    def reopen(self, target):
        return open_source(f"{target.path}:/x")


class TestHDF5Chunked(StoreTests):
    def make_source(self, path, array, chunks):
        fn = f"{path}.h5"
        with h5py.File(fn, "w") as f:
            f.create_dataset("x", data=array, chunks=chunks, compression="gzip")
        store = open_source(f"{fn}:x")
        assert isinstance(store, HDF5Chunked) and store.layout == "chunked"
        return store

    def make_target(self, path, grid, dtype):
        return HDF5Chunked.create(f"{path}.h5", "x", grid, dtype)

    def reopen(self, target):
        return open_source(f"{target.path}:x")


class TestZarr3(StoreTests):
    def make_source(self, path, array, chunks):
        fn = f"{path}.zarr"
        arr = zarr.create_array(fn, shape=array.shape, chunks=chunks, dtype=array.dtype)
        arr[...] = array
        return ZarrStore.open(fn)

    def make_target(self, path, grid, dtype):
        return ZarrStore.create(f"{path}.zarr", grid, dtype)


class TestZarr2(StoreTests):
    def make_source(self, path, array, chunks):
        fn = f"{path}.zarr"
        arr = zarr.create_array(
            fn, shape=array.shape, chunks=chunks, dtype=array.dtype, zarr_format=2
        )
        arr[...] = array
        return ZarrStore.open(fn)

    def make_target(self, path, grid, dtype):
        return ZarrStore.create(f"{path}.zarr", grid, dtype, zarr_format=2)


class TestZarrSharded(StoreTests):
    chunks = (6, 4, 7)

    def make_source(self, path, array, chunks):
        fn = f"{path}.zarr"
        inner = tuple(c // 2 if c % 2 == 0 else c for c in chunks)
        arr = zarr.create_array(
            fn, shape=array.shape, chunks=inner, shards=chunks, dtype=array.dtype
        )
        arr[...] = array
        store = ZarrStore.open(fn)
        assert store.grid.block_shape == chunks  # the shard is the block
        return store

    def make_target(self, path, grid, dtype):
        inner = tuple(c // 2 if c % 2 == 0 else c for c in grid.block_shape)
        return ZarrStore.create(f"{path}.zarr", grid, dtype, inner_chunks=inner)


def test_target_spec_from_path(tmp_path):
    cases = {
        "a.npy": ("npy", None),
        "a.h5": ("hdf5", "/data"),
        "a.hdf5:/g/x": ("hdf5", "/g/x"),
        "a.zarr": ("zarr", None),
        "blocks": ("blocks", None),
    }
    for name, (kind, dataset) in cases.items():
        spec = TargetSpec.from_path(str(tmp_path / name))
        assert spec.kind == kind, name
        if dataset:
            assert spec.dataset == dataset
    assert TargetSpec.from_path(str(tmp_path / "b"), "hdf5").block_format == "hdf5"
    assert TargetSpec.from_path(str(tmp_path / "b"), "zarr").kind == "zarr"
