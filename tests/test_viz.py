"""Plan pictures and memory sweeps (dask_io.viz) on the Agg backend, and their CLI flags."""

from __future__ import annotations

import json

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from dask_io.cli import main  # noqa: E402
from dask_io.errors import DaskIOError, InvalidChunksError  # noqa: E402
from dask_io.plan import STRATEGIES, parse_bytes, plan_resplit  # noqa: E402
from dask_io.plan.ops import LoadBuffer  # noqa: E402
from dask_io.viz import memory_budgets, plot_plan, plot_sweep, sweep_memory  # noqa: E402

CASE = ((20, 15, 10), (7, 6, 5), (10, 9, 8), "uint16")
CLI_CASE = ["--shape", "20,15,10", "--in-chunks", "7,6,5", "--out-chunks", "10,9,8"]


def buffer_rects(ax) -> list[tuple[float, float, float, float]]:  # type: ignore[no-untyped-def]
    return sorted(
        (p.get_x(), p.get_y(), p.get_width(), p.get_height())
        for p in ax.patches
        if isinstance(p, Rectangle) and p.get_gid() == "buffer"
    )


def loads(plan) -> list[LoadBuffer]:  # type: ignore[no-untyped-def]
    return [op for op in plan.operations() if isinstance(op, LoadBuffer)]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_2d_picture_has_one_rectangle_per_buffer_numbered_in_order(strategy: str) -> None:
    plan = plan_resplit((30, 24), (7, 5), (10, 8), "uint8", 300, strategy)
    ax = plot_plan(plan)
    # oracle: the LoadBuffer operations an executor runs (not the regions the plot reads)
    expected = sorted(
        (float(c0), float(r0), float(c1 - c0), float(r1 - r0))
        for (r0, r1), (c0, c1) in (op.region for op in loads(plan))
    )
    assert buffer_rects(ax) == expected
    assert len(expected) == plan.n_buffers
    labels = {t.get_position(): int(t.get_text()) for t in ax.texts}
    centres = {
        ((c0 + c1) / 2, (r0 + r1) / 2): op.index
        for op in loads(plan)
        for (r0, r1), (c0, c1) in [op.region]
    }
    assert labels == centres  # each buffer numbered with its place in the plan's order
    assert sorted(labels.values()) == list(range(plan.n_buffers))


def test_3d_section_keeps_the_buffers_crossing_the_plane() -> None:
    plan = plan_resplit(*CASE, "2KiB")
    for x0 in (0, 7, 19):
        ax = Figure().subplots()
        assert plot_plan(plan, ax, section=(x0, None, None)) is ax
        crossing = [op.region for op in loads(plan) if op.region[0][0] <= x0 < op.region[0][1]]
        assert len(buffer_rects(ax)) == len(crossing) > 0
        assert sorted(buffer_rects(ax)) == sorted(
            (float(z0), float(y0), float(z1 - z0), float(y1 - y0))
            for _, (y0, y1), (z0, z1) in crossing
        )


def test_plan_plot_method_draws_the_same_picture() -> None:
    plan = plan_resplit(*CASE, "2KiB")
    ax = Figure().subplots()
    assert plan.plot(ax) is ax
    assert buffer_rects(ax) == buffer_rects(plot_plan(plan))
    assert plan.plot().figure is not None  # a new figure when ax is None


@pytest.mark.parametrize(
    ("section", "bad"),
    [
        ((0, None), "2 entries"),
        ((0, 1, None), "exactly 2 axes"),
        ((20, None, None), "section[0]=20"),
        ((-1, None, None), "section[0]=-1"),
        (("a", None, None), "section[0]='a'"),
    ],
)
def test_bad_sections_name_the_value(section, bad: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidChunksError, match=bad.replace("[", r"\[").replace("]", r"\]")):
        plot_plan(plan_resplit(*CASE, "2KiB"), section=section)


def test_one_dimensional_plans_have_no_picture() -> None:
    with pytest.raises(InvalidChunksError, match="at least 2 axes; the array has 1"):
        plot_plan(plan_resplit((16,), (4,), (8,), "uint8", 64))


def test_budgets_are_log_spaced_and_checked() -> None:
    budgets = memory_budgets("256MiB", "16GiB", 8)
    assert budgets[0] == 256 * 2**20 and budgets[-1] == 16 * 2**30 and len(budgets) == 8
    ratios = np.diff(np.log(budgets))
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-6)
    with pytest.raises(InvalidChunksError, match="must rise"):
        memory_budgets("2GiB", "1GiB")
    with pytest.raises(InvalidChunksError, match="points=1"):
        memory_budgets("1GiB", "2GiB", 1)


def test_sweep_equals_plan_resplit_at_every_budget() -> None:
    budgets = memory_budgets(256, "16KiB", 6)
    rows = sweep_memory(*CASE, budgets)
    assert [(r["max_mem"], r["strategy"]) for r in rows] == [
        (b, s) for b in budgets for s in STRATEGIES
    ]
    feasible = 0
    for row in rows:
        try:
            plan = plan_resplit(*CASE, row["max_mem"], row["strategy"], warn=False)
        except DaskIOError:
            assert "infeasible" in row
            continue
        feasible += 1
        assert (row["seeks"], row["seconds"], row["peak_mem"]) == (
            plan.cost.seeks,
            plan.seconds,
            plan.cost.peak_mem,
        )
        assert row["buffer_shape"] == list(plan.buffer_shape)
    assert 0 < feasible < len(rows)  # the smallest budget fits nothing


def test_sweep_picture_has_a_curve_per_feasible_strategy() -> None:
    rows = sweep_memory(*CASE, memory_budgets("1KiB", "16KiB", 4))
    seeks_ax, seconds_ax = plot_sweep(rows)
    for ax, key in ((seeks_ax, "seeks"), (seconds_ax, "seconds")):
        lines = {line.get_gid(): line for line in ax.get_lines()}
        assert sorted(lines) == sorted(f"sweep-{s}" for s in STRATEGIES)
        for name in STRATEGIES:
            mine = [r for r in rows if r["strategy"] == name and key in r]
            assert list(lines[f"sweep-{name}"].get_ydata()) == [r[key] for r in mine]


def test_cli_plot_writes_a_png(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "plan.png"
    assert main(["plan", *CLI_CASE, "--max-mem", "2KiB", "--plot", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "chosen by" in out and f"wrote {path}" in err
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_sweep_prints_the_planner_numbers(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "sweep.png"
    argv = ["plan", *CLI_CASE, "--sweep-mem", "1KiB:16KiB", "--sweep-points", "5"]
    assert main([*argv, "--json", "--plot", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["budgets"] == [parse_bytes(f"{k}KiB") for k in (1, 2, 4, 8, 16)]
    for row in doc["rows"]:
        if "seeks" in row:
            plan = plan_resplit(*CASE, row["max_mem"], row["strategy"], warn=False)
            assert row["seeks"] == plan.cost.seeks
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "16.0 KiB" in table and all(s in table for s in STRATEGIES)


@pytest.mark.parametrize("bad", ["16GiB", "1GiB:", ":2GiB", "2GiB:1GiB", "x:2GiB"])
def test_cli_bad_sweep_exits_2_naming_it(capsys, bad: str) -> None:  # type: ignore[no-untyped-def]
    assert main(["plan", *CLI_CASE, "--sweep-mem", bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dask-io plan: error:") and err.count("\n") == 1
