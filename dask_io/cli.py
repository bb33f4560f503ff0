"""The ``dask-io`` command: ``plan`` here; ``resplit``, ``split``, ``merge``, ``demo`` in
:mod:`dask_io._cli_run`.

Bad input prints one line on stderr and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from typing import Any

from dask_io.errors import DaskIOError, DaskIOWarning
from dask_io.plan import STRATEGIES, Plan, format_bytes, plan_resplit
from dask_io.plan.planner import OBJECTIVES
from dask_io.plan.timing import current_machine, current_objective

COLUMNS = ("opens", "runs", "seeks", "bytes_read", "bytes_written", "peak_mem", "n_buffers")


def _ints(text: str, name: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        values = ()
    if not values:
        raise DaskIOError(f"{name}={text!r} is not a shape; expected integers like 350,350,350")
    return values


def _plan_rows(args: argparse.Namespace) -> tuple[list[dict[str, Any]], Plan]:
    shape = _ints(args.shape, "--shape")
    in_chunks = _ints(args.in_chunks, "--in-chunks")
    out_chunks = _ints(args.out_chunks, "--out-chunks")
    layout = args.layout
    objective = getattr(args, "objective", None) or current_objective()
    chosen = plan_resplit(shape, in_chunks, out_chunks, args.dtype, args.max_mem, args.strategy,
                          layout, objective=objective)
    rows = []
    for name in STRATEGIES:
        start = time.perf_counter()
        try:
            plan: Plan | str = plan_resplit(shape, in_chunks, out_chunks, args.dtype,
                                            args.max_mem, name, layout, objective=objective)
        except DaskIOError as e:
            plan = str(e)
        elapsed = time.perf_counter() - start
        row: dict[str, Any] = {"strategy": name, "planning_time": round(elapsed, 4)}
        if isinstance(plan, str):
            row["infeasible"] = plan
        else:
            row.update({k: v for k, v in plan.cost.to_dict().items() if k in COLUMNS})
            row["n_buffers"] = plan.n_buffers
            row["seconds"] = round(plan.seconds, 4)
            row["buffer_shape"] = list(plan.buffer_shape)
            row["chosen"] = plan.strategy == chosen.strategy
        rows.append(row)
    return rows, chosen


def _cmd_plan(args: argparse.Namespace) -> int:
    if args.sweep_mem:
        return _cmd_sweep(args)
    rows, chosen = _plan_rows(args)
    _print_plan(args, rows, chosen)
    if args.plot:
        _save(chosen.plot().figure, args.plot)
    return 0


def _print_plan(args: argparse.Namespace, rows: list[dict[str, Any]], chosen: Plan) -> None:
    lower = chosen.in_grid.nblocks + chosen.out_grid.nblocks
    if args.json:
        out = {
            "shape": list(chosen.shape),
            "in_chunks": list(chosen.in_grid.block_shape),
            "out_chunks": list(chosen.out_grid.block_shape),
            "dtype": chosen.dtype.name,
            "max_mem": chosen.max_mem,
            "lower_bound": {"runs": lower, "opens": lower, "seeks": 2 * lower},
            "chosen": chosen.strategy,
            "objective": chosen_objective(args),
            "machine": (chosen.machine or current_machine()).to_dict(),
            "strategies": rows,
        }
        print(json.dumps(out, indent=2))
        return
    print(f"array {chosen.shape} {chosen.dtype.name} = "
          f"{format_bytes(_nbytes(chosen))}; "
          f"{chosen.in_grid.nblocks} input blocks {chosen.in_grid.block_shape} -> "
          f"{chosen.out_grid.nblocks} output blocks {chosen.out_grid.block_shape}; "
          f"max_mem {format_bytes(chosen.max_mem)}")
    header = (f"  {'strategy':<10} {'opens':>10} {'runs':>14} {'seeks':>14} {'x lower':>9} "
              f"{'read':>10} {'written':>10} {'peak mem':>10} {'buffers':>8} {'pred s':>9} "
              f"{'plan s':>7}  buffer")
    print(header)
    print(f"  {'lower':<10} {lower:>10,} {lower:>14,} {2 * lower:>14,} {1:>9.2f}")
    for r in rows:
        mark = "*" if r.get("chosen") else " "
        if "infeasible" in r:
            print(f"{mark} {r['strategy']:<10} infeasible: {r['infeasible']}")
            continue
        print(f"{mark} {r['strategy']:<10} {r['opens']:>10,} {r['runs']:>14,} {r['seeks']:>14,} "
              f"{r['seeks'] / (2 * lower):>9.2f} {format_bytes(r['bytes_read']):>10} "
              f"{format_bytes(r['bytes_written']):>10} {format_bytes(r['peak_mem']):>10} "
              f"{r['n_buffers']:>8,} {r['seconds']:>9.3g} {r['planning_time']:>7.2f}  "
              f"{tuple(r['buffer_shape'])}")
    machine = chosen.machine or current_machine()
    print(f"* chosen by strategy={args.strategy!r} ({chosen_objective(args)}): "
          f"{chosen.strategy}, buffer {chosen.buffer_shape}, order {chosen.order}; "
          f"pred s: predicted seconds on the {machine.source} machine")


def _sweep_range(text: str) -> tuple[str, str]:
    low, sep, high = text.partition(":")
    if not sep or not low or not high:
        raise DaskIOError(f"--sweep-mem={text!r} is not a range; expected LOW:HIGH like 256MiB:16GiB")
    return low, high


def _cmd_sweep(args: argparse.Namespace) -> int:
    from dask_io.viz import memory_budgets, plot_sweep, sweep_memory

    budgets = memory_budgets(*_sweep_range(args.sweep_mem), args.sweep_points)
    rows = sweep_memory(_ints(args.shape, "--shape"), _ints(args.in_chunks, "--in-chunks"),
                        _ints(args.out_chunks, "--out-chunks"), args.dtype, budgets,
                        args.layout, objective=chosen_objective_name(args))
    if args.json:
        print(json.dumps({"budgets": budgets, "rows": rows}, indent=2))
    else:
        _print_sweep(budgets, rows)
    if args.plot:
        _save(plot_sweep(rows)[0].figure, args.plot)
    return 0


def _print_sweep(budgets: list[int], rows: list[dict[str, Any]]) -> None:
    print(f"memory sweep of {len(budgets)} budgets (log scale): seeks / predicted seconds")
    print(f"  {'max_mem':>10}" + "".join(f" {name:>26}" for name in STRATEGIES))
    by_key = {(r["max_mem"], r["strategy"]): r for r in rows}
    for mem in budgets:
        cells = []
        for name in STRATEGIES:
            r = by_key[mem, name]
            cells.append("infeasible" if "infeasible" in r
                         else f"{r['seeks']:,} / {r['seconds']:.3g} s")
        print(f"  {format_bytes(mem):>10}" + "".join(f" {c:>26}" for c in cells))


def _save(figure: Any, path: str) -> None:
    try:
        figure.savefig(path, dpi=120)
    except (OSError, ValueError) as e:
        raise DaskIOError(f"--plot={path!r} could not be written: {e}") from e
    print(f"wrote {path}", file=sys.stderr)


def chosen_objective_name(args: argparse.Namespace) -> str:
    return str(getattr(args, "objective", None) or current_objective())


def chosen_objective(args: argparse.Namespace) -> str:
    objective = getattr(args, "objective", None) or current_objective()
    return "fewest predicted seconds" if objective == "seconds" else "fewest seeks"


def _nbytes(plan: Plan) -> int:
    n = plan.dtype.itemsize
    for r in plan.shape:
        n *= r
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dask-io", description="Split, merge and resplit N-D arrays with few I/O operations."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="print the exact cost of every strategy for a resplit")
    p.add_argument("--shape", required=True, help="array shape, e.g. 3500,3500,3500")
    p.add_argument("--in-chunks", required=True, help="input block shape")
    p.add_argument("--out-chunks", required=True, help="output block shape")
    p.add_argument("--dtype", default="uint16")
    p.add_argument("--max-mem", default="4GiB", help="memory budget, e.g. 4GiB")
    p.add_argument("--strategy", default="auto", choices=[*STRATEGIES, "auto"])
    p.add_argument("--layout", default="contiguous", choices=["contiguous", "chunked"])
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--objective", default=None, choices=list(OBJECTIVES),
                   help="what auto minimises: seeks or predicted seconds (default: Dask "
                   "config dask_io.objective, seeks)")
    p.add_argument("--plot", metavar="PNG",
                   help="also draw the chosen plan (or, with --sweep-mem, the curves) to a file")
    p.add_argument("--sweep-mem", metavar="LOW:HIGH",
                   help="print seeks and predicted seconds of every strategy against memory "
                        "budgets from LOW to HIGH (log scale), e.g. 256MiB:16GiB")
    p.add_argument("--sweep-points", type=int, default=8, help="budgets in the sweep (default 8)")
    p.set_defaults(func=_cmd_plan)
    try:
        from dask_io import calibrate
    except ImportError:  # pragma: no cover - calibrate needs the full install
        return parser
    calibrate.add_parser(sub)
    try:
        from dask_io import _cli_run
    except ImportError:  # pragma: no cover - the run commands need the full install
        return parser
    _cli_run.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", DaskIOWarning)
            _print_dask_io_warnings(args.command)
            return int(args.func(args))
    except DaskIOError as e:
        print(f"dask-io {args.command}: error: {e}", file=sys.stderr)
        return 2


def _print_dask_io_warnings(command: str) -> None:
    """Print dask_io's warnings as one line each on stderr the moment they are emitted
    (before the job moves a byte), other warnings as Python would."""
    shown = warnings.showwarning

    def show(message: Any, category: type[Warning], *rest: Any, **kwargs: Any) -> None:
        if issubclass(category, DaskIOWarning):
            sys.stdout.flush()
            print(f"dask-io {command}: warning: {message}", file=sys.stderr, flush=True)
        else:
            shown(message, category, *rest, **kwargs)

    warnings.showwarning = show  # catch_warnings restores it on exit


if __name__ == "__main__":
    sys.exit(main())
