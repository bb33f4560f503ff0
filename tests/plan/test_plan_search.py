"""``auto`` against a brute force over buffer partitions, and the box search's closed form.

The brute force knows nothing of the search: on small random 1-D to 4-D cases it
enumerates, per axis, every uniform extent and every grouping of the input blocks,
the output blocks and the segments between both boundary sets, costs every
combination that fits exactly (``_evaluate``, itself checked against a replay on
numpy in test_plan_properties.py), keeping nothing and keeping whatever fits, and
asserts that ``auto`` is never worse in the model it minimises.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as hs

from dask_io.errors import ExcessiveIOWarning, InsufficientMemoryError
from dask_io.plan import plan_resplit, search
from dask_io.plan import planner as P
from dask_io.plan import strategies as st
from dask_io.plan.axes import group_bounds
from dask_io.plan.timing import DEFAULT, Machine

SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
MOST_PARTITIONS = 600


@hs.composite
def cases(draw):  # type: ignore[no-untyped-def]
    ndim = draw(hs.integers(1, 4))
    top = {1: 40, 2: 14, 3: 8, 4: 5}[ndim]
    shape = tuple(draw(hs.integers(2, top)) for _ in range(ndim))
    in_chunks = tuple(draw(hs.integers(1, r)) for r in shape)
    out_chunks = tuple(draw(hs.integers(1, r)) for r in shape)
    itemsize = draw(hs.sampled_from([1, 2, 8]))
    layout = draw(hs.sampled_from(["contiguous", "chunked", ("chunked", "contiguous"),
                                   ("contiguous", "chunked")]))
    total = math.prod(shape) * itemsize
    fraction = draw(hs.sampled_from([1 / 64, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0]))
    return shape, in_chunks, out_chunks, f"u{itemsize}", max(1, int(total * fraction)), layout


def axis_partitions(length: int, in_b: np.ndarray, out_b: np.ndarray) -> list[np.ndarray]:
    union = np.union1d(in_b, out_b)
    found: dict[bytes, np.ndarray] = {}
    for t in range(1, length + 1):
        uniform = np.append(np.arange(0, length, t, dtype=np.int64), length)
        for b in (uniform, group_bounds(in_b, t), group_bounds(out_b, t), group_bounds(union, t)):
            found.setdefault(b.tobytes(), b)
    return list(found.values())


def brute_force(pb: P._Problem, keep: bool) -> P.Plan | None:
    per_axis = [axis_partitions(r, pb.in_grid.bounds[d], pb.out_grid.bounds[d])
                for d, r in enumerate(pb.in_grid.shape)]
    combos = list(itertools.product(*per_axis))
    if len(combos) > MOST_PARTITIONS:  # a fixed, even sample of a large family
        combos = [combos[i] for i in np.linspace(0, len(combos) - 1, MOST_PARTITIONS).astype(int)]
    best = None
    for bounds in combos:
        if st.buffer_elems(bounds) > pb.avail:
            continue
        trials = [P._make(pb, "keep", bounds, P._c_order(pb), keep=False)]
        if keep and st.buffer_elems(bounds) < pb.avail:
            order = st.buffer_orders(bounds, pb.out_grid)[0]
            trials.append(P._make(pb, "keep", bounds, order, keep=True))
        for plan in trials:
            if plan is not None and (best is None or pb.score(plan) < pb.score(best)):
                best = plan
    return best


def describe(plan: P.Plan) -> str:
    return (f"buffer {plan.buffer_shape} x{plan.n_buffers} seeks {plan.cost.seeks} "
            f"seconds {plan.seconds:.6g} kept {plan.cost.kept_peak}")


@SETTINGS
@given(cases(), hs.sampled_from(["seconds", "seeks"]))
def test_auto_never_loses_to_the_brute_force(case, objective) -> None:  # type: ignore[no-untyped-def]
    note(f"plan_resplit{case!r}, objective={objective!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExcessiveIOWarning)
            auto = plan_resplit(*case[:5], "auto", case[5], objective=objective)
    except InsufficientMemoryError:
        return
    pb = P._validate(*case[:5], "auto", case[5])
    pb = P._Problem(pb.in_grid, pb.out_grid, pb.dtype, pb.max_mem, pb.layout, None, objective)
    oracle = brute_force(pb, keep=True)
    assert oracle is not None, "the brute force found nothing where auto found a plan"
    note(f"auto:   {describe(auto)}\noracle: {describe(oracle)}")
    # the objective itself; memory and the rest only break ties
    assert pb.score(auto)[0] <= pb.score(oracle)[0] * (1 + 1e-12), (
        f"auto {describe(auto)} loses to {describe(oracle)} on plan_resplit{case!r}"
    )


@settings(max_examples=80, deadline=None)
@given(cases(), hs.data())
def test_box_scores_equal_the_exact_cost(case, data) -> None:  # type: ignore[no-untyped-def]
    """The broadcast closed form of the box search gives ``_evaluate``'s seeks and seconds."""
    try:
        pb = P._validate(*case[:5], "auto", case[5])
    except InsufficientMemoryError:
        return
    if pb.avail < 1:
        return
    box = pb.box_problem()
    tables = [search.axis_table(pb.in_grid.bounds[d], pb.out_grid.bounds[d], pb.in_grid.shape[d])
              for d in range(pb.in_grid.ndim)]
    pick = tuple(data.draw(hs.integers(0, len(t) - 1)) for t in tables)
    one = [t.take(np.array([i])) for t, i in zip(tables, pick)]
    bounds = tuple(t.bounds[0] for t in one)
    big = P._Problem(pb.in_grid, pb.out_grid, pb.dtype, 2**62, pb.layout)
    exact = P._make(big, "keep", bounds, P._c_order(pb), keep=False)
    assert exact is not None
    for objective in ("seeks", "seconds"):
        score, seeks = search.score_boxes(
            search.BoxProblem(box.in_grid, box.out_grid, box.itemsize, box.layout, 2**62),
            one, DEFAULT, objective)
        assert int(seeks.ravel()[0]) == exact.cost.seeks
        if objective == "seconds":
            assert score.ravel()[0] == pytest.approx(exact.seconds, rel=1e-6)


def test_side_facts_against_counting() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        blk = np.unique(np.concatenate([[0, n], rng.integers(0, n, 5)]))
        buf = np.unique(np.concatenate([[0, n], rng.integers(0, n, 5)]))
        pieces = full = weight = 0
        for b0, b1 in itertools.pairwise(buf):
            for k0, k1 in itertools.pairwise(blk):
                if min(b1, k1) > max(b0, k0):
                    pieces += 1
                    full += int(b0 <= k0 and k1 <= b1)
                    weight += int(k1 - k0)
        assert search.side_facts(buf, blk) == (pieces, full, weight)


# -- regression cases of issue 11 ---------------------------------------------


def slab_plans(pb: P._Problem):  # type: ignore[no-untyped-def]
    """Slabs of whole rows (every thickness that fits) and the paper's block boxes."""
    shape = pb.in_grid.shape
    row = math.prod(shape[1:])
    for t in range(1, max(1, pb.avail // row) + 1):
        if t > shape[0]:
            break
        bounds = (np.append(np.arange(0, shape[0], t), shape[0]),
                  *(np.array([0, r]) for r in shape[1:]))
        plan = P._make(pb, "keep", bounds, P._c_order(pb), keep=False)
        if plan is not None:
            yield plan


@pytest.mark.parametrize("objective", ["seeks", "seconds"])
@pytest.mark.parametrize(
    ("shape", "in_chunks", "out_chunks", "max_mem"),
    [
        ((3900, 3000, 3500), (780, 600, 700), (650, 500, 500), "8GiB"),
        ((3500,) * 3, (350,) * 3, (500,) * 3, "4GiB"),
        ((3500,) * 3, (875,) * 3, (700, 875, 700), "4GiB"),
        ((3500,) * 3, (175,) * 3, (250,) * 3, "4GiB"),
    ],
)
def test_auto_at_most_the_best_slab(shape, in_chunks, out_chunks, max_mem, objective) -> None:  # type: ignore[no-untyped-def]
    auto = plan_resplit(shape, in_chunks, out_chunks, "uint16", max_mem, objective=objective)
    pb = P._validate(shape, in_chunks, out_chunks, "uint16", max_mem, "auto", "contiguous")
    pb = P._Problem(pb.in_grid, pb.out_grid, pb.dtype, pb.max_mem, pb.layout, None, objective)
    best = min(slab_plans(pb), key=pb.score)
    assert pb.score(auto) <= pb.score(best), f"auto {describe(auto)} vs slab {describe(best)}"


def test_the_3900_case_is_within_three_times_the_lower_bound() -> None:
    # issue 11: `multiple` at 40,004 seeks (53x); 390-row slabs cost 1,676
    plan = plan_resplit((3900, 3000, 3500), (780, 600, 700), (650, 500, 500), "uint16", "8GiB",
                        objective="seeks")
    assert plan.cost.seeks <= 1676
    assert plan.cost.seeks <= 3 * plan.lower_bound


def test_excessive_io_warns_with_the_memory_that_helps() -> None:
    # 128 x 128 x 128 bytes from columns of rows to planes: 17 kB is 135x the bound
    args = ((128, 128, 128), (128, 1, 128), (128, 128, 1), "uint8")
    with pytest.warns(ExcessiveIOWarning, match=r"would bring it within 2x") as record:
        plan = plan_resplit(*args, 17000)
    assert plan.cost.seeks > 100 * plan.lower_bound
    text = str(record[0].message)
    assert text.startswith("max_mem=16.6 KiB forces ")
    need = P.memory_within(P._validate(*args, 17000, "auto", "contiguous"))
    assert f"max_mem={P.format_bytes(need)}" in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        better = plan_resplit(*args, need, objective="seeks")
    assert better.cost.seeks <= 2 * better.lower_bound


def test_no_warning_when_asked_not_to_or_for_a_named_strategy() -> None:
    args = ((128, 128, 128), (128, 1, 128), (128, 128, 1), "uint8", 17000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan_resplit(*args, warn=False)
        plan_resplit(*args, "keep")


def test_unknown_objective_is_refused() -> None:
    with pytest.raises(ValueError, match=r"objective='time' is unknown; expected one of seconds"):
        plan_resplit((8,), (4,), (2,), "u1", 64, objective="time")


def test_machine_constants_change_the_choice() -> None:
    """Dear seeks favour keeping; dear copies favour keeping nothing."""
    args = ((3500,) * 3, (350,) * 3, (500,) * 3, "uint16", "4GiB")
    dear_seeks = plan_resplit(*args, machine=Machine(run_s=1.0, open_s=1.0), objective="seconds")
    dear_copies = plan_resplit(*args, machine=Machine(copy_bw=1e6), objective="seconds")
    assert dear_seeks.cost.seeks < dear_copies.cost.seeks
    assert dear_copies.cost.kept_bytes <= dear_seeks.cost.kept_bytes
    assert dear_seeks.machine is not None and dear_seeks.machine.run_s == 1.0


def test_machine_from_mapping_refuses_unknown_keys() -> None:
    with pytest.raises(ValueError, match=r"unknown machine constants \['seek_ms'\]"):
        Machine.from_mapping({"seek_ms": 1})
    with pytest.raises(ValueError, match=r"run_s=-1.0: expected a positive number"):
        Machine.from_mapping({"run_s": -1})
    assert Machine.from_mapping({"run_s": 1e-3}).run_s == 1e-3
