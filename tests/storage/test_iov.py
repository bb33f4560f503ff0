"""Scatter/gather row I/O: same bytes as numpy, runs as the cost model counts them,
whatever the call limits and however short the kernel's transfers are."""

from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dask_io.plan.grid import run_count
from dask_io.storage import iov
from dask_io.storage.base import IOCounters
from dask_io.storage.files import read_npy_header
from dask_io.storage.rawio import read_region, write_region

SHAPE = (6, 7, 40)
_REAL = dict(iov._CALLS)


def _dribble(reading):
    """A preadv/pwritev that moves at most 7 bytes per call (short transfers)."""
    real = _REAL[reading]

    def call(fd, ptr, count, pos):
        rows = np.frombuffer((ctypes.c_char * (16 * count)).from_address(ptr), iov._IOVEC)
        one = np.array([(rows[0]["base"], min(int(rows[0]["len"]), 7))], iov._IOVEC)
        return real(fd, one.ctypes.data, 1, pos)

    return call


LIMITS = {
    "default": {},
    "iov3": {"IOV_MAX": 3},
    "call40": {"_MAX_CALL": 40},
    "dribble": {"dribble": True},
}


@pytest.fixture(params=list(LIMITS))
def limits(request, monkeypatch):
    monkeypatch.setattr(iov, "MIN_ROW_BYTES", 0)
    for name, value in LIMITS[request.param].items():
        if name == "dribble":
            for reading in (True, False):
                monkeypatch.setitem(iov._CALLS, reading, _dribble(reading))
        else:
            monkeypatch.setattr(iov, name, value)
    return request.param


@pytest.fixture
def npy(tmp_path):
    data = np.arange(np.prod(SHAPE), dtype="uint16").reshape(SHAPE)
    fn = str(tmp_path / "a.npy")
    np.save(fn, data)
    return fn, data


regions = st.tuples(
    *[
        st.tuples(st.integers(0, n - 1), st.integers(1, n)).filter(lambda r: r[0] < r[1])
        for n in SHAPE
    ]
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(region=regions)
def test_read_rows_into_strided_view(npy, limits, region):
    fn, data = npy
    raw = read_npy_header(fn)
    big = np.zeros([b - a + 2 for a, b in region], "uint16")
    out = big[1:-1, 1:-1, 1:-1]
    counters = IOCounters()
    fd = os.open(fn, os.O_RDONLY)
    try:
        read_region(raw, fd, region, out, None, counters)
    finally:
        os.close(fd)
    np.testing.assert_array_equal(out, data[tuple(slice(a, b) for a, b in region)])
    assert counters.runs == run_count(region, tuple((0, n) for n in SHAPE))
    assert counters.syscalls >= counters.runs
    assert (big[0] == 0).all() and (big[:, :, -1] == 0).all()


@pytest.mark.parametrize("cut", [0, 1, 2])
def test_write_gathered_pieces(npy, limits, cut):
    """A unit written from pieces cut along one axis, one of them a strided view."""
    fn, data = npy
    raw = read_npy_header(fn)
    region = ((1, 5), (0, 7), (0, 40))
    new = (np.arange(np.prod(SHAPE)).reshape(SHAPE) * 7 + 3).astype("uint16")
    a, b = region[cut]
    mid = (a + b) // 2
    lo = tuple((a, mid) if d == cut else r for d, r in enumerate(region))
    hi = tuple((mid, b) if d == cut else r for d, r in enumerate(region))
    padded = np.zeros(tuple(y - x + 1 for x, y in hi), "uint16")
    view = padded[tuple(slice(0, y - x) for x, y in hi)]  # strided piece
    view[...] = new[tuple(slice(x, y) for x, y in hi)]
    pieces = [(lo, new[tuple(slice(x, y) for x, y in lo)].copy()), (hi, view)]
    counters = IOCounters()
    fd = os.open(fn, os.O_RDWR)
    try:
        write_region(raw, fd, region, (0, 0, 0), region, pieces, None, counters)
    finally:
        os.close(fd)
    expected = data.copy()
    sl = tuple(slice(x, y) for x, y in region)
    expected[sl] = new[sl]
    np.testing.assert_array_equal(np.load(fn), expected)
    assert counters.runs == run_count(region, tuple((0, n) for n in SHAPE)) == 1
    assert counters.bytes_written == expected[sl].nbytes


def test_merge_rows_joins_only_contiguous_neighbours():
    foff = np.array([0, 10, 20, 35])
    moff = np.array([100, 110, 500, 516], np.uintp)
    lens = np.array([10, 10, 15, 5])
    f, m, n = iov.merge_rows(foff, moff, lens)
    assert f.tolist() == [0, 20, 35] and m.tolist() == [100, 500, 516] and n.tolist() == [20, 15, 5]


def test_short_read_at_end_of_file_raises(npy):
    fn, _ = npy
    raw = read_npy_header(fn)
    size = os.path.getsize(fn)
    out = np.zeros((2, 8), "uint16")[:, :4]
    fd = os.open(fn, os.O_RDONLY)
    try:
        segs = iov.segments(size - 8, (8, 2), ((0, 2), (0, 4)), out)
        with pytest.raises(OSError, match="short read"):
            iov.transfer(fd, True, *iov.merge_rows(*segs))
    finally:
        os.close(fd)
    assert raw.offset < size
