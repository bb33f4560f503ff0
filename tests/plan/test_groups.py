"""The distributed grouping planner against a brute-force element labelling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from dask_io.errors import InvalidChunksError
from dask_io.plan.grid import Grid
from dask_io.plan.groups import plan_groups


def _label(gp):
    """An array holding, for every element, the index of the group that owns it."""
    labels = np.full(gp.shape, -1, dtype=np.int64)
    for g in gp.groups:
        sl = tuple(slice(a, b) for a, b in g.region)
        assert (labels[sl] == -1).all(), "groups overlap"
        labels[sl] = g.index
    assert (labels >= 0).all(), "groups do not cover the array"
    return labels


def _check(gp, in_grid: Grid, out_grid: Grid):
    labels = _label(gp)
    # every input block lies in exactly one group: read once
    owners = {}
    for blk in in_grid.blocks():
        sl = tuple(slice(a, b) for a, b in in_grid.block_region(blk))
        ids = np.unique(labels[sl])
        assert len(ids) == 1, f"input block {blk} is cut by a group boundary"
        owners[blk] = int(ids[0])
    for g in gp.groups:
        assert sorted(g.input_blocks()) == sorted(b for b, o in owners.items() if o == g.index)
    # an output block is a seam exactly when more than one group holds part of it
    seams = {s.block: s for s in gp.seams}
    seam_elems = 0
    for blk in out_grid.blocks():
        region = out_grid.block_region(blk)
        sl = tuple(slice(a, b) for a, b in region)
        ids = set(np.unique(labels[sl]).tolist())
        if len(ids) == 1:
            assert blk not in seams
            continue
        seam = seams[blk]
        seam_elems += math.prod(b - a for a, b in region)
        assert seam.region == region
        assert set(seam.groups) == ids
        cover = np.zeros([b - a for a, b in region], dtype=np.int64)
        for g, piece in seam.pieces:
            psl = tuple(
                slice(a - r0, b - r0) for (a, b), (r0, _) in zip(piece, region, strict=True)
            )
            cover[psl] += 1
            gsl = tuple(slice(a, b) for a, b in piece)
            assert (labels[gsl] == g).all()
        assert (cover == 1).all(), f"pieces of seam {blk} do not tile it"
    assert len(seams) == sum(1 for b in out_grid.blocks() if b in seams)
    assert gp.seam_bytes == seam_elems * gp.dtype.itemsize
    # every seam is finished by exactly one batch
    done = sorted(i for b in gp.batches for i in b)
    assert done == list(range(len(gp.seams)))


def _check_subgrids(gp, out_grid: Grid):
    """A group's output sub-grid: whole output blocks plus seam pieces, in order."""
    for g in gp.groups:
        sub = Grid(g.shape, g.out_chunks)
        for local in sub.blocks():
            blk = g.local_out_block(local)
            region = tuple(
                (a + o, b + o) for (a, b), o in zip(sub.block_region(local), g.origin, strict=True)
            )
            whole = out_grid.block_region(blk)
            if blk in gp.seam_of_block:
                assert (g.index, region) in gp.seams[gp.seam_of_block[blk]].pieces
            else:
                assert region == whole


chunks_1d = hst.integers(1, 9)


@settings(max_examples=20, deadline=None)
@given(
    shape=hst.lists(hst.integers(1, 16), min_size=1, max_size=3),
    data=hst.data(),
    workers=hst.integers(1, 6),
)
def test_groups_tile_and_seams_match_brute_force(shape, data, workers):
    in_c = tuple(data.draw(hst.integers(1, r)) for r in shape)
    out_c = tuple(data.draw(hst.integers(1, r)) for r in shape)
    gp = plan_groups(shape, in_c, out_c, "uint16", 1 << 20, n_workers=workers)
    in_grid = Grid.from_chunks(tuple(shape), in_c)
    out_grid = Grid.from_chunks(tuple(shape), out_c)
    _check(gp, in_grid, out_grid)
    _check_subgrids(gp, out_grid)
    assert len(gp.groups) >= min(workers, in_grid.nblocks) or all(
        len(c) == n - 1 for c, n in zip(gp.cuts, in_grid.numblocks, strict=True)
    )


@pytest.mark.parametrize(
    ("shape", "in_c", "out_c", "workers", "n_seams"),
    [
        ((16, 16), (2, 16), (4, 4), 4, 0),  # input blocks nest in outputs: clean cuts only
        ((16, 16), (4, 4), (4, 4), 4, 0),  # identical grids
        ((24,), (3,), (4,), 2, 0),  # 12 is both an input and an output boundary
        ((12,), (3,), (4,), 2, 1),  # no clean cut inside: the cut at 6 splits [4, 8)
        ((12,), (3,), (4,), 3, 2),  # three parts: cuts near 4 and 8 are not input boundaries
        ((8, 8), (1, 8), (8, 2), 2, 4),  # pancake to pencil: every output straddles the cut
    ],
    ids=["nested", "identical", "one-clean", "one-seam", "two-seams", "pancake"],
)
def test_known_groupings(shape, in_c, out_c, workers, n_seams):
    gp = plan_groups(shape, in_c, out_c, "uint8", 1 << 20, n_workers=workers)
    assert len(gp.groups) >= workers
    assert len(gp.seams) == n_seams
    _check(gp, Grid.from_chunks(shape, in_c), Grid.from_chunks(shape, out_c))


def test_cuts_prefer_the_cheapest_axis():
    # axis 0 outputs are 2 thick, axis 1 outputs 6 thick: cutting axis 0 seams less
    gp = plan_groups((24, 24), (4, 4), (2 + 3, 6 + 1), "uint8", 1 << 20, n_workers=2)
    assert gp.cuts[1] == () and len(gp.cuts[0]) == 1


def test_small_memory_makes_more_groups():
    """A group too big for max_mem to be rewritten at the lower bound is cut again."""
    shape, in_c, out_c = (64, 32, 32), (1, 32, 32), (64, 8, 8)
    roomy = plan_groups(shape, in_c, out_c, "uint8", 1 << 20, n_workers=1)
    tight = plan_groups(shape, in_c, out_c, "uint8", 24 << 10, n_workers=1)
    assert len(roomy.groups) == 1 and not roomy.seams
    assert len(tight.groups) > 1
    for g in tight.groups:
        plan = tight.plan_of(g)
        assert plan.cost.peak_mem <= tight.max_mem
        assert plan.cost.seeks == plan.lower_bound


def test_summary_and_simulation_count_every_task():
    gp = plan_groups((40, 40), (5, 5), (7, 9), "float32", 1 << 20, n_workers=4)
    s = gp.summary()
    assert s["groups"] == len(gp.groups) >= 4
    assert s["piece_writes"] == s["piece_reads"] == sum(len(x.pieces) for x in gp.seams)
    assert s["reads"] == 64  # every input block once
    assert s["writes"] == Grid.from_chunks((40, 40), (7, 9)).nblocks  # every output once
    loads = gp.simulate(3)
    assert sum(w["tasks"] for w in loads) == len(gp.groups) + len(gp.batches)
    assert max(w["peak_mem"] for w in loads) == gp.peak_mem <= gp.max_mem


def test_group_cap_bounds_group_size():
    gp = plan_groups((32, 32), (4, 4), (4, 4), "uint8", 1 << 20, group_cap=256)
    assert max(g.size for g in gp.groups) <= 256


def test_bad_worker_count_is_refused():
    with pytest.raises(InvalidChunksError, match="n_workers=0"):
        plan_groups((4,), (2,), (2,), "uint8", 100, n_workers=0)
