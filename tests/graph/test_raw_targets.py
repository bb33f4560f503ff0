"""Writing h5py targets at their byte offset: same bytes as h5py, h5py's view stays fresh."""

from __future__ import annotations

import dask
import dask.array as da
import h5py
import numpy as np
import pytest

from dask_io.graph import optimizing
from dask_io.graph.handles import ArrayHandle
from dask_io.storage import direct

SHAPE = (96, 160, 144)  # 4.2 MiB of uint16: above RAW_TARGET_MIN_BYTES


@pytest.fixture(params=["buffered", "direct"])
def write_mode(request, monkeypatch):
    """Every run through O_DIRECT (MIN_DIRECT 0, a tiny bounce), or the page cache."""
    if request.param == "direct":
        monkeypatch.setattr(direct, "MIN_DIRECT", 0)
        monkeypatch.setattr(direct, "BOUNCE_BYTES", 3 * direct.ALIGN)
        monkeypatch.setattr(direct._local, "bounce", None, raising=False)
    else:
        monkeypatch.setattr(direct, "MIN_DIRECT", 1 << 62)
    yield request.param
    direct._local.bounce = None


def _data(shape=SHAPE, seed=0):
    return np.random.default_rng(seed).integers(0, 2**16, shape, dtype=np.uint16)


def test_unallocated_target_written_raw(tmp_path, write_mode):
    data = _data()
    x = da.from_array(data, chunks=(32, 40, 48))
    with h5py.File(tmp_path / "out.h5", "w") as f:
        target = f.create_dataset("y", shape=SHAPE, dtype="u2")
        assert target.id.get_offset() is None  # no storage yet
        with optimizing(max_mem="2MiB"):
            da.store(x.rechunk((20, 26, 144)), target, scheduler="threads")
        assert target.id.get_offset() is not None
        # small reads (through HDF5's sieve buffer) see the raw writes
        assert target[0, 0, 0] == data[0, 0, 0]
        assert target[-1, -1, -1] == data[-1, -1, -1]
        np.testing.assert_array_equal(target[5, 3:9, 2], data[5, 3:9, 2])
        np.testing.assert_array_equal(target[...], data)
    with h5py.File(tmp_path / "out.h5", "r") as f:
        np.testing.assert_array_equal(f["y"][...], data)


def test_allocated_target_partly_overwritten(tmp_path, write_mode):
    """A store into regions of an existing dataset leaves the rest as it was."""
    old, new = _data(seed=1), _data(seed=2)
    with h5py.File(tmp_path / "out.h5", "w") as f:
        target = f.create_dataset("y", data=old)
        _ = target[0, 0, :4]  # loads HDF5's sieve buffer with old bytes
        target[1, 1, 1] = 7  # and dirties it
        old[1, 1, 1] = 7
        region = (slice(4, 80), slice(0, 160), slice(0, 144))
        x = da.from_array(new, chunks=(32, 40, 48))[region]
        with optimizing(max_mem="2MiB"):
            da.store(x.rechunk((18, 160, 144)), target, regions=region, scheduler="threads")
        expected = old.copy()
        expected[region] = new[region]
        assert target[1, 1, 1] == 7
        assert target[4, 0, 0] == new[4, 0, 0]
        np.testing.assert_array_equal(target[...], expected)
    with h5py.File(tmp_path / "out.h5", "r") as f:
        np.testing.assert_array_equal(f["y"][...], expected)


def test_fill_value_kept_where_not_written(tmp_path, write_mode):
    data = _data()
    with h5py.File(tmp_path / "out.h5", "w") as f:
        target = f.create_dataset("y", shape=SHAPE, dtype="u2", fillvalue=9)
        region = (slice(0, 40), slice(0, 160), slice(0, 144))  # not the last element
        x = da.from_array(data, chunks=(32, 40, 48))[region]
        with optimizing(max_mem="2MiB"):
            da.store(x.rechunk((14, 160, 144)), target, regions=region, scheduler="threads")
        expected = np.full(SHAPE, 9, np.uint16)
        expected[region] = data[region]
        np.testing.assert_array_equal(target[...], expected)
        assert target[-1, -1, -1] == 9


@pytest.mark.parametrize("kind", ["chunked", "compressed", "big-endian"])
def test_other_datasets_or_dtypes_go_through_h5py(tmp_path, kind):
    data = _data()
    opts = {
        "chunked": {"chunks": (8, 8, 8), "dtype": "u2"},
        "compressed": {"chunks": (8, 8, 8), "compression": "gzip", "dtype": "u2"},
        "big-endian": {"dtype": ">u2"},
    }[kind]
    with h5py.File(tmp_path / "out.h5", "w") as f:
        target = f.create_dataset("y", shape=SHAPE, **opts)
        raw = ArrayHandle(target, writable=True).raw_target()
        # a big-endian dataset has a raw location, but native data is not its bytes
        assert raw is None if kind != "big-endian" else raw.dtype == np.dtype(">u2")
        x = da.from_array(data, chunks=(32, 40, 48))
        with optimizing(max_mem="2MiB"):
            da.store(x.rechunk((20, 26, 144)), target, scheduler="threads")
        np.testing.assert_array_equal(target[...], data)


def test_same_result_as_plain_dask(tmp_path):
    data = _data()
    x = da.from_array(data, chunks=(32, 40, 48)).rechunk((22, 160, 10))
    with h5py.File(tmp_path / "a.h5", "w") as f, h5py.File(tmp_path / "b.h5", "w") as g:
        a = f.create_dataset("y", shape=SHAPE, dtype="u2")
        b = g.create_dataset("y", shape=SHAPE, dtype="u2")
        with optimizing(max_mem="2MiB"):
            da.store(x, a, scheduler="threads")
        with dask.config.set(array_optimize=None):
            da.store(x, b, scheduler="threads")
        np.testing.assert_array_equal(a[...], b[...])


def test_small_datasets_are_not_raw(tmp_path):
    with h5py.File(tmp_path / "out.h5", "w") as f:
        target = f.create_dataset("y", shape=(1,), dtype="i4")
        assert ArrayHandle(target, writable=True).raw_target() is None


def test_raw_target_is_used(tmp_path):
    with h5py.File(tmp_path / "out.h5", "w") as f:
        target = f.create_dataset("y", shape=SHAPE, dtype="u2")
        raw = ArrayHandle(target, writable=True).raw_target()
        assert raw is not None and raw.offset == target.id.get_offset()
