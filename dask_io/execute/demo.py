"""``dask-io demo``: resplit sample data with every strategy, verify, compare.

The demo writes a 3-D uint16 sample array (about 256 MiB by default) as a block store
of cubic blocks in a temporary folder, resplits it with ``naive``, ``clustered``,
``keep`` and ``auto`` into blocks shaped like (200, 300, 350) for a 1024³ array
(neither block shape divides the other), checks every output block against values
recomputed from its indices, and prints one line per strategy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from dask_io.errors import InvalidChunksError
from dask_io.plan.units import format_bytes, parse_bytes

STRATEGIES = ("naive", "clustered", "keep", "auto")


class RSSMonitor:
    """Sample this process's resident memory every few milliseconds; keep the peak."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def rss() -> int:
        """Resident set size in bytes (Linux ``/proc/self/statm``)."""
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> RSSMonitor:
        self.base = self.rss()
        self.peak = self.base
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def demo_shapes(size: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Array shape, input and output blocks for a uint16 array of about ``size`` bytes."""
    n = max(8, round((size / 2) ** (1 / 3)))
    shape = (n, n, n)
    in_chunks = (max(1, n // 4),) * 3
    out_chunks = tuple(max(1, round(n * f)) for f in (200 / 1024, 300 / 1024, 350 / 1024))
    return shape, in_chunks, out_chunks


def run_demo(
    size: int | str = "256MiB",
    max_mem: int | str | None = None,
    folder: str | None = None,
    strategies: tuple[str, ...] = STRATEGIES,
    echo: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run the demo; return one result dict per strategy (and print the table).

    ``max_mem`` defaults to a quarter of the array size (with a 16 MiB floor).
    """
    from dask_io.execute.api import resplit
    from dask_io.testing.data import check_path, write_block_store

    nbytes = parse_bytes(size, "size")
    shape, in_chunks, out_chunks = demo_shapes(nbytes)
    mem = parse_bytes(max_mem) if max_mem is not None else max(16 << 20, nbytes // 4)
    root = folder or tempfile.mkdtemp(prefix="dask_io-demo-")
    src = os.path.join(root, "input")
    try:
        echo(
            f"sample data: {shape} uint16 ({format_bytes(2 * shape[0] ** 3)}) as "
            f"{in_chunks} blocks in {src}"
        )
        t = time.perf_counter()
        write_block_store(src, shape, in_chunks)
        echo(
            f"written in {time.perf_counter() - t:.1f} s; resplitting to {out_chunks} blocks "
            f"with max_mem={format_bytes(mem)}\n"
        )
        rows = []
        for strategy in strategies:
            dst = os.path.join(root, f"out-{strategy}")
            with RSSMonitor() as mon:
                report = resplit(src, dst, out_chunks, mem, strategy, overwrite=True)
            check_path(dst)
            rows.append(_row(strategy, report, mon))
            shutil.rmtree(dst)
        echo(format_table(rows))
        echo(
            "\nevery output verified against the source values; measured I/O = plan: "
            + ("yes" if all(r["match"] for r in rows) else "NO")
        )
        return rows
    finally:
        if folder is None:
            shutil.rmtree(root, ignore_errors=True)


def _row(strategy: str, report: Any, mon: RSSMonitor) -> dict[str, Any]:
    m = report.measured
    return {
        "strategy": strategy if strategy != "auto" else f"auto={report.plan.strategy}",
        "buffer": "x".join(str(n) for n in report.plan.buffer_shape),
        "buffers": report.plan.n_buffers,
        "opens": m.opens,
        "runs": m.runs,
        "seeks": m.seeks,
        "calls": m.syscalls,
        "bytes": m.bytes_read + m.bytes_written,
        "seconds": report.elapsed,
        "mbps": report.throughput / 1e6,
        "plan_mem": report.plan.cost.peak_mem,
        "rss": mon.peak - mon.base,
        "match": not report.mismatches(),
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    """The comparison table of :func:`run_demo`."""
    head = (
        f"{'strategy':15} {'buffer':>13} {'bufs':>5} {'opens':>7} {'runs':>10} "
        f"{'seeks':>10} {'I/O calls':>10} {'moved':>10} {'time':>7} {'MB/s':>6} "
        f"{'plan mem':>9} {'+RSS':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['strategy']:15} {r['buffer']:>13} {r['buffers']:>5} {r['opens']:>7,} "
            f"{r['runs']:>10,} {r['seeks']:>10,} {r['calls']:>10,} "
            f"{format_bytes(r['bytes']):>10} {r['seconds']:>6.2f}s {r['mbps']:>6.0f} "
            f"{format_bytes(r['plan_mem']):>9} {format_bytes(r['rss']):>9}"
        )
    return "\n".join(lines)


def add_demo_parser(subparsers: Any, guard: Callable[..., Any]) -> None:
    """Register ``dask-io demo``."""
    p = subparsers.add_parser(
        "demo",
        help="resplit sample data with every strategy, verify and compare",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument("--size", default="256MiB", help="sample array size (default 256MiB)")
    p.add_argument("--max-mem", default=None, help="memory budget (default: size / 4)")
    p.add_argument("--dir", default=None, help="work in this folder and keep the input")
    p.set_defaults(func=guard("demo", _demo))


def _demo(args: argparse.Namespace) -> int:
    if args.dir is not None and os.path.exists(os.path.join(args.dir, "input")):
        raise InvalidChunksError(f"--dir={args.dir!r} already holds an 'input' folder")
    run_demo(args.size, args.max_mem, args.dir)
    return 0
