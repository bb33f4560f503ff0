"""The same user code with and without ``dask_io.optimize``, per source kind x target kind.

Usage::

    python benchmarks/bench_pass_matrix.py [--size 512] [--reps 1] [--max-mem 1GiB]
        [--sources h5-contig,h5-chunked,zarr2,zarr3,zarr3-sharded,npy]
        [--targets zarr2,zarr3,zarr3-sharded,h5-chunked,h5-contig,npy]
        [--out benchmarks/results/pass_matrix.md]

The user code of every cell is one line of ordinary Dask: open the source
(``da.from_zarr``, or ``da.from_array`` of an h5py dataset or a ``.npy`` memmap),
``.rechunk(out)``, then ``da.store`` into the target created by the same code (a Zarr
array, an HDF5 dataset or a ``.npy`` file). ``off`` runs it plainly, ``on`` under
``dask.config.set(array_optimize=dask_io.optimize, dask_io.max-mem=...)``; for Zarr
targets ``rechunk`` is ``dask_io.rechunk`` on the same source, and ``cp`` copies the
source's bytes (``cp -r`` then ``sync``): the floor. Into sharded targets the
user code rechunks to the shard shape (plain Dask writing several chunks of one
shard from different tasks can corrupt it: dask#12583).

Each run is a fresh process after ``sync; echo 3 > drop_caches`` (root), timed until
``os.sync()`` returns, so every byte is on disk for every method; modes are
interleaved rep by rep; medians are reported; every output is compared with the
source values (slab by slab) after the clock stops. Peak RSS is the child's VmHWM.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from _measure import drop_caches  # this folder, on sys.path when run as a script

SOURCES = ("h5-contig", "h5-chunked", "zarr2", "zarr3", "zarr3-sharded", "npy")
TARGETS = ("zarr2", "zarr3", "zarr3-sharded", "h5-chunked", "h5-contig", "npy")
EXT = {"h5": ".h5", "zarr": ".zarr", "npy": ".npy"}


def values(n: int, lo: int, hi: int) -> np.ndarray:
    i = np.arange(lo, hi, dtype=np.int64)[:, None, None]
    j = np.arange(n, dtype=np.int64)[None, :, None]
    k = np.arange(n, dtype=np.int64)[None, None, :]
    return ((i * 7919 + j * 131 + k * 3) % 65521).astype(np.uint16)


def geometry(n: int) -> dict[str, tuple[int, ...]]:
    """Source chunks n/4 per axis; target chunks the issue's (200, 300, 350) at 1024."""
    out = tuple(max(1, round(n * f)) for f in (200 / 1024, 300 / 1024, 350 / 1024))
    return {
        "in": (n // 4,) * 3,
        "out": out,
        "shards": tuple(2 * c for c in out),
        "inner": (n // 8,) * 3,
    }


def path_of(folder: str, kind: str, role: str) -> str:
    return os.path.join(folder, f"{role}-{kind}{EXT[kind.split('-')[0].rstrip('23')]}")


def make_source(folder: str, kind: str, n: int) -> str:
    import h5py
    import zarr

    g = geometry(n)
    path = path_of(folder, kind, "src")
    if os.path.exists(path):
        return path
    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    slab = g["in"][0]
    if kind.startswith("h5"):
        with h5py.File(tmp, "w") as f:
            d = f.create_dataset(
                "x", (n,) * 3, "u2", chunks=g["in"] if kind == "h5-chunked" else None
            )
            for lo in range(0, n, slab):
                d[lo : lo + slab] = values(n, lo, lo + slab)
    elif kind == "npy":
        m = np.lib.format.open_memmap(tmp, "w+", np.uint16, (n,) * 3)
        for lo in range(0, n, slab):
            m[lo : lo + slab] = values(n, lo, lo + slab)
        m.flush()
        del m
    else:
        sharded = kind == "zarr3-sharded"
        a = zarr.create_array(
            tmp,
            shape=(n,) * 3,
            dtype="u2",
            compressors=None,
            chunks=g["inner"] if sharded else g["in"],
            shards=g["in"] if sharded else None,
            zarr_format=2 if kind == "zarr2" else 3,
        )
        for lo in range(0, n, slab):
            a[lo : lo + slab] = values(n, lo, lo + slab)
    os.replace(tmp, path)
    return path


def open_source(kind: str, path: str, n: int):  # type: ignore[no-untyped-def]
    import dask.array as da

    chunks = geometry(n)["in"]
    if kind.startswith("zarr"):
        return da.from_zarr(path), None
    if kind == "npy":
        return da.from_array(np.load(path, mmap_mode="r"), chunks=chunks), None
    import h5py

    f = h5py.File(path, "r")
    return da.from_array(f["x"], chunks=chunks), f


def create_target(kind: str, path: str, n: int):  # type: ignore[no-untyped-def]
    g = geometry(n)
    if kind.startswith("zarr"):
        import zarr

        sharded = kind == "zarr3-sharded"
        arr = zarr.create_array(
            path,
            shape=(n,) * 3,
            dtype="u2",
            compressors=None,
            chunks=g["out"],
            shards=g["shards"] if sharded else None,
            zarr_format=2 if kind == "zarr2" else 3,
        )
        return arr, (g["shards"] if sharded else g["out"]), None
    if kind == "npy":
        return np.lib.format.open_memmap(path, "w+", np.uint16, (n,) * 3), g["out"], None
    import h5py

    f = h5py.File(path, "w")
    d = f.create_dataset("x", (n,) * 3, "u2", chunks=g["out"] if kind == "h5-chunked" else None)
    return d, g["out"], f


def child(spec: dict) -> None:
    import dask
    import dask.array as da

    import dask_io

    n, mode = spec["n"], spec["mode"]
    start = time.perf_counter()
    if mode == "cp":
        subprocess.run(["cp", "-r", spec["src"], spec["dst"]], check=True)
    elif mode == "rechunk":
        import zarr

        g = geometry(n)
        sharded = spec["target"] == "zarr3-sharded"
        if spec["source"].startswith("zarr"):
            x = zarr.open_array(spec["src"], mode="r")
        elif spec["source"] == "npy":
            x = np.load(spec["src"], mmap_mode="r")
        else:
            import h5py

            x = h5py.File(spec["src"], "r")["x"]
        options = {"zarr_format": 2 if spec["target"] == "zarr2" else 3}
        if sharded:
            options["shards"] = g["shards"]
        dask_io.rechunk(
            x, g["out"], spec["dst"], spec["max_mem"], executor="threads", target_options=options
        ).execute(progress=False)
    else:
        x, f = open_source(spec["source"], spec["src"], n)
        target, chunks, g = create_target(spec["target"], spec["dst"], n)
        config = {}
        if mode == "on":
            config = {"array_optimize": dask_io.optimize, "dask_io.max-mem": spec["max_mem"]}
        with dask.config.set(config):
            da.store(x.rechunk(chunks), target, lock=False, scheduler="threads")
        if hasattr(target, "flush"):
            target.flush()
        for h in (f, g):
            if h is not None:
                h.close()
    os.sync()
    wall = time.perf_counter() - start
    with open("/proc/self/status") as fh:
        peak = next(int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("VmHWM:"))
    print(json.dumps({"wall": wall, "peak": peak}))


def verify(kind: str, path: str, n: int) -> None:
    if kind.startswith("zarr"):
        import zarr

        arr = zarr.open_array(path, mode="r")
    elif kind == "npy":
        arr = np.load(path, mmap_mode="r")
    else:
        import h5py

        arr = h5py.File(path, "r")["x"]
    slab = max(1, n // 8)
    for lo in range(0, n, slab):
        if not np.array_equal(arr[lo : lo + slab], values(n, lo, min(n, lo + slab))):
            raise AssertionError(f"{path}: wrong values in rows {lo}:{lo + slab}")


def run_one(folder: str, source: str, target: str, mode: str, n: int, max_mem: str) -> dict:
    src = make_source(folder, source, n)
    kind = source if mode == "cp" else target
    dst = path_of(folder, kind, "dst")
    for p in (dst, dst + ".dask_io-tmp"):
        shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else None
        if os.path.isfile(p):
            os.remove(p)
    drop_caches()
    spec = {
        "n": n,
        "mode": mode,
        "source": source,
        "target": target,
        "src": src,
        "dst": dst,
        "max_mem": max_mem,
    }
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(here), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode:
        raise RuntimeError(f"{source}->{target} {mode} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if mode != "cp":
        verify(target, dst, n)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--max-mem", default="1GiB")
    p.add_argument("--sources", default=",".join(SOURCES))
    p.add_argument("--targets", default=",".join(TARGETS))
    p.add_argument(
        "--folder", default=os.path.join(tempfile.gettempdir(), "dask_io_bench_pass_matrix")
    )
    p.add_argument("--out", default="benchmarks/results/pass_matrix.md")
    p.add_argument("--child")
    args = p.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    n = args.size
    folder = os.path.join(args.folder, str(n))
    os.makedirs(folder, exist_ok=True)
    rows = []
    for source in args.sources.split(","):
        for target in args.targets.split(","):
            modes = ["cp", "off", "on"] + (["rechunk"] if target.startswith("zarr") else [])
            runs: dict[str, list[dict]] = {m: [] for m in modes}
            for _ in range(args.reps):
                for mode in modes:
                    runs[mode].append(run_one(folder, source, target, mode, n, args.max_mem))
            med = {m: statistics.median(r["wall"] for r in rs) for m, rs in runs.items()}
            peak = {m: max(r["peak"] for r in rs) for m, rs in runs.items()}
            rows.append((source, target, med, peak))
            print(
                source,
                target,
                {m: round(v, 2) for m, v in med.items()},
                {m: peak[m] >> 20 for m in peak},
                flush=True,
            )
    write_table(args, n, rows)


def write_table(args: argparse.Namespace, n: int, rows: list) -> None:
    g = geometry(n)
    gib = n**3 * 2 / 2**30
    lines = [
        f"# The graph pass per source x target kind ({n}^3 uint16, {gib:.2f} GiB)",
        "",
        f"Command: `python benchmarks/bench_pass_matrix.py --size {n} --reps {args.reps} "
        f"--max-mem {args.max_mem}`; {datetime.date.today()}; 2-core VM shared with other "
        "engineers' jobs (timings are noisy: read the ratios). Source chunks "
        f"{g['in']}, target chunks {g['out']} (sharded targets: shards {g['shards']}); "
        f"cold cache, wall time until `os.sync()`, medians of {args.reps}; every output "
        "verified against the source values. Peak RSS is the child's VmHWM (MiB).",
        "",
        "| source | target | cp s | plain Dask s | with pass s | pass speed-up | "
        "dask_io.rechunk s | pass / rechunk | peak MiB plain / pass / rechunk |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for source, target, med, peak in rows:
        rech = med.get("rechunk")
        ratio = "" if rech is None else f"{med['on'] / rech:.2f}"
        lines.append(
            f"| {source} | {target} | {med['cp']:.2f} | {med['off']:.2f} | {med['on']:.2f} | "
            f"{med['off'] / med['on']:.2f}x | {'' if rech is None else f'{rech:.2f}'} | "
            f"{ratio} | "
            f"{peak['off'] >> 20} / {peak['on'] >> 20} / "
            f"{'' if rech is None else peak['rechunk'] >> 20} |"
        )
    slower = [(s, t) for s, t, med, _ in rows if med["on"] > med["off"]]
    lines += [
        "",
        f"Cells where the pass was slower than plain Dask: "
        f"{', '.join(f'{s}->{t}' for s, t in slower) or 'none'}.",
        "",
    ]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
