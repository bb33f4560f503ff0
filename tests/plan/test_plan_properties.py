"""Property tests: every plan, replayed on real data, does and costs what it claims."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as hs
from plan_oracle import blocks_of, check_replay, replay

from dask_io.errors import InsufficientMemoryError
from dask_io.plan import plan_resplit

STRATEGIES = ("naive", "clustered", "multiple", "keep")
MAX_SIDE = {1: 40, 2: 14, 3: 7, 4: 5, 5: 3}
DTYPES = ("uint8", "int16", "float32", "float64")
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@hs.composite
def problems(draw, generous=False):  # type: ignore[no-untyped-def]
    """A small N-D resplit (partial edge blocks likely) and a memory budget."""
    ndim = draw(hs.integers(1, 5))
    shape = tuple(draw(hs.integers(1, MAX_SIDE[ndim])) for _ in range(ndim))
    in_chunks = tuple(draw(hs.integers(1, r)) for r in shape)
    out_chunks = tuple(draw(hs.integers(1, r)) for r in shape)
    dtype = np.dtype(draw(hs.sampled_from(DTYPES)))
    layout = draw(hs.sampled_from(["contiguous", "chunked", ("chunked", "contiguous")]))
    hi = whole_budget(shape, in_chunks, out_chunks, dtype)
    if generous:
        max_mem = hi + draw(hs.integers(0, hi))
    else:
        # from about one row plus a staging row (the smallest budgets) up to the whole array
        lo = dtype.itemsize * (in_chunks[-1] + out_chunks[-1])
        max_mem = draw(hs.one_of(hs.integers(lo, hi), hs.integers(lo, 4 * lo), hs.just(hi)))
    return shape, in_chunks, out_chunks, dtype, max_mem, layout


def whole_budget(shape, in_chunks, out_chunks, dtype) -> int:  # type: ignore[no-untyped-def]
    """Bytes of the whole array plus one block (room for any staging array)."""
    block = max(math.prod(in_chunks), math.prod(out_chunks))
    return (math.prod(shape) + block) * dtype.itemsize


def sample(shape, dtype) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Distinct values (mod the dtype's range), so a misplaced element shows."""
    return (np.arange(math.prod(shape)) % 251 + 1).astype(dtype).reshape(shape) * (
        np.arange(math.prod(shape)).reshape(shape) % 7 + 1
    ).astype(dtype)


def plan_or_none(shape, in_chunks, out_chunks, dtype, max_mem, strategy, layout):  # type: ignore[no-untyped-def]
    try:
        return plan_resplit(shape, in_chunks, out_chunks, dtype, max_mem, strategy, layout)
    except InsufficientMemoryError as e:
        assert f"strategy={strategy!r}" in str(e) or "smallest feasible" in str(e)
        return None


def check_plan(plan, shape, in_chunks, out_chunks, dtype, max_mem, layout):  # type: ignore[no-untyped-def]
    """Replay ``plan`` and compare everything it claims with what the replay counted."""
    data = sample(shape, dtype)
    r = replay(plan, data, in_chunks, out_chunks, layout)
    check_replay(r, data)
    c = plan.cost
    claimed = {k: getattr(c, k) for k in r.cost_fields()}
    assert claimed == r.cost_fields(), "plan.cost differs from the replayed count"
    assert c.runs == c.read_runs + c.write_runs and c.seeks == c.opens + c.runs
    assert c.peak_mem == c.buffer_bytes + c.kept_peak + c.staging_bytes
    peak = r.max_buffer_bytes + r.kept_peak + c.staging_bytes
    assert peak <= max_mem, f"peak memory {peak} B > max_mem={max_mem} B"
    assert plan.buffer_shape == tuple(max(b - a for a, b in axis) for axis in zip(*r.buffers))
    check_strategy_shape(plan, r, in_chunks)
    return r


def check_strategy_shape(plan, r, in_chunks) -> None:  # type: ignore[no-untyped-def]
    """What each strategy is, by definition (DESIGN.md §1)."""
    shape = plan.shape
    if plan.strategy == "naive":  # B = I, buffers in C order
        assert r.buffers == list(blocks_of(shape, in_chunks).values())
    if plan.strategy in ("naive", "clustered"):  # whole input blocks, each once
        blocks = blocks_of(shape, in_chunks)
        assert all(op.region == blocks[op.block] for op in r.reads)
        assert len({op.block for op in r.reads}) == len(r.reads) == len(blocks)
    if plan.strategy == "multiple":  # whole output blocks
        assert all(op.whole for op in r.writes)
    if plan.strategy != "keep":
        assert r.n_keeps == 0 and r.kept_peak == 0


@SETTINGS
@given(problems())
def test_every_strategy_replays_exactly(problem) -> None:  # type: ignore[no-untyped-def]
    shape, in_chunks, out_chunks, dtype, max_mem, layout = problem
    note(f"plan_resplit({shape}, {in_chunks}, {out_chunks}, {dtype.name!r}, {max_mem}, ..., {layout!r})")
    plans = {}
    for s in STRATEGIES:
        plan = plan_or_none(shape, in_chunks, out_chunks, dtype, max_mem, s, layout)
        if plan is not None:
            assert plan.strategy == s
            check_plan(plan, shape, in_chunks, out_chunks, dtype, max_mem, layout)
            plans[s] = plan
    auto = plan_or_none(shape, in_chunks, out_chunks, dtype, max_mem, "auto", layout)
    if auto is None:
        assert not plans, f"auto failed while {sorted(plans)} are feasible"
        assert max_mem < whole_budget(shape, in_chunks, out_chunks, dtype)
        return
    check_plan(auto, shape, in_chunks, out_chunks, dtype, max_mem, layout)
    assert plans, "auto found a plan but every strategy on its own was infeasible"
    for s, plan in plans.items():
        assert auto.cost.seeks <= plan.cost.seeks, f"auto costs more than {s}"
    if "naive" in plans:
        assert "keep" in plans, "keep must be feasible whenever naive is"
        assert plans["keep"].cost.seeks <= plans["naive"].cost.seeks


@SETTINGS
@given(problems(generous=True))
def test_keep_reaches_the_lower_bound_with_memory_for_the_whole_array(problem) -> None:  # type: ignore[no-untyped-def]
    shape, in_chunks, out_chunks, dtype, max_mem, layout = problem
    n_in = len(blocks_of(shape, in_chunks))
    n_out = len(blocks_of(shape, out_chunks))
    for s in ("keep", "auto"):
        plan = plan_resplit(shape, in_chunks, out_chunks, dtype, max_mem, s, layout)
        r = check_plan(plan, shape, in_chunks, out_chunks, dtype, max_mem, layout)
        assert (r.opens, r.read_runs + r.write_runs) == (n_in + n_out, n_in + n_out)
        assert plan.cost.seeks == 2 * (n_in + n_out)
        assert r.rmw_bytes == 0


@pytest.mark.parametrize("layout", ["contiguous", "chunked"])
def test_auto_matches_its_alternatives(layout) -> None:  # type: ignore[no-untyped-def]
    """``plan.alternatives`` holds the plan each strategy would give on its own."""
    args = ((9, 10, 11), (4, 3, 5), (3, 4, 4), "int16", 1500)
    auto = plan_resplit(*args, strategy="auto", layout=layout)
    for s in STRATEGIES:
        alone = plan_or_none(*args, s, layout)
        alt = auto.alternatives[s]
        if alone is None:
            assert isinstance(alt, str) and s in alt
        else:
            assert alt.cost == alone.cost and alt.buffer_shape == alone.buffer_shape
