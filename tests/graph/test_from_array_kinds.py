"""The pass on every kind of ``from_array`` source: the same chunks, types and values as Dask.

Found by running Dask's own array test suite with the pass on (issue 19): a 0-d source
made the planned read fail, and an xarray DataArray (whose slices Dask keeps as
DataArrays) came back as a numpy array.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

import dask_io


class SlicesOnly:
    """An array-like with only shape, dtype and __getitem__ (Dask's own MyArray)."""

    def __init__(self, x: np.ndarray) -> None:
        self.x, self.dtype, self.shape, self.ndim = x, x.dtype, x.shape, x.ndim

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        return self.x[i]


def both(make):  # type: ignore[no-untyped-def]
    plain = make().compute()
    with dask.config.set(array_optimize=dask_io.optimize):
        passed = make().compute()
    assert type(passed) is type(plain)
    np.testing.assert_array_equal(np.asarray(passed), np.asarray(plain))
    return plain, passed


@pytest.mark.parametrize("inline_array", [True, False])
@pytest.mark.parametrize("asarray", [True, False])
@pytest.mark.parametrize(
    ("x", "chunks"),
    [
        (np.arange(25).reshape(5, 5), (5, 5)),
        (np.arange(25).reshape(5, 5), 2),
        (np.array([[1]]), 1),
        (np.array(1), 1),
    ],
)
def test_objects_with_getitem_only(x, chunks, asarray, inline_array) -> None:  # type: ignore[no-untyped-def]
    both(
        lambda: da.from_array(
            SlicesOnly(x), chunks=chunks, asarray=asarray, inline_array=inline_array
        )
    )
    if x.ndim:
        both(
            lambda: da.from_array(
                SlicesOnly(x), chunks=chunks, asarray=asarray, inline_array=inline_array
            ).rechunk(3)
        )


def test_xarray_dataarray_keeps_its_type() -> None:
    xr = pytest.importorskip("xarray")
    arr = xr.DataArray(np.random.default_rng(0).random((60, 40)))
    plain, _ = both(lambda: da.from_array(arr))
    assert isinstance(plain, xr.DataArray)
    both(lambda: da.from_array(arr, chunks=15).rechunk(20))


def test_masked_arrays_keep_their_mask() -> None:
    m = np.ma.array(np.arange(24).reshape(4, 6), mask=np.arange(24).reshape(4, 6) % 5 == 0)
    plain, passed = both(lambda: da.from_array(m, chunks=2).rechunk(3))
    np.testing.assert_array_equal(np.ma.getmaskarray(passed), np.ma.getmaskarray(plain))


@pytest.mark.parametrize("value", [np.array(5.0), np.array(7, dtype="i2")])
def test_zero_d_sources(value) -> None:  # type: ignore[no-untyped-def]
    both(lambda: da.from_array(value))
    both(lambda: da.from_array(value) + 1)


def test_sources_whose_getter_converts_are_still_planned() -> None:
    from dask_io.graph.recognize import Handles, find_sources

    # (numpy sources are sliced into chunks by Dask itself: no getter layer to find)
    y = da.from_array(SlicesOnly(np.arange(64).reshape(8, 8)), chunks=4, asarray=True)
    assert find_sources(y.__dask_graph__(), Handles())  # its getter converts: planned


class ArrayOnly:
    """Shape, dtype and ``__array__`` but no ``__getitem__``."""

    def __init__(self, x: np.ndarray) -> None:
        self.x, self.dtype, self.shape, self.ndim = x, x.dtype, x.shape, x.ndim

    def __array__(self, dtype=None, copy=None):  # type: ignore[no-untyped-def]
        return self.x


def test_objects_with_array_only_fail_as_in_dask() -> None:
    x = np.arange(36.0).reshape(6, 6)
    with pytest.raises(TypeError) as plain:
        da.from_array(ArrayOnly(x), chunks=3).rechunk(2).compute()
    with dask.config.set(array_optimize=dask_io.optimize), pytest.raises(TypeError) as passed:
        da.from_array(ArrayOnly(x), chunks=3).rechunk(2).compute()
    assert str(passed.value) == str(plain.value)


@pytest.mark.parametrize("lock", [True, "a lock"])
def test_locked_sources(lock) -> None:  # type: ignore[no-untyped-def]
    import threading

    lock = threading.Lock() if lock == "a lock" else lock
    x = np.arange(600).reshape(20, 30)
    both(lambda: da.from_array(SlicesOnly(x), chunks=(7, 4), lock=lock).rechunk((5, 9)))
    both(lambda: da.from_array(x, chunks=(7, 4), lock=lock).rechunk((5, 9))[3:17, ::2])
