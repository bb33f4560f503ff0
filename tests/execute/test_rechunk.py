"""dask_io.rechunk: every source kind x target format x executor, against numpy."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import zarr
from test_rechunk_support import chunk_key, counted_zarr, data, reads

import dask_io.execute.rechunk as rk
from dask_io.errors import InvalidChunksError, StoreMismatchError

# (shape, source chunks, target chunks, shards, max_mem): partial edge chunks everywhere,
# and memory small enough that the plans have several groups and seams
CASES = {
    2: ((37, 29), (6, 5), (8, 7), (16, 14), 2_000),
    3: ((19, 17, 13), (4, 5, 3), (5, 3, 4), (10, 6, 8), 3_000),
    4: ((7, 9, 6, 5), (2, 3, 4, 2), (3, 2, 5, 3), (6, 4, 5, 3), 2_500),
}
SOURCES = [
    "zarr3",
    "zarr3-sharded",
    "zarr2",
    "h5py-chunked",
    "h5py-contiguous",
    "dask",
    "xarray-dataarray",
    "xarray-dataset",
]
FORMATS = ["v2", "v3", "v3-sharded"]
EXECUTORS = ["synchronous", "threads", "cluster"]


def _source(kind, x, chunks, tmp_path, request):
    log = str(tmp_path / "reads.log")
    if kind.startswith("zarr"):
        fmt = 2 if kind == "zarr2" else 3
        shards = tuple(2 * c for c in chunks) if kind.endswith("sharded") else None
        return counted_zarr(str(tmp_path / "src.zarr"), x, chunks, log, fmt, shards), log
    if kind.startswith("h5py"):
        with h5py.File(tmp_path / "src.h5", "w") as f:
            f.create_dataset("x", data=x, chunks=chunks if kind == "h5py-chunked" else None)
        f = request.getfixturevalue("h5_closer")(h5py.File(tmp_path / "src.h5", "r"))
        return f["x"], None
    da = pytest.importorskip("dask.array")
    arr = da.from_array(x, chunks=chunks)
    if kind == "dask":
        return arr, None
    xr = pytest.importorskip("xarray")
    dims = tuple(f"d{i}" for i in range(x.ndim))
    xa = xr.DataArray(arr, dims=dims, attrs={"units": "K"})
    if kind == "xarray-dataarray":
        return xa, None
    other = xr.DataArray(arr[..., 0] * 2, dims=dims[:-1])
    return xr.Dataset({"a": xa, "b": other}, coords={dims[0]: np.arange(x.shape[0])}), None


@pytest.fixture
def h5_closer():
    """Close the HDF5 files a test opened."""
    files = []
    yield lambda f: files.append(f) or f
    for f in files:
        f.close()


def _executor(name, request):
    if name == "cluster":
        return request.getfixturevalue("client")
    return name


def _combos():
    for i, (src, fmt, ex) in enumerate(
        (s, f, e) for s in SOURCES for f in FORMATS for e in EXECUTORS
    ):
        marks = [pytest.mark.cluster] if ex == "cluster" else []
        yield pytest.param(
            src, fmt, ex, 2 + i % 3, id=f"{src}-{fmt}-{ex}-{2 + i % 3}d", marks=marks
        )


@pytest.mark.parametrize(("kind", "fmt", "ex", "ndim"), list(_combos()))
def test_rechunk_matches_numpy(kind, fmt, ex, ndim, tmp_path, request):
    shape, in_c, out_c, shards, mem = CASES[ndim]
    x = data(shape, seed=ndim)
    src, log = _source(kind, x, in_c, tmp_path, request)
    options = {"zarr_format": 2 if fmt == "v2" else 3}
    if fmt == "v3-sharded":
        by_dim = kind.startswith("xarray")
        options["shards"] = {f"d{i}": s for i, s in enumerate(shards)} if by_dim else shards
    target = str(tmp_path / "out.zarr")
    is_ds = kind == "xarray-dataset"
    chunks = {f"d{i}": c for i, c in enumerate(out_c)} if kind.startswith("xarray") else out_c
    job = rk.rechunk(
        src, chunks, target, mem, executor=_executor(ex, request), target_options=options
    )
    out = job.execute(progress=False)
    assert not os.path.exists(target + ".dask_io-tmp")
    if is_ds:
        xr = pytest.importorskip("xarray")
        back = xr.open_zarr(target, consolidated=fmt == "v2")
        np.testing.assert_array_equal(back["a"].values, x)
        np.testing.assert_array_equal(back["b"].values, x[..., 0] * 2)
        np.testing.assert_array_equal(back[f"d{0}"].values, np.arange(shape[0]))
        assert back["a"].attrs["units"] == "K"
        arr = zarr.open_array(os.path.join(target, "a"))
    else:
        arr = out
        np.testing.assert_array_equal(out[...], x)
    assert arr.chunks == out_c
    assert arr.shards == (shards if fmt == "v3-sharded" else None)
    assert arr.metadata.zarr_format == options["zarr_format"]
    if log is not None and kind != "zarr3-sharded":
        counts = reads(log)
        expected = {chunk_key(src, b) for b in np.ndindex(*src.cdata_shape)}
        assert set(counts) == expected
        assert set(counts.values()) == {1}, "a source chunk was read more than once"


def test_plan_table_and_reprs(tmp_path):
    x = data((40, 30))
    job = rk.rechunk(x, (7, 9), str(tmp_path / "o.zarr"), 3000, executor="threads")
    table = job.plan
    assert table["writes"] == 6 * 4  # every output block written once, whole
    assert table["piece_writes"] == table["piece_reads"] == table["pieces"]
    assert table["peak_mem"] <= 3000
    text, page = repr(job), job._repr_html_()
    assert "(40, 30) uint16" in text and "groups" in text
    assert "<table>" in page and "peak_mem" in page
    np.testing.assert_array_equal(job.execute(progress=False)[...], x)


def test_progress_bar_on_threads(tmp_path, capsys):
    x = data((20, 20))
    rk.rechunk(x, (3, 7), str(tmp_path / "o.zarr"), 2000, executor="threads").execute(progress=True)
    err = capsys.readouterr().err
    assert "dask_io.rechunk" in err and "100%" in err


def test_existing_target_of_another_shape_is_refused(tmp_path):
    target = str(tmp_path / "o.zarr")
    zarr.create_array(target, shape=(5, 5), dtype="uint16", chunks=(5, 5))[...] = 7
    with pytest.raises(StoreMismatchError, match=r"shape \(5, 5\).*expected shape \(6, 6\)"):
        rk.rechunk(np.zeros((6, 6), "uint16"), (3, 3), target, 1000)
    with pytest.raises(StoreMismatchError, match=r"dtype uint16.*expected .* dtype float32"):
        rk.rechunk(np.zeros((5, 5), "float32"), (3, 3), target, 1000)
    assert (zarr.open_array(target)[...] == 7).all()  # nothing written


def test_existing_target_of_same_shape_is_replaced(tmp_path):
    target = str(tmp_path / "o.zarr")
    zarr.create_array(target, shape=(6, 6), dtype="uint16", chunks=(6, 6))[...] = 7
    x = data((6, 6))
    out = rk.rechunk(x, (4, 4), target, 1000, executor="synchronous").execute(progress=False)
    np.testing.assert_array_equal(out[...], x)
    assert out.chunks == (4, 4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"executor": "processes"}, "executor='processes' is unknown"),
        ({"target_options": {"zarr_format": 2, "shards": (4, 4)}}, "needs zarr_format=3"),
        ({"target_store": 42}, "target_store=42 is not supported"),
    ],
    ids=["executor", "shards-v2", "store"],
)
def test_bad_arguments_are_refused(tmp_path, kwargs, match):
    args = {"target_store": str(tmp_path / "o.zarr"), **kwargs}
    with pytest.raises(InvalidChunksError, match=match):
        rk.rechunk(np.zeros((8, 8), "uint8"), (2, 2), max_mem=1000, **args)


def test_unsupported_source_is_refused(tmp_path):
    with pytest.raises(InvalidChunksError, match="source of type list is not supported"):
        rk.rechunk([[1, 2]], (1, 1), str(tmp_path / "o.zarr"), 1000)
