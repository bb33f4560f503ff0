"""The buffer subgraph: a plan's operations as Dask tasks, chained to bound memory.

For buffer ``k`` of a plan the subgraph has one *read* task (it allocates the buffer
and fills it from the sources), one task per ``Write``, ``Keep`` and ``WriteKept``
operation, and a *done* task that depends on all of them. The read task of buffer
``k + 1`` depends on the done task of buffer ``k``, so at most one buffer is alive
at a time (the scheduler frees it once its writes have run); kept pieces are task
results that live until the ``WriteKept`` task that consumes them has run. This
holds on the threaded scheduler and on ``distributed`` alike, since it is expressed
by dependencies only.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from dask._task_spec import DataNode, Task, TaskRef
from dask.base import tokenize

from dask_io.graph.handles import ArrayHandle
from dask_io.graph.jobs import Job
from dask_io.graph.rawread import read_many, sync_files
from dask_io.plan import Plan
from dask_io.plan.ops import Keep, LoadBuffer, Read, Write, WriteKept

Key = Hashable
Box = tuple[tuple[int, int], ...]


# -- task functions (run on workers) --------------------------------------------------


def read_buffer(reads: Sequence[tuple[ArrayHandle, Box, tuple[slice, ...]]],
                shape: tuple[int, ...], dtype: np.dtype[Any], staging: int, *after: Any) -> np.ndarray:
    """Allocate a buffer of ``shape`` and fill it: each read copies a box of an array.

    Boxes of arrays stored contiguously in files are read raw, on several threads
    (:func:`~dask_io.graph.rawread.read_many`); others through the array object.
    """
    buf = np.empty(shape, dtype)
    raw = []
    for handle, box, local in reads:
        if handle.raw is not None and handle.raw.dtype == buf.dtype:
            raw.append((handle.raw, box, buf[local]))
        else:
            handle.read_into(box, buf, local)
    if raw:
        read_many(raw, staging)
    return buf


WRITER_THREADS = 2
_writer: ThreadPoolExecutor | None = None
_writer_lock = threading.Lock()


class PendingWrite:
    """A raw write running on dask_io's writer threads.

    Write tasks of raw targets hand their bytes to these threads and return at
    once, so that Dask's worker threads go on copying and reading while the device
    writes; the buffer's *done* task waits for every pending write (and raises its
    error), so the memory bound and the completion of ``store`` are unchanged. A
    pending write that has to travel to another process finishes first.
    """

    __slots__ = ("future",)

    def __init__(self, future: Future[None]) -> None:
        self.future = future

    def wait(self) -> None:
        self.future.result()

    def __reduce__(self) -> tuple[Callable[[], None], tuple[()]]:
        self.wait()
        return (_written, ())


def _written() -> None:
    return None


def _submit(fn: Callable[..., Any], *args: Any) -> PendingWrite:
    global _writer
    with _writer_lock:
        if _writer is None:
            _writer = ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="dask_io-write")
        return PendingWrite(_writer.submit(fn, *args))


def _wait(args: Iterable[Any]) -> None:
    for arg in args:
        if isinstance(arg, PendingWrite):
            arg.wait()


def write_piece(buf: np.ndarray, handle: ArrayHandle, box: Box,
                local: tuple[slice, ...]) -> PendingWrite | None:
    """Write ``buf[local]`` into ``box`` of the target array (raw targets: in the background)."""
    if handle.raw_target() is not None:
        return _submit(handle.write, box, buf[local])
    handle.write(box, buf[local])
    return None


def keep_piece(buf: np.ndarray, local: tuple[slice, ...], region: Box) -> tuple[Box, np.ndarray]:
    """A copy of ``buf[local]``: the piece of ``region`` of an output block kept for later."""
    return region, buf[local].copy()


def write_kept(buf: np.ndarray, local: tuple[slice, ...], region: Box, block: Box,
               handle: ArrayHandle, box: Box, *kept: tuple[Box, np.ndarray]) -> PendingWrite | None:
    """Assemble output ``block`` from its kept pieces and ``buf[local]``, write it whole.

    Raw targets gather the pieces straight into the write, without the assembly, in
    the background (:class:`PendingWrite`).
    """
    if handle.raw_target() is not None:
        return _submit(handle.write_pieces, box, block, [*kept, (region, buf[local])])
    shape = tuple(b - a for a, b in block)
    out = np.empty(shape, buf.dtype)
    for piece_region, data in (*kept, (region, buf[local])):
        out[_local(piece_region, block)] = data
    handle.write(box, out)
    return None


def done(*args: Any) -> None:
    """A token: every task it depends on has run, and every write it started is done."""
    _wait(args)


def synced(paths: Sequence[str], *args: Any) -> None:
    """A token like :func:`done`, once the files written by the buffer are on disk.

    Writing back a buffer's output while the next buffer is read keeps the dirty
    page cache within about two buffers, instead of all of it being flushed at the end.
    """
    _wait(args)
    sync_files(paths)


# -- building ------------------------------------------------------------------------


def key_digest(keys: Iterable[Key]) -> str:
    """A digest of a set of keys, independent of their order (``tokenize`` of 10⁵
    keys takes seconds)."""
    text = "\n".join(sorted(map(str, keys)))
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def _local(region: Box, origin: Box) -> tuple[slice, ...]:
    return tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(region, origin))


def _shift(region: Box, offset: tuple[int, ...]) -> Box:
    return tuple((a + o, b + o) for (a, b), o in zip(region, offset))


def _region_shape(region: Box) -> tuple[int, ...]:
    return tuple(b - a for a, b in region)


class SubgraphBuilder:
    """Accumulates the tasks of one or more jobs, chained one after the other."""

    def __init__(self, handles: Sequence[ArrayHandle], sync: bool = False) -> None:
        self.handles = handles
        self.sync = sync  # buffers end with fdatasync of the files they wrote
        self.tasks: dict[Key, Task] = {}
        self.previous: Key | None = None  # the done token of the last buffer added
        self._window: list[Key] = []  # done tokens of the last ``depth`` buffers
        self.read_keys: list[Key] = []

    def add_job(self, job: Job, plan: Plan, depth: int = 1) -> Key:
        """Add the tasks of ``plan`` over ``job``; return the key of its final token.

        With ``depth`` 2 the read of buffer ``k`` waits for buffer ``k - 2`` only, so
        two buffers are alive at once (the caller planned with half the memory).
        """
        self.depth = depth
        token = tokenize(key_digest(job.keys), plan.strategy, plan.buffer_shape,
                         plan.order, plan.max_mem, job.in_chunks, job.out_chunks)
        kept: dict[tuple[int, ...], list[Key]] = {}
        self._out_grid = plan.out_grid
        self._staging = max(plan.staging_bytes, 1 << 20)
        for number, ops in enumerate(plan.buffers()):
            self.previous = self._add_buffer(job, ops, f"{token}-{number}", kept)
        assert self.previous is not None
        return self.previous

    def _add_buffer(self, job: Job, ops: list[Any], name: str, kept: dict[tuple[int, ...], list[Key]]) -> Key:
        load = ops[0]
        assert isinstance(load, LoadBuffer)
        region = load.region
        read_key = f"dask_io-read-{name}"
        reads = []
        for op in ops:
            if isinstance(op, Read):
                handle, offset = job.sources.locate(op.region)
                reads.append((self.handles[handle], _shift(op.region, offset), _local(op.region, region)))
        window = self._window
        after = (TaskRef(window[0]),) if len(window) >= self.depth else ()
        self.tasks[read_key] = Task(read_key, read_buffer, DataNode(None, reads),
                                    DataNode(None, _region_shape(region)), DataNode(None, job.dtype),
                                    DataNode(None, self._staging), *after)
        self.read_keys.append(read_key)
        outputs = []
        for i, op in enumerate(ops):
            key = self._add_op(job, op, region, read_key, f"{name}-{i}", kept)
            if key is not None:
                outputs.append(key)
        done_key = f"dask_io-done-{name}"
        # the final token waits for the previous buffer, which may still be running
        earlier = [TaskRef(window[-1])] if self.depth > 1 and window else []
        paths = sorted({p for op in ops if isinstance(op, (Write, WriteKept))
                        if (p := self._sync_path(job, op)) is not None})
        if self.sync and paths:
            self.tasks[done_key] = Task(done_key, synced, DataNode(None, paths),
                                        *[TaskRef(k) for k in outputs], *earlier)
        else:
            self.tasks[done_key] = Task(done_key, done, *[TaskRef(k) for k in outputs], *earlier)
        window.append(done_key)
        del window[: max(0, len(window) - self.depth)]
        return done_key

    def _sync_path(self, job: Job, op: Write | WriteKept) -> str | None:
        region = op.unit if isinstance(op, WriteKept) else op.region
        handle, _ = job.targets.locate(region)
        return self.handles[handle].file_path

    def _add_op(self, job: Job, op: Any, region: Box, read_key: Key, name: str,
                kept: dict[tuple[int, ...], list[Key]]) -> Key | None:
        buf = TaskRef(read_key)
        if isinstance(op, Write):
            handle, offset = job.targets.locate(op.region)
            key = f"dask_io-write-{name}"
            self.tasks[key] = Task(key, write_piece, buf, DataNode(None, self.handles[handle]),
                                   DataNode(None, _shift(op.region, offset)),
                                   DataNode(None, _local(op.region, region)))
            return key
        if isinstance(op, Keep):
            key = f"dask_io-keep-{name}"
            self.tasks[key] = Task(key, keep_piece, buf, DataNode(None, _local(op.region, region)),
                                   DataNode(None, op.region))
            kept.setdefault(op.block, []).append(key)
            return key
        if isinstance(op, WriteKept):
            block = op.unit  # the whole block, or a slab of it spanning its fast axes
            handle, offset = job.targets.locate(block)
            key = f"dask_io-writekept-{name}"
            pieces = [TaskRef(k) for k in kept.pop(op.block, [])]
            self.tasks[key] = Task(key, write_kept, buf, DataNode(None, _local(op.region, region)),
                                   DataNode(None, op.region), DataNode(None, block),
                                   DataNode(None, self.handles[handle]),
                                   DataNode(None, _shift(block, offset)), *pieces)
            return key
        return None

