"""Run one entry point of dask_io, then print the process's peak RSS (VmHWM) as JSON.

Run by tests/memory/test_peak_rss.py in a fresh interpreter, so the reading is this
entry point's alone: ``python _child.py '<json spec>'``. VmHWM, from /proc/self/status
at the very end, is the kernel's high-water mark of resident memory (``ru_maxrss`` of
a child would also count what the parent held when it forked).
"""

from __future__ import annotations

import json
import sys


def vmhwm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_rechunk(spec: dict) -> None:
    import zarr

    import dask_io

    executor = spec["executor"]
    if executor == "cluster":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=1, threads_per_worker=2, processes=True, dashboard_address=":0"
        )
        with cluster, Client(cluster) as client:
            job = dask_io.rechunk(
                zarr.open_array(spec["src"]),
                tuple(spec["chunks"]),
                spec["dst"],
                spec["max_mem"],
                executor=client,
            )
            job.execute(progress=False)
            spec["workers"] = list(client.run(vmhwm_bytes).values())
        return
    job = dask_io.rechunk(
        zarr.open_array(spec["src"]),
        tuple(spec["chunks"]),
        spec["dst"],
        spec["max_mem"],
        executor=executor,
    )
    job.execute(progress=False)


def run_cli(spec: dict) -> None:
    from dask_io.cli import main

    code = main([*spec["argv"], "--max-mem", str(spec["max_mem"]), "--no-progress"])
    if code:
        raise SystemExit(code)


def run_graph(spec: dict) -> None:
    import dask
    import dask.array as da
    import zarr

    import dask_io

    src = zarr.open_array(spec["src"], mode="r")
    chunks = tuple(spec["chunks"])
    dst = zarr.create_array(
        spec["dst"],
        shape=src.shape,
        chunks=chunks,
        dtype=src.dtype,
        compressors=None,
        zarr_format=2,
    )
    x = da.from_array(src, chunks=src.chunks)
    config = {"dask_io.max-mem": spec["max_mem"], "array_optimize": dask_io.optimize}
    with dask.config.set(config):
        da.store(x.rechunk(chunks), dst, lock=False, scheduler=spec.get("scheduler", "threads"))


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    {"rechunk": run_rechunk, "cli": run_cli, "graph": run_graph}[spec["kind"]](spec)
    print(json.dumps({"peak": vmhwm_bytes(), "workers": spec.get("workers", [])}))
