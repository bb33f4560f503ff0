"""Plain Dask with and without ``dask_io.optimize``: split, merge, resplit of HDF5 files.

Usage::

    python benchmarks/bench_optimize.py [--size 1024] [--reps 3] [--out benchmarks/results/optimize.md]

Every timed run is a fresh process (``--child``) after ``sync; echo 3 > drop_caches``
(when root); methods are interleaved rep by rep; medians are reported. The child
records wall time (until every output file is flushed and fsynced), peak RSS,
bytes and read/write system calls from ``/proc/self/io`` (all files of the process).
Outputs are verified against values recomputed from indices after the clock stops.
Also times ``optimize`` itself on a graph of about 100,000 tasks.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np
from _measure import drop_caches  # this folder, on sys.path when run as a script

WORKLOADS = ("split", "merge", "resplit")
MODES = ("cp", "cat", "off", "on")
LABELS = {"cp": "cp + fsync (floor)", "cat": "cat (read floor)", "off": "plain Dask",
          "on": "Dask + dask_io.optimize"}


def tables(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    return tuple(rng.integers(0, 2**16, n, dtype=np.uint32) for _ in range(3))  # type: ignore[return-value]


def values(n: int, region: tuple[slice, ...]) -> np.ndarray:
    a, b, c = tables(n)
    i, j, k = (t[s] for t, s in zip((a, b, c), region))
    return ((i[:, None, None] + j[None, :, None] + k[None, None, :]) % 2**16).astype(np.uint16)


def grid_regions(n: int, block: tuple[int, int, int]) -> list[tuple[slice, ...]]:
    out = []
    for i in range(0, n, block[0]):
        for j in range(0, n, block[1]):
            for k in range(0, n, block[2]):
                out.append((slice(i, min(i + block[0], n)), slice(j, min(j + block[1], n)),
                            slice(k, min(k + block[2], n))))
    return out


def prepare(folder: str, n: int) -> None:
    """One contiguous volume file and the same volume as 64 block files."""
    import h5py

    os.makedirs(os.path.join(folder, "blocks"), exist_ok=True)
    with h5py.File(os.path.join(folder, "volume.h5"), "w") as f:
        d = f.create_dataset("data", shape=(n,) * 3, dtype="u2")
        step = max(1, n // 8)
        for i in range(0, n, step):
            d[i:i + step] = values(n, (slice(i, i + step), slice(None), slice(None)))
    b = n // 4
    for r in grid_regions(n, (b, b, b)):
        name = "_".join(str(s.start // b) for s in r)
        with h5py.File(os.path.join(folder, "blocks", f"{name}.h5"), "w") as f:
            f.create_dataset("data", data=values(n, r))


def out_block(n: int) -> tuple[int, int, int]:
    return tuple(max(1, round(v * n / 1024)) for v in (200, 300, 350))  # type: ignore[return-value]


def _inputs(folder: str, workload: str) -> list[str]:
    if workload == "split":
        return [os.path.join(folder, "volume.h5")]
    blocks = os.path.join(folder, "blocks")
    return sorted(os.path.join(blocks, name) for name in os.listdir(blocks))


def run_floor(folder: str, workload: str, how: str) -> dict:
    """The floors of the protocol: ``cp`` of the workload's input files + fsync, or ``cat``."""
    out = os.path.join(folder, "out-cp")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    files = _inputs(folder, workload)
    start = time.perf_counter()
    if how == "cp":
        subprocess.run(["cp", *files, out], check=True)
        for name in os.listdir(out):
            fd = os.open(os.path.join(out, name), os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
    else:
        subprocess.run(["cat", *files], check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": seconds, "peak_rss": 0, "syscr": 0, "syscw": 0, "read_bytes": 0,
            "write_bytes": 0}


def run_child(folder: str, n: int, workload: str, use_pass: bool, max_mem: str) -> dict:
    import dask
    import dask.array as da
    import h5py

    import dask_io.graph as graph

    out = os.path.join(folder, "out")
    os.makedirs(out, exist_ok=True)
    b = n // 4
    files = []
    start = time.perf_counter()
    if workload == "split":
        src = h5py.File(os.path.join(folder, "volume.h5"), "r")
        x = da.from_array(src["data"], chunks=(b, b, b))
        regions = grid_regions(n, (b, b, b))
    else:
        src = None
        blocks = [[[None] * 4 for _ in range(4)] for _ in range(4)]
        for i in range(4):
            for j in range(4):
                for k in range(4):
                    f = h5py.File(os.path.join(folder, "blocks", f"{i}_{j}_{k}.h5"), "r")
                    files.append(f)
                    blocks[i][j][k] = da.from_array(f["data"], chunks=(b, b, b))
        x = da.block(blocks)
        regions = [tuple(slice(0, n) for _ in range(3))] if workload == "merge" else grid_regions(n, out_block(n))
        if workload == "resplit":
            x = x.rechunk(out_block(n))
    targets = []
    for idx, r in enumerate(regions):
        f = h5py.File(os.path.join(out, f"{idx}.h5"), "w")
        files.append(f)
        targets.append(f.create_dataset("data", shape=tuple(s.stop - s.start for s in r), dtype="u2"))
    sources = [x[r] for r in regions]
    settings = {"array_optimize": graph.optimize, "dask_io.max-mem": max_mem} if use_pass else {}
    with dask.config.set(settings):
        da.store(sources, targets, lock=False, scheduler="threads")
    for f in files:
        f.flush()
    for idx in range(len(regions)):
        fd = os.open(os.path.join(out, f"{idx}.h5"), os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    seconds = time.perf_counter() - start
    io_stats = _proc_io()
    peak = _peak_rss()  # before verification
    for t, r in zip(targets, regions):
        if not np.array_equal(t[...], values(n, r)):
            raise AssertionError(f"{workload}: wrong output in region {r}")
    for f in files:
        f.close()
    if src is not None:
        src.close()
    return {"seconds": seconds, "peak_rss": peak, **io_stats}


def _peak_rss() -> int:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, it restarts at exec and does not
    carry over the parent's peak from before the fork)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _proc_io() -> dict:
    out = {}
    with open("/proc/self/io") as f:
        for line in f:
            k, v = line.split(":")
            out[k.strip()] = int(v)
    return {"syscr": out["syscr"], "syscw": out["syscw"], "read_bytes": out["read_bytes"],
            "write_bytes": out["write_bytes"]}


def time_optimize() -> dict:
    """Time dask_io.optimize and Dask's optimize on a store(rechunk(from_array)) graph."""
    import tempfile

    import dask.array as da
    import h5py
    from dask.array.optimization import optimize as dask_optimize
    from dask.core import flatten

    import dask_io.graph as graph

    with tempfile.TemporaryDirectory() as folder, h5py.File(os.path.join(folder, "g.h5"), "w") as f:
        src = f.create_dataset("x", shape=(1000, 1000, 1000), dtype="u1")
        dst = f.create_dataset("y", shape=(1000, 1000, 1000), dtype="u1")
        x = da.from_array(src, chunks=(40, 40, 40))
        stored = da.store(x.rechunk((50, 50, 32)), dst, compute=False, lock=False)
        keys = list(flatten(stored.__dask_keys__()))
        ntasks = len(stored.dask)
        ours, theirs = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            graph.optimize(stored.dask, keys)
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            dask_optimize(stored.dask, keys)
            theirs.append(time.perf_counter() - t0)
    return {"tasks": ntasks, "dask_io": statistics.median(ours), "dask": statistics.median(theirs)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--max-mem", default="1GiB")
    p.add_argument("--folder", default="/tmp/dask_io_bench_optimize")
    p.add_argument("--out", default="benchmarks/results/optimize.md")
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--child", nargs=2, metavar=("WORKLOAD", "PASS"))
    p.add_argument("--optimize-only", action="store_true", help="only time optimize()")
    args = p.parse_args()
    if args.optimize_only:
        print(json.dumps(time_optimize()))
        return
    if args.child and args.child[1] in ("cp", "cat"):
        print(json.dumps(run_floor(args.folder, args.child[0], args.child[1])))
        return
    if args.child:
        res = run_child(args.folder, args.size, args.child[0], args.child[1] == "on", args.max_mem)
        print(json.dumps(res))
        return
    prepare(args.folder, args.size)
    results: dict = {}
    cold = True
    for rep in range(args.reps):
        for w in args.workloads.split(","):
            for mode in MODES:
                cold = drop_caches() and cold
                cmd = [sys.executable, __file__, "--size", str(args.size), "--folder", args.folder,
                       "--max-mem", args.max_mem, "--child", w, mode]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                results.setdefault((w, mode), []).append(json.loads(out.strip().splitlines()[-1]))
                print(rep, w, mode, results[(w, mode)][-1], flush=True)
    opt = time_optimize()
    write_report(args, results, opt, cold)


def write_report(args, results: dict, opt: dict, cold: bool) -> None:
    def med(w, m, k):
        return statistics.median(r[k] for r in results[(w, m)])

    def rng(w, m, k):
        vals = [r[k] for r in results[(w, m)]]
        return f"{min(vals):.2f}–{max(vals):.2f}"

    lines = [
        "# dask_io.optimize: plain Dask with and without the pass",
        "",
        f"Command: `python benchmarks/bench_optimize.py --size {args.size} --reps {args.reps} "
        f"--max-mem {args.max_mem}`  ",
        f"Date: {datetime.date.today()}; machine: 2 cores, shared with other jobs (noisy); "
        f"threaded scheduler; cold cache: {'yes (drop_caches before every run)' if cold else 'no'}.  ",
        f"Data: {args.size}³ uint16 ({args.size**3 * 2 / 2**30:.2f} GiB); blocks {args.size // 4}³; "
        f"resplit to {out_block(args.size)}. Medians of {args.reps} fresh processes (min–max); "
        "syscalls and bytes from /proc/self/io (every file of the process).",
        "",
        "| workload | method | time s | × cp | peak RSS MiB | read calls | write calls | read MiB | written MiB | speed-up vs plain Dask |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in args.workloads.split(","):
        base = med(w, "off", "seconds")
        floor = med(w, "cp", "seconds")
        for m in MODES:
            t = med(w, m, "seconds")
            if m in ("cp", "cat"):
                lines.append(f"| {w} | {LABELS[m]} | {t:.2f} ({rng(w, m, 'seconds')}) | "
                             f"{t / floor:.2f} | | | | | | |")
                continue
            lines.append(
                f"| {w} | {LABELS[m]} | {t:.2f} ({rng(w, m, 'seconds')}) | {t / floor:.2f} | "
                f"{med(w, m, 'peak_rss') / 2**20:.0f} | {med(w, m, 'syscr'):.0f} | {med(w, m, 'syscw'):.0f} | "
                f"{med(w, m, 'read_bytes') / 2**20:.0f} | {med(w, m, 'write_bytes') / 2**20:.0f} | "
                f"{base / t:.2f}× |"
            )
    lines += [
        "",
        f"`optimize` on a store(rechunk(from_array)) graph of {opt['tasks']} tasks (median of 3): "
        f"dask_io.optimize {opt['dask_io']:.2f} s (includes Dask's optimizer on the rewritten graph); "
        f"Dask's own optimize on the original graph {opt['dask']:.2f} s.",
        "",
    ]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
