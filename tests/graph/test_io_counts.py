"""Measured I/O: read calls on the source file, counted through the file object h5py uses."""

from __future__ import annotations

import io

import dask
import dask.array as da
import h5py
import numpy as np
import pytest

from dask_io.graph import optimizing
from dask_io.plan import plan_resplit

SHAPE = (64, 64, 64)


class CountingFile(io.FileIO):
    """A file whose read calls are counted (h5py reads through it)."""

    reads = 0

    def readinto(self, b):
        self.reads += 1
        return super().readinto(b)

    def read(self, size=-1):
        self.reads += 1
        return super().read(size)


@pytest.fixture
def source(tmp_path):
    data = np.arange(np.prod(SHAPE), dtype="u2").reshape(SHAPE)
    path = tmp_path / "src.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=data)
    raw = CountingFile(path, "rb")
    f = h5py.File(raw, "r")
    yield data, f["x"], raw
    f.close()
    raw.close()


def _resplit(dataset, raw, out_chunks, use_pass, max_mem):
    x = da.from_array(dataset, chunks=(16, 16, 16))
    target = np.zeros(SHAPE, "u2")
    raw.reads = 0
    if use_pass:
        # one buffer at a time: the plan within all of max_mem (pipelining plans
        # within half of it, with more buffers; tests/graph/test_layers.py covers it)
        with optimizing(max_mem=max_mem, pipeline=False):
            da.store(x.rechunk(out_chunks), target, scheduler="threads")
    else:
        with dask.config.set(array_optimize=None):
            da.store(x.rechunk(out_chunks), target, scheduler="threads")
    return raw.reads, target


@pytest.mark.parametrize("max_mem", [2**17, 2**19, 2**21], ids=["128KiB", "512KiB", "2MiB"])
def test_resplit_reads_at_most_the_plan(source, max_mem):
    data, dataset, raw = source
    out = (20, 30, 35)
    with_pass, target = _resplit(dataset, raw, out, True, max_mem)
    np.testing.assert_array_equal(target, data)
    # the pass plans one contiguous source block into the in-memory target (one block)
    plan = plan_resplit(SHAPE, SHAPE, SHAPE, "u2", max_mem)
    assert with_pass <= plan.cost.read_runs
    without, target = _resplit(dataset, raw, out, False, max_mem)
    np.testing.assert_array_equal(target, data)
    assert without >= 20 * with_pass


def test_clustered_reads_far_fewer(source):
    data, dataset, raw = source
    x = da.from_array(dataset, chunks=(16, 16, 16))
    raw.reads = 0
    with dask.config.set(array_optimize=None):
        plain = (x + 1).mean(axis=0).compute(scheduler="threads")
    plain_reads, raw.reads = raw.reads, 0
    with optimizing(max_mem=4 * 16 * 64 * 64 * 2):
        ours = (x + 1).mean(axis=0).compute(scheduler="threads")
    np.testing.assert_allclose(ours, plain)
    np.testing.assert_allclose(ours, (data + 1).mean(axis=0))
    # clusters of 128 KiB budget: whole (16, 64, 64) slabs, one contiguous read each
    assert raw.reads == 4
    assert plain_reads >= 50 * raw.reads
