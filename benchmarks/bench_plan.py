"""Planning benchmark (no data): planning time and runs per strategy against the lower bound.

Usage::

    python benchmarks/bench_plan.py                      # full run, writes benchmarks/results/plan.md
    python benchmarks/bench_plan.py --repeat 1 --out -   # print only

Cases are the paper's (Guédon et al., seeds/001): 3500³ uint16 resplits at 4 GiB and a
3850×3025×3500 float16 split at 3, 9 and 16 GiB, plus a case whose whole array fits in
max_mem, plus the 1 TiB planning-time case of issue 2.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

from dask_io.errors import InsufficientMemoryError
from dask_io.plan import format_bytes, plan_resplit

STRATEGIES = ("naive", "clustered", "multiple", "keep", "auto")


@dataclass(frozen=True)
class Case:
    name: str
    shape: tuple[int, ...]
    in_chunks: tuple[int, ...]
    out_chunks: tuple[int, ...]
    dtype: str
    max_mem: str

    @property
    def lower(self) -> int:
        """Runs (and opens) of the ideal resplit: n_in + n_out."""
        n_in = math.prod(-(-r // c) for r, c in zip(self.shape, self.in_chunks))
        n_out = math.prod(-(-r // c) for r, c in zip(self.shape, self.out_chunks))
        return n_in + n_out


R3 = (3500, 3500, 3500)
BIG = (3850, 3025, 3500)
CASES = [
    Case("350³→500³", R3, (350,) * 3, (500,) * 3, "uint16", "4GiB"),
    Case("875³→(700,875,700)", R3, (875,) * 3, (700, 875, 700), "uint16", "4GiB"),
    Case("175³→250³", R3, (175,) * 3, (250,) * 3, "uint16", "4GiB"),
    Case("split 3 GiB", BIG, BIG, (770, 605, 700), "float16", "3GiB"),
    Case("split 9 GiB", BIG, BIG, (770, 605, 700), "float16", "9GiB"),
    Case("split 16 GiB", BIG, BIG, (770, 605, 700), "float16", "16GiB"),
    Case("1024³ 256³→(200,300,350), whole array fits", (1024,) * 3, (256,) * 3,
         (200, 300, 350), "uint16", "4GiB"),
]
TIB = Case("1 TiB 200³→160³", (8000,) * 3, (200,) * 3, (160,) * 3, "uint16", "16GiB")


def plan_row(case: Case, strategy: str) -> dict[str, object]:
    start = time.perf_counter()
    try:
        plan = plan_resplit(case.shape, case.in_chunks, case.out_chunks, case.dtype,
                            case.max_mem, strategy)
    except InsufficientMemoryError:
        return {"strategy": strategy, "feasible": False, "time": time.perf_counter() - start}
    elapsed = time.perf_counter() - start
    c = plan.cost
    return {"strategy": strategy, "feasible": True, "time": elapsed, "chosen": plan.strategy,
            "runs": c.runs, "opens": c.opens, "seeks": c.seeks, "peak": c.peak_mem,
            "ratio": c.runs / case.lower, "buffer": plan.buffer_shape}


def time_tib(repeat: int) -> tuple[list[float], dict[str, object]]:
    times = []
    row: dict[str, object] = {}
    for _ in range(repeat):
        row = plan_row(TIB, "auto")
        times.append(float(row["time"]))  # type: ignore[arg-type]
    return times, row


def fmt_row(case: Case, r: dict[str, object]) -> str:
    if not r["feasible"]:
        return f"| {case.name} | {r['strategy']} | infeasible | | | | | {r['time']:.2f} |"
    label = r["strategy"] if r["strategy"] != "auto" else f"auto ({r['chosen']})"
    return (f"| {case.name} | {label} | {r['runs']:,} | {r['ratio']:.3f} | {r['seeks']:,} | "
            f"{format_bytes(r['peak'])} | {r['buffer']} | {r['time']:.2f} |")  # type: ignore[arg-type]


def targets(results: dict[str, dict[str, dict[str, object]]], tib_median: float) -> list[str]:
    lines = [f"- 1 TiB case, `auto` planning < 5 s: median {tib_median:.2f} s -> "
             f"{'MET' if tib_median < 5 else 'MISSED'}"]
    for name in ("350³→500³", "175³→250³"):
        ratio = results[name]["auto"]["ratio"]
        lines.append(f"- {name} at 4 GiB, auto ≤ 1.25× lower bound: {ratio:.3f}× -> "
                     f"{'MET' if ratio <= 1.25 else 'MISSED'}")  # type: ignore[operator]
    whole = CASES[-1].name
    ratio = results[whole]["auto"]["ratio"]
    lines.append(f"- whole array fits ({whole}), auto exactly 1.0×: {ratio:.3f}× -> "
                 f"{'MET' if ratio == 1.0 else 'MISSED'}")
    for name in ("350³→500³", "875³→(700,875,700)", "175³→250³"):
        gain = results[name]["naive"]["runs"] / results[name]["auto"]["runs"]  # type: ignore[operator]
        lines.append(f"- {name}: naive runs ÷ auto runs ≥ 1000: {gain:,.0f}× -> "
                     f"{'MET' if gain >= 1000 else 'MISSED'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timings of the 1 TiB case")
    parser.add_argument("--out", default="benchmarks/results/plan.md", help="'-' to print only")
    args = parser.parse_args(argv)
    started = datetime.datetime.now().isoformat(timespec="minutes")
    load = os.getloadavg()
    results: dict[str, dict[str, dict[str, object]]] = {}
    rows = []
    for case in CASES:
        results[case.name] = {}
        for s in STRATEGIES:
            r = plan_row(case, s)
            results[case.name][s] = r
            rows.append(fmt_row(case, r))
            print(rows[-1], flush=True)
    times, tib = time_tib(args.repeat)
    median = statistics.median(times)
    print(f"1 TiB auto: {[round(t, 2) for t in times]} s", flush=True)
    text = report(args, started, load, rows, times, tib, results, median)
    if args.out == "-":
        print(text)
    else:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {args.out}")
    return 0


def report(args, started, load, rows, times, tib, results, median) -> str:  # type: ignore[no-untyped-def]
    cmd = "python benchmarks/bench_plan.py" + (f" --repeat {args.repeat}" if args.repeat != 3 else "")
    out = [
        "# Planning benchmark (issue 2)", "",
        f"Command: `{cmd}` (planning only, no data). Run {started}; Python "
        f"{platform.python_version()}, {os.cpu_count()} cores shared with other jobs "
        f"(load average at start {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}): times are noisy.",
        "", "Lower bound = n_in + n_out runs (and as many opens). `ratio` = runs ÷ lower bound. "
        "Each strategy planned in its own `plan_resplit(..., strategy=s)` call; time = that call.",
        "", "| case | strategy | runs | ratio | seeks | peak mem | buffer | plan s |",
        "|---|---|---:|---:|---:|---:|---|---:|", *rows, "",
        f"## 1 TiB case: {TIB.shape} {TIB.dtype}, {TIB.in_chunks}→{TIB.out_chunks}, "
        f"max_mem {TIB.max_mem} (64,000 → 125,000 blocks)", "",
        f"`auto` planning time over {len(times)} runs: median {median:.2f} s "
        f"(min {min(times):.2f}, max {max(times):.2f}); chose {tib.get('chosen')}, "
        f"runs {tib.get('runs'):,} = {tib.get('ratio'):.3f}× lower bound, "
        f"peak {format_bytes(tib.get('peak', 0))}.",  # type: ignore[arg-type]
        "", "## Targets", "", *targets(results, median), "",
        "Paper reference: the naive baseline needed 3.9×10⁸ seeks on its 3500³ cases where keep "
        "needed 2.5×10⁴.", "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
