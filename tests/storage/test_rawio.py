"""Raw region I/O: runs as the cost model counts them, data as numpy sees it."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_io.plan.grid import run_count
from dask_io.storage.base import IOCounters
from dask_io.storage.files import read_npy_header
from dask_io.storage.rawio import RawArray, read_region, run_layout, write_region


@st.composite
def shape_and_region(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(1, 6)) for _ in range(ndim))
    region = []
    for n in shape:
        a = draw(st.integers(0, n - 1))
        b = draw(st.integers(a + 1, n))
        region.append((a, b))
    return shape, tuple(region)


@settings(max_examples=200, deadline=None)
@given(shape_and_region())
def test_run_layout_matches_cost_model(case):
    shape, region = case
    arr = RawArray("x", 0, shape, np.dtype("uint16"))
    block = tuple((0, n) for n in shape)
    assert run_layout(arr, region).nruns == run_count(region, block)


STAGING = {"none": None, "tiny": 8, "row": 64, "big": 1 << 20}


def _npy(folder):
    data = np.arange(7 * 9 * 11, dtype="float64").reshape(7, 9, 11)
    fn = str(folder / "a.npy")
    np.save(fn, data)
    return fn, data


@pytest.fixture
def npy_file(tmp_path):
    return _npy(tmp_path)


@pytest.fixture(scope="module")
def npy_readonly(tmp_path_factory):
    return _npy(tmp_path_factory.mktemp("ro"))


@pytest.mark.parametrize("staging", list(STAGING), ids=list(STAGING))
@settings(max_examples=40, deadline=None)
@given(region=shape_and_region().filter(lambda c: len(c[0]) == 3).map(lambda c: c[1]))
def test_read_region_into_strided_memory(npy_readonly, staging, region):
    fn, data = npy_readonly
    region = tuple((min(a, n - 1), min(b, n)) for (a, b), n in zip(region, data.shape, strict=True))
    raw = read_npy_header(fn)
    big = np.full([b - a + 3 for a, b in region], -1.0)
    out = big[1:-2, 2:-1, 1:-2]  # a strided view
    counters = IOCounters()
    buf = None if STAGING[staging] is None else np.empty(STAGING[staging], np.uint8)
    fd = os.open(fn, os.O_RDONLY)
    try:
        read_region(raw, fd, region, out, buf, counters)
    finally:
        os.close(fd)
    np.testing.assert_array_equal(out, data[tuple(slice(a, b) for a, b in region)])
    assert counters.runs == run_count(region, tuple((0, n) for n in data.shape))
    assert counters.syscalls >= counters.runs
    assert counters.bytes_read == out.nbytes
    assert (big[0] == -1).all() and (big[:, -1] == -1).all()  # nothing outside the view


@pytest.mark.parametrize("staging", list(STAGING), ids=list(STAGING))
@pytest.mark.parametrize("pieces", [1, 2], ids=["one-piece", "two-pieces"])
def test_write_region(npy_file, staging, pieces):
    fn, data = npy_file
    raw = read_npy_header(fn)
    rng = np.random.default_rng(3)
    new = rng.random(data.shape)
    expected = data.copy()
    buf = None if STAGING[staging] is None else np.empty(STAGING[staging], np.uint8)
    whole = tuple((0, n) for n in data.shape)
    for region in [((1, 4), (2, 9), (0, 11)), ((0, 7), (3, 4), (5, 6)), ((2, 3), (0, 9), (0, 11))]:
        if pieces == 1:
            src = [(whole, new)]
        else:
            (a, b), rest = region[0], region[1:]
            mid = (a + b) // 2
            parts = [((a, mid), *rest), ((mid, b), *rest)]
            src = [
                (p, new[tuple(slice(x, y) for x, y in p)].copy())
                for p in parts
                if p[0][0] < p[0][1]
            ]
        counters = IOCounters()
        fd = os.open(fn, os.O_RDWR)
        try:
            write_region(raw, fd, region, (0, 0, 0), region, src, buf, counters)
        finally:
            os.close(fd)
        sl = tuple(slice(a, b) for a, b in region)
        expected[sl] = new[sl]
        assert counters.runs == run_count(region, whole)
        assert counters.bytes_written == expected[sl].nbytes
    np.testing.assert_array_equal(np.load(fn), expected)


def test_header_errors(tmp_path):
    from dask_io.errors import StoreMismatchError, StoreNotFoundError

    with pytest.raises(StoreNotFoundError, match="does not exist"):
        read_npy_header(str(tmp_path / "missing.npy"))
    (tmp_path / "junk.npy").write_bytes(b"not an npy file at all")
    with pytest.raises(StoreNotFoundError, match=r"not a readable \.npy"):
        read_npy_header(str(tmp_path / "junk.npy"))
    np.save(tmp_path / "f.npy", np.asfortranarray(np.zeros((3, 4))))
    with pytest.raises(StoreMismatchError, match="Fortran"):
        read_npy_header(str(tmp_path / "f.npy"))
    np.save(tmp_path / "short.npy", np.zeros((30, 4)))
    size = os.path.getsize(tmp_path / "short.npy")
    os.truncate(tmp_path / "short.npy", size - 8)
    with pytest.raises(StoreMismatchError, match="bytes; expected"):
        read_npy_header(str(tmp_path / "short.npy"))
