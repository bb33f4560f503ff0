"""Measure one benchmark run in a fresh process: wall time, peak RSS, CPU, disk bytes, syscalls.

Reusable by other benchmarks (the graph-pass benchmark uses it too):

- :func:`drop_caches` empties the page cache (root only) after ``sync``;
- :func:`run_measured` starts a command, samples the RSS of its whole process tree
  every few milliseconds, reaps it with ``wait4`` (CPU seconds, blocks read/written
  from disk by the tree) and parses the JSON line the command prints last (the
  command's own clock, so that interpreter start-up is not timed);
- :func:`strace_counts` runs a command once under ``strace -f -y`` and counts the I/O
  system calls on files under given folders;
- :func:`proc_io` reads ``/proc/self/io`` (for the worker's own report).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from typing import Any

import psutil

IO_CALLS = (
    "openat,read,pread64,readv,preadv,write,pwrite64,writev,pwritev,lseek,copy_file_range,sendfile"
)


def drop_caches() -> bool:
    """``sync; echo 3 > /proc/sys/vm/drop_caches``; return whether it was done."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def proc_io() -> dict[str, int]:
    """This process's I/O counters from ``/proc/self/io`` (rchar, wchar, read_bytes, ...)."""
    out = {}
    with open("/proc/self/io") as f:
        for line in f:
            key, value = line.split(":")
            out[key.strip()] = int(value)
    return out


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def run_measured(
    cmd: list[str], interval: float = 0.01, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``cmd``; return its last JSON line plus peak tree RSS, CPU and disk I/O."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        ps = psutil.Process(proc.pid)
        peak = 0
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _tree_rss(ps))
            time.sleep(interval)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({proc.returncode}):\n{stderr[-3000:]}")
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    result.update(
        wall_process=time.perf_counter() - start,
        peak_rss=peak,
        cpu=ru.ru_utime + ru.ru_stime,
        disk_read=ru.ru_inblock * 512,
        disk_written=ru.ru_oublock * 512,
    )
    return result


_LINE = re.compile(r"^(?:\[pid\s+)?\d*\]?\s*(\w+)\((.*)$")


def strace_counts(cmd: list[str], folders: list[str]) -> dict[str, int] | None:
    """I/O system calls of ``cmd`` (and its threads/children) on files under ``folders``.

    Returns None when strace is not installed.
    """
    if shutil.which("strace") is None:
        return None
    folders = [os.path.realpath(f) for f in folders]
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as trace:
        full = ["strace", "-f", "-qq", "-y", "-e", f"trace={IO_CALLS}", "-o", trace.name, *cmd]
        done = subprocess.run(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{cmd} failed under strace:\n{done.stderr[-3000:]}")
        counts: Counter[str] = Counter()
        for line in trace:
            m = _LINE.match(line.split(None, 1)[1] if line[:1].isdigit() else line)
            if not m or "resumed>" in line:
                continue
            name, args = m.groups()
            if name == "openat":
                target = args.split('"')[1] if '"' in args else ""
            else:
                inside = re.match(r"\d+<([^>]*)>", args)
                target = inside.group(1) if inside else ""
            if any(target.startswith(f) for f in folders):
                counts[name] += 1
    return dict(counts)
