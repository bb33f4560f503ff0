"""O_DIRECT writes: the bytes on disk are the bytes handed in, whatever the alignment."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dask_io.plan.grid import run_count
from dask_io.storage import direct
from dask_io.storage.base import IOCounters
from dask_io.storage.files import read_npy_header
from dask_io.storage.rawio import c_order_slabs, write_region


@pytest.fixture
def small_bounce(monkeypatch):
    """A bounce buffer of a few pages, so that one range needs many flushes."""
    monkeypatch.setattr(direct, "BOUNCE_BYTES", 5 * direct.ALIGN)
    monkeypatch.setattr(direct, "MIN_DIRECT", 0)
    monkeypatch.setattr(direct._local, "bounce", None, raising=False)
    yield
    direct._local.bounce = None


def _file(tmp_path, size):
    path = str(tmp_path / "f.bin")
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def test_aligned_empty():
    for n in (1, 4095, 4097, 1 << 20):
        a = direct.aligned_empty(n)
        assert a.nbytes == n and a.ctypes.data % direct.ALIGN == 0


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pos=st.integers(0, 9 * 4096),
    n=st.integers(1, 12 * 4096),
    order=st.sampled_from(["C", "F", "slice"]),
    use_direct=st.booleans(),
)
def test_write_array_any_alignment(tmp_path_factory, small_bounce, pos, n, order, use_direct):
    path = _file(tmp_path_factory.mktemp("d"), 24 * 4096)
    rng = np.random.default_rng(pos * 7919 + n)
    data = rng.integers(0, 256, n, dtype=np.uint8)
    if order == "F" and n % 3 == 0:
        mem = np.asfortranarray(data.reshape(3, -1))  # C-order bytes are still ``data``
    elif order == "slice":
        big = np.zeros(2 * n, np.uint8)
        big[::2] = data
        mem = big[::2]
    else:
        mem = data
    before = np.fromfile(path, np.uint8)
    fd = os.open(path, os.O_WRONLY)
    dfd = direct.open_direct(path) if use_direct else None
    try:
        calls = direct.write_array(fd, dfd, mem, pos)
    finally:
        os.close(fd)
        if dfd is not None:
            os.close(dfd)
    after = np.fromfile(path, np.uint8)
    expected = before.copy()
    expected[pos : pos + n] = data
    np.testing.assert_array_equal(after[: len(expected)], expected)
    assert calls >= 1


def test_pages_go_direct_and_edges_buffered(tmp_path, small_bounce):
    path = _file(tmp_path, 16 * 4096)
    fd = os.open(path, os.O_WRONLY)
    dfd = direct.open_direct(path)
    if dfd is None:
        pytest.skip("this file system refuses O_DIRECT")
    try:
        stream = direct.DirectStream(fd, dfd, 100)
        data = np.arange(10 * 4096, dtype=np.uint8)
        stream.put(data)
        calls = stream.close()
    finally:
        os.close(fd)
        os.close(dfd)
    # head (100 -> 4096), pages in flushes of at most the bounce, tail
    assert calls >= 3
    np.testing.assert_array_equal(np.fromfile(path, np.uint8)[100 : 100 + data.size], data)


def test_unsupported_file_system_falls_back(tmp_path, monkeypatch):
    path = _file(tmp_path, 4096)
    monkeypatch.setattr(direct.os, "O_DIRECT", 0, raising=False)
    assert direct.open_direct(path) is None


def test_disabled_by_config(tmp_path):
    import dask

    path = _file(tmp_path, 4096)
    with dask.config.set({"dask_io.direct-writes": False}):
        assert direct.open_direct(path) is None


@settings(max_examples=100, deadline=None)
@given(
    ext=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    max_bytes=st.integers(1, 300),
)
def test_c_order_slabs_tile_the_region_in_order(ext, max_bytes):
    region = tuple((1, 1 + n) for n in ext)
    idx = np.arange(int(np.prod(ext))).reshape(ext)
    seen = []
    for part in c_order_slabs(region, 1, max_bytes):
        n = int(np.prod([b - a for a, b in part]))
        assert n <= max(max_bytes, ext[-1]) or all(b - a == 1 for a, b in part[:-1])
        seen.append(idx[tuple(slice(a - 1, b - 1) for a, b in part)].ravel())
    np.testing.assert_array_equal(np.concatenate(seen), idx.ravel())


@pytest.mark.parametrize("pieces", [1, 2], ids=["one-piece", "two-pieces"])
def test_write_region_direct(tmp_path, small_bounce, pieces):
    """write_region through O_DIRECT (every run direct): same bytes as numpy."""
    fn = str(tmp_path / "a.npy")
    data = np.arange(40 * 33 * 70, dtype="uint16").reshape(40, 33, 70)
    np.save(fn, data)
    raw = read_npy_header(fn)
    new = np.random.default_rng(1).integers(0, 2**16, data.shape, dtype=np.uint16)
    expected = data.copy()
    whole = tuple((0, n) for n in data.shape)
    for region in [
        ((3, 31), (0, 33), (0, 70)),
        ((0, 40), (5, 30), (7, 69)),
        ((9, 10), (0, 33), (0, 70)),
    ]:
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
            write_region(raw, fd, region, (0, 0, 0), region, src, None, counters)
        finally:
            os.close(fd)
        sl = tuple(slice(a, b) for a, b in region)
        expected[sl] = new[sl]
        assert counters.runs == run_count(region, whole)
        assert counters.bytes_written == expected[sl].nbytes
    np.testing.assert_array_equal(np.load(fn), expected)


def test_einval_from_the_device_falls_back(tmp_path, small_bounce, monkeypatch):
    """A device that refuses our alignment mid-write: the bytes still land, buffered."""
    path = _file(tmp_path, 8 * 4096)
    fd = os.open(path, os.O_WRONLY)
    dfd = direct.open_direct(path)
    if dfd is None:
        pytest.skip("this file system refuses O_DIRECT")
    real = direct._pwrite_all

    def picky(f, data, pos):
        if f == dfd:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(f, data, pos)

    monkeypatch.setattr(direct, "_pwrite_all", picky)
    monkeypatch.setattr(direct, "_unsupported", set())
    data = np.arange(6 * 4096, dtype=np.uint8)
    try:
        direct.write_array(fd, dfd, data, 10)
        assert direct.open_direct(path) is None  # the file system is remembered
    finally:
        os.close(fd)
        os.close(dfd)
    np.testing.assert_array_equal(np.fromfile(path, np.uint8)[10 : 10 + data.size], data)
