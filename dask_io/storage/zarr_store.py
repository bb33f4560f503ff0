"""Zarr arrays (zarr >= 3; formats 2 and 3, sharded or not) as stores.

A block is a chunk, or a shard for sharded arrays (the shard is the unit zarr writes).
The layout is ``"chunked"``: each block touched is one open and one run, and writing
part of a block already holding data makes zarr read it back first (counted in
``rmw_bytes``). Counts are computed from the geometry: zarr does the file access.

As a target, the array is built in ``<path>.dask_io-tmp``, with a progress file
listing the blocks complete, and renamed into place at the end.

Whole-chunk writes bypass zarr when the array allows it (:class:`ChunkFiles`): an
uncompressed, unsharded, C-order array of little-endian (or single-byte) numbers on a
local directory stores each chunk as the raw bytes of the full chunk shape (edge chunks
padded with the fill value), so the store writes those bytes itself, page-aligned
pages with ``O_DIRECT`` (:mod:`dask_io.storage.direct`), to a temporary name renamed to
the chunk's key. Writing new page-cache pages is what zarr's own write path spends
most of its time on (the kernel's per-page cost, ~2.6 ns per byte on the benchmark
machine). Partial-chunk writes, reads and every other array go through zarr.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from dask_io.errors import InvalidChunksError, StoreMismatchError, StoreNotFoundError
from dask_io.plan.grid import Grid, region_slices
from dask_io.plan.ops import BlockIndex, Region
from dask_io.storage import direct
from dask_io.storage.base import (
    IOCounters,
    Layout,
    Pieces,
    assemble,
    gather,
    local_region,
    region_nbytes,
    single_view,
)
from dask_io.storage.files import (
    TMP_SUFFIX,
    fsync_dir,
    io_errors,
    parse_block_lines,
    read_json_state,
    write_json_atomic,
)

PROGRESS = "dask_io-progress.json"
JOURNAL = "dask_io-done.log"  # one line per committed block, appended as they complete


def is_zarr(path: str) -> bool:
    """Whether ``path`` looks like a Zarr array (v2 or v3 metadata, or a ``.zarr`` name)."""
    meta = ("zarr.json", ".zarray")
    return path.rstrip("/").endswith(".zarr") or any(
        os.path.isfile(os.path.join(path, m)) for m in meta
    )


def regular_chunks(grid: Grid) -> tuple[int, ...]:
    """The regular chunk shape of ``grid``, or InvalidChunksError if it has none."""
    shape = grid.block_shape
    expected = Grid.from_chunks(grid.shape, shape).chunks
    if expected != grid.chunks:
        raise InvalidChunksError(
            f"chunks={grid.chunks} are irregular; a Zarr array needs regular chunks"
        )
    return shape


@dataclass(frozen=True)
class ChunkFiles:
    """Where and how a Zarr array stores its chunks, when they are raw bytes.

    ``root`` is the array's folder, ``chunks`` the (full) chunk shape, ``dtype`` the
    stored dtype, ``fill`` the value edge chunks are padded with and ``key`` the
    metadata's chunk key encoding (``"1.2"``, ``"1/2"``, ``"c/1/2"``, ``"c.1.2"``).
    Build with :func:`chunk_files`.
    """

    root: str
    chunks: tuple[int, ...]
    dtype: np.dtype[Any]
    fill: Any
    key: Callable[[tuple[int, ...]], str]

    def path(self, block: BlockIndex) -> str:
        """The file of chunk ``block``."""
        return os.path.join(self.root, *self.key(tuple(block)).split("/"))


def chunk_files(arr: Any) -> ChunkFiles | None:
    """The :class:`ChunkFiles` of zarr array ``arr``, or None when its chunks are not
    the raw C-order bytes of a local file (compressed, filtered, sharded, transposed,
    big-endian, not a number, or not on a ``LocalStore``)."""
    from zarr.codecs import BytesCodec
    from zarr.storage import LocalStore

    store = getattr(arr, "store", None)
    if not isinstance(store, LocalStore) or getattr(arr, "shards", None) is not None:
        return None
    meta = arr.metadata
    if meta.zarr_format == 2:
        if meta.compressor is not None or meta.filters or meta.order != "C":
            return None
        stored = np.dtype(meta.dtype.to_native_dtype())
    else:
        codecs = tuple(meta.codecs)
        if len(codecs) != 1 or not isinstance(codecs[0], BytesCodec):
            return None
        endian = codecs[0].endian
        stored = np.dtype(arr.dtype)
        if endian is not None and getattr(endian, "value", endian) != "little":
            return None
        if stored.itemsize > 1:
            stored = stored.newbyteorder("<")
    if stored.kind not in "biufc" or sys.byteorder != "little":
        return None
    if stored.itemsize > 1 and stored.byteorder not in ("<", "="):
        return None
    fill = meta.fill_value
    fill = np.zeros((), stored) if fill is None else np.asarray(fill).astype(stored)
    root = os.path.join(str(store.root), *[p for p in str(arr.path).split("/") if p])
    chunks = tuple(int(c) for c in arr.chunks)
    return ChunkFiles(root, chunks, stored.newbyteorder("="), fill, meta.encode_chunk_key)


def _chunk_bytes(files: ChunkFiles) -> int:
    return math.prod(files.chunks) * files.dtype.itemsize


def update_chunk(
    files: ChunkFiles,
    block: BlockIndex,
    chunk_origin: tuple[int, ...],
    region: Region,
    pieces: Pieces,
    made: set[str],
) -> int:
    """Write ``region`` (part of chunk ``block``, whose element 0 is at ``chunk_origin``).

    The chunk's file is read into one page-aligned array of the full chunk shape
    (the fill value when it does not exist yet), ``pieces`` are gathered into it and
    it is written back whole (:func:`write_chunk`): one chunk of memory, where
    zarr's own read-modify-write holds about five (the chunk read, its writable
    copy, the assembled region, the encoded bytes and their copy).
    Returns the number of write calls.
    """
    nbytes = _chunk_bytes(files)
    buf = direct.aligned_empty(nbytes)
    whole = buf.view(files.dtype).reshape(files.chunks)
    path = files.path(block)
    try:
        with open(path, "rb", buffering=0) as f:
            got = f.readinto(memoryview(buf))  # type: ignore[arg-type]
    except FileNotFoundError:
        got = 0
    if got != nbytes:
        whole[...] = files.fill
    gather(pieces, region, whole[local_region(region, chunk_origin)])
    full = tuple((o, o + c) for o, c in zip(chunk_origin, files.chunks, strict=True))
    return write_chunk(files, block, full, [(full, whole)], made)


def write_chunk(
    files: ChunkFiles, block: BlockIndex, region: Region, pieces: Pieces, made: set[str]
) -> int:
    """Write chunk ``block`` (covering ``region`` of the array) whole from ``pieces``.

    The bytes are the full chunk shape in C order, the part outside the array filled
    with the fill value, written to a temporary name in the chunk's folder (whole
    pages with ``O_DIRECT`` when the chunk is at least :data:`direct.MIN_DIRECT`
    bytes) and renamed over the chunk's key. ``made`` caches the folders created.
    Returns the number of write calls.
    """
    path = files.path(block)
    folder = os.path.dirname(path)
    if folder not in made:
        os.makedirs(folder, exist_ok=True)
        made.add(folder)
    full = files.chunks
    nbytes = math.prod(full) * files.dtype.itemsize
    tmp = f"{path}.{os.getpid()}-{threading.get_ident()}{TMP_SUFFIX}"
    with io_errors(tmp):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            dfd = direct.open_direct(tmp) if nbytes >= direct.MIN_DIRECT else None
            try:
                calls = _stream_chunk(files, fd, dfd, region, pieces)
            finally:
                if dfd is not None:
                    os.close(dfd)
        except BaseException:
            os.close(fd)
            os.remove(tmp)
            raise
        os.close(fd)
        os.replace(tmp, path)
    return calls


def _stream_chunk(
    files: ChunkFiles, fd: int, dfd: int | None, region: Region, pieces: Pieces
) -> int:
    """Gather the padded chunk into the bounce buffer slab by slab and write it."""
    full, dtype = files.chunks, files.dtype
    extent = tuple(b - a for a, b in region)
    if extent == full:
        data = single_view(pieces, region)
        if data is not None and data.dtype == dtype:
            return direct.write_array(fd, dfd, data, 0)
    row = math.prod(full[1:]) * dtype.itemsize
    stream = direct.DirectStream(fd, dfd, 0)
    per = stream.capacity // row if row else 0
    if per == 0:  # one row exceeds the bounce buffer: pad a whole copy
        whole = np.empty(full, dtype)
        _fill_padding(whole, extent, files.fill)
        gather(pieces, region, whole[tuple(slice(0, e) for e in extent)])
        return direct.write_array(fd, dfd, whole, 0)
    inside = (slice(None), *(slice(0, e) for e in extent[1:]))
    for j0 in range(0, full[0], per):
        n = min(per, full[0] - j0)
        buf = stream.reserve(n * row).view(dtype).reshape((n, *full[1:]))
        rows = max(0, min(extent[0], j0 + n) - j0)
        if rows < n:
            buf[rows:] = files.fill
        if rows:
            sub = buf[:rows]
            _fill_padding(sub, (rows, *extent[1:]), files.fill)
            lo = region[0][0] + j0
            gather(pieces, ((lo, lo + rows), *region[1:]), sub[inside])
        stream.commit(n * row)
    return stream.close()


def _fill_padding(buf: npt.NDArray[Any], extent: tuple[int, ...], fill: Any) -> None:
    """Fill the part of ``buf`` outside ``extent`` (from the origin) with ``fill``.

    The padding is cut into disjoint slabs, one per axis: axis ``d`` past its extent,
    with axes before it within theirs, so every padded element is written once.
    """
    for d in range(buf.ndim):
        if extent[d] < buf.shape[d]:
            sel = (*(slice(0, e) for e in extent[:d]), slice(extent[d], None))
            buf[sel] = fill


class ZarrStore:
    """A Zarr array, read and written one chunk (or shard) at a time."""

    layout: Layout = "chunked"

    def __init__(self, path: str, grid: Grid, dtype: Any, writable: bool = False) -> None:
        self.path, self.grid = path, grid
        self.shape, self.dtype = grid.shape, np.dtype(dtype)
        self.writable = writable
        self.counters = IOCounters()
        self.completed: set[BlockIndex] = set()
        self.job: dict[str, Any] = {}
        self._arr: Any = None
        self._files: ChunkFiles | bool | None = False  # False: not looked at yet
        self._made: set[str] = set()
        self._touched: set[BlockIndex] = set()
        self._lock = threading.Lock()
        self._progress_time = 0.0

    # -- constructors ------------------------------------------------------------
    @classmethod
    def open(cls, path: str) -> ZarrStore:
        """Open an existing Zarr array for reading."""
        arr = _open_array(path, "r")
        unit = arr.shards or arr.chunks
        store = cls(path, Grid.from_chunks(tuple(arr.shape), unit), arr.dtype)
        store._arr = arr
        return store

    @classmethod
    def create(
        cls,
        path: str,
        grid: Grid,
        dtype: Any,
        zarr_format: int = 3,
        inner_chunks: tuple[int, ...] | None = None,
        job: dict[str, Any] | None = None,
    ) -> ZarrStore:
        """A new array with chunks (or shards, given ``inner_chunks``) ``grid``'s blocks."""
        import zarr

        unit = regular_chunks(grid)
        if inner_chunks is not None and zarr_format != 3:
            raise InvalidChunksError("sharded Zarr arrays need zarr_format=3")
        if inner_chunks is not None and (
            len(inner_chunks) != len(unit)
            or any(s % c for s, c in zip(unit, inner_chunks, strict=False))
        ):
            raise InvalidChunksError(
                f"inner_chunks={tuple(inner_chunks)} must divide the shard shape {unit}"
            )
        store = cls(path, grid, dtype, writable=True)
        store.job = dict(job or {})
        zarr.create_array(
            store.work_path,
            shape=grid.shape,
            dtype=store.dtype,
            chunks=inner_chunks or unit,
            shards=unit if inner_chunks else None,
            compressors=None,
            zarr_format=zarr_format,  # type: ignore[arg-type]
            fill_value=0,
            overwrite=True,
        )
        store.write_progress()
        return store

    @classmethod
    def resume(cls, path: str) -> ZarrStore:
        """Reopen the unfinished target of ``path``, with its blocks already complete."""
        work = path + TMP_SUFFIX
        arr = _open_array(work, "r+")
        unit = arr.shards or arr.chunks
        store = cls(path, Grid.from_chunks(tuple(arr.shape), unit), arr.dtype, writable=True)
        store._arr = arr
        data = read_json_state(os.path.join(work, PROGRESS), "progress file")
        store.job = data.get("job", {})
        store.completed = _listed(os.path.join(work, PROGRESS), data, store.grid)
        store.completed |= _read_journal(os.path.join(work, JOURNAL), True, store.grid)
        return store

    @property
    def work_path(self) -> str:
        return self.path + TMP_SUFFIX if self.writable else self.path

    def _array(self) -> Any:
        if self._arr is None:
            self._arr = _open_array(self.work_path, "r+" if self.writable else "r")
            self.counters.add(meta_opens=1)
        return self._arr

    # -- I/O ----------------------------------------------------------------------
    def read(
        self,
        block: BlockIndex,
        region: Region,
        out: npt.NDArray[Any],
        staging: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        """Read ``region`` of chunk ``block``."""
        out[...] = self._array()[region_slices(region)]
        n = region_nbytes(self.grid.block_region(block), self.dtype.itemsize)
        self.counters.add(opens=1, runs=1, read_runs=1, syscalls=1, bytes_read=n)

    def write(
        self,
        block: BlockIndex,
        region: Region,
        pieces: Pieces,
        staging: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        """Write ``region`` of chunk ``block`` (zarr reads the chunk back if partial)."""
        if not self.writable:
            raise PermissionError(f"store {self.path!r} is open read-only")
        block_region = self.grid.block_region(block)
        whole = region == block_region
        files = self.chunk_files()
        calls = 1
        with io_errors(self.chunk_path(block)):
            if files is None:
                self._array()[region_slices(region)] = assemble(pieces, region, self.dtype)
            elif whole:
                calls = write_chunk(files, block, region, pieces, self._made)
            else:
                origin = tuple(a for a, _ in block_region)
                calls = update_chunk(files, block, origin, region, pieces, self._made)
        if files is not None and whole:
            n = region_nbytes(region, self.dtype.itemsize)  # data bytes, as the plan counts
            with self._lock:
                self._touched.add(block)
            self.counters.add(opens=1, runs=1, write_runs=1, syscalls=calls, bytes_written=n)
            return
        n = region_nbytes(block_region, self.dtype.itemsize)
        with self._lock:
            rmw = n if (not whole and block in self._touched) else 0
            self._touched.add(block)
        runs = 2 if rmw else 1  # a read-modify-write reads the chunk back first
        self.counters.add(
            opens=1, runs=runs, write_runs=runs, syscalls=runs, bytes_written=n, rmw_bytes=rmw
        )

    def chunk_path(self, block: BlockIndex) -> str:
        """The file of block ``block`` (a chunk, or a shard) in the work folder."""
        key = self._array().metadata.encode_chunk_key(tuple(block))
        return os.path.join(self.work_path, *str(key).split("/"))

    def chunk_files(self) -> ChunkFiles | None:
        """Where whole chunks are written directly, or None when zarr must write them.

        Direct writes need a local, uncompressed, unsharded C-order array; they are
        off when ``dask_io.direct-writes`` is false.
        """
        if self._files is False:
            files = chunk_files(self._array())
            self._files = files if files is not None and direct.enabled() else None
        return self._files if isinstance(self._files, ChunkFiles) else None

    # -- progress -------------------------------------------------------------------
    def write_progress(self) -> None:
        """Record the complete blocks in the work directory's progress file."""
        with self._lock:
            done = [list(b) for b in sorted(self.completed)]
        write_json_atomic(
            os.path.join(self.work_path, PROGRESS), {"job": self.job, "completed_blocks": done}
        )
        self._progress_time = time.monotonic()

    def commit(self, block: BlockIndex) -> None:
        """Record ``block`` complete (zarr already wrote it atomically) in the journal."""
        line = (".".join(str(i) for i in block) + "\n").encode()
        journal = os.path.join(self.work_path, JOURNAL)
        with io_errors(journal):
            fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                while line:  # a short write (a full disk) would leave a torn line
                    line = line[os.write(fd, line) :]
            finally:
                os.close(fd)
        with self._lock:
            self.completed.add(block)
        if time.monotonic() - self._progress_time > 0.5:
            self.write_progress()

    def finalize(self) -> None:
        """fsync every file, drop the progress file and move the array into place."""
        os.remove(os.path.join(self.work_path, PROGRESS))
        if os.path.exists(os.path.join(self.work_path, JOURNAL)):
            os.remove(os.path.join(self.work_path, JOURNAL))
        for root, _, files in os.walk(self.work_path):
            for name in files:
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
        self._arr = None
        os.replace(self.work_path, self.path)
        fsync_dir(os.path.dirname(os.path.abspath(self.path)))

    def discard_partial(self) -> list[str]:
        """Remove zarr's own temporary files left by a killed run."""
        removed = []
        for root, _, files in os.walk(self.work_path):
            for name in files:
                if name.endswith(".partial") or name.endswith(TMP_SUFFIX):
                    removed.append(os.path.join(root, name))
                    os.remove(removed[-1])
        return removed

    def close(self) -> None:
        """Drop the zarr array handle of this process."""
        self._arr = None
        self._files = False

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arr"] = None
        state["_files"] = False
        state["_made"] = set()
        state.pop("_lock")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class ZarrTarget(ZarrStore):
    """An existing Zarr array written in place, with no progress files (the graph
    pass's ``to_zarr`` and ``store`` targets: the array is the user's, created by them).

    ``arr`` is the open array; another process reopens it from ``path``.
    """

    def __init__(self, path: str, grid: Grid, dtype: Any, arr: Any = None) -> None:
        super().__init__(path, grid, dtype, writable=True)
        self._arr = arr

    @property
    def work_path(self) -> str:
        return self.path


def _read_journal(path: str, repair: bool = False, grid: Grid | None = None) -> set[BlockIndex]:
    """Blocks listed in a journal; a torn last line (a killed or failed write) is
    ignored, and with ``repair`` cut off, so that the next line appended is whole."""
    if not os.path.exists(path):
        return set()
    numblocks = grid.numblocks if grid is not None else None
    ndim = len(numblocks) if numblocks is not None else 0
    if grid is None:  # no grid to check against: take the first line's length
        with open(path, "rb") as f:
            ndim = len(f.readline().split(b"."))
    done = parse_block_lines(path, ndim, numblocks)
    if repair:
        whole = 0
        with open(path, "rb") as f:
            for line in f:
                if line.endswith(b"\n"):
                    whole += len(line)
        if whole < os.path.getsize(path):
            os.truncate(path, whole)
    return done


def _listed(path: str, data: dict[str, Any], grid: Grid) -> set[BlockIndex]:
    """The ``completed_blocks`` of a manifest or progress file, each checked to be a
    block of ``grid``."""
    listed = data.get("completed_blocks", [])
    out = set()
    for b in listed if isinstance(listed, list) else [listed]:
        ok = isinstance(b, list) and len(b) == len(grid.numblocks)
        ok = ok and all(isinstance(i, int) and 0 <= i < m for i, m in zip(b, grid.numblocks))
        if not ok:
            raise StoreMismatchError(
                f"{path!r} lists {b!r} in completed_blocks; expected block indices below "
                f"{grid.numblocks} (truncated or edited?); pass overwrite=True (--overwrite) "
                "to start again"
            )
        out.add(tuple(b))
    return out


def _open_array(path: str, mode: str) -> Any:
    import zarr

    if not os.path.exists(path):
        raise StoreNotFoundError(f"{path!r} does not exist")
    try:
        return zarr.open_array(path, mode=mode)
    except Exception as e:  # zarr raises several types for unreadable metadata
        raise StoreNotFoundError(f"{path!r} is not a readable Zarr array: {e}") from None


def remove_tree(path: str) -> None:
    """Remove a file or directory tree if it exists."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)
