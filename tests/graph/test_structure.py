"""The shape of the graphs the pass produces, its settings, and what it leaves alone."""

from __future__ import annotations

import io
import sys
import warnings

import dask
import dask.array as da
import h5py
import numpy as np
import pytest
from dask._task_spec import Task
from dask.array.optimization import optimize as dask_optimize
from dask.core import flatten
from dask.highlevelgraph import HighLevelGraph

from dask_io.errors import QueryPlanningWarning
from dask_io.graph import optimize, optimizing
from dask_io.graph.buffers import read_buffer
from dask_io.graph.settings import read_settings, reset_warning
from dask_io.plan import plan_resplit

SHAPE = (48, 40, 30)
OUT = (20, 16, 13)
MAX_MEM = 48 * 40 * 30 * 2 // 3


@pytest.fixture
def volume(tmp_path):
    data = np.arange(np.prod(SHAPE), dtype="u2").reshape(SHAPE)
    f = h5py.File(tmp_path / "v.h5", "w")
    f.create_dataset("x", data=data)
    f.create_dataset("y", shape=SHAPE, dtype="u2", chunks=OUT)
    f.flush()
    yield data, f
    f.close()


def _unfused(dsk, keys):
    """The optimized graph before Dask's low-level fusion renames tasks."""
    with dask.config.set({"optimization.fuse.active": False}):
        return dict(optimize(dsk, keys))


def _store_graph(f, chunks=(16, 16, 16)):
    x = da.from_array(f["x"], chunks=chunks)
    stored = da.store(x.rechunk(OUT), f["y"], compute=False, lock=False)
    return stored, list(flatten(stored.__dask_keys__()))


def test_rechunk_replaced_by_planned_buffers(volume):
    _, f = volume
    stored, keys = _store_graph(f)
    with dask.config.set({"dask_io.max-mem": MAX_MEM}):
        graph = _unfused(stored.dask, keys)
    # the planner sees the files: one contiguous source block, the target's chunks
    plan = plan_resplit(SHAPE, SHAPE, OUT, "u2", MAX_MEM, layout=("contiguous", "chunked"))
    funcs = {v.func.__name__ for v in graph.values() if isinstance(v, Task)}
    assert not funcs & {"concatenate_shaped", "getitem", "getter", "load_store_chunk"}
    reads = [k for k, v in graph.items() if isinstance(v, Task) and v.func is read_buffer]
    assert plan.n_buffers > 1
    assert len(reads) == plan.n_buffers
    assert all(isinstance(k, str) and k.startswith("dask_io-read-") for k in reads)
    assert set(keys) <= graph.keys()


def test_same_graph_gives_same_keys(volume):
    _, f = volume
    stored, keys = _store_graph(f)
    with dask.config.set({"dask_io.max-mem": MAX_MEM}):
        a = optimize(stored.dask, keys)
        b = optimize(stored.dask, keys)
    assert set(a) == set(b)
    assert any(str(k).startswith("dask_io-") for k in a)


def test_input_graph_not_mutated(volume):
    _, f = volume
    stored, keys = _store_graph(f)
    before = {name: dict(layer) for name, layer in stored.dask.layers.items()}
    deps = {k: set(v) for k, v in stored.dask.dependencies.items()}
    optimize(stored.dask, keys)
    assert {n: dict(layer) for n, layer in stored.dask.layers.items()}.keys() == before.keys()
    for name, layer in stored.dask.layers.items():
        assert dict(layer) == before[name]
    assert {k: set(v) for k, v in stored.dask.dependencies.items()} == deps


@pytest.mark.parametrize(
    "make",
    [
        lambda: da.ones((30, 20), chunks=7).sum(axis=0),
        lambda: (da.arange(100, chunks=9) * 2).rechunk(20),
        lambda: da.from_array(np.arange(60.0).reshape(6, 10), chunks=3).T.rechunk(4) + 1,
    ],
    ids=["reduction", "rechunk-no-source", "numpy-source"],
)
def test_unrecognised_graph_is_exactly_dasks(make):
    x = make()
    keys = x.__dask_keys__()
    ours, theirs = optimize(x.dask, keys), dask_optimize(x.dask, keys)
    assert set(ours) == set(theirs)
    for k in ours:
        assert repr(ours[k]) == repr(theirs[k])


def test_disabled_is_dasks(volume):
    _, f = volume
    stored, keys = _store_graph(f)
    with dask.config.set({"dask_io.enabled": False}):
        ours = optimize(stored.dask, keys)
    assert set(ours) == set(dask_optimize(stored.dask, keys))


def test_sink_reads_plain_files_no_h5py_left(volume):
    """The rewritten graph holds no h5py object: it pickles, so it can go to workers."""
    import pickle

    _, f = volume
    stored, keys = _store_graph(f)
    graph = optimize(stored.dask, keys)
    pickle.dumps(graph)


def test_optimizing_sets_and_restores_config():
    before = dask.config.get("array_optimize", None)
    with optimizing(strategy="keep", max_mem="64MiB", cluster_reads=False):
        s = read_settings()
        assert (s.strategy, s.max_mem, s.cluster_reads) == ("keep", 64 * 2**20, False)
        assert dask.config.get("array_optimize") is optimize
    assert dask.config.get("array_optimize", None) is before


def test_optimizing_rejects_bad_settings():
    with pytest.raises(TypeError, match=r"unknown settings.*'colour'"), optimizing(colour="red"):
        pass
    with pytest.raises(ValueError, match=r"dask_io\.strategy='fastest' is unknown"), optimizing(
        strategy="fastest"
    ):
        pass
    with pytest.raises(ValueError, match=r"dask_io\.max-mem='lots' is not a size"), optimizing(
        max_mem="lots"
    ):
        pass


def test_max_mem_default_is_a_quarter_of_available(monkeypatch):
    import dask_io.graph.settings as settings

    monkeypatch.setattr(settings, "available_memory", lambda: 8 * 2**30)
    with dask.config.set({"dask_io.max-mem": None}):
        assert read_settings().max_mem == 2 * 2**30


def test_query_planning_warns_once(monkeypatch):
    monkeypatch.setattr(sys.modules["dask.array"], "ARRAY_EXPR_ENABLED", True)
    reset_warning()
    with pytest.warns(QueryPlanningWarning, match="array.query-planning"), optimizing():
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with optimizing():
            pass
    reset_warning()


def test_no_warning_without_query_planning():
    reset_warning()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with optimizing():
            pass


def test_cluster_reads_one_task_per_buffer(volume):
    _, f = volume
    x = da.from_array(f["x"], chunks=(8, 8, 10))
    y = (x + 1).sum(axis=0)
    keys = y.__dask_keys__()
    with dask.config.set({"dask_io.max-mem": 4 * 40 * 30 * 8 * 2}):
        graph = _unfused(y.dask, keys)
    reads = [k for k, v in graph.items() if isinstance(v, Task) and v.func.__name__ == "read_box"]
    # a cluster is 8 rows of chunks along axis 0 x the whole of axes 1 and 2: 6 reads
    assert len(reads) == 6
    getters = [v for v in graph.values() if isinstance(v, Task) and v.func.__name__ == "getter"]
    assert not getters


def test_cluster_reads_keep_culling(volume):
    _, f = volume
    x = da.from_array(f["x"], chunks=(8, 8, 10))
    y = x[:8, :8, :10] * 2
    keys = y.__dask_keys__()
    graph = _unfused(y.dask, keys)
    reads = [v for v in graph.values() if isinstance(v, Task) and v.func.__name__ == "read_box"]
    assert len(reads) == 1
    (box,) = [r.args[1].value for r in reads]
    assert box == ((0, 8), (0, 8), (0, 10))  # only the needed chunk is read


def test_plain_dict_graph_is_dasks():
    dsk = {"a": 1, "b": (sum, ["a", "a"])}
    assert dict(optimize(dsk, ["b"])).keys() == dict(dask_optimize(dsk, ["b"])).keys()


def test_hlg_input_kept_when_nothing_to_do():
    x = da.ones(10, chunks=5) + 1
    assert isinstance(x.dask, HighLevelGraph)
    assert set(optimize(x.dask, x.__dask_keys__())) == set(dask_optimize(x.dask, x.__dask_keys__()))


def test_counting_file_object_works_with_h5py(tmp_path):
    """The I/O tests count reads through a Python file object given to h5py."""
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(1000, dtype="u2").reshape(10, 100))
    with io.FileIO(path, "rb") as raw, h5py.File(raw, "r") as f:
        assert f["x"][3, 7] == 307
