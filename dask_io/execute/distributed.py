"""Run a :class:`~dask_io.plan.groups.GroupPlan` as a Dask graph: synchronous, threads
or a ``dask.distributed`` cluster.

The graph has one task per group and one per finishing batch (see
:mod:`dask_io.plan.groups` for the algorithm). A group task plans its own
sub-problem on the worker and runs the sequential keep
:class:`~dask_io.execute.executor.Executor` through two adapters that shift
group coordinates to array coordinates: :class:`GroupSource` reads the group's
input blocks from the source, :class:`GroupTarget` writes the group's whole
output blocks to the target and its seam pieces to a :class:`PieceStore`. A
finishing task reads the pieces of its seams and writes each seam whole.

Reliability comes from state on disk, not from task results (which are a few
bytes): a group writes ``groups/<i>.done`` once all it owns is durable, a seam
``seams/<j>.done`` once written, and a group appends every output it completes
to ``groups/<i>.progress``. A task that finds its marker returns at once, so a
task recomputed after a worker died, or a job executed again after the client
was interrupted, redoes only what is not yet on disk.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from dask_io.execute.executor import Executor
from dask_io.plan.grid import Grid
from dask_io.plan.groups import Group, GroupPlan, Seam
from dask_io.plan.ops import BlockIndex, Region
from dask_io.storage.base import IOCounters, Pieces, gather, local_region, single_view

STATE_DIR = ".dask_io-job"


def _shift(region: Region, origin: Sequence[int]) -> Region:
    return tuple((a + o, b + o) for (a, b), o in zip(region, origin, strict=True))


def _block_name(block: BlockIndex) -> str:
    return ".".join(str(i) for i in block)


def _touch(path: str, text: str = "") -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class PieceStore:
    """The intermediate store: one ``.npy`` file per seam piece, written whole once.

    A piece written in parts (when a group's plan cannot keep it) is assembled in a
    ``.partial`` memory map and renamed into place on commit.
    """

    def __init__(self, root: str, dtype: Any) -> None:
        self.root, self.dtype = root, np.dtype(dtype)
        self.counters = IOCounters()

    def _path(self, block: BlockIndex, group: int) -> str:
        return os.path.join(self.root, f"{_block_name(block)}-g{group}.npy")

    def write(
        self, block: BlockIndex, group: int, piece: Region, region: Region, pieces: Pieces
    ) -> None:
        """Write ``region`` of the piece of seam ``block`` held by ``group``."""
        os.makedirs(self.root, exist_ok=True)
        shape = tuple(b - a for a, b in piece)
        path = self._path(block, group) + ".partial"
        data = single_view(pieces, region) if region == piece else None
        if data is not None:  # the whole piece from one array: one write
            with open(path, "wb") as f:
                np.lib.format.write_array(f, np.ascontiguousarray(data), allow_pickle=False)
        else:
            mode = "r+" if region != piece and os.path.exists(path) else "w+"
            mm = np.lib.format.open_memmap(path, mode=mode, dtype=self.dtype, shape=shape)
            gather(pieces, region, mm[local_region(region, [a for a, _ in piece])])
            mm.flush()
            del mm
        n = math.prod(b - a for a, b in region) * self.dtype.itemsize
        self.counters.add(opens=1, runs=1, write_runs=1, bytes_written=n)

    def commit(self, block: BlockIndex, group: int) -> None:
        """Rename the piece into place (no fsync: a piece outlives processes, not the machine)."""
        path = self._path(block, group)
        os.replace(path + ".partial", path)

    def read(self, block: BlockIndex, group: int) -> npt.NDArray[Any]:
        data = np.load(self._path(block, group))
        self.counters.add(opens=1, runs=1, read_runs=1, bytes_read=data.nbytes)
        return data


class GroupSource:
    """The source seen from a group: local block indices and regions, shifted."""

    def __init__(self, source: Any, group: Group) -> None:
        self.source, self.group = source, group
        self.first = tuple(a for a, _ in group.in_blocks)

    def read(
        self,
        block: BlockIndex,
        region: Region,
        out: npt.NDArray[Any],
        staging: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        glob = tuple(i + f for i, f in zip(block, self.first, strict=True))
        self.source.read(glob, _shift(region, self.group.origin), out, staging)


class GroupTarget:
    """The target seen from a group: whole outputs to the target, seam pieces aside."""

    def __init__(
        self, gp: GroupPlan, group: Group, target: Any, pieces: PieceStore, progress: str
    ) -> None:
        self.gp, self.group, self.target, self.pieces = gp, group, target, pieces
        self.grid = Grid(group.shape, group.out_chunks)
        self.progress = progress
        self.completed: set[BlockIndex] = set()

    def _map(self, block: BlockIndex) -> tuple[BlockIndex, bool]:
        glob = self.group.local_out_block(block)
        return glob, glob in self.gp.seam_of_block

    def write(
        self,
        block: BlockIndex,
        region: Region,
        pieces: Pieces,
        staging: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        origin = self.group.origin
        shifted = [(_shift(r, origin), data) for r, data in pieces]
        glob, seam = self._map(block)
        if seam:
            piece = _shift(self.grid.block_region(block), origin)
            self.pieces.write(glob, self.group.index, piece, _shift(region, origin), shifted)
        else:
            self.target.write(glob, _shift(region, origin), shifted, staging)

    def commit(self, block: BlockIndex) -> None:
        glob, seam = self._map(block)
        if seam:
            self.pieces.commit(glob, self.group.index)
        with open(self.progress, "a") as f:
            f.write(_block_name(block) + "\n")
        self.completed.add(block)


def read_progress(path: str) -> set[BlockIndex]:
    """Local output blocks a group recorded complete (a torn last line is ignored)."""
    if not os.path.exists(path):
        return set()
    done = set()
    with open(path) as f:
        for line in f:
            if line.endswith("\n"):
                done.add(tuple(int(x) for x in line.strip().split(".")))
    return done


@dataclass
class Job:
    """Everything a task needs: picklable (stores hold paths, not handles)."""

    gp: GroupPlan
    source: Any
    target: Any
    state: str
    pieces_root: str

    def group_marker(self, i: int) -> str:
        return os.path.join(self.state, "groups", f"{i}.done")

    def seam_marker(self, j: int) -> str:
        return os.path.join(self.state, "seams", f"{j}.done")

    def piece_store(self) -> PieceStore:
        return PieceStore(self.pieces_root, self.gp.dtype)

    def prepare(self) -> None:
        for sub in ("groups", "seams"):
            os.makedirs(os.path.join(self.state, sub), exist_ok=True)

    def done_groups(self) -> set[int]:
        return {i for i in range(len(self.gp.groups)) if os.path.exists(self.group_marker(i))}

    def done_seams(self) -> set[int]:
        return {j for j in range(len(self.gp.seams)) if os.path.exists(self.seam_marker(j))}


def run_group(job: Job, index: int, blocks: Sequence[npt.NDArray[Any]] = ()) -> int:
    """Rewrite group ``index`` (skipped if done); return the bytes it moved."""
    marker = job.group_marker(index)
    if os.path.exists(marker):
        return 0
    group = job.gp.groups[index]
    source = job.source
    if blocks:
        source = BlockSource(dict(zip(group.input_blocks(), blocks, strict=True)))
    progress = os.path.join(job.state, "groups", f"{index}.progress")
    target = GroupTarget(job.gp, group, job.target, job.piece_store(), progress)
    plan = job.gp.plan_of(group)
    Executor(plan, GroupSource(source, group), target, skip=read_progress(progress)).run()
    _touch(marker)
    return group.size * job.gp.dtype.itemsize


def finish_batch(job: Job, batch: Sequence[int], *deps: Any) -> int:
    """Write the seams of ``batch`` whole from their pieces; return the bytes written."""
    pieces = job.piece_store()
    total = 0
    for j in batch:
        if os.path.exists(job.seam_marker(j)):
            continue
        seam: Seam = job.gp.seams[j]
        parts = [(region, pieces.read(seam.block, g)) for g, region in seam.pieces]
        job.target.write(seam.block, seam.region, parts, None)
        _touch(job.seam_marker(j))
        total += sum(d.nbytes for _, d in parts)
    return total


class BlockSource:
    """Input blocks already in memory (a dask array's chunks), read by region."""

    def __init__(self, blocks: dict[BlockIndex, npt.NDArray[Any]]) -> None:
        self.blocks = blocks
        self.origins: dict[BlockIndex, tuple[int, ...]] = {}

    def read(
        self,
        block: BlockIndex,
        region: Region,
        out: npt.NDArray[Any],
        staging: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        data = self.blocks[block]
        region_shape = tuple(b - a for a, b in region)
        if data.shape == region_shape:
            out[...] = data
            return
        raise ValueError(f"block {block} has shape {data.shape}; expected {region_shape}")


# -- the graph ----------------------------------------------------------------------


def build_graph(
    job: Job,
    name: str,
    block_keys: Callable[[BlockIndex], Any] | None = None,
    skip_groups: set[int] | frozenset[int] = frozenset(),
    skip_seams: set[int] | frozenset[int] = frozenset(),
) -> tuple[dict[Any, Any], list[Any]]:
    """The task graph of ``job``: groups, then finishing batches; returns (graph, keys).

    ``block_keys`` maps an input block to the key of a task computing it (dask array
    sources); groups and seams already done are left out.
    """
    dsk: dict[Any, Any] = {}
    keys: list[Any] = []
    for g in job.gp.groups:
        if g.index in skip_groups:
            continue
        deps = [block_keys(b) for b in g.input_blocks()] if block_keys else []
        key = (f"dask_io-group-{name}", g.index)
        dsk[key] = (run_group, job, g.index, [*deps]) if deps else (run_group, job, g.index)
        keys.append(key)
    for j, batch in enumerate(job.gp.batches):
        todo = tuple(i for i in batch if i not in skip_seams)
        if not todo:
            continue
        groups = sorted({g for i in todo for g in job.gp.seams[i].groups})
        deps = [(f"dask_io-group-{name}", g) for g in groups if g not in skip_groups]
        key = (f"dask_io-finish-{name}", j)
        dsk[key] = (finish_batch, job, todo, *deps)
        keys.append(key)
    return dsk, keys


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None else None  # type: ignore[attr-defined]
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def _want_progress(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    return _in_notebook() or sys.stderr.isatty()


def run_local(
    dsk: dict[Any, Any], keys: list[Any], scheduler: str, num_workers: int, progress: bool | None
) -> list[Any]:
    """Run the graph on Dask's synchronous or threaded scheduler, with a tqdm bar."""
    import dask
    from dask.callbacks import Callback

    n_ours = len(keys)
    with contextlib.ExitStack() as stack:
        callbacks = []
        if _want_progress(progress):
            bar = stack.enter_context(_tqdm(n_ours))
            ours = set(keys)

            def posttask(key: Any, *args: Any) -> None:
                if key in ours:
                    bar.update(1)

            callbacks.append(Callback(posttask=posttask))
        with contextlib.ExitStack() as cbs:
            for cb in callbacks:
                cbs.enter_context(cb)
            if scheduler == "synchronous":
                return list(dask.get(dsk, keys))
            return list(dask.threaded.get(dsk, keys, num_workers=num_workers))


@contextlib.contextmanager
def _tqdm(total: int) -> Iterator[Any]:
    from tqdm import tqdm

    bar = tqdm(total=total, desc="dask_io.rechunk", unit="task")
    try:
        yield bar
    finally:
        bar.close()


def run_distributed(
    dsk: dict[Any, Any], keys: list[Any], client: Any, progress: bool | None
) -> list[Any]:
    """Submit the graph to a ``distributed.Client`` and wait, showing progress."""
    futures = client.get(dsk, keys, sync=False)
    try:
        if _want_progress(progress):
            _distributed_progress(client, futures)
        return list(client.gather(futures))
    finally:
        for f in futures:
            f.release()


def _distributed_progress(client: Any, futures: list[Any]) -> None:
    from distributed import as_completed

    if _in_notebook():
        try:
            import ipywidgets  # noqa: F401
            from distributed import progress

            progress(futures, notebook=True)
            return
        except ImportError:
            pass
    with _tqdm(len(futures)) as bar:
        for _ in as_completed(futures):
            bar.update(1)
