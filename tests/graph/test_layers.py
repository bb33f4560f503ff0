"""Layer-level recognition, raw reads and pipelined buffers.

Oracles: the task-by-task interpretation of the same graph (an independent code
path), numpy slicing of the same data, and the run count of the plan's cost model.
"""

from __future__ import annotations

import math

import dask
import dask.array as da
import h5py
import numpy as np
import pytest
from dask._task_spec import Task
from dask.core import flatten
from dask.highlevelgraph import HighLevelGraph

from dask_io.graph import optimizing
from dask_io.graph.buffers import done, read_buffer, synced
from dask_io.graph.layers import LayerViews, sample_indices, store_layer_atoms
from dask_io.graph.rawread import COUNTERS, h5py_raw, memmap_raw, read_many, read_raw, split_box
from dask_io.graph.recognize import Handles, find_atoms, find_sources, make_resolver
from dask_io.storage.rawio import run_layout


def _hlg(stored):
    if isinstance(stored, tuple):
        return HighLevelGraph.merge(*[s.dask for s in stored])
    return stored.dask


def _keys(stored):
    parts = stored if isinstance(stored, tuple) else (stored,)
    return [k for s in parts for k in flatten(s.__dask_keys__())]


def _atom_maps(stored, whole: bool):
    """For every sink, an array of (source, source flat index) per target element."""
    hlg = _hlg(stored)
    handles = Handles()
    sources = find_sources(hlg, handles)
    resolver = make_resolver(hlg, sources)
    views = LayerViews(hlg, sources)
    hook = (lambda n, layer: store_layer_atoms(hlg, n, layer, views, handles)) if whole else None
    atoms = find_atoms(hlg, resolver, handles, hook)
    if whole:  # every store layer was recognised whole (atoms found per task have no root)
        assert atoms and all(a.root is not None for a in atoms)
    maps: dict = {}
    for a in atoms:
        tshape = handles[a.target].shape
        m = maps.setdefault(handles[a.target].identity, np.full((*tshape, 2), -1, np.int64))
        sshape = handles[a.source].shape
        grids = np.meshgrid(*[np.arange(s, s + e) for s, e in zip(a.src, a.extent)], indexing="ij")
        flat = np.ravel_multi_index(grids, sshape) if grids else np.zeros((), np.int64)
        region = tuple(slice(d, d + e) for d, e in zip(a.dst, a.extent))
        assert (m[region] == -1).all(), "a target element is written twice"
        m[(*region, 0)] = id(handles[a.source]._obj) % 1_000_003
        m[(*region, 1)] = flat
    keys = sorted({k for a in atoms for k in a.keys}, key=str)
    return maps, keys


@pytest.fixture
def h5(tmp_path):
    f = h5py.File(tmp_path / "v.h5", "w")
    f.create_dataset("x", data=np.arange(24 * 20 * 18, dtype="u2").reshape(24, 20, 18))
    for i in range(4):
        f.create_dataset(f"b{i}", data=np.full((12, 10, 18), i, "u2"))
    yield f
    f.close()


@pytest.mark.parametrize("case", ["rechunk", "slices-apart", "block-rechunk", "regions", "roll"])
def test_layer_atoms_equal_task_atoms(h5, case):
    x = da.from_array(h5["x"], chunks=(5, 7, 18))
    if case == "rechunk":
        stored = da.store(x.rechunk((6, 4, 9)), np.zeros(x.shape, "u2"), compute=False)
    elif case == "slices-apart":
        y = x.rechunk((8, 8, 8))
        regions = [(slice(0, 10), slice(None), slice(None)), (slice(10, 24), slice(None), slice(None))]
        stored = da.store([y[r] for r in regions], [np.zeros((10, 20, 18), "u2"),
                          np.zeros((14, 20, 18), "u2")], compute=False)
    elif case == "block-rechunk":
        b = [da.from_array(h5[f"b{i}"], chunks=(12, 10, 18)) for i in range(4)]
        y = da.block([[[b[0], b[1]], [b[2], b[3]]]]).rechunk((5, 6, 7))
        stored = da.store(y, np.zeros(y.shape, "u2"), compute=False)
    elif case == "regions":
        target = np.zeros((30, 20, 18), "u2")
        stored = da.store(x.rechunk((9, 9, 9)), target, regions=(slice(3, 27), slice(None), slice(None)),
                          compute=False)
    else:
        y = da.roll(x, 5, axis=1).rechunk((6, 6, 6))
        stored = da.store(y, np.zeros(x.shape, "u2"), compute=False)
    by_layer, layer_keys = _atom_maps(stored, whole=True)
    by_task, task_keys = _atom_maps(stored, whole=False)
    assert by_layer.keys() == by_task.keys()
    for k in by_task:
        np.testing.assert_array_equal(by_layer[k], by_task[k])
        assert (by_task[k] >= 0).all() or case == "regions"
    assert layer_keys == task_keys


def test_translation_found_by_sampling_without_reading_every_task(h5):
    x = da.from_array(h5["x"], chunks=(2, 2, 2))
    y = x.rechunk((3, 3, 3))
    handles = Handles()
    sources = find_sources(y.dask, handles)
    views = LayerViews(y.dask, sources)
    layer = y.name
    view = views.view(layer)
    assert view is not None and len(view.pieces) == 1
    assert view.pieces[0].start == (0, 0, 0)
    n = math.prod(len(c) for c in y.chunks)
    assert len(sample_indices(tuple(len(c) for c in y.chunks))) < n / 4


def test_flip_is_not_a_translation(h5):
    x = da.from_array(h5["x"], chunks=(5, 7, 18))
    y = x[::-1].rechunk((6, 4, 9))
    handles = Handles()
    views = LayerViews(y.dask, find_sources(y.dask, handles))
    flipped = next(n for n in y.dask.layers if n.startswith("getitem"))
    assert views.view(flipped) is None
    target = np.zeros(x.shape, "u2")
    with optimizing(max_mem=2**20):
        da.store(y, target, scheduler="threads")
    np.testing.assert_array_equal(target, h5["x"][...][::-1])


def test_sample_indices_cover_each_axis():
    idx = sample_indices((3, 4, 5))
    assert (0, 0, 0) in idx and (2, 3, 4) in idx
    for d, n in enumerate((3, 4, 5)):
        assert {i[d] for i in idx if sum(i) == i[d]} == set(range(n))
    assert len(set(idx)) == len(idx)


# -- raw reads ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["h5py", "memmap"])
@pytest.mark.parametrize("staging", [64, 1 << 20])
def test_raw_reads_match_numpy_and_count_plan_runs(tmp_path, kind, staging):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 2**16, (13, 11, 9), dtype="u2")
    if kind == "h5py":
        f = h5py.File(tmp_path / "r.h5", "w")
        f.create_dataset("x", data=data)
        raw = h5py_raw(f["x"])
    else:
        np.save(tmp_path / "r.npy", data)
        raw = memmap_raw(np.load(tmp_path / "r.npy", mmap_mode="r"))
    assert raw is not None
    for _ in range(20):
        lo = [int(rng.integers(0, n)) for n in data.shape]
        hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, data.shape)]
        box = tuple(zip(lo, hi))
        dest_full = np.zeros((15, 13, 11), "u2")  # strided destination
        dest = dest_full[1 : 1 + hi[0] - lo[0], 2 : 2 + hi[1] - lo[1], 1 : 1 + hi[2] - lo[2]]
        before = COUNTERS.as_dict()
        read_many([(raw, box, dest)], staging)
        after = COUNTERS.as_dict()
        np.testing.assert_array_equal(dest, data[tuple(slice(a, b) for a, b in box)])
        assert after["runs"] - before["runs"] == run_layout(raw, box).nruns
        assert after["bytes_read"] - before["bytes_read"] == dest.nbytes
        assert dest_full.sum() == dest.sum()  # nothing written outside the box
    if kind == "h5py":
        f.close()


def test_no_raw_location_for_chunked_filtered_or_file_objects(tmp_path):
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset("chunked", data=np.zeros((8, 8)), chunks=(4, 4))
        f.create_dataset("gzip", data=np.zeros((8, 8)), compression="gzip")
        f.create_dataset("empty", shape=(8, 8), dtype="f8")
        assert h5py_raw(f["chunked"]) is None
        assert h5py_raw(f["gzip"]) is None
        assert h5py_raw(f["empty"]) is None  # no storage allocated yet
    with open(tmp_path / "c.h5", "rb") as fileobj, h5py.File(fileobj, "r") as f:
        assert h5py_raw(f["chunked"]) is None
        assert f["chunked"].shape == (8, 8)


def test_split_box_tiles_the_box():
    box = ((2, 9), (0, 1), (3, 5))
    parts = split_box(box, 3)
    assert len(parts) == 3
    covered = np.zeros((7, 1, 2), int)
    for sub, local in parts:
        covered[local] += 1
        assert tuple(b - a for a, b in sub) == covered[local].shape
    assert (covered == 1).all()
    data = np.arange(20 * 2 * 6).reshape(20, 2, 6)
    out = np.empty((7, 1, 2), data.dtype)
    for sub, local in parts:
        out[local] = data[tuple(slice(a, b) for a, b in sub)]
    np.testing.assert_array_equal(out, data[2:9, 0:1, 3:5])
    with pytest.raises(OSError):
        read_raw(_missing_raw(), ((0, 1),), np.empty(1, "u1"), 64)


def _missing_raw():
    from dask_io.storage.rawio import RawArray

    return RawArray("/nonexistent/dask_io/file", 0, (1,), np.dtype("u1"))


# -- pipelined buffers -----------------------------------------------------------------


def _graph(stored, keys, **settings):
    with optimizing(**settings), dask.config.set({"optimization.fuse.active": False}):
        from dask_io.graph import optimize

        return dict(optimize(_hlg(stored), keys))


def test_pipelined_buffers_bound_two_alive_and_keep_meaning(tmp_path):
    data = np.random.default_rng(2).integers(0, 1000, (40, 30, 20)).astype("i4")
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f.create_dataset("x", data=data)
    f = h5py.File(tmp_path / "s.h5", "r")
    x = da.from_array(f["x"], chunks=(8, 30, 20))
    target = np.lib.format.open_memmap(tmp_path / "t.npy", "w+", "i4", data.shape)
    stored = da.store(x.rechunk((10, 10, 10)), target, compute=False, lock=False)
    keys = list(flatten(stored.__dask_keys__()))
    budget = data.nbytes // 2
    graph = _graph(stored, keys, max_mem=budget, pipeline=True)
    reads = sorted((k for k, v in graph.items() if isinstance(v, Task) and v.func is read_buffer),
                   key=lambda k: int(k.rsplit("-", 1)[1]))
    dones = {int(k.rsplit("-", 1)[1]): k for k, v in graph.items()
             if isinstance(v, Task) and v.func in (done, synced)}
    # each buffer ends by syncing the target file it wrote (dask_io.sync-writes)
    assert {graph[k].func for k in dones.values()} == {synced}
    assert all(graph[k].args[0].value == [str(tmp_path / "t.npy")] for k in dones.values())
    assert len(reads) >= 3
    for number, key in enumerate(reads):
        deps = {d for d in graph[key].dependencies}
        assert deps == ({dones[number - 2]} if number >= 2 else set())
    # buffers planned within half the memory: two alive fit in the budget
    shapes = [graph[k].args[1].value for k in reads]
    assert all(2 * math.prod(s) * 4 <= budget for s in shapes)
    with optimizing(max_mem=budget, pipeline=True):
        stored.compute(scheduler="threads")
    target.flush()
    np.testing.assert_array_equal(np.load(tmp_path / "t.npy"), data)
    serial = _graph(stored, keys, max_mem=budget, pipeline=False, sync_writes=False)
    serial_reads = [k for k, v in serial.items() if isinstance(v, Task) and v.func is read_buffer]
    assert len(serial_reads) <= len(reads)
    assert not any(isinstance(v, Task) and v.func is synced for v in serial.values())
    f.close()


def test_no_pipelining_into_chunked_targets(tmp_path):
    # (a whole Zarr target runs on the rechunk executor instead: tests/graph/test_zarr_path.py)
    data = np.arange(40 * 30, dtype="i4").reshape(40, 30)
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f.create_dataset("x", data=data)
    f = h5py.File(tmp_path / "s.h5", "r")
    x = da.from_array(f["x"], chunks=(8, 30))
    g = h5py.File(tmp_path / "t.h5", "w")
    z = g.create_dataset("y", shape=data.shape, chunks=(7, 7), dtype="i4")
    stored = da.store(x.rechunk((7, 7)), z, compute=False, lock=False)
    keys = list(flatten(stored.__dask_keys__()))
    graph = _graph(stored, keys, max_mem=data.nbytes // 2, pipeline=True)
    reads = sorted((k for k, v in graph.items() if isinstance(v, Task) and v.func is read_buffer),
                   key=lambda k: int(k.rsplit("-", 1)[1]))
    assert len(reads) >= 2
    for number, key in enumerate(reads[1:], 1):
        (dep,) = graph[key].dependencies
        assert dep.endswith(f"-{number - 1}")
    with optimizing(max_mem=data.nbytes // 2, pipeline=True):
        stored.compute(scheduler="threads")
    np.testing.assert_array_equal(z[...], data)
    f.close()
    g.close()


def test_slices_stored_apart_plan_as_one_job(tmp_path):
    data = np.arange(24 * 20, dtype="u2").reshape(24, 20)
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f.create_dataset("x", data=data)
    f = h5py.File(tmp_path / "s.h5", "r")
    y = da.from_array(f["x"], chunks=(6, 20)).rechunk((5, 7))
    regions = [(slice(i, min(i + 5, 24)), slice(j, min(j + 7, 20))) for i in range(0, 24, 5)
               for j in range(0, 20, 7)]
    targets = [np.zeros(tuple(s.stop - s.start for s in r), "u2") for r in regions]
    stored = da.store([y[r] for r in regions], targets, compute=False)
    keys = _keys(stored)
    graph = _graph(stored, keys, max_mem=data.nbytes * 4, pipeline=False)
    reads = [k for k, v in graph.items() if isinstance(v, Task) and v.func is read_buffer]
    assert len(reads) == 1  # one buffer holds everything: one job, not one per target
    with optimizing(max_mem=data.nbytes * 4):
        dask.compute(*stored, scheduler="threads")
    for t, r in zip(targets, regions):
        np.testing.assert_array_equal(t, data[r])
    f.close()
