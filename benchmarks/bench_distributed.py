"""Zarr -> Zarr rechunk on a LocalCluster (2 workers): dask_io vs Dask tasks / p2p vs rechunker.

    python benchmarks/bench_distributed.py --size 1024            # 2 GiB, both workloads
    python benchmarks/bench_distributed.py --size 512 --reps 1    # while developing
    python benchmarks/bench_distributed.py --simulate             # planning only, 1 TiB / 64 workers

Protocol (BENCHMARKING.md): before every timed run the parent removes the outputs of
earlier runs, then ``sync; echo 3 > /proc/sys/vm/drop_caches`` (root only; recorded as
``cold``). Every run is a fresh process (this script with ``--run-one``) that starts its
own LocalCluster (2 worker processes, 1 thread each), runs one method, fsyncs every
output file before the clock stops, verifies the output against values recomputed
from indices after it, and prints a JSON line. Methods are interleaved rep by rep,
with two floors in the same run: ``cp`` (``cp -r`` of the source folder plus fsync of
every copied file) and ``cat`` (the source files read to /dev/null).

The parent samples the process tree every 0.1 s for the peak RSS of each worker (its
VmHWM, so peaks between samples count; reported beside max_mem, with whether it is
within max_mem + 200 MiB, the promise of issue 12). Bytes
through read/write calls (``rchar``, ``wchar``) and to/from the device (``read_bytes``,
``write_bytes``) are the child's own ``/proc/self/io`` after its cluster closed: the
kernel adds a reaped child's counts to its parent, so this holds the workers' I/O once
(summing the samples of every process would count it twice). CPU seconds are the
children's rusage. Source chunk reads are counted by a store wrapper that appends every
chunk key read to a log. rechunker pins zarr < 3, so it runs from
``benchmarks/.venv-rechunker`` with zarr 2. Sources and targets are Zarr format 2,
uncompressed, so every method reads the same files.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
import zarr
from _measure import drop_caches  # this folder, on sys.path when run as a script
from zarr.storage import LocalStore, WrapperStore

HERE = os.path.dirname(os.path.abspath(__file__))
VENV_PY = os.path.join(HERE, ".venv-rechunker", "bin", "python")
METHODS = ("dask_io", "dask-tasks", "dask-p2p", "rechunker")
FLOORS = ("cp", "cat")
IO_KEYS = ("rchar", "wchar", "read_bytes", "write_bytes")


def proc_io() -> dict[str, int]:
    """This process's I/O counters (its reaped children included)."""
    with open("/proc/self/io") as f:
        pairs = (line.split(": ") for line in f.read().splitlines() if line)
        return {k: int(v) for k, v in pairs if k in IO_KEYS}


def outputs(data: str, method: str) -> list[str]:
    """Folders a run of ``method`` writes (removed before each timed run)."""
    if method == "rechunker":
        return [os.path.join(data, "out-rechunker.zarr"), os.path.join(data, "tmp-rechunker.zarr")]
    target = os.path.join(data, f"out-{method}.zarr")
    return [target, os.path.join(data, f"tmp-{method}"), target + ".dask_io-tmp"]


def workloads(n: int) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """name -> (source chunks, target chunks), scaled from the 1024^3 protocol."""
    s = n / 1024
    return {
        "mismatched": ((round(256 * s),) * 3, (round(200 * s), round(300 * s), round(350 * s))),
        "pancake": ((1, n, n), (n, max(1, round(32 * s)), max(1, round(32 * s)))),
    }


def tables(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    return tuple(rng.integers(0, 2**16, n, dtype=np.uint64) for _ in range(3))  # type: ignore[return-value]


def expected(n: int, region: tuple[slice, ...]) -> np.ndarray:
    a, b, c = tables(n)
    i, j, k = (t[s] for t, s in zip((a, b, c), region, strict=True))
    return ((i[:, None, None] + j[None, :, None] + k[None, None, :]) % 2**16).astype(np.uint16)


def make_source(path: str, n: int, chunks: tuple[int, ...]) -> None:
    import zarr

    if os.path.exists(os.path.join(path, ".zarray")):
        return
    arr = zarr.create_array(
        path,
        shape=(n,) * 3,
        chunks=chunks,
        dtype="uint16",
        compressors=None,
        fill_value=0,
        zarr_format=2,
        overwrite=True,
    )
    slab = max(chunks[0], 64 // chunks[0] * chunks[0] if chunks[0] < 64 else chunks[0])
    for i in range(0, n, slab):
        sl = (slice(i, min(i + slab, n)), slice(None), slice(None))
        arr[sl] = expected(n, sl)


def verify(path: str, n: int) -> bool:
    import zarr

    arr = zarr.open_array(path, mode="r")
    step = max(1, 64 * 1024 * 1024 // (2 * n * n))
    for i in range(0, n, step):
        sl = (slice(i, min(i + step, n)), slice(None), slice(None))
        if not np.array_equal(arr[sl], expected(n, sl)):
            return False
    return True


# -- one run (in a fresh process) ---------------------------------------------------


class CountingStore(WrapperStore):  # type: ignore[type-arg]
    """A zarr store that appends the key of every chunk read to a log file."""

    def __init__(self, store: Any, log: str) -> None:
        super().__init__(store)
        self.log = log

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        if not key.rsplit("/", 1)[-1].startswith(".z"):
            with open(self.log, "a") as f:
                f.write(key + "\n")
        return await super().get(key, prototype, byte_range)

    def __getstate__(self) -> dict[str, Any]:
        return {"store": self._store, "log": self.log}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["store"], state["log"])  # type: ignore[misc]

    def with_read_only(self, read_only: bool = False) -> CountingStore:
        return CountingStore(self._store.with_read_only(read_only), self.log)


def _counting_source(path: str, log: str) -> Any:
    return zarr.open_array(
        CountingStore(LocalStore(path, read_only=True), log), mode="r", zarr_format=2
    )


def fsync_tree(path: str) -> None:
    """fsync every file under ``path`` (the protocol stops the clock after fsync)."""
    for root, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)


def run_floor(args: argparse.Namespace) -> dict[str, Any]:
    """``cp -r`` of the source plus fsync of every copy, or ``cat`` of its files."""
    source = os.path.join(args.data, f"{args.workload}-{args.size}.zarr")
    target = os.path.join(args.data, "out-cp.zarr")
    before = proc_io()
    start = time.perf_counter()
    if args.method == "cp":
        subprocess.run(["cp", "-r", source, target], check=True)
        fsync_tree(target)
    else:
        files = sorted(os.path.join(r, n) for r, _, names in os.walk(source) for n in names)
        with open(os.devnull, "wb") as null:
            subprocess.run(["cat", *files], stdout=null, check=True)
    elapsed = time.perf_counter() - start
    after = proc_io()
    shutil.rmtree(target, ignore_errors=True)
    return {"time": elapsed, **{k: after[k] - before[k] for k in IO_KEYS}}


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    import dask.array as da
    import distributed

    import dask_io.execute.rechunk as rk

    if args.method in FLOORS:
        return run_floor(args)
    _, out_chunks = workloads(args.size)[args.workload]
    source = os.path.join(args.data, f"{args.workload}-{args.size}.zarr")
    target = os.path.join(args.data, f"out-{args.method}.zarr")
    temp = os.path.join(args.data, f"tmp-{args.method}")
    for p in outputs(args.data, args.method):  # normally already removed by the parent
        shutil.rmtree(p, ignore_errors=True)
    log = os.path.join(args.data, f"reads-{args.method}.log")
    open(log, "w").close()
    before = proc_io()
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            memory_limit=args.worker_limit,
        ) as cl,
        distributed.Client(cl) as client,
    ):
        src = _counting_source(source, log)
        start = time.perf_counter()
        if args.method == "dask_io":
            job = rk.rechunk(
                src,
                out_chunks,
                target,
                args.max_mem,
                temp_store=temp,
                executor=client,
                target_options={"zarr_format": 2},
            )
            job.execute(progress=False)
            plan = job.plan
            info = {
                "groups": plan["groups"],
                "seams": plan["seams"],
                "intermediate_bytes": plan["extra_bytes"] // 2,
            }
        else:
            x = da.from_zarr(src)
            method = args.method.split("-")[1]
            x.rechunk(out_chunks, method=method).to_zarr(target, zarr_format=2, compressors=None)
            info = {}
            fsync_tree(target)  # dask_io's target is fsynced by its finalize
        elapsed = time.perf_counter() - start
    after = proc_io()  # the workers are reaped: their I/O is in ours
    with open(log) as f:
        keys = [line.strip() for line in f if line.strip()]
    ok = verify(target, args.size)
    return {
        "time": elapsed,
        "chunk_reads": len(keys),
        "distinct_chunks": len(set(keys)),
        "verified": ok,
        **{k: after[k] - before[k] for k in IO_KEYS},
        **info,
    }


RECHUNKER_SCRIPT = """
import json, time, zarr, distributed, collections.abc
from rechunker import rechunk

class Counting(collections.abc.MutableMapping):
    def __init__(self, inner, log): self.inner, self.log = inner, log
    def __getitem__(self, k):
        if not k.rsplit("/", 1)[-1].startswith(".z"):
            with open(self.log, "a") as f: f.write(k + "\\n")
        return self.inner[k]
    def __setitem__(self, k, v): self.inner[k] = v
    def __delitem__(self, k): del self.inner[k]
    def __iter__(self): return iter(self.inner)
    def __len__(self): return len(self.inner)

def proc_io():
    with open("/proc/self/io") as f:
        pairs = (line.split(": ") for line in f.read().splitlines() if line)
        return {{k: int(v) for k, v in pairs}}

if __name__ == "__main__":
    before = proc_io()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", memory_limit="{limit}") as cl, \\
            distributed.Client(cl):
        src = zarr.open_array(Counting(zarr.DirectoryStore("{source}"), "{log}"), mode="r")
        start = time.perf_counter()
        plan = rechunk(src, {chunks}, "{max_mem}", "{target}", temp_store="{temp}")
        plan.execute()
        import os
        for root, _, files in os.walk("{target}"):
            for name in files:
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
        t = time.perf_counter() - start
    after = proc_io()
    io = {{k: after[k] - before[k] for k in ("rchar", "wchar", "read_bytes", "write_bytes")}}
    keys = [l.strip() for l in open("{log}") if l.strip()]
"""


# -- the parent: sampling, interleaving, report ------------------------------------------


def _tree(pid: int) -> list[Any]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _vmhwm(pid: int) -> int:
    """The kernel's peak RSS of ``pid`` so far (VmHWM), in bytes; 0 when unreadable.

    Unlike a sample of the current RSS, it also holds peaks between samples."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measure(cmd: list[str]) -> dict[str, Any]:
    """Run ``cmd``; sample its process tree; return its JSON line plus memory and I/O."""
    import psutil

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak: dict[int, int] = {}
    names: dict[int, str] = {}
    while proc.poll() is None:
        for p in _tree(proc.pid):
            try:
                peak[p.pid] = max(peak.get(p.pid, 0), _vmhwm(p.pid) or p.memory_info().rss)
                names.setdefault(p.pid, " ".join(p.cmdline()[:6]))
            except (psutil.NoSuchProcess, psutil.AccessDenied, FileNotFoundError):
                pass
        time.sleep(0.1)
    out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"{cmd} failed:\n{err[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out.strip().splitlines()[-1])
    workers = [pid for pid, name in names.items() if "spawn" in name or "multiprocessing" in name]
    result["peak_worker_rss"] = max((peak[p] for p in workers), default=0)
    result["peak_tree_rss"] = sum(peak.values())
    result["cpu_user"] = after.ru_utime - usage.ru_utime  # the whole child, verification too
    result["cpu_sys"] = after.ru_stime - usage.ru_stime
    return result


def child_cmd(args: argparse.Namespace, method: str, workload: str) -> list[str]:
    return [
        sys.executable,
        os.path.abspath(__file__),
        "--run-one",
        method,
        "--workload",
        workload,
        "--size",
        str(args.size),
        "--max-mem",
        args.max_mem,
        "--data",
        args.data,
        "--worker-limit",
        args.worker_limit,
    ]


def simulate(which: str = "mismatched,pancake") -> str:
    """Planning only: 1 TiB uint16 (8192^3) on 64 workers with 4 GiB each."""
    from dask_io.plan.groups import plan_groups
    from dask_io.plan.units import format_bytes

    lines = [
        "| workload | groups | seams | pieces | intermediate | planning s | per-worker "
        "tasks | reads | writes | bytes | peak mem |",
        "|" + "---|" * 11,
    ]
    cases = {
        "mismatched": ((256,) * 3, (200, 300, 350)),
        "pancake": ((1, 8192, 8192), (8192, 256, 256)),
    }
    print("\n".join(lines), flush=True)
    for name in which.split(","):
        ic, oc = cases[name]
        start = time.perf_counter()
        gp = plan_groups((8192,) * 3, ic, oc, "uint16", "4GiB", n_workers=64)
        loads = gp.simulate(64)
        took = time.perf_counter() - start

        def span(key: str, fmt: Any = str, loads: list[dict[str, int]] = loads) -> str:
            vals = [w[key] for w in loads]
            return f"{fmt(min(vals))}–{fmt(max(vals))}"

        lines.append(
            f"| {name} {ic}→{oc} | {len(gp.groups)} | {len(gp.seams)} | {gp.n_pieces} | "
            f"{format_bytes(gp.seam_bytes)} | {took:.1f} | {span('tasks')} | {span('reads')} | "
            f"{span('writes')} | {span('bytes', format_bytes)} | {span('peak_mem', format_bytes)} |"
        )
        print(lines[-1], flush=True)
    return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--max-mem", default="512MiB")
    ap.add_argument("--worker-limit", default="4GiB")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--methods", default=",".join(METHODS + FLOORS))
    ap.add_argument("--warm", action="store_true", help="do not drop the page cache")
    ap.add_argument("--workloads", default="mismatched,pancake")
    ap.add_argument("--data", default=os.path.join(HERE, "_data", "distributed"))
    ap.add_argument("--simulate", action="store_true")
    ap.add_argument("--report", action="store_true", help="print the table of results.json")
    ap.add_argument("--run-one")
    ap.add_argument("--workload")
    args = ap.parse_args()
    if args.simulate:
        simulate(args.workloads)
        return
    if args.report:
        with open(os.path.join(args.data, "results.json")) as f:
            print(report(json.load(f), args.max_mem))
        return
    if args.run_one:
        args.method = args.run_one
        print(json.dumps(run_one(args)))
        return
    os.makedirs(args.data, exist_ok=True)
    results = []
    for workload in args.workloads.split(","):
        src_chunks, _ = workloads(args.size)[workload]
        make_source(os.path.join(args.data, f"{workload}-{args.size}.zarr"), args.size, src_chunks)
        for rep in range(args.reps):
            for method in args.methods.split(","):
                if method == "rechunker" and not os.path.exists(VENV_PY):
                    print("rechunker: no benchmarks/.venv-rechunker, skipped", file=sys.stderr)
                    continue
                for path in outputs(args.data, method):
                    shutil.rmtree(path, ignore_errors=True)
                cold = False if args.warm else drop_caches()
                if method == "rechunker":
                    r = measure([VENV_PY, "-c", _rechunker_wrapper(args, workload)])
                else:
                    r = measure(child_cmd(args, method, workload))
                r.update(method=method, workload=workload, rep=rep, cold=cold, size=args.size)
                print(json.dumps(r), flush=True)
                results.append(r)
                with open(os.path.join(args.data, "results.json"), "w") as f:
                    json.dump(results, f, indent=1)  # after every run: a crash keeps the rest
    print(report(results, args.max_mem))


def report(results: list[dict[str, Any]], max_mem: str = "512MiB") -> str:
    """A markdown table: medians (min–max) per workload and method, and ratios to ``cp``."""
    import statistics

    from dask_io.plan.units import parse_bytes

    limit = parse_bytes(max_mem) + (200 << 20)

    def mib(v: float) -> str:
        return f"{v / 2**20:.0f} MiB"

    lines = [
        "| workload | method | time s, median (min–max) | × cp | × dask_io | max_mem "
        "| peak worker RSS (≤ max_mem + 200 MiB) | source chunk reads (distinct) | rchar "
        "| wchar | disk write | CPU s (sys) | cold | verified |",
        "|" + "---|" * 14,
    ]
    order = [*METHODS, *FLOORS]
    for workload in dict.fromkeys(r["workload"] for r in results):
        rows = [r for r in results if r["workload"] == workload]
        by = {m: [r for r in rows if r["method"] == m] for m in order}
        med = {m: statistics.median(r["time"] for r in rs) for m, rs in by.items() if rs}
        for m, rs in by.items():
            if not rs:
                continue
            times = [r["time"] for r in rs]
            span = (
                f"{med[m]:.1f} ({min(times):.1f}–{max(times):.1f})"
                if len(rs) > 1
                else f"{med[m]:.1f}"
            )
            cp = f"{med[m] / med['cp']:.2f}" if "cp" in med else "—"
            rel = f"{med[m] / med['dask_io']:.2f}" if "dask_io" in med else "—"
            last = rs[-1]
            reads = (
                f"{last['chunk_reads']} ({last['distinct_chunks']})"
                if "chunk_reads" in last
                else "—"
            )
            rss, budget = "—", "—"
            if m not in FLOORS:
                worst = max(r["peak_worker_rss"] for r in rs)
                rss, budget = f"{mib(worst)} ({'yes' if worst <= limit else 'NO'})", max_mem
            cpu = statistics.median(r["cpu_user"] + r["cpu_sys"] for r in rs)
            sys_ = statistics.median(r["cpu_sys"] for r in rs)
            verified = all(r.get("verified", True) for r in rs)
            lines.append(
                f"| {workload} | {m} | {span} | {cp} | {rel} | {budget} | {rss} | {reads} | "
                f"{mib(last['rchar'])} | {mib(last['wchar'])} | {mib(last['write_bytes'])} | "
                f"{cpu:.1f} ({sys_:.1f}) | {all(r['cold'] for r in rs)} | {verified} |"
            )
    return "\n".join(lines)


def _rechunker_wrapper(args: argparse.Namespace, workload: str) -> str:
    ns = argparse.Namespace(**vars(args))
    ns.workload = workload
    _, out_chunks = workloads(args.size)[workload]
    source = os.path.join(args.data, f"{workload}-{args.size}.zarr")
    target = os.path.join(args.data, "out-rechunker.zarr")
    temp = os.path.join(args.data, "tmp-rechunker.zarr")
    log = os.path.join(args.data, "reads-rechunker.log")
    open(log, "w").close()
    return RECHUNKER_SCRIPT.format(
        source=source,
        target=target,
        temp=temp,
        log=log,
        chunks=out_chunks,
        max_mem=args.max_mem,
        limit=args.worker_limit,
    ) + _VERIFY_TAIL.format(target=target, n=args.size, here=HERE)


_VERIFY_TAIL = """
    import sys, json as _j
    sys.path.insert(0, "{here}")
    import numpy as np
    arr = zarr.open_array("{target}", mode="r")
    rng = np.random.default_rng(42)
    a, b, c = (rng.integers(0, 2**16, {n}, dtype=np.uint64) for _ in range(3))
    ok = True
    for i in range(0, {n}, 16):
        e = ((a[i:i+16, None, None] + b[None, :, None] + c[None, None, :]) % 2**16).astype(np.uint16)
        ok = ok and np.array_equal(arr[i:i+16], e)
    print(_j.dumps({{"time": t, "chunk_reads": len(keys), "distinct_chunks": len(set(keys)), "verified": bool(ok), **io}}))
"""


if __name__ == "__main__":
    tempfile.tempdir = None
    main()
