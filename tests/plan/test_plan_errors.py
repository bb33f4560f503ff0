"""Every bad input raises a dask_io error that is also a ValueError, naming value and expectation."""

from __future__ import annotations

import re

import numpy as np
import pytest

import dask_io
from dask_io.errors import DaskIOError, InsufficientMemoryError, InvalidChunksError
from dask_io.plan import parse_bytes, plan_resplit

GOOD = {"shape": (8, 6), "in_chunks": (4, 3), "out_chunks": (3, 4), "dtype": "uint16",
        "max_mem": 4096}


def call(**changes):  # type: ignore[no-untyped-def]
    return plan_resplit(**{**GOOD, **changes})


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"shape": (0, 6)}, r"shape=\(0, 6\) has 0; expected positive integers"),
        ({"shape": (8, -2)}, r"shape=\(8, -2\) has -2; expected positive integers"),
        ({"shape": (8.0, 6)}, r"shape=\(8\.0, 6\) has 8\.0; expected positive integers"),
        ({"shape": (8, True)}, r"has True; expected positive integers"),
        ({"shape": ()}, r"shape=\(\) is empty"),
        ({"shape": None}, r"shape=None is not a shape"),
        ({"in_chunks": (4, 0)}, r"in_chunks=\(4, 0\) has 0; expected positive integers"),
        ({"in_chunks": (4, 1.5)}, r"in_chunks=\(4, 1\.5\) has 1\.5; expected positive integers"),
        ({"out_chunks": (-3, 4)}, r"out_chunks=\(-3, 4\) has -3; expected positive integers"),
        ({"out_chunks": (3, "4")}, r"out_chunks=\(3, '4'\) has .*'4'.*expected positive integers"),
        ({"in_chunks": (4,)}, r"in_chunks=\(4,\) has 1 dimensions; expected 2 to match shape=\(8, 6\)"),
        ({"out_chunks": (3, 4, 1)}, r"out_chunks=\(3, 4, 1\) has 3 dimensions; expected 2"),
        ({"dtype": "uint17"}, r"dtype='uint17' is not a numpy dtype"),
        ({"dtype": object}, r"has no fixed size; expected a numeric dtype"),
        ({"max_mem": "4 parsecs"}, r"max_mem='4 parsecs' is not a size; expected bytes or a string like '4GiB'"),
        ({"max_mem": "GiB"}, r"max_mem='GiB' is not a size"),
        ({"max_mem": -1}, r"max_mem=-1 must be a positive number of bytes"),
        ({"max_mem": 0}, r"max_mem=0 must be a positive number of bytes"),
        ({"max_mem": None}, r"max_mem=None is not a size"),
    ],
    ids=lambda v: re.sub(r"\W+", "-", str(v))[:40] if isinstance(v, dict) else None,
)
def test_invalid_arguments(changes, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidChunksError, match=match) as info:
        call(**changes)
    assert isinstance(info.value, ValueError) and isinstance(info.value, DaskIOError)


def test_unknown_strategy() -> None:
    with pytest.raises(ValueError, match=r"strategy='fast' is unknown; expected one of naive, "
                       r"clustered, multiple, keep, auto"):
        call(strategy="fast")


@pytest.mark.parametrize("layout", ["zarr", ("chunked",), ("contiguous", "hdf5")])
def test_unknown_layout(layout) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidChunksError, match=r"layout=.* is unknown; expected 'contiguous', "
                       r"'chunked'"):
        call(layout=layout)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4GiB", 4 * 2**30), ("4 GiB", 4 * 2**30), ("500MB", 500 * 10**6), ("1.5KiB", 1536),
     ("2048", 2048), ("3kb", 3000), ("1TiB", 2**40)],
)
def test_max_mem_strings(text, expected) -> None:  # type: ignore[no-untyped-def]
    assert parse_bytes(text) == expected
    assert call(max_mem=text).max_mem == expected


def _minimum(message: str) -> int:
    """The byte count a small-array message names (sizes below 1 KiB print exactly)."""
    found = re.search(r"smallest feasible buffer of (\d+) B\b", message)
    assert found, message
    return int(found.group(1))


@pytest.mark.parametrize(
    ("shape", "in_chunks", "out_chunks", "dtype"),
    [((10,), (4,), (5,), "uint8"), ((8, 6), (4, 3), (3, 4), "uint16"),
     ((5, 7, 9), (2, 3, 4), (5, 2, 3), "float64")],
)
@pytest.mark.parametrize("layout", ["contiguous", "chunked"])
def test_max_mem_below_the_minimum_names_the_minimum(shape, in_chunks, out_chunks, dtype, layout) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InsufficientMemoryError, match=r"max_mem=1 B is below the smallest "
                       r"feasible buffer of \d+ B .*in_chunks=") as info:
        plan_resplit(shape, in_chunks, out_chunks, dtype, 1, "auto", layout)
    assert isinstance(info.value, ValueError)
    least = _minimum(str(info.value))
    # the named minimum is exact: it works, one byte less does not
    plan = plan_resplit(shape, in_chunks, out_chunks, dtype, least, "auto", layout)
    assert plan.cost.peak_mem <= least
    with pytest.raises(InsufficientMemoryError, match=f"feasible buffer of {least} B"):
        plan_resplit(shape, in_chunks, out_chunks, dtype, least - 1, "auto", layout)


def test_big_array_memory_message_in_binary_units() -> None:
    with pytest.raises(InsufficientMemoryError, match=r"max_mem=1\.0 KiB is below the smallest "
                       r"feasible buffer of [0-9.]+ KiB.*in_chunks=\(350, 350, 350\), "
                       r"out_chunks=\(500, 500, 500\)"):
        plan_resplit((3500,) * 3, (350,) * 3, (500,) * 3, "uint16", "1KiB")


def test_a_strategy_that_cannot_fit_says_what_it_needs() -> None:
    # naive needs one whole input block (4 x 3 uint16 = 24 B) plus staging
    with pytest.raises(InsufficientMemoryError, match=r"strategy='naive' needs \(one input block"):
        call(max_mem=20, strategy="naive")
    assert call(max_mem=20, strategy="auto").cost.peak_mem <= 20


def test_public_names() -> None:
    assert dask_io.plan_resplit is plan_resplit
    assert issubclass(dask_io.InvalidChunksError, ValueError)
    assert issubclass(dask_io.InsufficientMemoryError, ValueError)
    plan = dask_io.plan_resplit((8, 6), (4, 3), (3, 4), np.uint16, "1KiB")
    assert plan.strategy in ("naive", "clustered", "multiple", "keep")
    assert isinstance(plan.buffer_shape, tuple) and all(isinstance(x, int) for x in plan.buffer_shape)
    assert plan.cost.seeks == plan.cost.opens + plan.cost.runs
