"""Pictures of plans: a 2-D section of the blocks and buffers, and memory sweeps.

matplotlib is an optional dependency (``pip install dask_io[plot]``), imported only
when a picture is drawn; :func:`sweep_memory` itself needs only the planner.

>>> from dask_io.plan import plan_resplit
>>> plan = plan_resplit((8, 8), (4, 4), (2, 8), "uint8", 256)
>>> ax = plot_plan(plan)
>>> len([p for p in ax.patches if p.get_gid() == "buffer"]) == plan.n_buffers
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dask_io.errors import DaskIOError, InvalidChunksError
from dask_io.plan import STRATEGIES, Plan, format_bytes, parse_bytes, plan_resplit
from dask_io.plan.grid import ChunksLike
from dask_io.plan.ops import Region

MAX_LABELS = 400  # buffers numbered in a picture, at most (more would be unreadable)


def _matplotlib() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("plan pictures need matplotlib: pip install 'dask_io[plot]'") from e
    return Figure


def _new_axes(ax: Any, ncols: int = 1, width: float = 6.0) -> Any:
    if ax is not None:
        return ax
    figure = _matplotlib()(figsize=(width * ncols, 5.0), layout="constrained")
    axes = figure.subplots(1, ncols)
    return axes


def section_axes(
    shape: Sequence[int], section: Sequence[int | slice | None] | None
) -> tuple[tuple[int, int], dict[int, int]]:
    """The two axes drawn and the coordinate of every other axis.

    ``section`` reads like a numpy index: ``None`` (or ``slice(None)``) for the two
    axes drawn, an element coordinate for each other axis. When it is None the last
    two axes are drawn, the others at coordinate 0 (:func:`plot_plan` draws
    :func:`default_section` instead).

    >>> section_axes((10, 20, 30), (5, None, None))
    ((1, 2), {0: 5})
    """
    ndim = len(shape)
    if ndim < 2:
        raise InvalidChunksError(f"a plan picture needs at least 2 axes; the array has {ndim}")
    if section is None:
        section = (0,) * (ndim - 2) + (None, None)
    if len(section) != ndim:
        raise InvalidChunksError(
            f"section={tuple(section)!r} has {len(section)} entries; the array has {ndim} axes"
        )
    drawn = [a for a, s in enumerate(section) if s is None or s == slice(None)]
    if len(drawn) != 2:
        raise InvalidChunksError(
            f"section={tuple(section)!r} must leave exactly 2 axes as None (the axes drawn)"
        )
    fixed: dict[int, int] = {}
    for a, s in enumerate(section):
        if a in drawn:
            continue
        if not isinstance(s, (int, np.integer)) or not 0 <= int(s) < shape[a]:
            raise InvalidChunksError(
                f"section[{a}]={s!r} is not a coordinate in [0, {shape[a]}) of axis {a}"
            )
        fixed[a] = int(s)
    return (drawn[0], drawn[1]), fixed


def _in_section(region: Region, fixed: dict[int, int]) -> bool:
    return all(region[a][0] <= c < region[a][1] for a, c in fixed.items())


def _grid_lines(
    ax: Any, bounds: Sequence[np.ndarray], extent: tuple[int, int], label: str, **style: Any
) -> None:
    rows, cols = bounds
    ax.hlines(rows, 0, extent[1], label=label, **style)
    ax.vlines(cols, 0, extent[0], **style)


def default_section(plan: Plan) -> tuple[int | None, ...]:
    """The section drawn by default: the two axes cut into the most buffers (the last
    axes on a tie), the other axes at coordinate 0.

    >>> from dask_io.plan import plan_resplit
    >>> default_section(plan_resplit((8, 8, 8), (4, 4, 4), (8, 2, 8), "uint8", 256))
    (None, None, 0)
    """
    ndim = len(plan.shape)
    cuts = [len(b) - 1 for b in plan.buffer_bounds]
    drawn = sorted(sorted(range(ndim), key=lambda a: (cuts[a], a))[-2:])
    return tuple(None if a in drawn else 0 for a in range(ndim))


def plot_plan(
    plan: Plan, ax: Any = None, section: Sequence[int | slice | None] | None = None
) -> Any:
    """Draw a 2-D section of ``plan``: input blocks (solid blue lines), output blocks
    (dashed red lines) and one rectangle per buffer in the section (gid ``"buffer"``),
    coloured and numbered in buffer order (the ``LoadBuffer`` numbers).

    The first axis drawn runs downwards, the second to the right (like an image).
    Returns the matplotlib axes (a new figure's when ``ax`` is None).
    """
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    if section is None and len(plan.shape) > 2:
        section = default_section(plan)
    (r, c), fixed = section_axes(plan.shape, section)
    ax = _new_axes(ax)
    extent = (plan.shape[r], plan.shape[c])
    regions = [(n, reg) for n, reg in enumerate(plan.buffer_regions()) if _in_section(reg, fixed)]
    cmap = colormaps["viridis"]
    for n, reg in regions:
        (r0, r1), (c0, c1) = reg[r], reg[c]
        colour = cmap(n / max(plan.n_buffers - 1, 1))
        ax.add_patch(
            Rectangle(
                (c0, r0),
                c1 - c0,
                r1 - r0,
                facecolor=colour,
                alpha=0.35,
                edgecolor="black",
                linewidth=1.2,
                gid="buffer",
            )
        )
        if len(regions) <= MAX_LABELS:
            ax.text((c0 + c1) / 2, (r0 + r1) / 2, str(n), ha="center", va="center", fontsize=8)
    in_b, out_b = plan.in_grid.bounds, plan.out_grid.bounds
    _grid_lines(
        ax,
        (in_b[r], in_b[c]),
        extent,
        f"input blocks {plan.in_grid.block_shape}",
        colors="tab:blue",
        linewidths=1.0,
    )
    _grid_lines(
        ax,
        (out_b[r], out_b[c]),
        extent,
        f"output blocks {plan.out_grid.block_shape}",
        colors="tab:red",
        linewidths=1.5,
        linestyles="dashed",
    )
    ax.set_xlim(0, extent[1])
    ax.set_ylim(extent[0], 0)
    ax.set_aspect("equal")
    ax.set_xlabel(f"axis {c}")
    ax.set_ylabel(f"axis {r}")
    where = ", ".join(f"axis {a} = {v}" for a, v in fixed.items())
    ax.set_title(
        f"{plan.strategy}: {len(regions)} of {plan.n_buffers} buffers "
        f"{plan.buffer_shape}" + (f" at {where}" if where else ""),
        fontsize=10,
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return ax


def memory_budgets(low: int | str, high: int | str, points: int = 8) -> list[int]:
    """``points`` budgets from ``low`` to ``high`` on a log scale, in whole bytes.

    >>> [format_bytes(b) for b in memory_budgets("1MiB", "16MiB", 5)]
    ['1.0 MiB', '2.0 MiB', '4.0 MiB', '8.0 MiB', '16.0 MiB']
    """
    lo, hi = parse_bytes(low, "sweep low"), parse_bytes(high, "sweep high")
    if not 0 < lo <= hi:
        raise InvalidChunksError(
            f"memory sweep {format_bytes(lo)}:{format_bytes(hi)} must rise from a positive budget"
        )
    if points < 1 or (points == 1 and lo != hi):
        raise InvalidChunksError(f"points={points} must be at least 2 for a range of budgets")
    return sorted({round(float(b)) for b in np.geomspace(lo, hi, points)})


def sweep_memory(
    shape: Sequence[int],
    in_chunks: ChunksLike,
    out_chunks: ChunksLike,
    dtype: Any,
    budgets: Sequence[int],
    layout: str | tuple[str, str] = "contiguous",
    *,
    objective: str | None = None,
) -> list[dict[str, Any]]:
    """Seeks and predicted seconds of every strategy at every memory budget.

    One row per (budget, strategy): ``max_mem``, ``strategy``, and ``seeks``,
    ``seconds``, ``peak_mem``, ``buffer_shape`` of ``plan_resplit(..., max_mem,
    strategy)``, or ``infeasible`` (the reason) when no plan fits. ``objective``
    is passed to ``plan_resplit`` (None: Dask config ``dask_io.objective``).

    >>> rows = sweep_memory((8, 8), (4, 4), (2, 8), "uint8", [64, 256])
    >>> [(r["max_mem"], r["strategy"], r.get("seeks")) for r in rows][:2]
    [(64, 'naive', 32), (64, 'clustered', 16)]
    """
    rows: list[dict[str, Any]] = []
    for mem in budgets:
        try:
            auto = plan_resplit(
                shape,
                in_chunks,
                out_chunks,
                dtype,
                mem,
                "auto",
                layout,
                objective=objective,
                warn=False,
            )
            found: dict[str, Plan | str] = dict(auto.alternatives)
        except DaskIOError as e:
            found = dict.fromkeys(STRATEGIES, str(e))
        for name in STRATEGIES:
            plan = found[name]
            row: dict[str, Any] = {"max_mem": int(mem), "strategy": name}
            if isinstance(plan, str):
                row["infeasible"] = plan
            else:
                row.update(
                    seeks=plan.cost.seeks,
                    seconds=plan.seconds,
                    peak_mem=plan.cost.peak_mem,
                    buffer_shape=list(plan.buffer_shape),
                )
            rows.append(row)
    return rows


def plot_sweep(rows: Sequence[dict[str, Any]], axes: Any = None) -> Any:
    """Draw :func:`sweep_memory`'s rows: seeks (left) and predicted seconds (right)
    against the memory budget, one curve per strategy, log scales. Returns the two axes."""
    from matplotlib.ticker import FuncFormatter

    axes = _new_axes(axes, ncols=2)
    for name in STRATEGIES:
        mine = [r for r in rows if r["strategy"] == name and "seeks" in r]
        if not mine:
            continue
        mem = [r["max_mem"] for r in mine]
        for ax, key in zip(axes, ("seeks", "seconds")):
            ax.plot(mem, [r[key] for r in mine], marker="o", label=name, gid=f"sweep-{name}")
    for ax, label in zip(axes, ("seeks", "predicted seconds")):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_bytes(int(v))))
        ax.set_yscale("log")
        ax.set_xlabel("memory budget (bytes)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return axes
