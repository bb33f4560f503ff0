"""Split, merge and resplit a 3-D uint16 array on disk: dask_io vs plain Dask vs rechunker vs cp.

Protocol (the project's BENCHMARKING.md, in the shared notes): the same array (1024³ uint16 = 2 GiB by
default, ``--size 512`` for quick runs), every run in a fresh process, page cache
dropped before every timed run (root), methods interleaved rep by rep, median of
``--reps`` (3), the clock stopped after every output file is fsynced, peak RSS of the
process tree, CPU seconds and disk bytes (``wait4``), bytes through read/write calls
(``/proc/<pid>/io`` rchar/wchar) and, in one extra untimed run, I/O system calls on
the data files (strace). Every output of the first rep is verified against values
recomputed from indices.

Workloads (input blocks n/4 per axis; output blocks (200, 300, 350)·n/1024):

- ``split``: one contiguous HDF5 dataset -> HDF5 block files of (n/4)³;
- ``merge``: HDF5 block files of (n/4)³ -> one contiguous HDF5 dataset;
- ``resplit``: HDF5 block files of (n/4)³ -> HDF5 block files of (200, 300, 350)-shaped blocks;
- ``zarr``: Zarr (format 2, uncompressed) chunks (n/4)³ -> Zarr chunks (200, 300, 350)-shaped.

Run ``python benchmarks/bench_resplit.py [--size 1024] [--reps 3]``; results go to
``benchmarks/results/resplit.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RECHUNKER_PY = os.path.join(HERE, ".venv-rechunker", "bin", "python")
STRATEGIES = ("naive", "clustered", "keep", "auto")


def shapes(n: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    out = tuple(max(1, round(n * f / 1024)) for f in (200, 300, 350))
    return (n, n, n), (n // 4,) * 3, out


# -- data --------------------------------------------------------------------------------


def make_data(root: str, n: int, zarr_too: bool) -> None:
    """Write the source files once (untimed): a contiguous HDF5 volume, HDF5 blocks, Zarr."""
    sys.path.insert(0, os.path.dirname(HERE))
    import numpy as np

    from dask_io.plan.grid import Grid
    from dask_io.storage.files import create_hdf5
    from dask_io.testing.data import values, write_block_store

    shape, in_chunks, _ = shapes(n)
    os.makedirs(root, exist_ok=True)
    vol = os.path.join(root, "volume.h5")
    if not os.path.exists(vol):
        offset = create_hdf5(vol + ".tmp", "/data", shape, np.dtype("uint16"))
        with open(vol + ".tmp", "r+b") as f:
            rows = max(1, (64 << 20) // (n * n * 2))
            for i in range(0, n, rows):
                region = ((i, min(n, i + rows)), (0, n), (0, n))
                f.seek(offset + i * n * n * 2)
                f.write(values(region, shape, "uint16").tobytes())
        os.replace(vol + ".tmp", vol)
    blocks = os.path.join(root, "blocks-h5")
    if not os.path.exists(blocks):
        write_block_store(blocks + ".tmp", shape, in_chunks, "uint16", "hdf5")
        os.replace(blocks + ".tmp", blocks)
    src_zarr = os.path.join(root, "src.zarr")
    if zarr_too and not os.path.exists(src_zarr):
        import zarr

        arr = zarr.create_array(
            src_zarr + ".tmp",
            shape=shape,
            chunks=in_chunks,
            dtype="uint16",
            compressors=None,
            zarr_format=2,
            fill_value=0,
        )
        grid = Grid.from_chunks(shape, in_chunks)
        for block in grid.blocks():
            region = grid.block_region(block)
            arr[tuple(slice(a, b) for a, b in region)] = values(region, shape, "uint16")
        os.replace(src_zarr + ".tmp", src_zarr)


def paths(root: str, workload: str, method: str) -> tuple[str, str]:
    out = os.path.join(root, "out", f"{workload}-{method}")
    src = {
        "split": os.path.join(root, "volume.h5"),
        "merge": os.path.join(root, "blocks-h5"),
        "resplit": os.path.join(root, "blocks-h5"),
        "zarr": os.path.join(root, "src.zarr"),
    }[workload]
    if method in ("cp", "cat"):
        return src, out + (".h5" if workload == "split" else "")
    if workload == "merge":
        return src, out + ".h5"
    if workload == "zarr":
        return src, out + ".zarr"
    return src, out


def methods_for(workload: str, rechunker: bool) -> list[str]:
    feasible = {
        "split": ("keep", "auto"),
        "merge": STRATEGIES,
        "resplit": STRATEGIES,
        "zarr": ("clustered", "keep", "auto"),
    }[workload]
    # auto choosing by seeks and by predicted seconds, beside auto with the configured default
    out = [f"dask_io-{s}" for s in feasible] + ["dask_io-seeks", "dask_io-seconds", "dask"]
    if workload == "zarr" and rechunker:
        out.append("rechunker")
    return [*out, "cp", "cat"]


# -- worker: one method, one run ---------------------------------------------------------


def _files(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    return [os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs]


def fsync_tree(path: str) -> None:
    for fn in _files(path):
        fd = os.open(fn, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)


def worker(args: argparse.Namespace) -> None:
    src, dst = paths(args.root, args.workload, args.method)
    shape, in_chunks, out_chunks = shapes(args.size)
    info: dict[str, object] = {}
    _import_for(args.method)
    t0 = time.perf_counter()
    if args.method.startswith("dask_io-"):
        info = run_dask_io(args, src, dst, out_chunks, shape)
    elif args.method == "dask":
        run_dask(args.workload, src, dst, shape, in_chunks, out_chunks)
    elif args.method == "rechunker":
        run_rechunker(src, dst, out_chunks)
    elif args.method == "cat":
        files = sorted(_files(src))
        with open(os.devnull, "wb") as null:
            subprocess.run(["cat", *files], check=True, stdout=null)
    else:
        subprocess.run(["cp", "-r", src, dst], check=True)
        subprocess.run(["sync"], check=True)
    elapsed = time.perf_counter() - t0
    with open("/proc/self/io") as f:
        io = {k.strip(): int(v) for k, v in (line.split(":") for line in f)}
    print(json.dumps({"elapsed": elapsed, "rchar": io["rchar"], "wchar": io["wchar"], **info}))


def _import_for(method: str) -> None:
    """Import what the method needs before the clock starts (start-up is not timed)."""
    if method == "rechunker":
        import rechunker  # noqa: F401
        import zarr
    elif method not in ("cp", "cat"):
        sys.path.insert(0, os.path.dirname(HERE))
        import dask.array  # noqa: F401
        import h5py  # noqa: F401
        import zarr  # noqa: F401

        import dask_io.execute.api  # noqa: F401


def run_dask_io(
    args: argparse.Namespace,
    src: str,
    dst: str,
    out_chunks: tuple[int, ...],
    shape: tuple[int, ...],
) -> dict[str, object]:
    sys.path.insert(0, os.path.dirname(HERE))
    import dask.config

    from dask_io.execute.api import merge, resplit

    strategy = args.method.split("-", 1)[1]
    machine = os.path.join(args.root, "machine.json")
    if os.path.exists(machine):  # written by --calibrate: the constants of this disk
        with open(machine) as f:
            dask.config.set({"dask_io.machine": json.load(f)})
    if strategy in ("seeks", "seconds"):  # auto with that objective
        dask.config.set({"dask_io.objective": strategy})
        strategy = "auto"
    if args.workload == "merge":
        r = merge(src, dst + ":/data", max_mem=args.max_mem, strategy=strategy)
    else:
        fmt = None if args.workload == "zarr" else "hdf5"
        chunks = (args.size // 4,) * 3 if args.workload == "split" else out_chunks
        r = resplit(
            src, dst, chunks, max_mem=args.max_mem, strategy=strategy, format=fmt, zarr_format=2
        )
    from dask_io.plan.timing import pipelined

    m = r.measured
    predicted = pipelined(r.plan.cost, r.plan.layout) if r.prefetch else r.plan.seconds
    return {
        "predicted": predicted,
        "strategy": r.plan.strategy,
        "buffer": r.plan.buffer_shape,
        "prefetch": r.prefetch,
        "opens": m.opens,
        "runs": m.runs,
        "syscalls": m.syscalls,
        "plan_peak": r.plan.cost.peak_mem,
        "plan_match": not r.mismatches(),
    }


def _h5_block_target(dst: str, shape, chunks):
    """Create one contiguous HDF5 file per output block (with a block-store manifest)."""
    import h5py
    import numpy as np

    sys.path.insert(0, os.path.dirname(HERE))
    from dask_io.plan.grid import Grid
    from dask_io.storage.blocks import BlockStore

    grid = Grid.from_chunks(shape, chunks)
    store = BlockStore(dst, grid, np.dtype("uint16"), "hdf5", writable=True)
    os.makedirs(dst)
    files, targets, regions = [], [], []
    for block in grid.blocks():
        region = grid.block_region(block)
        f = h5py.File(store.block_path(block), "w")
        targets.append(f.create_dataset("data", shape=[b - a for a, b in region], dtype="uint16"))
        files.append(f)
        regions.append(tuple(slice(a, b) for a, b in region))
    return store, files, targets, regions


def run_dask(workload: str, src: str, dst: str, shape, in_chunks, out_chunks) -> None:
    import dask.array as da
    import h5py
    import numpy as np

    sys.path.insert(0, os.path.dirname(HERE))
    from dask_io.plan.grid import Grid

    if workload == "zarr":
        x = da.from_zarr(src).rechunk(out_chunks)
        da.to_zarr(x, dst, zarr_format=2, compressors=None)
        fsync_tree(dst)
        return
    handles = []
    if workload == "split":
        f = h5py.File(src.split(":")[0], "r")
        handles.append(f)
        x = da.from_array(f["data"], chunks=in_chunks)
    else:
        grid = Grid.from_chunks(shape, in_chunks)
        nested = np.empty(grid.numblocks, dtype=object)
        for block in grid.blocks():
            f = h5py.File(os.path.join(src, ".".join(map(str, block)) + ".h5"), "r")
            handles.append(f)
            nested[block] = da.from_array(f["data"], chunks=f["data"].shape)
        x = da.block(nested.tolist())
    if workload == "merge":
        with h5py.File(dst, "w") as out:
            ds = out.create_dataset("data", shape=shape, dtype="uint16")
            da.store(x, ds)
    else:
        chunks = in_chunks if workload == "split" else out_chunks
        x = x.rechunk(chunks)
        store, files, targets, regions = _h5_block_target(dst, shape, chunks)
        da.store([x[r] for r in regions], targets)
        for f in files:
            f.close()
        store.completed = set(store.grid.blocks())
        store.finalize()
    for f in handles:
        f.close()
    fsync_tree(dst)


def run_rechunker(src: str, dst: str, out_chunks) -> None:
    import zarr
    from rechunker import rechunk

    source = zarr.open_array(src, mode="r")
    plan = rechunk(
        source,
        out_chunks,
        "256MB",
        dst,
        temp_store=dst + ".tmp",
        target_options={"compressor": None},
    )
    plan.execute()
    fsync_tree(dst)


# -- driver ---------------------------------------------------------------------------------


def verify(root: str, workload: str, method: str) -> str:
    if method in ("cp", "cat"):
        return "-"
    sys.path.insert(0, os.path.dirname(HERE))
    from dask_io.testing.data import check_path

    _, dst = paths(root, workload, method)
    check_path(dst + (":/data" if workload == "merge" else ""))
    return "ok"


def clean(root: str, workload: str, method: str) -> None:
    _, dst = paths(root, workload, method)
    for p in (dst, dst + ".tmp", dst + ".dask_io-tmp"):
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="edge of the cubic array (1024: 2 GiB)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-mem", default="1GiB")
    ap.add_argument("--workloads", default="split,merge,resplit,zarr")
    ap.add_argument("--methods", default=None, help="comma list to restrict methods")
    ap.add_argument("--root", default=os.path.join(HERE, "_data"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "resplit.md"))
    ap.add_argument("--no-strace", action="store_true")
    ap.add_argument(
        "--calibrate",
        action="store_true",
        help="run dask-io calibrate on the data folder first; every dask_io run plans with it",
    )
    ap.add_argument(
        "--strace-only",
        action="store_true",
        help="no timed runs: take them from the root's results.json, add the strace counts",
    )
    ap.add_argument("--worker", nargs=2, metavar=("WORKLOAD", "METHOD"))
    args = ap.parse_args()
    args.root = os.path.join(os.path.abspath(args.root), f"resplit-{args.size}")
    if args.worker:
        args.workload, args.method = args.worker
        return worker(args)
    drive(args)


def drive(args: argparse.Namespace) -> None:
    sys.path.insert(0, HERE)
    from _measure import drop_caches, run_measured, strace_counts

    workloads = args.workloads.split(",")
    rechunker = os.path.exists(RECHUNKER_PY)
    make_data(args.root, args.size, "zarr" in workloads)
    machine_file = os.path.join(args.root, "machine.json")
    if args.calibrate:
        sys.path.insert(0, os.path.dirname(HERE))
        from dask_io.calibrate import measure

        drop_caches()
        machine = measure(args.root).to_dict()
        with open(machine_file, "w") as f:
            json.dump(machine, f)
        print("calibrated:", machine, flush=True)
    elif os.path.exists(machine_file):
        os.unlink(machine_file)  # an earlier run's constants: not asked for this time
    plan = {w: methods_for(w, rechunker) for w in workloads}
    if args.methods:
        keep = set(args.methods.split(","))
        plan = {w: [m for m in ms if m in keep or m in ("cp", "cat")] for w, ms in plan.items()}
    results: dict[tuple[str, str], list[dict]] = {}
    cold = None
    if args.strace_only:
        with open(os.path.join(args.root, "results.json")) as f:
            saved = json.load(f)
        if "runs" not in saved:  # written before cold and reps were saved
            reps = max(len(v) for v in saved.values())
            saved = {"runs": saved, "cold": drop_caches(), "reps": reps}
        results = {tuple(k.split("/")): v for k, v in saved["runs"].items()}
        cold, args.reps = saved["cold"], saved["reps"]
        args.workloads = ",".join(dict.fromkeys(w for w, _ in results))
        workloads = args.workloads.split(",")
        plan = {w: [m for ww, m in results if ww == w] for w in workloads}
    for rep in range(0 if args.strace_only else args.reps):
        for w in workloads:
            for m in plan[w]:
                clean(args.root, w, m)
                cold = drop_caches()
                py = RECHUNKER_PY if m == "rechunker" else sys.executable
                cmd = [
                    py,
                    os.path.abspath(__file__),
                    "--size",
                    str(args.size),
                    "--max-mem",
                    args.max_mem,
                    "--root",
                    os.path.dirname(args.root),
                    "--worker",
                    w,
                    m,
                ]
                r = run_measured(cmd)
                r["verified"] = verify(args.root, w, m) if rep == 0 else ""
                results.setdefault((w, m), []).append(r)
                print(
                    f"rep {rep} {w:8} {m:18} {r['elapsed']:7.2f} s  rss {r['peak_rss'] / 2**20:7.0f} MiB"
                    f"  {r['verified']}",
                    flush=True,
                )
                clean(args.root, w, m)
    traces = {}
    if not args.no_strace:
        for w in workloads:
            for m in plan[w]:
                if m == "dask_io-naive":
                    continue  # millions of calls; its own counters give them
                py = RECHUNKER_PY if m == "rechunker" else sys.executable
                cmd = [
                    py,
                    os.path.abspath(__file__),
                    "--size",
                    str(args.size),
                    "--max-mem",
                    args.max_mem,
                    "--root",
                    os.path.dirname(args.root),
                    "--worker",
                    w,
                    m,
                ]
                clean(args.root, w, m)
                traces[(w, m)] = strace_counts(cmd, [args.root])
                clean(args.root, w, m)
    write_report(args, results, traces, cold)


def _fmt_row(w: str, m: str, runs: list[dict], floor: float, trace: dict | None) -> str:
    t = [r["elapsed"] for r in runs]
    med = statistics.median(t)
    rss = max(r["peak_rss"] for r in runs) / 2**20
    first = runs[0]
    calls = "-"
    if trace:
        reads = sum(v for k, v in trace.items() if "read" in k)
        writes = sum(v for k, v in trace.items() if "write" in k)
        calls = f"{trace.get('openat', 0)} / {reads} / {writes}"
    elif "syscalls" in first:
        calls = f"({first['opens']} / {first['syscalls']} calls)"
    extra = ""
    if "strategy" in first:
        extra = f"{first['strategy']} {tuple(first['buffer'])}{' +RA' if first['prefetch'] else ''}"
    pred = "| "
    if "predicted" in first:
        pred = f"{first['predicted']:.2f} | {first['predicted'] / med:.2f}"
    return (
        f"| {w} | {m} | {med:.2f} ({min(t):.2f}–{max(t):.2f}) | {med / floor:.2f}× | "
        f"{statistics.median(r['cpu'] for r in runs):.1f} | {rss:.0f} | "
        f"{first['disk_read'] / 2**30:.2f} / {first['disk_written'] / 2**30:.2f} | "
        f"{first['rchar'] / 2**30:.2f} / {first['wchar'] / 2**30:.2f} | {calls} | "
        f"{first.get('verified', '')} | {extra} | {pred} |"
    )


def write_report(args, results, traces, cold) -> None:
    n = args.size
    shape, in_chunks, out_chunks = shapes(n)
    lines = [
        "# dask_io resplit benchmark",
        "",
        f"Command: `python benchmarks/bench_resplit.py --size {n} --reps {args.reps} "
        f"--max-mem {args.max_mem} --workloads {args.workloads}"
        + (f" --methods {args.methods}" if args.methods else "")
        + (" --calibrate" if getattr(args, "calibrate", False) else "")
        + (" --no-strace" if args.no_strace else "") + "`",
        f"Date: {time.strftime('%Y-%m-%d %H:%M')}. Machine: {os.cpu_count()} cores, shared with other "
        "jobs (noisy); one local disk.",
        f"Array {shape} uint16 ({2 * n**3 / 2**30:.2f} GiB); input blocks {in_chunks}, output blocks "
        f"{out_chunks}; max_mem {args.max_mem} for dask_io. Page cache dropped before every "
        f"timed run: {'yes' if cold else 'NO (not root)'}.",
        "",
        "Times are medians of the reps (min–max), with the clock stopped after every output "
        "file is fsynced; `× cp` is the ratio to `cp -r` + `sync` of the same input in the "
        "same run. RSS is the peak of the process tree. Disk bytes come from `wait4` "
        "(blocks read/written by the tree); rchar/wchar are bytes through read/write calls "
        "(`/proc/<pid>/io`). Calls: openat / read-like / write-like system calls on the data "
        "files, from one extra untimed strace run (dask_io naive: its own counters, opens / "
        "calls). `+RA`: read-ahead of the next buffer on a second thread.",
        "",
        "`pred s`: the seconds the planner predicted for the plan it ran (dask_io only; with "
        "read-ahead, the pipelined prediction), from the constants of "
        + ("`dask-io calibrate` on the data folder, measured in the same run"
           if getattr(args, "calibrate", False) else "the defaults (not calibrated)")
        + "; `pred ÷ meas` is that over the median. `dask_io-seeks` / `dask_io-seconds` are "
        "`auto` with `dask_io.objective` set to that; `dask_io-auto` uses the default.",
        "",
        "| workload | method | seconds | × cp | CPU s | peak RSS MiB | disk R/W GiB | "
        "rchar/wchar GiB | calls (open / read / write) | verified | plan | pred s | "
        "pred ÷ meas |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in dict.fromkeys(k[0] for k in results):
        floor = statistics.median(r["elapsed"] for r in results[(w, "cp")])
        for (w2, m), runs in results.items():
            if w2 == w:
                lines.append(_fmt_row(w, m, runs, floor, traces.get((w, m))))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.root, "results.json"), "w") as f:
        runs = {f"{w}/{m}": r for (w, m), r in results.items()}
        saved = {"runs": runs, "cold": cold, "reps": args.reps}
        json.dump(saved, f, indent=1, default=str)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
