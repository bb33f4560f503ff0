"""The intermediate store and the memory setting of the distributed executor."""

from __future__ import annotations

import ctypes
import os

import dask
import numpy as np
import pytest

from dask_io.execute import distributed as dx
from dask_io.storage import direct


@pytest.fixture
def small_direct(monkeypatch):
    """Direct writes from a few bytes on, through a bounce buffer of a few pages."""
    monkeypatch.setattr(dx, "PIECE_DIRECT", 0)
    monkeypatch.setattr(direct, "BOUNCE_BYTES", 3 * direct.ALIGN)
    monkeypatch.setattr(direct._local, "bounce", None, raising=False)
    yield
    direct._local.bounce = None


@pytest.mark.parametrize("shape", [(1,), (3, 5), (7, 33, 129), (2, 4096), (0, 3)])
@pytest.mark.parametrize("dtype", ["uint8", "<u2", "float64", "complex128"])
def test_piece_header_loads_with_numpy(tmp_path, shape, dtype):
    x = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    path = str(tmp_path / "p.npy")
    with open(path, "wb") as f:
        f.write(dx.piece_header(shape, np.dtype(dtype)) + x.tobytes())
    np.testing.assert_array_equal(np.load(path), x)
    got = dx.load_npy(path)
    assert got.dtype == x.dtype and got.shape == x.shape
    np.testing.assert_array_equal(got, x)


def test_load_npy_reads_numpy_files(tmp_path):
    for x in (np.arange(12.0).reshape(3, 4), np.arange(70000, dtype="u2")):
        np.save(tmp_path / "a.npy", x)
        np.testing.assert_array_equal(dx.load_npy(str(tmp_path / "a.npy")), x)


def test_load_npy_refuses_short_or_fortran_files(tmp_path):
    path = str(tmp_path / "f.npy")
    np.save(path, np.asfortranarray(np.arange(12.0).reshape(3, 4)))
    with pytest.raises(OSError, match="C-order"):
        dx.load_npy(path)
    with open(path, "wb") as f:
        f.write(dx.piece_header((100,), np.dtype("u8")) + b"\0" * 16)
    with pytest.raises(OSError, match="C-order"):
        dx.load_npy(path)


@pytest.mark.parametrize("direct_on", [True, False])
@pytest.mark.parametrize("split", [False, True])
def test_piece_store_round_trip(tmp_path, small_direct, direct_on, split):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 2**16, (9, 40, 57), dtype="u2")
    store = dx.PieceStore(str(tmp_path / "pieces"), x.dtype)
    piece = ((2, 9), (0, 40), (5, 50))
    if split:  # the piece from two arrays: gathered row slab by row slab
        pieces = [
            (((0, 6), (0, 40), (0, 57)), x[:6]),
            (((6, 9), (0, 40), (0, 57)), x[6:]),
        ]
    else:
        pieces = [(((0, 9), (0, 40), (0, 57)), x)]
    with dask.config.set({"dask_io.direct-writes": direct_on}):
        store.write((1, 2, 3), 4, piece, piece, pieces)
        assert not os.path.exists(store._path((1, 2, 3), 4))  # not committed yet
        store.commit((1, 2, 3), 4)
        got = store.read((1, 2, 3), 4)
    np.testing.assert_array_equal(got, x[2:9, :, 5:50])
    np.testing.assert_array_equal(np.load(store._path((1, 2, 3), 4)), x[2:9, :, 5:50])
    assert store.counters.bytes_written == store.counters.bytes_read == got.nbytes


def test_piece_written_in_parts(tmp_path):
    x = np.arange(6 * 8, dtype="i4").reshape(6, 8)
    store = dx.PieceStore(str(tmp_path / "pieces"), x.dtype)
    piece = ((0, 6), (2, 8))
    whole = [(((0, 6), (0, 8)), x)]
    store.write((0, 0), 1, piece, ((0, 3), (2, 8)), whole)
    store.write((0, 0), 1, piece, ((3, 6), (2, 8)), whole)
    store.commit((0, 0), 1)
    np.testing.assert_array_equal(store.read((0, 0), 1), x[:, 2:])


def _thresholds_work():
    lib = dx._glibc()
    return lib is not None


@pytest.mark.skipif(not _thresholds_work(), reason="needs glibc")
def test_reuse_freed_memory_nests_and_restores(monkeypatch):
    calls = []
    lib = dx._glibc()

    class Spy:
        def mallopt(self, param, value):
            calls.append((param, value))
            return lib.mallopt(param, value)

        def malloc_trim(self, pad):
            calls.append(("trim", pad))
            return lib.malloc_trim(pad)

    monkeypatch.setattr(dx, "_libc", Spy())
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    with dx.reuse_freed_memory(), dx.reuse_freed_memory():  # nested: set once, restored once
        a = np.ones(40 << 20, np.uint8)
        del a
    assert calls[:2] == [(dx._M_MMAP_THRESHOLD, 1 << 30), (dx._M_TRIM_THRESHOLD, 1 << 30)]
    assert calls[2:] == [
        (dx._M_TRIM_THRESHOLD, 65536),
        (dx._M_MMAP_THRESHOLD, dx._DEFAULT_MMAP_THRESHOLD),
        ("trim", 0),
    ]
    calls.clear()
    with dask.config.set({"dask_io.reuse-freed-memory": False}), dx.reuse_freed_memory():
        pass
    assert calls == []


def test_glibc_lookup_is_cached():
    first = dx._glibc()
    assert dx._glibc() is first
    if first is not None:
        assert isinstance(first, ctypes.CDLL)


@pytest.mark.parametrize("budget", [1, 64 * 1024, 1 << 20])
def test_write_behind_many_pieces(tmp_path, monkeypatch, budget):
    """Pieces written by background threads, within a byte budget, all readable."""
    monkeypatch.setattr(dx, "PIECE_DIRECT", 0)
    monkeypatch.setattr(dx, "WRITE_BEHIND_BYTES", max(budget, dx.PIECE_HEADER + 8 * 9 * 7))
    rng = np.random.default_rng(11)
    x = rng.integers(0, 2**31, (8, 90, 7), dtype="i8")
    store = dx.PieceStore(str(tmp_path / "pieces"), x.dtype)
    whole = [(((0, 8), (0, 90), (0, 7)), x)]
    for k in range(10):
        piece = ((0, 8), (9 * k, 9 * k + 9), (0, 7))
        store.write((0, k, 0), 2, piece, piece, whole)
        assert store._pending <= dx.WRITE_BEHIND_BYTES
    for k in range(10):
        store.commit((0, k, 0), 2)
    store.close()
    assert store._inflight == {} and store._pending == 0
    for k in range(10):
        np.testing.assert_array_equal(store.read((0, k, 0), 2), x[:, 9 * k : 9 * k + 9])


def test_write_behind_error_reaches_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(dx, "PIECE_DIRECT", 0)

    def fail(path, buf, use_direct):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(dx, "_write_file", fail)
    x = np.zeros((4, 4), "u2")
    store = dx.PieceStore(str(tmp_path / "pieces"), x.dtype)
    piece = ((0, 4), (0, 4))
    store.write((0, 0), 0, piece, piece, [(piece, x)])
    with pytest.raises(OSError, match="injected"):
        store.commit((0, 0), 0)
    store.write((1, 0), 0, piece, piece, [(piece, x)])
    with pytest.raises(OSError, match="injected"):
        store.close()
    assert store._pool is None


def test_stray_chunk_temp_files_are_not_moved_into_place(tmp_path, monkeypatch):
    """A writer killed between creating a chunk's temporary file and renaming it leaves
    the file behind; the finished array must not contain it."""
    import zarr

    import dask_io.execute.rechunk as rk
    from dask_io.storage import zarr_store as zs

    x = np.arange(12 * 10, dtype="u2").reshape(12, 10)
    out = str(tmp_path / "out.zarr")
    real = zs.write_chunk
    left: list[str] = []

    def leave_a_stray(files, block, region, pieces, made):
        calls = real(files, block, region, pieces, made)
        if not left:  # as if an earlier attempt of this chunk had been killed
            left.append(files.path(block) + f".999-1{zs.TMP_SUFFIX}")
            with open(left[0], "wb") as f:
                f.write(b"partial")
        return calls

    monkeypatch.setattr(zs, "write_chunk", leave_a_stray)
    job = rk.rechunk(x, (5, 4), out, "1MiB", executor="synchronous")
    got = job.execute(progress=False)
    np.testing.assert_array_equal(got[...], x)
    assert left and not os.path.exists(left[0])
    names = [n for _, _, ns in os.walk(out) for n in ns]
    assert not [n for n in names if zs.TMP_SUFFIX in n], names
    np.testing.assert_array_equal(zarr.open_array(out, mode="r")[...], x)
