"""Sample arrays whose every block can be recomputed from its indices.

``values(region, shape, dtype)`` gives ``(A[i] + B[j] + C[k] + ...) mod 2**16`` for
fixed pseudo-random tables ``A, B, C`` (one per axis, seeded by the axis length and
number), cast to ``dtype``: any region of the array is recomputed without the rest, so
outputs of any size can be verified, and a misplaced block never compares equal.
Used by ``dask-io demo``, the tests and the benchmarks.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from dask_io.plan.grid import Grid
from dask_io.plan.ops import Region


@lru_cache(maxsize=64)
def _table(axis: int, n: int) -> npt.NDArray[np.int64]:
    rng = np.random.default_rng([axis, n, 12345])
    return rng.integers(0, 2**16, n, dtype=np.int64)


def values(region: Region, shape: Sequence[int], dtype: Any = "uint16") -> npt.NDArray[Any]:
    """The sample array's values over ``region`` (C order, ``dtype``).

    >>> a = values(((0, 4), (0, 3)), (4, 3))
    >>> bool((a[1:3, 1:] == values(((1, 3), (1, 3)), (4, 3))).all())
    True
    """
    dt = np.dtype(dtype)
    total = np.zeros([b - a for a, b in region], np.int64)
    for axis, ((a, b), n) in enumerate(zip(region, shape, strict=True)):
        index = [None] * len(shape)
        index[axis] = slice(None)  # type: ignore[call-overload]
        total += _table(axis, n)[a:b][tuple(index)]
    total %= 2**16
    if dt.kind == "c":
        return (total + 1j * (total % 251)).astype(dt)
    if dt.kind == "b":
        return (total % 2).astype(dt)
    return total.astype(dt)


def full(shape: Sequence[int], dtype: Any = "uint16") -> npt.NDArray[Any]:
    """The whole sample array."""
    return values(tuple((0, n) for n in shape), shape, dtype)


def write_npy(path: str, shape: Sequence[int], dtype: Any = "uint16", slab: int = 64 << 20) -> None:
    """Write the sample array to a ``.npy`` file, a slab of the first axis at a time."""
    dt = np.dtype(dtype)
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=dt, shape=tuple(shape))
    rows = max(1, slab // max(1, math.prod(shape[1:]) * dt.itemsize))
    for i in range(0, shape[0], rows):
        stop = min(i + rows, shape[0])
        region = ((i, stop), *((0, n) for n in shape[1:]))
        arr[i:stop] = values(region, shape, dt)
    arr.flush()
    del arr


def write_block_store(
    path: str, shape: Sequence[int], chunks: Any, dtype: Any = "uint16", format: str = "npy"
) -> None:
    """Write the sample array as a complete block store of ``chunks`` at ``path``."""
    from dask_io.storage.blocks import BlockStore

    grid = Grid.from_chunks(tuple(shape), chunks)
    store = BlockStore.create(path, grid, np.dtype(dtype), format)
    for block in grid.blocks():
        region = grid.block_region(block)
        store.write(block, region, [(region, values(region, shape, dtype))])
        store.commit(block)
    store.finalize()


def check_store(store: Any, dtype: Any = None, slab: int = 64 << 20) -> None:
    """Raise AssertionError unless every block of ``store`` holds the sample values.

    Blocks are read in slabs of the first axis of at most ``slab`` bytes.
    """
    dt = np.dtype(dtype or store.dtype)
    for block in store.grid.blocks():
        region = store.grid.block_region(block)
        (a0, b0), rest = region[0], region[1:]
        row = math.prod(b - a for a, b in rest) * store.dtype.itemsize
        step = max(1, slab // max(1, row))
        for lo in range(a0, b0, step):
            part = ((lo, min(b0, lo + step)), *rest)
            out = np.empty([b - a for a, b in part], store.dtype)
            store.read(block, part, out)
            want = values(part, store.shape, dt)
            if not np.array_equal(out, want):
                bad = int(np.count_nonzero(out != want))
                raise AssertionError(
                    f"block {block} of {store.path!r} differs from the sample in {bad} elements"
                )


def check_path(path: str, dtype: Any = None) -> None:
    """Open the array at ``path`` and check it holds the sample values."""
    from dask_io.storage.endpoints import open_source

    store = open_source(os.fspath(path))
    try:
        check_store(store, dtype)
    finally:
        store.close()
