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

Both task kinds of a job without a memory budget run inside :func:`reuse_freed_memory`
(with one, they reserve their bytes from the process ledger instead, and freed memory
goes back to the system), and their large writes bypass
the page cache (``O_DIRECT``, :mod:`dask_io.storage.direct`): on virtual machines a
fresh page, of the heap or of the page cache, costs more than copying into it.

Reliability comes from state on disk, not from task results (which are a few
bytes): a group writes ``groups/<i>.done`` once all it owns is durable, a seam
``seams/<j>.done`` once written, and a group appends every output it completes
to ``groups/<i>.progress``. A task that finds its marker returns at once, so a
task recomputed after a worker died, or a job executed again after the client
was interrupted, redoes only what is not yet on disk.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import io
import math
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from dask_io.execute.executor import Executor
from dask_io.execute.ledger import ledger_for
from dask_io.plan.grid import Grid
from dask_io.plan.groups import Group, GroupPlan, Seam
from dask_io.plan.ops import BlockIndex, Region
from dask_io.storage import direct
from dask_io.storage.base import IOCounters, Pieces, assemble, gather, local_region
from dask_io.storage.files import io_errors, parse_npy_header

STATE_DIR = ".dask_io-job"


def _shift(region: Region, origin: Sequence[int]) -> Region:
    return tuple((a + o, b + o) for (a, b), o in zip(region, origin, strict=True))


def _block_name(block: BlockIndex) -> str:
    return ".".join(str(i) for i in block)


def _touch(path: str, durable: bool = True) -> None:
    """Create the marker ``path`` (fsynced when ``durable``)."""
    if not durable:  # outlives the process, like the data it marks (made durable at the end)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# -- memory -------------------------------------------------------------------------

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_DEFAULT_MMAP_THRESHOLD = 128 * 1024
_MALLOC_LOCK = threading.Lock()
_malloc_users = 0
_libc: Any = None


def _glibc() -> Any:
    """glibc's ``mallopt``/``malloc_trim``, or None (another C library)."""
    global _libc
    if _libc is None:
        _libc = False
        name = ctypes.util.find_library("c")
        if name and sys.platform.startswith("linux"):
            try:
                lib = ctypes.CDLL(name)
                if hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim"):
                    _libc = lib
            except OSError:
                pass
    return _libc or None


@contextlib.contextmanager
def reuse_freed_memory() -> Iterator[None]:
    """Within a task, let glibc hand freed memory to the next allocation.

    A chunk read through zarr arrives in a fresh ``bytes`` object of the chunk's
    size; glibc serves allocations above its mmap threshold (at most 32 MiB) with
    ``mmap`` and returns them with ``munmap``, so every chunk costs a page fault
    per page, on a virtual machine ~0.6 ns per byte, more than the read itself.
    Inside this context allocations come from the heap and freed memory stays
    there for the next chunk (the peak is unchanged: what is kept was in use a
    moment before). On exit the thresholds are set back (``MALLOC_TRIM_THRESHOLD_``
    of the environment, as dask's nanny sets it, or glibc's defaults) and the heap
    is trimmed. Nested and concurrent tasks of one process share one setting.
    Off with dask config ``dask_io.reuse-freed-memory: false``; a no-op without glibc.
    """
    global _malloc_users
    libc = _glibc() if _reuse_enabled() else None
    if libc is None:
        yield
        return
    with _MALLOC_LOCK:
        if _malloc_users == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)
            libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
        _malloc_users += 1
    try:
        yield
    finally:
        with _MALLOC_LOCK:
            _malloc_users -= 1
            if _malloc_users == 0:
                trim = int(os.environ.get("MALLOC_TRIM_THRESHOLD_", 128 * 1024))
                mmap = int(os.environ.get("MALLOC_MMAP_THRESHOLD_", _DEFAULT_MMAP_THRESHOLD))
                libc.mallopt(_M_TRIM_THRESHOLD, trim)
                libc.mallopt(_M_MMAP_THRESHOLD, mmap)
                libc.malloc_trim(0)


_bounded_users = 0
BOUNDED_MMAP_THRESHOLD = 1 << 20


@contextlib.contextmanager
def return_freed_memory() -> Iterator[None]:
    """Within a task under a memory budget, hand freed buffers back to the system.

    glibc raises its mmap threshold each time a large mmapped block is freed (up to
    32 MiB), after which buffers of chunk size come from the heaps of the threads
    that allocated them and stay there when freed: a process running one group at
    a time at max_mem 128 MiB kept ~200 MiB beyond its reservations. A fixed
    threshold of :data:`BOUNDED_MMAP_THRESHOLD` keeps every buffer from 1 MiB up
    in its own mapping, returned on free, so the process holds what its tasks
    reserved (and pays a page fault per page of each new buffer). On exit the
    threshold of the environment (or glibc's default) is set again; a no-op
    without glibc.
    """
    global _bounded_users
    libc = _glibc()
    if libc is None:
        yield
        return
    with _MALLOC_LOCK:
        if _bounded_users == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, BOUNDED_MMAP_THRESHOLD)
        _bounded_users += 1
    try:
        yield
    finally:
        with _MALLOC_LOCK:
            _bounded_users -= 1
            if _bounded_users == 0:
                mmap = int(os.environ.get("MALLOC_MMAP_THRESHOLD_", _DEFAULT_MMAP_THRESHOLD))
                libc.mallopt(_M_MMAP_THRESHOLD, mmap)
                libc.malloc_trim(0)


def _reuse_enabled() -> bool:
    try:
        import dask

        return bool(dask.config.get("dask_io.reuse-freed-memory", True))
    except ImportError:  # pragma: no cover - dask is a dependency
        return True


# -- what a task holds beyond its plan ------------------------------------------------

ZARR_WRITE_COPIES = 5  # zarr's read-modify-write of a chunk: measured ~5.2 chunks held


def write_behind_bytes(max_mem: int) -> int:
    """Piece bytes a group may have in flight under a budget of ``max_mem``."""
    return min(WRITE_BEHIND_BYTES, max_mem // 8)


def write_overhead(block_bytes: int, direct_chunks: bool) -> int:
    """Bytes the target's write of one output block may allocate beyond its pieces:
    the chunk updated in place and the bounce buffer when chunks are raw files
    (:func:`~dask_io.storage.zarr_store.update_chunk`), else zarr's copies."""
    if direct_chunks:
        return block_bytes + min(direct.BOUNCE_BYTES, block_bytes)
    return ZARR_WRITE_COPIES * block_bytes


def group_overhead(
    in_block: int, out_block: int, max_mem: int, direct_chunks: bool, decodes: bool
) -> int:
    """Bytes a group task holds beyond its plan's peak (blocks of ``in_block`` and
    ``out_block`` bytes): a decoded source chunk (zarr reads a chunk's bytes before
    copying them out) or the target's write of a block (one at a time: reads and
    writes alternate), the pieces' write-behind and the bounce buffer a piece too
    large for it is streamed through."""
    decoded = in_block if decodes else 0
    pieces = write_behind_bytes(max_mem) + min(direct.BOUNCE_BYTES, out_block)
    return max(decoded, write_overhead(out_block, direct_chunks)) + pieces


def block_bytes(gp: GroupPlan) -> tuple[int, int]:
    """Bytes of the largest input and output block of ``gp``."""
    dsize = gp.dtype.itemsize
    return math.prod(gp.in_grid.block_shape) * dsize, math.prod(gp.out_grid.block_shape) * dsize


def finish_bytes(gp: GroupPlan, direct_chunks: bool) -> int:
    """Bytes a finishing task holds: two seams (one written, the next read) and a write."""
    out_block = block_bytes(gp)[1]
    return 2 * out_block + write_overhead(out_block, direct_chunks)


def _direct_chunks(target: Any) -> bool:
    files = getattr(target, "chunk_files", None)
    return files is not None and files() is not None


def _freed_memory(job: Job) -> contextlib.AbstractContextManager[Any]:
    """:func:`reuse_freed_memory` for a job without a memory budget,
    :func:`return_freed_memory` for one with a budget.

    Freed heap memory stays in the arena of the thread that freed it (zarr's I/O
    thread, the piece writers, each worker thread), so what the process keeps is
    not bounded by what its tasks reserve: at max_mem 128 MiB on a 256 MiB Zarr
    array it took a LocalCluster worker from 147 to 312 MiB peak RSS.
    """
    return return_freed_memory() if job.max_mem else reuse_freed_memory()


def _reserve(job: Job, nbytes: int) -> contextlib.AbstractContextManager[Any]:
    """Hold ``nbytes`` (at most the whole budget) of the process ledger for a task."""
    if not job.max_mem:
        return contextlib.nullcontext()
    ledger = ledger_for(job.max_mem)
    return ledger.reserve(min(nbytes, ledger.budget))


# -- the intermediate store ------------------------------------------------------------

PIECE_HEADER = direct.ALIGN  # a piece file's data starts on a page boundary
PIECE_DIRECT = 64 * 1024  # pieces from this size on are written with O_DIRECT


def piece_header(shape: tuple[int, ...], dtype: np.dtype[Any]) -> bytes:
    """A ``.npy`` (version 1.0) header padded to :data:`PIECE_HEADER` bytes.

    >>> h = piece_header((2, 3), np.dtype("<u2"))
    >>> len(h), np.lib.format.read_array_header_1_0(io.BytesIO(h[8:]))
    (4096, ((2, 3), False, dtype('uint16')))
    """
    info = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": tuple(shape),
    }
    text = repr(info).encode("latin1")
    room = PIECE_HEADER - 10  # magic (6), version (2), header length (2)
    if len(text) + 1 > room:
        raise ValueError(f"a .npy header for shape {shape} does not fit {PIECE_HEADER} bytes")
    text = text + b" " * (room - len(text) - 1) + b"\n"
    return b"\x93NUMPY\x01\x00" + room.to_bytes(2, "little") + text


def load_npy(path: str) -> npt.NDArray[Any]:
    """Read a ``.npy`` file whole, with ``O_DIRECT`` where the file system allows it.

    The file is read in one call into a page-aligned buffer (no page-cache pages are
    made, which on virtual machines cost more than the read) and the array is a view
    of it after the header. Falls back to buffered reads where ``O_DIRECT`` is refused.
    """
    flag = getattr(os, "O_DIRECT", 0) if direct.enabled() else 0
    try:
        fd = os.open(path, os.O_RDONLY | flag)
    except OSError:
        if not flag:
            raise
        fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        buf = direct.aligned_empty(-(-size // direct.ALIGN) * direct.ALIGN or direct.ALIGN)
        done = 0
        try:
            done = _read_into(fd, buf, size)
        except OSError:  # O_DIRECT refused at read time (some file systems)
            os.close(fd)
            fd = os.open(path, os.O_RDONLY)
            done = _read_into(fd, buf, size)
    finally:
        os.close(fd)
    if done < size:
        raise OSError(f"{path!r}: read {done} of {size} bytes")
    shape, fortran, dtype, offset = parse_npy_header(
        io.BytesIO(buf[: min(size, 1 << 16)].tobytes())
    )
    n = math.prod(shape) * dtype.itemsize
    if fortran or offset + n > size:
        raise OSError(f"{path!r} is not a C-order .npy file of {size} bytes")
    return buf[offset : offset + n].view(dtype).reshape(shape)


def _read_into(fd: int, buf: npt.NDArray[np.uint8], size: int) -> int:
    done = 0
    view = memoryview(buf)  # type: ignore[arg-type]
    while done < size:
        n = os.preadv(fd, [view[done:]], done)
        if n <= 0:
            break
        done += n
    return done


WRITE_BEHIND_BYTES = 32 << 20  # piece bytes a group may have in flight
PIECE_WRITERS = 2  # threads writing pieces (O_DIRECT writes wait on the device)


class PieceStore:
    """The intermediate store: one ``.npy`` file per seam piece, written whole once.

    A piece written in one access has a header padded to a page, so its data starts
    on a page boundary: header and data are gathered into one page-aligned array and
    written by a background thread, whole pages with ``O_DIRECT`` and the tail through
    the page cache, while the group goes on (at most ``behind`` bytes,
    :data:`WRITE_BEHIND_BYTES` by default, in flight; :meth:`commit` waits for the
    piece's write). Pieces are read back with
    ``O_DIRECT`` by :func:`load_npy`. A piece written in parts (when a group's plan
    cannot keep it) is assembled in a ``.partial`` memory map. Either is renamed
    into place on commit.
    """

    def __init__(self, root: str, dtype: Any, behind: int | None = None) -> None:
        self.root, self.dtype = root, np.dtype(dtype)
        self.behind = WRITE_BEHIND_BYTES if behind is None else behind
        self.counters = IOCounters()
        self._pool: Any = None
        self._inflight: dict[tuple[BlockIndex, int], Any] = {}
        self._pending = 0
        self._cv = threading.Condition()
        self._made = False

    def _path(self, block: BlockIndex, group: int) -> str:
        return os.path.join(self.root, f"{_block_name(block)}-g{group}.npy")

    def write(
        self, block: BlockIndex, group: int, piece: Region, region: Region, pieces: Pieces
    ) -> None:
        """Write ``region`` of the piece of seam ``block`` held by ``group``."""
        if not self._made:
            os.makedirs(self.root, exist_ok=True)
            self._made = True
        shape = tuple(b - a for a, b in piece)
        path = self._path(block, group) + ".partial"
        with io_errors(path):
            if region == piece:  # the whole piece: one write
                self._write_whole((block, group), path, shape, region, pieces)
            else:
                self._wait((block, group))
                mode = "r+" if os.path.exists(path) else "w+"
                mm = np.lib.format.open_memmap(path, mode=mode, dtype=self.dtype, shape=shape)
                gather(pieces, region, mm[local_region(region, [a for a, _ in piece])])
                mm.flush()
                del mm
        n = math.prod(b - a for a, b in region) * self.dtype.itemsize
        self.counters.add(opens=1, runs=1, write_runs=1, bytes_written=n)

    def _write_whole(
        self,
        key: tuple[BlockIndex, int],
        path: str,
        shape: tuple[int, ...],
        region: Region,
        pieces: Pieces,
    ) -> None:
        nbytes = math.prod(shape) * self.dtype.itemsize
        size = PIECE_HEADER + nbytes
        if size > self.behind:  # too large to be held while it is written: stream it
            _stream_piece(path, piece_header(shape, self.dtype), region, pieces, self.dtype)
            return
        buf = direct.aligned_empty(size)
        buf[:PIECE_HEADER] = np.frombuffer(piece_header(shape, self.dtype), np.uint8)
        gather(pieces, region, buf[PIECE_HEADER:].view(self.dtype).reshape(shape))
        if nbytes < PIECE_DIRECT:
            _write_file(path, buf, False)
            return
        self._wait(key)
        with self._cv:
            while self._pending and self._pending + size > self.behind:
                self._cv.wait()
            self._pending += size
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(PIECE_WRITERS, "dask_io-piece-writer")
        self._inflight[key] = self._pool.submit(self._write_behind, path, buf)

    def _write_behind(self, path: str, buf: npt.NDArray[np.uint8]) -> None:
        try:
            _write_file(path, buf, True)
        finally:
            with self._cv:
                self._pending -= buf.nbytes
                self._cv.notify_all()

    def _wait(self, key: tuple[BlockIndex, int]) -> None:
        fut = self._inflight.pop(key, None)
        if fut is not None:
            fut.result()

    def close(self) -> None:
        """Wait for the writes in flight (raising the first error) and stop the writers."""
        try:
            for key in list(self._inflight):
                with io_errors(self._path(*key) + ".partial"):
                    self._wait(key)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def commit(self, block: BlockIndex, group: int) -> None:
        """Rename the piece into place once written (no fsync: a piece outlives processes,
        not the machine)."""
        path = self._path(block, group)
        with io_errors(path + ".partial"):
            self._wait((block, group))
            os.replace(path + ".partial", path)

    def remove(self, block: BlockIndex, group: int) -> None:
        """Delete a piece once its seam is written (the folder goes at the end anyway)."""
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._path(block, group))

    def read(self, block: BlockIndex, group: int) -> npt.NDArray[Any]:
        data = load_npy(self._path(block, group))
        self.counters.add(opens=1, runs=1, read_runs=1, bytes_read=data.nbytes)
        return data


def _stream_piece(
    path: str, header: bytes, region: Region, pieces: Pieces, dtype: np.dtype[Any]
) -> None:
    """Write a piece file (``header``, then ``region`` gathered from ``pieces``) through
    the per-thread bounce buffer, slab by slab along axis 0: no copy of the whole piece."""
    shape = tuple(b - a for a, b in region)
    row = math.prod(shape[1:]) * dtype.itemsize
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        dfd = direct.open_direct(path)
        try:
            stream = direct.DirectStream(fd, dfd, 0)
            stream.put(np.frombuffer(header, np.uint8))
            per = max(1, stream.capacity // row) if row else 1
            for lo in range(0, shape[0], per):
                n = min(per, shape[0] - lo)
                if n * row > stream.capacity:  # one row exceeds the bounce buffer
                    part = ((region[0][0] + lo, region[0][0] + lo + n), *region[1:])
                    stream.put(assemble(pieces, part, dtype))
                    continue
                buf = stream.reserve(n * row).view(dtype).reshape((n, *shape[1:]))
                gather(pieces, ((region[0][0] + lo, region[0][0] + lo + n), *region[1:]), buf)
                stream.commit(n * row)
            stream.close()
        finally:
            if dfd is not None:
                os.close(dfd)
    finally:
        os.close(fd)


def _write_file(path: str, buf: npt.NDArray[np.uint8], use_direct: bool) -> None:
    """Write ``buf`` (page-aligned) as the whole file ``path``: whole pages with
    ``O_DIRECT`` when allowed, the rest through the page cache."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        dfd = direct.open_direct(path) if use_direct else None
        head = 0
        if dfd is not None:
            head = buf.nbytes - buf.nbytes % direct.ALIGN
            try:
                _pwrite_all(dfd, buf[:head], 0)
            finally:
                os.close(dfd)
        _pwrite_all(fd, buf[head:], head)
    finally:
        os.close(fd)


def _pwrite_all(fd: int, data: npt.NDArray[np.uint8], pos: int) -> None:
    view = memoryview(data)  # type: ignore[arg-type]
    done = 0
    while done < len(view):
        n = os.pwrite(fd, view[done : done + (1 << 30)], pos + done)
        if n <= 0:
            raise OSError(f"short write at byte {pos + done}")
        done += n


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
    max_mem: int = 0  # the process budget tasks reserve from (0: none)

    def __dask_tokenize__(self) -> Any:
        """A cheap token: the job's state folder names it (and its plan's cuts).

        Dask tokenizes every task's arguments when a graph is submitted; walking a
        large :class:`GroupPlan` (hundreds of thousands of pieces for a 1 TiB plan)
        once per task took seconds before the first task could start.
        """
        gp = self.gp
        return (
            "dask_io.Job",
            self.state,
            self.pieces_root,
            gp.shape,
            gp.dtype.str,
            gp.cuts,
            gp.in_grid.chunks,
            gp.out_grid.chunks,
            len(gp.seams),
        )

    def group_marker(self, i: int) -> str:
        return os.path.join(self.state, "groups", f"{i}.done")

    def seam_marker(self, j: int) -> str:
        return os.path.join(self.state, "seams", f"{j}.done")

    def piece_store(self) -> PieceStore:
        behind = write_behind_bytes(self.max_mem) if self.max_mem else None
        return PieceStore(self.pieces_root, self.gp.dtype, behind)

    def prepare(self) -> None:
        for sub in ("groups", "seams"):
            os.makedirs(os.path.join(self.state, sub), exist_ok=True)

    def done_groups(self) -> set[int]:
        return {i for i in range(len(self.gp.groups)) if os.path.exists(self.group_marker(i))}

    def done_seams(self) -> set[int]:
        return {j for j in range(len(self.gp.seams)) if os.path.exists(self.seam_marker(j))}


def run_group(
    job: Job, index: int, blocks: Sequence[npt.NDArray[Any]] = (), *after: Any
) -> int:
    """Rewrite group ``index`` (skipped if done); return the bytes it moved.

    ``after`` are the results of tasks that must run first (they are not used).

    The task first reserves its plan's peak and :func:`group_overhead` from the
    process ledger, so a process runs only as many groups at once as its budget holds.
    """
    marker = job.group_marker(index)
    if os.path.exists(marker):
        return 0
    group = job.gp.groups[index]
    source = job.source
    decodes = source is not None and bool(getattr(source, "into", True))  # numpy: no copy
    if blocks:
        source = BlockSource(dict(zip(group.input_blocks(), blocks, strict=True)))
    progress = os.path.join(job.state, "groups", f"{index}.progress")
    target = GroupTarget(job.gp, group, job.target, job.piece_store(), progress)
    plan = job.gp.plan_of(group)
    extra = group_overhead(*block_bytes(job.gp), job.max_mem, _direct_chunks(job.target), decodes)
    with _reserve(job, plan.cost.peak_mem + extra), _freed_memory(job):
        try:
            Executor(plan, GroupSource(source, group), target, skip=read_progress(progress)).run()
        finally:
            target.pieces.close()
    _touch(marker)
    return group.size * job.gp.dtype.itemsize


PIECE_READERS = 4  # threads reading pieces (O_DIRECT reads wait on the device)


def finish_batch(job: Job, batch: Sequence[int], *deps: Any) -> int:
    """Write the seams of ``batch`` whole from their pieces; return the bytes written.

    The pieces of the next seam are read (by :data:`PIECE_READERS` threads) while the
    current seam is written, so at most two seams are in memory. A seam's pieces
    are deleted once it is marked done, so the intermediate store shrinks while the
    job runs (and its removal is not left to the end).
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    pieces = job.piece_store()
    todo = [j for j in batch if not os.path.exists(job.seam_marker(j))]
    total = 0

    def submit(j: int) -> list[tuple[Region, Future[npt.NDArray[Any]]]]:
        seam = job.gp.seams[j]
        return [(region, pool.submit(pieces.read, seam.block, g)) for g, region in seam.pieces]

    hold = _reserve(job, finish_bytes(job.gp, _direct_chunks(job.target)))
    with hold, _freed_memory(job), ThreadPoolExecutor(PIECE_READERS, "dask_io-pieces") as pool:
        ahead = submit(todo[0]) if todo else []
        for k, j in enumerate(todo):
            current = ahead
            ahead = submit(todo[k + 1]) if k + 1 < len(todo) else []
            seam: Seam = job.gp.seams[j]
            parts = [(region, fut.result()) for region, fut in current]
            job.target.write(seam.block, seam.region, parts, None)
            _touch(job.seam_marker(j), durable=False)
            total += sum(d.nbytes for _, d in parts)
            del parts, current
            for g, _ in seam.pieces:  # no longer needed: the seam is marked done
                pieces.remove(seam.block, g)
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
    after: Any = None,
) -> tuple[dict[Any, Any], list[Any]]:
    """The task graph of ``job``: groups, then finishing batches; returns (graph, keys).

    ``block_keys`` maps an input block to the key of a task computing it (dask array
    sources); groups and seams already done are left out. Every group waits for the
    task ``after`` when one is given.
    """
    dsk: dict[Any, Any] = {}
    keys: list[Any] = []
    for g in job.gp.groups:
        if g.index in skip_groups:
            continue
        deps = [block_keys(b) for b in g.input_blocks()] if block_keys else []
        key = (f"dask_io-group-{name}", g.index)
        if after is not None:
            dsk[key] = (run_group, job, g.index, [*deps], after)
        elif deps:
            dsk[key] = (run_group, job, g.index, [*deps])
        else:
            dsk[key] = (run_group, job, g.index)
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
