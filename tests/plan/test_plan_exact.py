"""Hand-worked plans: exact operations and costs computed by hand in the comments."""

from __future__ import annotations

import numpy as np
import pytest
from plan_oracle import check_replay, replay

from dask_io.plan import plan_resplit
from dask_io.plan.ops import Keep, LoadBuffer, Read, Release, Write, WriteKept

# 1-D: 10 elements, input blocks [0,4) [4,8) [8,10), output blocks [0,5) [5,10).
# Lower bound: 3 + 2 = 5 runs and 5 opens.
R1, I1, O1 = (10,), (4,), (5,)


def replayed(plan, shape, in_chunks, out_chunks, layout="contiguous"):  # type: ignore[no-untyped-def]
    data = (np.arange(np.prod(shape)) + 1).astype(plan.dtype).reshape(shape)
    r = replay(plan, data, in_chunks, out_chunks, layout)
    check_replay(r, data)
    return r


def cost_of(plan) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    c = plan.cost
    return (c.opens, c.read_runs, c.write_runs, c.bytes_read, c.bytes_written)


def test_naive_1d_exact_operations() -> None:
    # B = I; every input block read whole in 1 run; its pieces written at once
    # (a 1-D piece is always one run): out0 gets [0,4) then [4,5); out1 gets [5,8) then [8,10).
    plan = plan_resplit(R1, I1, O1, "uint8", 64, "naive")
    assert list(plan.operations()) == [
        LoadBuffer(0, ((0, 4),)),
        Read((0,), ((0, 4),), 1, 4),
        Write((0,), ((0, 4),), 1, 4, False),
        LoadBuffer(1, ((4, 8),)),
        Read((1,), ((4, 8),), 1, 4),
        Write((0,), ((4, 5),), 1, 1, False),
        Write((1,), ((5, 8),), 1, 3, False),
        LoadBuffer(2, ((8, 10),)),
        Read((2,), ((8, 10),), 1, 2),
        Write((1,), ((8, 10),), 1, 2, False),
    ]
    assert cost_of(plan) == (3 + 4, 3, 4, 10, 10)
    assert plan.cost.seeks == 14 and plan.buffer_shape == (4,)


def test_naive_1d_chunked_counts_read_modify_write() -> None:
    # chunked: each of the 4 writes moves a whole 5-byte chunk; the second write to
    # each output chunk first reads it back (2 read-modify-writes of 5 bytes).
    plan = plan_resplit(R1, I1, O1, "uint8", 64, "naive", layout="chunked")
    assert cost_of(plan) == (3 + 4, 3, 4 + 2, 10 + 10, 4 * 5)
    assert plan.cost.rmw_bytes == 10
    rmw = [op.rmw_bytes for op in plan.operations() if isinstance(op, Write)]
    assert rmw == [0, 5, 0, 5]
    replayed(plan, R1, I1, O1, "chunked")


def test_multiple_1d_reads_partially_writes_whole() -> None:
    # max_mem 12 B, staging 5 B (one output row) -> 7 B for the buffer: B = O = 5.
    # reads: [0,4) [4,5) | [5,8) [8,10) = 4 opens, 4 runs; writes: 2 whole blocks.
    plan = plan_resplit(R1, I1, O1, "uint8", 12, "multiple")
    assert plan.buffer_shape == (5,)
    assert cost_of(plan) == (6, 4, 2, 10, 10)
    assert [op.region for op in plan.operations() if isinstance(op, Read)] == [
        ((0, 4),), ((4, 5),), ((5, 8),), ((8, 10),)
    ]


def test_auto_1d_tight_budget() -> None:
    # 12 B: naive/clustered cost 14 seeks; B = 5 (multiple) costs 12. Keeping with
    # B = 4 would need 4 B of buffer + 4 B kept (out0's [0,4)) + 5 B staging = 13 B.
    plan = plan_resplit(R1, I1, O1, "uint8", 12, "auto")
    assert plan.cost.seeks == 12
    replayed(plan, R1, I1, O1)


def test_keep_1d_reaches_the_lower_bound_by_keeping() -> None:
    # 13 B = 4 (buffer B = I) + 4 (out0's [0,4) kept) + 5 (staging).
    # buffer 0 keeps [0,4); buffer 1 completes out0 (written whole from the kept
    # piece and [4,5)), keeps out1's [5,8); buffer 2 completes out1.
    plan = plan_resplit(R1, I1, O1, "uint8", 13, "keep")
    ops = list(plan.operations())
    assert [type(op) for op in ops] == [
        LoadBuffer, Read, Keep,
        LoadBuffer, Read, WriteKept, Release, Keep,
        LoadBuffer, Read, WriteKept, Release,
    ]
    assert [op.region for op in ops if isinstance(op, (Keep, WriteKept))] == [
        ((0, 4),), ((4, 5),), ((5, 8),), ((8, 10),)
    ]
    assert cost_of(plan) == (5, 3, 2, 10, 10)
    assert plan.cost.kept_peak == 4 and plan.cost.peak_mem == 13
    replayed(plan, R1, I1, O1)


def test_clustered_1d_takes_the_whole_array_when_it_fits() -> None:
    # 64 B holds all 3 input blocks (4 + 4 + 2 = 10 B): one buffer, every block
    # read and written whole, the lower bound of 5 runs and 5 opens.
    plan = plan_resplit(R1, I1, O1, "uint8", 64, "clustered")
    assert plan.buffer_shape == (10,)
    assert cost_of(plan) == (5, 3, 2, 10, 10)


@pytest.mark.parametrize(
    ("shape", "in_chunks", "out_chunks", "write_runs"),
    [
        # overlap on the fast axis (paper Fig. 7, 8 left): every partial piece of a
        # (2, 5) output block spans its rows but not its columns -> 2 runs each
        ((2, 10), (2, 4), (2, 5), 4 * 2),
        # overlap on the slow axis: each piece spans the fast axis -> 1 run each
        ((10, 2), (4, 2), (5, 2), 4 * 1),
    ],
    ids=["fast-axis-overlap", "slow-axis-overlap"],
)
def test_naive_2d_overlap_on_one_axis(shape, in_chunks, out_chunks, write_runs) -> None:  # type: ignore[no-untyped-def]
    plan = plan_resplit(shape, in_chunks, out_chunks, "uint8", 64, "naive")
    assert cost_of(plan) == (3 + 4, 3, write_runs, 20, 20)
    replayed(plan, shape, in_chunks, out_chunks)


# The paper's Figures 3-4: input files (2, 2) (black), output files (3, 3) (gray), in 6 x 6.
# Along each axis, input block [2,4) straddles the output boundary at 3.
R2, I2, O2 = (6, 6), (2, 2), (3, 3)


def test_figure_3_naive() -> None:
    # per axis the 3 input blocks cut 4 pieces (2 | 1 1 | 2): 16 partial writes.
    # A (a, b) piece of a 3 x 3 block never spans its columns -> a runs:
    # sum over 4 x 4 pieces of a = (2 + 1 + 1 + 2) * 4 = 24 runs.
    plan = plan_resplit(R2, I2, O2, "uint8", 64, "naive")
    assert cost_of(plan) == (9 + 16, 9, 24, 36, 36)
    ops = list(plan.operations())
    assert ops[:3] == [
        LoadBuffer(0, ((0, 2), (0, 2))),
        Read((0, 0), ((0, 2), (0, 2)), 1, 4),
        Write((0, 0), ((0, 2), (0, 2)), 2, 4, False),
    ]
    centre = [op for op in ops if isinstance(op, Write) and op.nbytes == 1]
    # the centre input block (1, 1) = rows [2,4) x cols [2,4) is cut in 4 single elements
    assert sorted(op.block for op in centre) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    replayed(plan, R2, I2, O2)


def test_figure_4_keep_reaches_the_lower_bound_below_the_whole_array() -> None:
    # B = Λ = (4, 4), buffers visited row by row. Buffer 1 writes output (0, 0) whole
    # and keeps 3 + 3 + 1 elements of the three others (the extra data of Fig. 3);
    # buffer 2 completes (0, 1) and keeps 2 more of (1, 1): 7 - 3 + 2 = 6; buffer 3
    # completes (1, 0), keeps 2 more: 5; buffer 4 completes (1, 1). Peak kept: 7 B.
    # Memory: 16 B buffer + 7 B kept + 3 B staging (one output row) = 26 B < 36 B.
    # Every input read whole once, every output written whole once: 13 + 13.
    plan = plan_resplit(R2, I2, O2, "uint8", 26, "keep")
    assert plan.cost.staging_bytes == 3
    assert (plan.cost.opens, plan.cost.runs) == (13, 13)
    assert plan.cost.peak_mem <= 26
    r = replayed(plan, R2, I2, O2)
    assert r.n_keeps > 0


def test_figure_4_keep_with_more_memory() -> None:
    # the same at 30 B (planner state of the art when written: B = (4, 4))
    plan = plan_resplit(R2, I2, O2, "uint8", 30, "keep")
    assert (plan.cost.opens, plan.cost.runs) == (13, 13)
    r = replayed(plan, R2, I2, O2)
    assert all(op.whole for op in r.writes) and r.n_keeps > 0


@pytest.mark.parametrize(
    ("shape", "in_chunks", "out_chunks", "max_mem"),
    [
        ((60, 50, 40), (20, 25, 40), (15, 10, 8), 40_000),
        ((64, 64), (64, 64), (16, 16), 2_000),
        ((30, 40, 50), (7, 9, 11), (10, 13, 17), 60_000),
    ],
)
def test_without_keeping_same_buffers_nothing_kept(shape, in_chunks, out_chunks, max_mem) -> None:
    from dask_io.plan.planner import without_keeping

    plan = plan_resplit(shape, in_chunks, out_chunks, "uint16", max_mem, "keep")
    plain = without_keeping(plan)
    assert [b.tolist() for b in plain.buffer_bounds] == [b.tolist() for b in plan.buffer_bounds]
    assert plain.order == plan.order
    assert plain.cost.kept_peak == 0
    assert plain.cost.peak_mem <= plan.cost.peak_mem
    assert plain.cost.write_runs >= plan.cost.write_runs
    assert not any(isinstance(op, (Keep, WriteKept)) for op in plain.operations())
    replayed(plain, shape, in_chunks, out_chunks)  # every element written once, right values


def test_fewer_copies_never_splits_chunks_of_a_chunked_target() -> None:
    from dask_io.plan.planner import fewer_copies, without_keeping

    args = ((240, 200, 160), (60, 50, 40), (50, 60, 70), "uint16")
    chunked = plan_resplit(*args, 2_000_000, "keep", ("chunked", "chunked"))
    assert chunked.cost.kept_peak
    assert fewer_copies(chunked) is chunked
    plain = without_keeping(chunked)
    assert plain.cost.rmw_bytes > 0 and not plain.cost.long_runs
    contiguous = plan_resplit(*args, 2_000_000, "keep")
    chosen = fewer_copies(contiguous)
    assert chosen is contiguous or (chosen.cost.long_runs and not chosen.cost.kept_peak)
