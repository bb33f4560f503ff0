"""A conformance suite every store passes (zarr's ``StoreTests`` pattern).

Subclass :class:`StoreTests` in a test module and define :meth:`make_source` (write
``array`` as this kind of store with blocks of ``chunks``, return it opened for
reading) and :meth:`make_target` (a new writable store). pytest collects the tests:
round trip, partial regions, edge blocks, dtypes, read-only errors, pickling.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

from dask_io.plan.grid import Grid, region_slices
from dask_io.testing.data import full

DTYPES = ("uint8", "uint16", "float32", "float64", "complex64")


def random_region(rng: np.random.Generator, region: tuple[tuple[int, int], ...]) -> Any:
    """A random non-empty sub-region of ``region``."""
    out = []
    for a, b in region:
        lo = int(rng.integers(a, b))
        hi = int(rng.integers(lo + 1, b + 1))
        out.append((lo, hi))
    return tuple(out)


class StoreTests:
    """Tests shared by every store; subclasses provide the two factories."""

    shape: tuple[int, ...] = (13, 10, 7)
    chunks: tuple[int, ...] = (5, 4, 7)
    single_block = False  # stores that are one block whatever ``chunks`` says

    def make_source(self, path: Any, array: np.ndarray, chunks: tuple[int, ...]) -> Any:
        raise NotImplementedError

    def make_target(self, path: Any, grid: Grid, dtype: Any) -> Any:
        raise NotImplementedError

    def _chunks(self) -> tuple[int, ...]:
        return self.shape if self.single_block else self.chunks

    def _read_all(self, store: Any) -> np.ndarray:
        out = np.empty(store.shape, store.dtype)
        for block in store.grid.blocks():
            region = store.grid.block_region(block)
            store.read(block, region, out[region_slices(region)])
        return out

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_round_trip(self, tmp_path: Any, dtype: str) -> None:
        array = full(self.shape, dtype)
        store = self.make_source(tmp_path / "src", array, self._chunks())
        assert store.shape == self.shape and store.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(self._read_all(store), array)

    def test_edge_blocks(self, tmp_path: Any) -> None:
        array = full(self.shape, "uint16")
        store = self.make_source(tmp_path / "src", array, self._chunks())
        last = tuple(n - 1 for n in store.grid.numblocks)
        region = store.grid.block_region(last)
        assert all(b == n for (_, b), n in zip(region, self.shape, strict=True))
        out = np.empty([b - a for a, b in region], store.dtype)
        store.read(last, region, out)
        np.testing.assert_array_equal(out, array[region_slices(region)])

    def test_partial_reads(self, tmp_path: Any) -> None:
        rng = np.random.default_rng(1)
        array = full(self.shape, "float64")
        store = self.make_source(tmp_path / "src", array, self._chunks())
        for block in store.grid.blocks():
            for _ in range(3):
                region = random_region(rng, store.grid.block_region(block))
                out = np.full([b - a for a, b in region], -1.0)
                store.read(block, region, out)
                np.testing.assert_array_equal(out, array[region_slices(region)])

    def test_partial_writes_into_strided_memory(self, tmp_path: Any) -> None:
        """Write every block in two pieces taken from a larger (strided) array, read back."""
        array = full(self.shape, "uint16")
        grid = Grid.from_chunks(self.shape, self._chunks())
        target = self.make_target(tmp_path / "dst", grid, "uint16")
        whole = tuple((0, n) for n in self.shape)
        for block in grid.blocks():
            region = grid.block_region(block)
            (a, b), rest = region[-1], region[:-1]
            cut = (a + b) // 2 if b - a > 1 else b
            for part in ((*rest, (a, cut)), (*rest, (cut, b))):
                if part[-1][0] < part[-1][1]:
                    target.write(block, part, [(whole, array)])
            target.commit(block)
        target.finalize()
        np.testing.assert_array_equal(self._read_all(self.reopen(target)), array)

    def test_write_from_several_pieces(self, tmp_path: Any) -> None:
        array = full(self.shape, "int32")
        grid = Grid.from_chunks(self.shape, self._chunks())
        target = self.make_target(tmp_path / "dst", grid, "int32")
        for block in grid.blocks():
            region = grid.block_region(block)
            (a, b), rest = region[0], region[1:]
            pieces = []
            for lo, hi in ((a, (a + b) // 2), ((a + b) // 2, b)):
                if lo < hi:
                    sub = ((lo, hi), *rest)
                    pieces.append((sub, array[tuple(slice(x, y) for x, y in sub)].copy()))
            target.write(block, region, pieces, np.empty(64, np.uint8))
            target.commit(block)
        target.finalize()
        np.testing.assert_array_equal(self._read_all(self.reopen(target)), array)

    def test_read_only(self, tmp_path: Any) -> None:
        array = full(self.shape, "uint8")
        store = self.make_source(tmp_path / "src", array, self._chunks())
        region = store.grid.block_region((0,) * len(self.shape))
        with pytest.raises(PermissionError, match="read-only"):
            store.write((0,) * len(self.shape), region, [(region, array[:1])])

    def test_pickle(self, tmp_path: Any) -> None:
        array = full(self.shape, "uint16")
        store = self.make_source(tmp_path / "src", array, self._chunks())
        self._read_all(store)  # open handles first: they must not travel
        clone = pickle.loads(pickle.dumps(store))
        np.testing.assert_array_equal(self._read_all(clone), array)
        assert clone.grid == store.grid

    def reopen(self, target: Any) -> Any:
        """Open a finished target for reading (override when the path needs more)."""
        from dask_io.storage.endpoints import open_source

        return open_source(str(target.path))
