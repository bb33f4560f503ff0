"""The lecture's batch workloads on order logs: dask_io.bag vs dask.bag vs PySpark.

    python benchmarks/bench_bag.py                       # 2 M lines in 40 files, 3 reps
    python benchmarks/bench_bag.py --lines 20000000      # the large size
    python benchmarks/bench_bag.py --engines dask_io,dask_bag --reps 1

Workloads (every answer is checked against numpy on the generator's arrays):

- ``top100``: top 100 customers from Poland by spend (reduce by key + top-k);
- ``bcast_join``: spend per product category via a broadcast join with the
  10^5-row product table;
- ``shuffle_join``: the same through a shuffle join;
- ``hash_sample``: 10 % of customers by hash, then count their lines;
- ``stratified``: a stratified sample by country, counted per country;
- ``take_sample``: an exact uniform sample of 20,000 lines.

Engines: dask_io recipes and dask.bag's own operations on one
``LocalCluster(2 workers x 1 thread)``; PySpark ``local[2]`` RDD and DataFrame APIs
in ``benchmarks/.venv-spark`` (its own process; JVM start-up and a warm-up job are
timed apart). Methods are interleaved rep by rep; medians are reported with
records/s and the peak RSS of the engine's whole process tree.

This file is also the PySpark child (``--spark-child``): at module level it imports
only the standard library and numpy, so the Spark venv needs no dask.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import orders as O  # noqa: E402

WORKLOADS = ["top100", "bcast_join", "shuffle_join", "hash_sample", "stratified", "take_sample"]
SAMPLE_N = 20_000
HASH_FRACTION = 0.1
SPARK_PY = os.path.join(HERE, ".venv-spark", "bin", "python")


# --------------------------------------------------------------------------- measuring


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (from /proc)."""
    total, stack, seen = 0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return total


class PeakRSS:
    """Sample the process tree's RSS every 20 ms while in the ``with`` block."""

    def __enter__(self):
        self.peak, self._stop = tree_rss(os.getpid()), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, tree_rss(os.getpid()))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def timed(func):
    with PeakRSS() as mem:
        start = time.perf_counter()
        result = func()
        seconds = time.perf_counter() - start
    return seconds, mem.peak, result


def stratified_fractions(per_country: dict[str, int]) -> dict[str, float]:
    """About 5,000 lines of each country (all lines of the small ones)."""
    return {c: min(1.0, 5000 / n) for c, n in per_country.items()}


def crc_keep(key: str) -> bool:
    """The peers' hash sample: the lecture's ``hash(user_id) % 1000 < 100``, with crc32."""
    return zlib.crc32(key.encode()) % 1000 < 100


# --------------------------------------------------------------------------- dask engines


def dask_methods(files, products, fractions):
    """``{(engine, workload): zero-argument callable}`` for dask_io and dask.bag."""
    import operator

    import dask.bag as db
    import dask.bag.random as dbr

    from dask_io import bag as dbag

    lines = db.read_text(files)  # one partition per file
    nout = 8
    product_bag = db.from_sequence(products, npartitions=4)

    m = {}
    spend = lines.map_partitions(O.poland_spend)
    m["dask_io", "top100"] = lambda: dbag.reduce_by_key(spend, None, operator.add, nout).topk(
        100, key=1
    )
    m["dask_bag", "top100"] = lambda: spend.foldby(0, _add_value, 0, operator.add, 0).topk(
        100, key=1
    )
    ps = lines.map_partitions(O.product_spend)
    m["dask_io", "bcast_join"] = lambda: dbag.reduce_by_key(
        dbag.broadcast_join(ps, products), _category, operator.add, 1, value=_price
    )
    m["dask_bag", "bcast_join"] = lambda: ps.join(products, on_self=0, on_other=0).foldby(
        _joined_category, _add_joined_price, 0, operator.add, 0
    )
    m["dask_io", "shuffle_join"] = lambda: dbag.reduce_by_key(
        dbag.hash_join(ps, product_bag, npartitions=nout), _category, operator.add, 1, value=_price
    )
    m["dask_bag", "shuffle_join"] = lambda: _dask_bag_shuffle_join(ps, product_bag, nout)
    cl = lines.map_partitions(O.customer_lines)
    m["dask_io", "hash_sample"] = lambda: dbag.hash_sample(cl, None, HASH_FRACTION, salt=0).count()
    m["dask_bag", "hash_sample"] = lambda: cl.filter(lambda r: crc_keep(r[0])).count()
    co = lines.map_partitions(O.country_lines)
    m["dask_io", "stratified"] = lambda: dbag.count_by_key(
        dbag.sample_by_key(co, None, fractions, seed=1), None, 1
    )
    m["dask_bag", "stratified"] = lambda: co.filter(_bernoulli_by(fractions)).pluck(0).frequencies()
    m["dask_io", "take_sample"] = lambda: dbag.take_sample(lines, SAMPLE_N, seed=1)
    m["dask_bag", "take_sample"] = lambda: dbr.sample(lines, SAMPLE_N)
    # the record path above is "dask_io_rec"; "dask_io" reads each file into columns
    # (one PairBatch per file: the recipes' array paths)
    m = {("dask_io_rec" if e == "dask_io" else e, w): f for (e, w), f in m.items()}
    m.update(batch_methods(files, products, product_bag, fractions, nout))
    return m


def batch_methods(files, products, product_bag, fractions, nout):
    """The dask_io recipes on column batches (``orders.*_batch``: pyarrow parsing)."""
    import operator

    import dask.bag as db

    from dask_io import bag as dbag

    per_file = db.from_sequence([[f] for f in files], npartitions=len(files))
    field = dbag.field
    spend = per_file.map_partitions(_paths_to(O.poland_spend_batch))
    ps = per_file.map_partitions(_paths_to(O.product_spend_batch))
    cl = per_file.map_partitions(_paths_to(O.customer_lines_batch))
    co = per_file.map_partitions(_paths_to(O.country_lines_batch))
    lines = db.read_text(files)

    def by_category(joined):
        return dbag.reduce_by_key(joined, field(1, 1), operator.add, 1, value=field(1, 0))

    return {
        ("dask_io", "top100"): lambda: dbag.reduce_by_key(spend, None, operator.add, nout).topk(
            100, key=1
        ),
        ("dask_io", "bcast_join"): lambda: by_category(dbag.broadcast_join(ps, products)),
        ("dask_io", "shuffle_join"): lambda: by_category(
            dbag.hash_join(ps, product_bag, npartitions=nout)
        ),
        ("dask_io", "hash_sample"): lambda: dbag.hash_sample(cl, None, HASH_FRACTION).count(),
        ("dask_io", "stratified"): lambda: dbag.count_by_key(
            dbag.sample_by_key(co, None, fractions, seed=1), None, 1
        ),
        ("dask_io", "take_sample"): lambda: dbag.take_sample(lines, SAMPLE_N, seed=1),
    }


class _paths_to:
    """``partition of [path] lists -> parser(paths)`` (picklable)."""

    def __init__(self, parser):
        self.parser = parser

    def __call__(self, part):
        return self.parser([p for paths in part for p in paths])


def _first(r):
    return r[0]


def _add_value(acc, r):
    return acc + r[1]


def _category(r):
    return r[1][1]


def _price(r):
    return r[1][0]


def _joined_category(r):
    return r[0][1]


def _add_joined_price(acc, r):
    return acc + r[1][1]


def _bernoulli_by(fractions):
    import random

    def keep(r):
        return random.random() < fractions[r[0]]

    return keep


def _dask_bag_shuffle_join(ps, product_bag, nout):
    """dask.bag's shuffle join: tag both sides, groupby(shuffle='tasks'), pair up."""
    import operator

    import dask.bag as db

    tagged = db.concat(
        [ps.map(lambda r: (r[0], 0, r[1])), product_bag.map(lambda r: (r[0], 1, r[1]))]
    )
    groups = tagged.groupby(_first, shuffle="tasks", npartitions=nout)

    def pairs(group):
        _, rows = group
        cats = [r[2] for r in rows if r[1] == 1]
        return [(c, r[2]) for r in rows if r[1] == 0 for c in cats]

    return groups.map(pairs).flatten().foldby(0, _add_value, 0, operator.add, 0)


def run_dask(args, data, fractions, report):
    import dask
    from distributed import Client, LocalCluster

    products = data.products_table()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0", memory_limit="6GiB") as cluster, \
            Client(cluster) as client:  # fmt: skip
        methods = dask_methods(data.files, products, fractions)
        t0 = time.perf_counter()
        client.run(_import_pyarrow)  # the batch parsers' import, like the JVM start: apart
        dask.compute(methods["dask_bag", "hash_sample"](), scheduler=client)  # warm-up
        report.setdefault("startup", {})["dask warm-up job"] = time.perf_counter() - t0
        wanted = [(e, w) for (e, w) in methods if e in args.engines and w in args.workloads]
        for rep in range(args.reps):
            for engine, workload in wanted:
                build = methods[engine, workload]
                s, peak, result = timed(lambda b=build: dask.compute(b(), scheduler=client)[0])
                record(report, engine, workload, s, peak, result, rep)
            client.run(_gc)


def _import_pyarrow():
    import pyarrow.compute  # noqa: F401


def _gc():
    import gc

    gc.collect()


# --------------------------------------------------------------------------- spark engines


def spark_child(config):
    """Run the PySpark methods; print one JSON line per timed run."""
    import operator

    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    t0 = time.perf_counter()
    spark = (
        SparkSession.builder.master("local[2]").appName("dask_io-bench")
        .config("spark.driver.memory", "4g").config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "8").getOrCreate()
    )  # fmt: skip
    spark.sparkContext.setLogLevel("ERROR")
    sc = spark.sparkContext
    sc.addPyFile(os.path.join(HERE, "orders.py"))  # the shared parsers, for the Python workers
    emit({"startup": "spark JVM start", "seconds": time.perf_counter() - t0})
    folder, fractions, products = config["folder"], config["fractions"], config["products"]
    lines = sc.textFile(os.path.join(folder, "log-*.csv"), minPartitions=len(config["files"]))
    schema = "ts STRING, country STRING, customer STRING, product STRING, price DOUBLE"
    df = spark.read.csv(os.path.join(folder, "log-*.csv"), schema=schema, sep=",",
                        ignoreLeadingWhiteSpace=True)  # fmt: skip
    cents = F.round(F.col("price") * 100).cast("long")
    prod_df = spark.createDataFrame(products, "product STRING, category STRING")
    prod_rdd = sc.parallelize(products, 4)
    t0 = time.perf_counter()
    lines.count()
    df.count()
    emit({"startup": "spark warm-up job", "seconds": time.perf_counter() - t0})
    m = {}
    m["spark_rdd", "top100"] = lambda: (
        lines.mapPartitions(O.poland_spend)
        .reduceByKey(operator.add, 8)
        .takeOrdered(100, key=lambda kv: -kv[1])
    )
    m["spark_df", "top100"] = lambda: [
        tuple(r) for r in df.filter(F.col("country") == "Poland").groupBy("customer")
        .agg(F.sum(cents).alias("s")).orderBy(F.desc("s")).limit(100).collect()
    ]  # fmt: skip

    def bcast_rdd():
        table = sc.broadcast(dict(products))
        return (
            lines.mapPartitions(O.product_spend)
            .mapPartitions(lambda it: ((table.value[p], c) for p, c in it if p in table.value))
            .reduceByKey(operator.add)
            .collect()
        )

    m["spark_rdd", "bcast_join"] = bcast_rdd
    m["spark_df", "bcast_join"] = lambda: [
        tuple(r) for r in df.join(F.broadcast(prod_df), "product").groupBy("category")
        .agg(F.sum(cents)).collect()
    ]  # fmt: skip
    m["spark_rdd", "shuffle_join"] = lambda: (
        lines.mapPartitions(O.product_spend)
        .join(prod_rdd, 8)
        .map(lambda kv: (kv[1][1], kv[1][0]))
        .reduceByKey(operator.add)
        .collect()
    )

    def shuffle_df():
        spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
        try:
            return [tuple(r) for r in df.join(prod_df.hint("merge"), "product")
                    .groupBy("category").agg(F.sum(cents)).collect()]  # fmt: skip
        finally:
            spark.conf.unset("spark.sql.autoBroadcastJoinThreshold")

    m["spark_df", "shuffle_join"] = shuffle_df
    m["spark_rdd", "hash_sample"] = lambda: (
        lines.mapPartitions(O.customer_lines).filter(lambda r: crc_keep(r[0])).count()
    )
    m["spark_df", "hash_sample"] = lambda: df.filter(
        F.pmod(F.xxhash64("customer"), F.lit(1000)) < 100
    ).count()
    m["spark_rdd", "stratified"] = lambda: dict(
        lines.mapPartitions(O.country_lines).sampleByKey(False, fractions, 1).countByKey()
    )
    m["spark_df", "stratified"] = lambda: {
        r[0]: r[1]
        for r in df.sampleBy("country", fractions, 1).groupBy("country").count().collect()
    }
    m["spark_rdd", "take_sample"] = lambda: lines.takeSample(False, SAMPLE_N, 1)
    m["spark_df", "take_sample"] = lambda: [
        tuple(r) for r in df.orderBy(F.rand(1)).limit(SAMPLE_N).collect()
    ]
    wanted = [(e, w) for (e, w) in m if e in config["engines"] and w in config["workloads"]]
    for rep in range(config["reps"]):
        for engine, workload in wanted:
            s, peak, result = timed(m[engine, workload])
            emit({"engine": engine, "workload": workload, "seconds": s, "peak": peak,
                  "rep": rep, "result": _jsonable(result)})  # fmt: skip
    spark.stop()


def _jsonable(result):
    if isinstance(result, dict):
        return [[k, v] for k, v in result.items()]
    if isinstance(result, list) and len(result) > 1000:  # samples: only what the check needs
        return {"n": len(result), "distinct": len(set(map(repr, result))),
                "sample": [repr(r) for r in result[:50]]}  # fmt: skip
    return result


def emit(obj):
    print("RESULT " + json.dumps(obj), flush=True)


def run_spark(args, data, fractions, report):
    if not os.path.exists(SPARK_PY):
        report.setdefault("notes", []).append(f"PySpark not run: {SPARK_PY} does not exist")
        return
    config = {"folder": data.folder, "files": data.files, "fractions": fractions,
              "products": data.products_table(), "reps": args.reps,
              "engines": args.engines, "workloads": args.workloads}  # fmt: skip
    cfg = os.path.join(data.folder, "spark-config.json")
    with open(cfg, "w") as f:
        json.dump(config, f)
    env = dict(os.environ, PYTHONHASHSEED="0", PYSPARK_PYTHON=SPARK_PY)
    proc = subprocess.run([SPARK_PY, __file__, "--spark-child", cfg], capture_output=True,
                          text=True, env=env, check=False)  # fmt: skip
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[7:])
            if "startup" in r:
                report.setdefault("startup", {})[r["startup"]] = r["seconds"]
            else:
                result = r["result"]
                if isinstance(result, list) and result and isinstance(result[0], list):
                    result = [tuple(x) for x in result]
                record(
                    report, r["engine"], r["workload"], r["seconds"], r["peak"], result, r["rep"]
                )
    if proc.returncode:
        report.setdefault("notes", []).append(f"PySpark failed: {proc.stderr[-2000:]}")


# --------------------------------------------------------------------------- checking


def record(report, engine, workload, seconds, peak, result, rep):
    ok, why = check(engine, workload, result, report["expected"])
    runs = report.setdefault("runs", {}).setdefault(f"{engine}|{workload}", [])
    runs.append({"seconds": seconds, "peak": peak, "ok": ok, "why": why})
    print(f"rep {rep} {engine:9s} {workload:13s} {seconds:7.2f} s  peak {peak / 2**30:5.2f} GiB "
          f"{'ok' if ok else 'WRONG: ' + why}", flush=True)  # fmt: skip


def check(engine, workload, result, expected):
    try:
        CHECKS[workload](engine, result, expected)
    except AssertionError as e:
        return False, str(e)[:300]
    return True, ""


def _check_top(engine, result, exp):
    got = [(str(k), int(v)) for k, v in result]
    spends = [v for _, v in exp["top100"]]
    assert [v for _, v in got] == spends, f"top100 spends differ: {got[:3]} vs {exp['top100'][:3]}"
    truth = exp["poland_spend"]
    assert all(truth.get(k) == v for k, v in got), "a customer's spend is wrong"


def _check_category(engine, result, exp):
    got = {str(k): int(v) for k, v in result}
    assert got == exp["category"], "spend per category differs"


def _check_hash(engine, result, exp):
    n = int(result)
    if engine.startswith("dask_io"):
        assert n == exp["hash_exact"], f"{n} != {exp['hash_exact']}"
    else:
        assert n == exp["crc_exact"] or engine == "spark_df", f"{n} != {exp['crc_exact']}"
        assert 0.05 * exp["lines"] < n < 0.15 * exp["lines"], f"{n} lines is not about 10 %"


def _check_strat(engine, result, exp):
    got = {str(k): int(v) for k, v in (result.items() if isinstance(result, dict) else result)}
    for c, total in exp["per_country"].items():
        p = exp["fractions"][c]
        sd = (total * p * (1 - p)) ** 0.5
        assert abs(got.get(c, 0) - total * p) <= 6 * sd + 1, f"{c}: {got.get(c)} vs {total * p}"


def _check_take(engine, result, exp):
    if isinstance(result, dict):  # from the Spark child: a summary
        n, distinct, sample = result["n"], result["distinct"], result["sample"]
    else:
        n, distinct, sample = len(result), len(set(result)), [repr(r) for r in result[:50]]
    assert n == SAMPLE_N == distinct, f"{n} records, {distinct} distinct"
    assert all("User" in s and "Product" in s for s in sample), "not order lines"


CHECKS = {"top100": _check_top, "bcast_join": _check_category, "shuffle_join": _check_category,
          "hash_sample": _check_hash, "stratified": _check_strat, "take_sample": _check_take}  # fmt: skip


def expected_answers(data, fractions):
    import numpy as np

    from dask_io.sketches.hashing import stable_hash

    ncust = int(data.customer.max()) + 1
    ids = [O.customer_id(c) for c in range(ncust)]
    by_hash = np.array([stable_hash(i) < HASH_FRACTION * 2**64 for i in ids])
    by_crc = np.array([crc_keep(i) for i in ids])
    return {
        "lines": data.nlines,
        "top100": O.top_customers(data),
        "poland_spend": dict(O.top_customers(data, k=ncust)),
        "category": O.spend_per_category(data),
        "hash_exact": O.lines_of_customers(data, by_hash),
        "crc_exact": O.lines_of_customers(data, by_crc),
        "per_country": O.lines_per_country(data),
        "fractions": fractions,
    }


# --------------------------------------------------------------------------- report


def write_markdown(report, path, args):
    rows = []
    for key, runs in report.get("runs", {}).items():
        engine, workload = key.split("|")
        secs = [r["seconds"] for r in runs]
        rows.append((workload, engine, statistics.median(secs), min(secs), max(secs),
                     max(r["peak"] for r in runs), all(r["ok"] for r in runs)))  # fmt: skip
    med = {(w, e): m for w, e, m, *_ in rows}
    lines = [
        "# Bag recipes: the lecture's batch workloads",
        "",
        f"Command: `python benchmarks/bench_bag.py {' '.join(sys.argv[1:])}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {os.cpu_count()} "
        "cores, shared with other jobs (noisy); "
        f"{report['lines']:,} lines in {report['files']} files, median of {args.reps}.",
        "",
        "| workload | engine | median s | min–max s | Mrec/s | peak RSS GiB | vs dask_io | checked |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for w, e, m, lo, hi, peak, ok in sorted(rows, key=lambda r: (WORKLOADS.index(r[0]), r[2])):
        base = med.get((w, "dask_io"))
        ratio = f"{m / base:.2f}×" if base else "—"
        lines.append(f"| {w} | {e} | {m:.2f} | {lo:.2f}–{hi:.2f} | {report['lines'] / m / 1e6:.2f} "
                     f"| {peak / 2**30:.2f} | {ratio} | {'yes' if ok else 'NO'} |")  # fmt: skip
    lines += ["", "Start-up, not in the timings: " + ", ".join(
        f"{k} {v:.1f} s" for k, v in report.get("startup", {}).items())]  # fmt: skip
    lines += [f"- {n}" for n in report.get("notes", [])]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--engines", default="dask_io,dask_io_rec,dask_bag,spark_rdd,spark_df")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--data", default=os.path.join(HERE, "_data", "orders"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "bag-raw.md"))
    ap.add_argument("--spark-child", metavar="CONFIG")
    args = ap.parse_args(argv)
    if args.spark_child:
        with open(args.spark_child) as f:
            return spark_child(json.load(f))
    args.engines, args.workloads = args.engines.split(","), args.workloads.split(",")
    folder = f"{args.data}-{args.lines}-{args.files}"
    t0 = time.perf_counter()
    data = O.generate(folder, lines=args.lines, nfiles=args.files)
    print(f"data: {args.lines:,} lines in {args.files} files ({time.perf_counter() - t0:.1f} s)")
    fractions = stratified_fractions(O.lines_per_country(data))
    report = {"lines": data.nlines, "files": len(data.files),
              "expected": expected_answers(data, fractions)}  # fmt: skip
    if {"dask_io", "dask_io_rec", "dask_bag"} & set(args.engines):
        run_dask(args, data, fractions, report)
    if {"spark_rdd", "spark_df"} & set(args.engines):
        run_spark(args, data, fractions, report)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    write_markdown(report, args.out, args)
    with open(args.out) as f:
        print(f.read())
    return 0 if all(r["ok"] for runs in report["runs"].values() for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
