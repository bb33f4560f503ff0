"""``dask-io calibrate DIR``: measure the I/O constants of the time model on one file system.

A few seconds of measurement in ``DIR`` (files of ``--size`` bytes, removed at the end):

- ``open_s``: opening and closing one existing file;
- ``read_bw``: reading a file whose pages were evicted (``posix_fadvise`` after
  ``fsync``: cold for the page cache, as a first read of a real job is);
- ``run_s``: one more contiguous run: 4 KiB reads at scattered offsets of an evicted
  file, less the time their bytes take at ``read_bw``;
- ``write_bw`` and ``direct_write_bw``: writing a new file through the page cache, and
  with ``O_DIRECT`` as the executors do for runs of 1 MiB or more, each up to ``fsync``;
- ``copy_bw``: copying into freshly allocated memory (first-touch faults included).

The result is stored in Dask's user configuration (``~/.config/dask/dask_io.yaml``,
key ``dask_io.machine``), where :func:`dask_io.plan.timing.current_machine` finds it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import yaml

from dask_io.errors import InvalidChunksError
from dask_io.plan.timing import Machine
from dask_io.plan.units import format_bytes, parse_bytes
from dask_io.storage import direct

CHUNK = 8 << 20
SCATTERED_READS = 2000


def _evict(fd: int) -> None:
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _write_file(path: str, size: int, use_direct: bool) -> float:
    """Seconds to write ``size`` bytes to a new file and fsync it."""
    block = direct.aligned_empty(CHUNK)
    block[:] = np.frombuffer(np.random.default_rng(0).bytes(CHUNK), dtype=np.uint8)
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    dfd = direct.open_direct(path) if use_direct else None
    try:
        for pos in range(0, size, CHUNK):
            direct.write_array(fd, dfd, block[: min(CHUNK, size - pos)], pos)
        os.fsync(fd)
    finally:
        os.close(fd)
        if dfd is not None:
            os.close(dfd)
    return time.perf_counter() - start


def _read_file(path: str, size: int) -> float:
    buf = bytearray(CHUNK)
    fd = os.open(path, os.O_RDONLY)
    try:
        _evict(fd)
        start = time.perf_counter()
        for pos in range(0, size, CHUNK):
            os.preadv(fd, [memoryview(buf)[: min(CHUNK, size - pos)]], pos)
        return time.perf_counter() - start
    finally:
        os.close(fd)


def _scattered_reads(path: str, size: int) -> float:
    """Mean seconds of one 4 KiB read at a scattered offset of an evicted file."""
    offsets = np.random.default_rng(1).integers(0, max(1, size // 4096 - 1), SCATTERED_READS)
    fd = os.open(path, os.O_RDONLY)
    try:
        _evict(fd)
        start = time.perf_counter()
        for off in offsets.tolist():
            os.pread(fd, 4096, off * 4096)
        return (time.perf_counter() - start) / len(offsets)
    finally:
        os.close(fd)


def _opens(path: str, count: int = 2000) -> float:
    start = time.perf_counter()
    for _ in range(count):
        os.close(os.open(path, os.O_RDONLY))
    return (time.perf_counter() - start) / count


def _copy_bw(size: int, repeat: int = 3) -> float:
    """Bytes per second copied into fresh memory (the best of ``repeat``)."""
    src = np.ones(size, dtype=np.uint8)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        dst = np.empty_like(src)
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
        del dst
    return size / best


@contextlib.contextmanager
def _scratch(folder: str) -> Iterator[str]:
    path = os.path.join(folder, f".dask_io_calibrate_{os.getpid()}")
    try:
        yield path
    finally:
        for suffix in ("", ".direct"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path + suffix)


def measure(folder: str, size: int = 256 << 20) -> Machine:
    """Measure the constants of :class:`~dask_io.plan.timing.Machine` in ``folder``."""
    if not os.path.isdir(folder):
        raise InvalidChunksError(f"calibrate: {folder!r} is not a directory")
    if size < 4 * CHUNK:
        raise InvalidChunksError(
            f"calibrate: --size={format_bytes(size)} is too small; expected at least "
            f"{format_bytes(4 * CHUNK)}"
        )
    with _scratch(folder) as path:
        buffered = _write_file(path, size, use_direct=False)
        direct_s = _write_file(path + ".direct", size, use_direct=True)
        read_bw = size / _read_file(path, size)
        run_s = max(_scattered_reads(path, size) - 4096 / read_bw, 1e-7)
        open_s = _opens(path)
    stamp = datetime.datetime.now().isoformat(timespec="minutes")
    return Machine(
        open_s=open_s,
        run_s=run_s,
        read_bw=read_bw,
        write_bw=size / buffered,
        direct_write_bw=size / direct_s,
        copy_bw=_copy_bw(min(size, 256 << 20)),
        source=f"dask-io calibrate {os.path.abspath(folder)} on {socket.gethostname()}, {stamp}",
    )


def config_path() -> str:
    """Where the result is stored: ``dask_io.yaml`` in Dask's user configuration folder."""
    import dask.config

    return os.path.join(dask.config.PATH, "dask_io.yaml")


def save(machine: Machine, path: str | None = None) -> str:
    """Store ``machine`` under ``dask_io.machine`` in ``path``, keeping its other keys."""
    path = path or config_path()
    data: dict[str, Any] = {}
    if os.path.exists(path):
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    data.setdefault("dask_io", {})["machine"] = machine.to_dict()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    os.replace(tmp, path)
    return path


def _cmd(args: argparse.Namespace) -> int:
    machine = measure(args.dir, parse_bytes(args.size))
    width = max(len(k) for k in machine.to_dict())
    for key, value in machine.to_dict().items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        unit = {"_s": " s", "bw": " B/s"}.get(key[-2:], "")
        print(f"  {key:<{width}}  {shown}{unit}")
    if args.no_save:
        return 0
    print(f"saved to {save(machine, args.output)} (dask_io.machine)")
    return 0


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "calibrate", help="measure the I/O constants of the time model on a file system"
    )
    p.add_argument("dir", nargs="?", default=".", help="a folder on the target file system")
    p.add_argument("--size", default="256MiB", help="bytes per test file (default 256MiB)")
    p.add_argument("--output", help="YAML file to write (default: Dask's user config)")
    p.add_argument("--no-save", action="store_true", help="print only")
    p.set_defaults(func=_cmd)
