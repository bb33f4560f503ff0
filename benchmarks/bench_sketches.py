"""Sketch throughput: dask_io's vectorised batch updates beside per-item libraries.

Items per second on one core for batch updates of ``--n-int`` int64 keys and
``--n-str`` short strings, for each sketch, side by side with Apache DataSketches
(``datasketches``) and ``pyprobables`` per-item updates and, if a PySpark
interpreter is given, Spark's own sketches on the same data (``local[1]``, so one
core; JVM start-up and one warm-up job are excluded and reported apart). Methods
are interleaved rep by rep; medians are reported with min-max. Sizes and errors
are measured against exact answers for every method.

    python benchmarks/bench_sketches.py                         # full size
    python benchmarks/bench_sketches.py --n-int 100000 --n-str 10000 --reps 1   # smoke
    python benchmarks/bench_sketches.py --spark-python benchmarks/.venv-spark/bin/python

Per-item libraries run on the first ``--per-item-n`` keys only (their cost per
item does not depend on the batch size); their rates are items per second too.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from dask_io.sketches import BloomFilter, CountMinSketch, HyperLogLog

P = 14  # HyperLogLog precision: 16 KiB, standard error 0.81 %
FPR = 0.01
EPS, CONFIDENCE = 0.001, 0.99  # Count-Min: width 2719, depth 5


def int_keys(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


def str_keys(n: int) -> list[str]:
    return [f"u{i:07d}" for i in range(n)]


def fresh_keys(kind: str, n: int, m: int) -> Any:
    """``m`` keys that are not among the first ``n`` keys of ``kind``."""
    if kind == "int64":
        return np.arange(n, n + m, dtype=np.int64)
    return [f"v{i:07d}" for i in range(m)]


# --------------------------------------------------------------------------- methods
# each method: build(keys) -> sketch; measure(sketch, keys, kind) -> dict of size/error


def ours_hll(keys: Any) -> Any:
    s = HyperLogLog(P)
    s.update(keys)
    return s


def ours_bloom(keys: Any) -> Any:
    s = BloomFilter(len(keys), FPR)
    s.update(keys)
    return s


def ours_cms(keys: Any) -> Any:
    s = CountMinSketch(EPS, CONFIDENCE)
    s.update(keys)
    return s


def ds_hll(keys: Any) -> Any:
    import datasketches

    s = datasketches.hll_sketch(P, datasketches.tgt_hll_type.HLL_8)
    update = s.update
    for k in keys:
        update(k)
    return s


def ds_cms(keys: Any) -> Any:
    import datasketches

    s = datasketches.count_min_sketch(5, 2719)
    update = s.update
    for k in keys:
        update(k)
    return s


def pp_bloom(keys: Any) -> Any:
    import probables

    s = probables.BloomFilter(est_elements=len(keys), false_positive_rate=FPR)
    add = s.add
    for k in keys:
        add(k)
    return s


def pp_cms(keys: Any) -> Any:
    import probables

    s = probables.CountMinSketch(width=2719, depth=5)
    add = s.add
    for k in keys:
        add(k)
    return s


def measure(name: str, sketch: Any, keys: Any, kind: str) -> dict[str, Any]:
    """Size in bytes and error against the exact answer (all keys are distinct)."""
    n = len(keys)
    sample = keys[: min(n, 20_000)]
    sample = sample.tolist() if isinstance(sample, np.ndarray) else list(sample)
    if name == "dask_io HLL":
        return {"bytes": len(sketch.to_bytes()), "error": f"{sketch.count() / n - 1:+.3%}"}
    if name == "datasketches HLL":
        return {
            "bytes": len(sketch.serialize_compact()),
            "error": f"{sketch.get_estimate() / n - 1:+.3%}",
        }
    if name == "dask_io Bloom":
        fresh = fresh_keys(kind, n, 100_000)
        assert sketch.contains(sample).all()
        return {
            "bytes": len(sketch.to_bytes()),
            "error": f"FPR {sketch.contains(fresh).mean():.3%}",
        }
    if name == "pyprobables Bloom":
        fresh = fresh_keys(kind, n, 100_000)
        fresh = [str(k) for k in fresh.tolist()] if kind == "int64" else fresh
        fp = sum(sketch.check(k) for k in fresh) / len(fresh)
        return {"bytes": sketch.bloom_length, "error": f"FPR {fp:.3%}"}
    if name == "dask_io CMS":
        over = sketch.estimate(sample) - 1
        return {"bytes": len(sketch.to_bytes()), "error": _cms_error(over, n)}
    if name == "datasketches CMS":
        over = np.array([sketch.get_estimate(k) for k in sample]) - 1
        return {"bytes": len(sketch.serialize()), "error": _cms_error(over, n)}
    if name == "pyprobables CMS":
        keys_s = [str(k) for k in sample] if kind == "int64" else sample
        over = np.array([sketch.check(k) for k in keys_s]) - 1
        return {"bytes": 2719 * 5 * 4, "error": _cms_error(over, n)}
    raise ValueError(name)


def _cms_error(over: np.ndarray, n: int) -> str:
    return f"mean overcount {over.mean() / n:.2e}·N, ≤εN for {(over <= EPS * n).mean():.1%}"


# --------------------------------------------------------------------------- runner


def timed(func: Callable[[Any], Any], keys: Any) -> tuple[float, float, Any]:
    """Wall-clock and CPU seconds of ``func(keys)`` (CPU time of this process)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = func(keys)
    return time.perf_counter() - start, time.process_time() - cpu, result


def run_python(args: argparse.Namespace) -> list[dict[str, Any]]:
    data = {"int64": int_keys(args.n_int), "str": str_keys(args.n_str)}
    per_item = {
        "int64": data["int64"][: args.per_item_n].tolist(),
        "str": data["str"][: args.per_item_n],
    }
    str_of_int = [str(k) for k in per_item["int64"]]  # pyprobables hashes str/bytes only
    methods: list[tuple[str, str, Callable[[Any], Any], Callable[[str], Any]]] = [
        ("HLL", "dask_io HLL", ours_hll, lambda kind: data[kind]),
        ("HLL", "datasketches HLL", ds_hll, lambda kind: per_item[kind]),
        ("Bloom", "dask_io Bloom", ours_bloom, lambda kind: data[kind]),
        (
            "Bloom",
            "pyprobables Bloom",
            pp_bloom,
            lambda kind: str_of_int if kind == "int64" else per_item[kind],
        ),
        ("CMS", "dask_io CMS", ours_cms, lambda kind: data[kind]),
        ("CMS", "datasketches CMS", ds_cms, lambda kind: per_item[kind]),
        (
            "CMS",
            "pyprobables CMS",
            pp_cms,
            lambda kind: str_of_int if kind == "int64" else per_item[kind],
        ),
    ]
    times: dict[tuple[str, str], list[float]] = {}
    cpu_times: dict[tuple[str, str], list[float]] = {}
    last: dict[tuple[str, str], Any] = {}
    for kind in ("int64", "str"):
        for _, _name, func, keys_of in methods:  # warm-up: page faults, imports
            func(keys_of(kind)[:1000])
        for _rep in range(args.reps):
            for _, name, func, keys_of in methods:
                seconds, cpu, sketch = timed(func, keys_of(kind))
                times.setdefault((kind, name), []).append(seconds)
                cpu_times.setdefault((kind, name), []).append(cpu)
                last[(kind, name)] = sketch
    rows = []
    for kind in ("int64", "str"):
        for sketch_type, name, _, keys_of in methods:
            keys = keys_of(kind)
            ts = times[(kind, name)]
            row = {
                "sketch": sketch_type,
                "method": name,
                "keys": kind,
                "n": len(keys),
                "median_s": statistics.median(ts),
                "min_s": min(ts),
                "max_s": max(ts),
                "cpu_s": statistics.median(cpu_times[(kind, name)]),
            }
            row.update(measure(name, last[(kind, name)], keys, kind))
            rows.append(row)
    return rows


# --------------------------------------------------------------------------- spark


SPARK_CODE = r"""
import json, sys, time, statistics
from pyspark.sql import SparkSession, functions as F
n_int, n_str, reps = (int(a) for a in sys.argv[1:4])
t0 = time.perf_counter()
spark = (SparkSession.builder.master("local[1]").config("spark.driver.memory", "3g")
         .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
         .getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
startup = time.perf_counter() - t0
ints = spark.range(n_int).cache(); ints.count()
strs = spark.range(n_str).selectExpr("concat('u', lpad(cast(id as string), 7, '0')) as id").cache()
strs.count()
rdd_int = spark.sparkContext.parallelize(range(n_int // 10), 1).cache(); rdd_int.count()
rdd_str = spark.sparkContext.parallelize([f"u{i:07d}" for i in range(n_str)], 1).cache()
rdd_str.count()
jobs = {
  ("HLL", "Spark approx_count_distinct", "int64"): (n_int, lambda: ints.agg(F.approx_count_distinct("id", 0.01)).collect()[0][0]),
  ("HLL", "Spark approx_count_distinct", "str"): (n_str, lambda: strs.agg(F.approx_count_distinct("id", 0.01)).collect()[0][0]),
  ("HLL", "Spark RDD countApproxDistinct", "int64"): (n_int // 10, lambda: rdd_int.countApproxDistinct(0.01)),
  ("HLL", "Spark RDD countApproxDistinct", "str"): (n_str, lambda: rdd_str.countApproxDistinct(0.01)),
  ("Bloom", "Spark stat.bloomFilter", "int64"): (n_int, lambda: ints._jdf.stat().bloomFilter("id", n_int, 0.01)),
  ("Bloom", "Spark stat.bloomFilter", "str"): (n_str, lambda: strs._jdf.stat().bloomFilter("id", n_str, 0.01)),
  ("CMS", "Spark stat.countMinSketch", "int64"): (n_int, lambda: ints._jdf.stat().countMinSketch("id", 0.001, 0.99, 1)),
  ("CMS", "Spark stat.countMinSketch", "str"): (n_str, lambda: strs._jdf.stat().countMinSketch("id", 0.001, 0.99, 1)),
}
t0 = time.perf_counter()
for key, (n, job) in jobs.items():
    job()  # warm-up
warmup = time.perf_counter() - t0
times = {key: [] for key in jobs}
results = {}
for _ in range(reps):
    for key, (n, job) in jobs.items():
        s = time.perf_counter(); results[key] = job(); times[key].append(time.perf_counter() - s)
rows = []
for (sketch, method, kind), (n, _) in jobs.items():
    ts = times[(sketch, method, kind)]
    r = results[(sketch, method, kind)]
    size = ""
    if sketch == "HLL":
        err = f"{r / n - 1:+.3%}"
    elif sketch == "Bloom":
        size, err = r.bitSize() // 8, f"expected FPP {r.expectedFpp():.3%} (Spark's estimate)"
    else:
        sample = list(range(1000)) if kind == "int64" else [f"u{i:07d}" for i in range(1000)]
        over = [r.estimateCount(k) - 1 for k in sample]
        size = len(r.toByteArray())
        err = (f"mean overcount {sum(over) / len(over) / n:.2e}·N, "
               f"≤εN for {sum(o <= 0.001 * n for o in over) / len(over):.1%}")
    rows.append(dict(sketch=sketch, method=method, keys=kind, n=n, median_s=statistics.median(ts),
                     min_s=min(ts), max_s=max(ts), error=err, bytes=size))
print(json.dumps({"rows": rows, "startup_s": startup, "warmup_s": warmup}))
spark.stop()
"""


def run_spark(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    out = subprocess.run(
        [args.spark_python, "-c", SPARK_CODE, str(args.n_int), str(args.n_str), str(args.reps)],
        capture_output=True,
        text=True,
        check=True,
    )
    payload = json.loads(out.stdout.strip().splitlines()[-1])
    note = (
        f"PySpark local[1]: JVM and session start-up {payload['startup_s']:.1f} s and one "
        f"warm-up run of every job {payload['warmup_s']:.1f} s, excluded from the timings."
    )
    return payload["rows"], note


# --------------------------------------------------------------------------- report


def render(rows: list[dict[str, Any]], args: argparse.Namespace, notes: list[str]) -> str:
    lines = [
        "# Sketch throughput",
        "",
        f"Command: `python benchmarks/bench_sketches.py {' '.join(sys.argv[1:])}`",
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. "
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        "shared with other jobs (noisy); numbers are medians of "
        f"{args.reps} interleaved reps, min-max in brackets. One core per method. "
        "Rates per CPU-second (this process's CPU time) are the per-core throughput and "
        "suffer less from a shared machine than wall-clock rates; Spark runs in its own "
        "JVM, so only its wall-clock rate is given.",
        "",
        f"Parameters: HyperLogLog p={P} (16 KiB); Bloom capacity = n, fpr {FPR:.0%}; "
        f"Count-Min eps={EPS}, confidence={CONFIDENCE} (width 2719, depth 5). Keys are "
        "distinct: int64 `0..n-1`, strings `u0000000`... (8 characters). Per-item "
        f"libraries loop in Python over the first {args.per_item_n:,} keys; pyprobables "
        "gets int keys as `str`, converted before the clock starts.",
        "",
    ]
    for note in notes:
        lines += [note, ""]
    for kind in ("int64", "str"):
        lines += [
            f"## {kind} keys",
            "",
            "| sketch | method | n | M items/CPU-s | × best per-item library | M items/s wall "
            "| wall s | size bytes | error |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for sketch in ("HLL", "Bloom", "CMS"):
            group = [r for r in rows if r["keys"] == kind and r["sketch"] == sketch]
            others = [r["n"] / r["cpu_s"] for r in group if _per_item(r["method"])]
            best = max(others) if others else float("nan")
            for r in group:
                cpu_rate = r["n"] / r["cpu_s"] if r.get("cpu_s") else float("nan")
                cpu_text = (
                    f"{cpu_rate / 1e6:.2f} | {cpu_rate / best:.1f}" if r.get("cpu_s") else "— | —"
                )
                lines.append(
                    f"| {sketch} | {r['method']} | {r['n']:,} | {cpu_text} | "
                    f"{r['n'] / r['median_s'] / 1e6:.2f} | "
                    f"{r['median_s']:.3f} [{r['min_s']:.3f}–{r['max_s']:.3f}] | "
                    f"{r['bytes']} | {r['error']} |"
                )
        lines.append("")
    return "\n".join(lines)


def _per_item(method: str) -> bool:
    return method.split()[0] in ("datasketches", "pyprobables")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-int", type=int, default=10_000_000)
    parser.add_argument("--n-str", type=int, default=1_000_000)
    parser.add_argument("--per-item-n", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--spark-python", default=None, help="python of a venv with pyspark")
    parser.add_argument("--out", default=None, help="write the Markdown report here")
    args = parser.parse_args()
    args.per_item_n = min(args.per_item_n, args.n_int, args.n_str)
    load_start = os.getloadavg()[0]
    rows = run_python(args)
    notes = []
    if args.spark_python:
        spark_rows, note = run_spark(args)
        rows += spark_rows
        notes.append(note)
    notes.append(
        f"Load average (1 min) at start {load_start:.1f}, at end {os.getloadavg()[0]:.1f}, "
        f"on {os.cpu_count()} cores: other jobs shared the machine."
    )
    report = render(rows, args, notes)
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report + "\n")


if __name__ == "__main__":
    main()
