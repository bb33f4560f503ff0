"""Spilling shuffles: group_by_key over partitions larger than a worker's memory.

A spilling :func:`~dask_io.bag.group_by_key` keeps every task's records within a
byte budget (``max_mem``):

1. each input partition is grouped map-side into ``(key, [values])`` fragments and,
   when its fragments exceed a quarter of the budget, written into one local file
   per output partition (:class:`SpillFile`: pickled chunks, read back lazily);
2. each output partition adds up the sizes of the fragments it receives; within the
   budget it groups them in memory as before. Beyond it, it routes the fragments
   into ``ceil(2 * size / budget)`` sub-files by a second stable hash of the key,
   groups one sub-file at a time and writes the groups to its output file: the
   output partition is then a :class:`SpillFile` of ``(key, [values])`` records,
   iterated from disk by whatever consumes it.

``max_mem="auto"`` takes distributed's worker memory limit as the
anchor: a quarter of ``memory_limit / nthreads`` on a worker with a limit, no
spilling elsewhere. Values keep the order of the bag, as without spilling.

Spill files are local files (``spill_dir``, default ``<tempdir>/dask_io-spill``):
the workers of a shuffle must share that folder, as a LocalCluster's do. Input
bucket files are removed once merged; an output file is removed when its owner
(the process that wrote it) drops it, unless it was pickled to another process,
in which case it is left behind (a leak, never an early removal).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import pickle
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from dask_io.bag import _kernels as K
from dask_io.sketches.hashing import stable_hash

__all__ = ["SpillFile", "resolve_budget"]

_SAMPLE = 64  # records pickled to estimate a collection's size


class SpillFile:
    """Records stored in a local file as pickled chunks; iterates them lazily.

    ``len()`` is the number of records and ``nbytes`` the file's size.
    """

    __slots__ = ("count", "nbytes", "owner", "path")

    def __init__(self, path: str, count: int, nbytes: int, owner: int | None = None) -> None:
        self.path, self.count, self.nbytes = path, count, nbytes
        self.owner = os.getpid() if owner is None else owner

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Any]:
        with open(self.path, "rb") as f:
            while True:
                try:
                    chunk = pickle.load(f)
                except EOFError:
                    return
                yield from chunk

    def __repr__(self) -> str:
        return f"SpillFile({self.path!r}, {self.count} records, {self.nbytes} bytes)"

    def __reduce__(self) -> tuple[Any, ...]:
        # a pickled copy may outlive this object (distributed spills it, or sends it
        # to another worker): this object no longer removes the file; a copy unpickled
        # in the same process does
        owner, self.owner = self.owner, -1
        return (_restore, (self.path, self.count, self.nbytes, owner))

    def remove(self) -> None:
        """Remove the file now (this object must not be iterated afterwards)."""
        self.owner = -1
        with contextlib.suppress(OSError):
            os.remove(self.path)

    def __del__(self) -> None:
        if self.owner == os.getpid():
            with contextlib.suppress(OSError):
                os.remove(self.path)


def _restore(path: str, count: int, nbytes: int, owner: int) -> SpillFile:
    return SpillFile(path, count, nbytes, owner if owner == os.getpid() else -1)


class ChunkWriter:
    """Append records to a :class:`SpillFile`, pickling about ``chunk_bytes`` at a time."""

    def __init__(self, path: str, chunk_bytes: int) -> None:
        self.path, self.chunk_bytes = path, max(chunk_bytes, 1)
        self.file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.buffer: list[Any] = []
        self.limit, self.count = 16, 0

    def add(self, record: Any) -> None:
        self.buffer.append(record)
        if len(self.buffer) >= self.limit:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        data = pickle.dumps(self.buffer, protocol=pickle.HIGHEST_PROTOCOL)
        self.file.write(data)
        per_record = max(len(data) / len(self.buffer), 1.0)
        self.limit = max(1, int(self.chunk_bytes / per_record))
        self.count += len(self.buffer)
        self.buffer = []

    def close(self) -> SpillFile:
        self.flush()
        nbytes = self.file.tell()
        self.file.close()
        return SpillFile(self.path, self.count, nbytes)


def resolve_budget(max_mem: Any) -> int | None:
    """The byte budget of one task: ``max_mem`` itself, or for ``"auto"`` a quarter of
    the current distributed worker's ``memory_limit / nthreads`` (``None``: no limit)."""
    if max_mem is None:
        return None
    if max_mem != "auto":
        return int(max_mem)
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    limit = getattr(worker, "memory_limit", None)
    if not limit:
        return None
    return int(limit / max(getattr(worker, "nthreads", 1) or 1, 1) / 4)


def check_max_mem(max_mem: Any) -> Any:
    """Validate ``max_mem``: ``None``, ``"auto"``, bytes, or a string like ``"64MiB"``."""
    if max_mem is None or max_mem == "auto":
        return max_mem
    if isinstance(max_mem, str):
        from dask.utils import parse_bytes

        max_mem = parse_bytes(max_mem)
    if isinstance(max_mem, bool) or not isinstance(max_mem, int) or max_mem < 1:
        raise ValueError(f"max_mem={max_mem!r} is invalid; expected None, 'auto' or bytes >= 1")
    return max_mem


def estimate_bytes(items: Any) -> int:
    """The pickled size of a collection, from a sample of its first records."""
    if isinstance(items, SpillFile):
        return items.nbytes
    seq = list(items.items()) if isinstance(items, dict) else items
    n = len(seq)
    if n == 0:
        return 0
    sample = list(itertools.islice(seq, _SAMPLE))
    return int(len(pickle.dumps(sample, protocol=pickle.HIGHEST_PROTOCOL)) / len(sample) * n)


def _new_path(spill_dir: str | None, tag: str) -> str:
    folder = spill_dir or os.path.join(tempfile.gettempdir(), "dask_io-spill")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f"{tag}-{uuid.uuid4().hex}.pkl")


def _items(bucket: Any) -> Iterable[Any]:
    return bucket.items() if isinstance(bucket, dict) else bucket


@K.gc_paused
def group_split(
    records: Any,
    getters: tuple[K.KeyFn, K.KeyFn],
    npartitions: int,
    max_mem: Any,
    spill_dir: str | None,
) -> list[Any]:
    """Map side: ``(key, [values])`` fragments by output partition, spilled to files
    when they exceed a quarter of the budget."""
    combined = K.combine_partition(records, *getters, _singleton, _append)
    buckets = K.split_combined(combined, npartitions)
    budget = resolve_budget(max_mem)
    if budget is None or estimate_bytes(combined) <= budget // 4:
        return buckets
    del combined
    out = K.Records()
    for j in range(npartitions):
        writer = ChunkWriter(_new_path(spill_dir, f"split-{j}"), budget // 16)
        for item in buckets[j].items():
            writer.add(item)
        buckets[j] = K.KeyMap()  # free as we go
        out.append(writer.close())
    return out


def _singleton(v: Any) -> list[Any]:
    return [v]


def _append(acc: list[Any], v: Any) -> list[Any]:
    acc.append(v)
    return acc


def _extend(a: list[Any], b: list[Any]) -> list[Any]:
    a.extend(b)
    return a


@K.gc_paused
def group_merge(buckets: list[Any], max_mem: Any, spill_dir: str | None) -> Any:
    """Reduce side: the groups of one output partition, in memory within the budget,
    else grouped sub-file by sub-file into a :class:`SpillFile`."""
    budget = resolve_budget(max_mem)
    total = sum(estimate_bytes(b) for b in buckets)
    if budget is None or total <= budget:
        out = K.merge_combined((dict(_items(b)) if isinstance(b, SpillFile) else b
                                for b in buckets), _extend)  # fmt: skip
        _remove_spilled(buckets)
        return out
    nsub = max(2, math.ceil(2 * total / budget))
    subs = [ChunkWriter(_new_path(spill_dir, f"sub-{i}"), budget // 16) for i in range(nsub)]
    where: dict[Any, ChunkWriter] = {}
    for bucket in buckets:
        for k, values in _items(bucket):
            w = where.get(k)
            if w is None:
                w = where[k] = subs[stable_hash(k, seed=1) % nsub]
            w.add((k, values))
    del where
    _remove_spilled(buckets)
    out_writer = ChunkWriter(_new_path(spill_dir, "group"), budget // 16)
    for sub in subs:
        spilled = sub.close()
        groups: dict[Any, list[Any]] = {}
        for k, values in spilled:
            old = groups.get(k)
            if old is None:
                groups[k] = values
            else:
                old.extend(values)
        spilled.remove()
        for item in groups.items():
            out_writer.add(item)
        del groups
    return out_writer.close()


def _remove_spilled(buckets: Iterable[Any]) -> None:
    for b in buckets:
        if isinstance(b, SpillFile):
            b.remove()
