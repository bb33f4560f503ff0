"""``resplit``, ``split`` and ``merge``: run a plan on real files, resumably.

Everything that can be checked is checked before the first byte is written: the
source (exists, readable, block files agree with the manifest), the output chunks,
the target (absent, or an unfinished run of the same job to resume, or
``overwrite``), and the memory budget (the planner). Then the target is created (or
reopened), the plan executed, and the target finalized.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dask_io.errors import InvalidChunksError, StoreExistsError
from dask_io.execute.executor import Executor
from dask_io.plan import Plan, plan_resplit
from dask_io.plan.grid import Grid, normalize_chunks
from dask_io.plan.planner import faster_pipelined
from dask_io.plan.units import format_bytes, parse_bytes
from dask_io.storage.base import IOCounters
from dask_io.storage.blocks import BlockStore
from dask_io.storage.endpoints import TargetSpec, existing_error, open_source
from dask_io.storage.files import io_errors
from dask_io.storage.lock import target_lock
from dask_io.storage.nifti import NiftiGzSource, gz_slabs
from dask_io.storage.state import stable_token

__all__ = ["Report", "merge", "resplit", "split"]

REPLAN_MIN_BYTES = 64 << 20  # below this, planning again for read-ahead is not worth it


@dataclass
class Report:
    """What a resplit did.

    ``measured`` counts the data operations of this run (source plus target), in the
    units of ``plan.cost``; ``read`` and ``written`` split them by store. ``skipped``
    is the number of output blocks already complete from an interrupted run.
    """

    plan: Plan
    measured: IOCounters
    read: IOCounters
    written: IOCounters
    elapsed: float
    source: str
    target: str
    prefetch: bool
    skipped: int = 0
    peak_rss: int = 0
    removed: list[str] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        """Bytes of the array."""
        return math.prod(self.plan.shape) * self.plan.dtype.itemsize

    @property
    def throughput(self) -> float:
        """Array bytes per second."""
        return self.nbytes / self.elapsed if self.elapsed > 0 else float("inf")

    def mismatches(self) -> dict[str, tuple[int, int]]:
        """Counts where the run differs from the plan: ``{name: (planned, measured)}``."""
        c, m = self.plan.cost, self.measured
        pairs = {
            "opens": (c.opens, m.opens),
            "runs": (c.runs, m.runs),
            "bytes_read": (c.bytes_read, m.bytes_read + m.rmw_bytes),
            "bytes_written": (c.bytes_written, m.bytes_written),
        }
        return {k: v for k, v in pairs.items() if v[0] != v[1]}

    def summary(self) -> str:
        """A one-screen summary: strategy, buffers, opens, runs, bytes, time, speed, memory."""
        p, c, m = self.plan, self.plan.cost, self.measured
        lines = [
            f"{self.source} -> {self.target}",
            f"  array      {p.shape} {p.dtype}, {format_bytes(self.nbytes)}",
            f"  blocks     {p.in_grid.block_shape} x{p.in_grid.nblocks} -> "
            f"{p.out_grid.block_shape} x{p.out_grid.nblocks}",
            f"  strategy   {p.strategy}, buffer {p.buffer_shape} x{p.n_buffers}"
            f"{', read-ahead' if self.prefetch else ''}",
            f"  {'':10} {'planned':>14} {'measured':>14}",
            f"  {'opens':10} {c.opens:>14,} {m.opens:>14,}",
            f"  {'runs':10} {c.runs:>14,} {m.runs:>14,}",
            f"  {'seeks':10} {c.seeks:>14,} {m.seeks:>14,}",
            f"  {'read':10} {format_bytes(c.bytes_read):>14} {format_bytes(m.bytes_read):>14}",
            f"  {'written':10} {format_bytes(c.bytes_written):>14} "
            f"{format_bytes(m.bytes_written):>14}",
            f"  {'memory':10} {format_bytes(c.peak_mem):>14} {format_bytes(self.peak_rss):>14}"
            "  (plan peak / process peak RSS)",
            f"  elapsed    {self.elapsed:.2f} s, {self.throughput / 1e6:.0f} MB/s, "
            f"{m.syscalls:,} I/O calls, {m.meta_opens:,} metadata opens",
        ]
        if self.skipped:
            lines.append(f"  resumed    {self.skipped} output blocks were already complete")
        return "\n".join(lines)


def _job(
    source: str, shape: tuple[int, ...], dtype: np.dtype[Any], grid: Grid, spec: TargetSpec
) -> dict[str, Any]:
    record = {
        "source": os.path.abspath(source),
        "shape": shape,
        "dtype": dtype.str,
        "out_chunks": grid.chunks,
        "kind": spec.kind,
        "format": spec.block_format if spec.kind == "blocks" else spec.kind,
    }
    return dict(json.loads(json.dumps(record)))


def _check_target(spec: TargetSpec, job: dict[str, Any], overwrite: bool) -> bool:
    """Raise if the target may not be written; return True to resume an unfinished run."""
    if overwrite:
        return False
    unfinished = spec.unfinished_job()
    if unfinished is not None:
        if unfinished != job and {k for k in job if unfinished.get(k) != job[k]} == {
            "source_files"
        }:
            raise StoreExistsError(
                f"target {spec.display!r} holds an unfinished run from a source whose files "
                "changed since (size or mtime); pass overwrite=True (--overwrite) to start again"
            )
        if unfinished != job:
            raise StoreExistsError(
                f"target {spec.display!r} holds an unfinished run of another job "
                f"({_diff(unfinished, job)}); pass overwrite=True (--overwrite) to replace it"
            )
        return True
    if spec.exists():
        raise existing_error(spec)
    return False


def _diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = [k for k in new if old.get(k) != new[k]]
    return ", ".join(f"{k}: {old.get(k)!r} there, {new[k]!r} now" for k in keys)


def _choose_plan(
    shape: tuple[int, ...],
    in_chunks: Any,
    out_chunks: Any,
    dtype: Any,
    max_mem: int,
    strategy: str,
    layout: tuple[str, str],
    prefetch: bool | None,
) -> tuple[Plan, bool]:
    """The plan, and whether a second buffer for read-ahead fits in ``max_mem``.

    With ``prefetch=None`` (auto), for arrays of 64 MiB or more, plans for 60 % and 45 %
    of the budget are also tried: one is taken when it leaves room for the second buffer
    and, reads overlapping writes, is predicted faster (:func:`faster_pipelined`).
    """
    def make(budget: int, warn: bool = False) -> Plan:
        return plan_resplit(shape, in_chunks, out_chunks, dtype, budget, strategy, layout,
                            warn=warn)

    plan = make(max_mem, warn=True)
    if prefetch is False:
        return plan, False
    if _prefetch_mem(plan) <= max_mem:
        return plan, True
    if prefetch is None and math.prod(shape) * plan.dtype.itemsize >= REPLAN_MIN_BYTES:
        for fraction in (0.6, 0.45):
            try:
                small = make(int(max_mem * fraction))
            except ValueError:
                break
            if _prefetch_mem(small) <= max_mem and faster_pipelined(small, plan):
                return small, True
        return plan, False
    if prefetch is None:
        return plan, False
    raise InvalidChunksError(
        f"prefetch=True needs {format_bytes(_prefetch_mem(plan))} (a second buffer and staging "
        f"array) but max_mem={format_bytes(max_mem)}"
    )


def _prefetch_mem(plan: Plan) -> int:
    c = plan.cost
    return c.peak_mem + c.buffer_bytes + c.staging_bytes


def resplit(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    out_chunks: Any,
    max_mem: int | str = "1GiB",
    strategy: str = "auto",
    format: str | None = None,
    progress: bool = False,
    overwrite: bool = False,
    *,
    prefetch: bool | None = None,
    zarr_format: int = 3,
    inner_chunks: tuple[int, ...] | None = None,
) -> Report:
    """Rewrite the array at ``source`` as blocks of ``out_chunks`` at ``target``.

    Parameters
    ----------
    source : path
        A ``.npy`` file, an HDF5 dataset (``f.h5`` or ``f.h5:/path``), a Zarr array, a
        NIfTI file (``.nii``, ``.nii.gz``: axes in on-disk order, the reverse of nibabel's,
        see :mod:`dask_io.storage.nifti`) or a block store directory.
    target : path
        Same kinds; any other path is a block store. A target that was being written
        by an interrupted run of the same job is resumed.
    out_chunks : tuple of int, or tuple of tuples of int
        Output block shape (edge blocks smaller) or dask-style block lengths.
    max_mem : int or str
        Memory budget for buffers, kept data and staging, e.g. ``"1GiB"``.
    strategy : {"auto", "naive", "clustered", "multiple", "keep"}
    format : {"npy", "hdf5", "zarr"}, optional
        Target format when the path does not say it (block files default to the
        source's block format, else ``npy``).
    progress : bool
        Show a tqdm progress bar.
    overwrite : bool
        Replace an existing target.
    prefetch : bool, optional
        Read the next buffer on a background thread; by default whenever the second
        buffer fits in ``max_mem``.
    zarr_format, inner_chunks :
        For Zarr targets: the format (2 or 3), and for a sharded array the inner chunk
        shape (``out_chunks`` is then the shard shape).

    Returns
    -------
    Report
        ``report.plan``, ``report.measured``, ``report.elapsed`` and ``report.summary()``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> np.save(os.path.join(d, "a.npy"), np.arange(24, dtype="uint8").reshape(4, 6))
    >>> r = resplit(os.path.join(d, "a.npy"), os.path.join(d, "blocks"), (2, 3), max_mem=4096)
    >>> r.plan.out_grid.nblocks, r.mismatches()
    (4, {})
    """
    start = time.perf_counter()
    source, target = os.fspath(source), os.fspath(target)
    src = open_source(source)
    out_grid = Grid(src.shape, normalize_chunks(out_chunks, src.shape, "out_chunks"))
    default = src.kind if isinstance(src, BlockStore) else "npy"
    spec = TargetSpec.from_path(target, format, default_blocks=default)
    spec.options.update(zarr_format=zarr_format, inner_chunks=inner_chunks)
    spec.options["nifti_header"] = getattr(src, "nifti_header", None)
    spec.check_chunks(out_grid)
    if os.path.abspath(spec.path) == os.path.abspath(src.path):
        raise InvalidChunksError(f"target {target!r} is the source; expected another path")
    job = _job(source, src.shape, src.dtype, out_grid, spec)
    stamps = src.stamps() if hasattr(src, "stamps") else {}
    if stamps:  # a resume after the source's files changed is another job
        job["source_files"] = stable_token(stamps)
    with target_lock(spec.path, spec.display):  # one writer per target
        resume = _check_target(spec, job, overwrite)
        mem = parse_bytes(max_mem)
        if isinstance(src, NiftiGzSource):  # decoded slabs: about max_mem/4, on output cuts
            cuts = gz_slabs(src.shape, src.dtype.itemsize, mem // 4, out_grid.chunks[0])
            src = src.with_slabs(cuts)
        layout = (src.layout, spec.layout(out_grid))
        plan, prefetch = _choose_plan(
            src.shape, src.grid.chunks, out_grid.chunks, src.dtype, mem, strategy, layout, prefetch
        )
        return _execute(plan, src, spec, job, resume, overwrite, prefetch, progress, start, source)


def _execute(
    plan: Plan,
    src: Any,
    spec: TargetSpec,
    job: dict[str, Any],
    resume: bool,
    overwrite: bool,
    prefetch: bool,
    progress: bool,
    start: float,
    source: str,
) -> Report:
    with io_errors(spec.display):
        if overwrite:
            spec.remove()
        dst = (
            spec.resume(plan.out_grid, plan.dtype)
            if resume
            else spec.create(plan.out_grid, plan.dtype, job)
        )
        removed = dst.discard_partial()
    skipped = len(dst.completed)
    before_r, before_w = src.counters.as_dict(), dst.counters.as_dict()
    bar, update = _progress_bar(plan, progress)
    try:
        with io_errors(spec.display):
            try:
                Executor(
                    plan, src, dst, skip=dst.completed, prefetch=prefetch, on_buffer=update
                ).run()
            except OSError:  # a full disk, an I/O error: give the space back
                _free_partial(dst)
                raise
            dst.finalize()
    finally:
        if bar is not None:
            bar.close()
        src.close()
        dst.close()
    read = _since(src.counters, before_r)
    written = _since(dst.counters, before_w)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return Report(
        plan,
        read + written,
        read,
        written,
        time.perf_counter() - start,
        source,
        spec.display,
        prefetch,
        skipped,
        rss,
        removed,
    )


def _free_partial(dst: Any) -> None:
    """After a failed run: remove the temporary files of unfinished blocks (they are
    redone on resume anyway), which gives back the space of a full disk."""
    with contextlib.suppress(OSError):
        dst.discard_partial()


def _since(counters: IOCounters, before: dict[str, int]) -> IOCounters:
    now = counters.as_dict()
    return IOCounters(**{k: now[k] - before[k] for k in now})


def _progress_bar(plan: Plan, progress: bool) -> tuple[Any, Callable[[int], None] | None]:
    if not progress:
        return None, None
    from tqdm.auto import tqdm

    total = math.prod(plan.shape) * plan.dtype.itemsize
    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=plan.strategy)
    return bar, bar.update


def split(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    out_chunks: Any,
    max_mem: int | str = "1GiB",
    strategy: str = "auto",
    format: str | None = None,
    progress: bool = False,
    overwrite: bool = False,
    **kwargs: Any,
) -> Report:
    """Split one array (``.npy``, HDF5 dataset or Zarr array) into a block store.

    Same parameters as :func:`resplit`; ``target`` must be a block-store path (a
    directory) and ``format`` is ``"npy"`` (default) or ``"hdf5"`` block files.
    """
    spec = TargetSpec.from_path(os.fspath(target), format)
    if spec.kind != "blocks":
        raise InvalidChunksError(
            f"split writes a block store, but target {os.fspath(target)!r} is a {spec.kind} "
            "array; expected a directory path (use resplit for other targets)"
        )
    return resplit(
        source, target, out_chunks, max_mem, strategy, format, progress, overwrite, **kwargs
    )


def merge(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    max_mem: int | str = "1GiB",
    strategy: str = "auto",
    format: str | None = None,
    progress: bool = False,
    overwrite: bool = False,
    **kwargs: Any,
) -> Report:
    """Merge a block store into one array (``.npy``, HDF5 dataset or Zarr array).

    Same parameters as :func:`resplit`, without ``out_chunks``: the output is one block
    (for Zarr, ``inner_chunks`` may cut it into chunks inside one shard).
    """
    spec = TargetSpec.from_path(os.fspath(target), format)
    if spec.kind == "blocks":
        raise InvalidChunksError(
            f"merge writes one array, but target {os.fspath(target)!r} names a block store; "
            "expected a .npy, .h5[:/dataset], .zarr, .nii or .nii.gz path (or format='zarr')"
        )
    shape = open_source(os.fspath(source)).shape
    return resplit(source, target, shape, max_mem, strategy, format, progress, overwrite, **kwargs)
