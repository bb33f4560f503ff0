"""``dask_io.rechunk``: rechunker's interface, run by the distributed keep algorithm.

``rechunk(source, target_chunks, target_store, max_mem)`` returns a lazy
:class:`Rechunk`: ``.plan`` is the exact cost table (nothing is read to make it),
``.execute()`` runs it on the synchronous or threaded scheduler or on a
``distributed.Client``. The target is a Zarr array (format 2 or 3, sharded or not)
built in ``<target>.dask_io-tmp`` and moved into place at the end; an interrupted
job resumes from what that folder holds.
"""

from __future__ import annotations

import html
import json
import math
import os
import shutil
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from dask_io.errors import InsufficientMemoryError, InvalidChunksError, StoreMismatchError
from dask_io.execute import distributed as dx
from dask_io.plan.grid import Grid, normalize_chunks, region_slices
from dask_io.plan.groups import GroupPlan, plan_groups
from dask_io.plan.ops import BlockIndex, Region
from dask_io.plan.units import format_bytes, parse_bytes
from dask_io.storage.base import IOCounters, region_nbytes
from dask_io.storage.direct import enabled as direct_enabled
from dask_io.storage.files import TMP_SUFFIX, fsync_dir, fsync_path, io_errors, read_json_state
from dask_io.storage.lock import target_lock
from dask_io.storage.state import stable_token
from dask_io.storage.zarr_store import JOURNAL, PROGRESS, ZarrStore, regular_chunks

__all__ = ["Rechunk", "rechunk"]

EXECUTORS = ("synchronous", "threads")

# -- sources --------------------------------------------------------------------------

_H5_HANDLES: dict[tuple[str, str], Any] = {}
_H5_LOCK = threading.Lock()


class ArraySource:
    """An array with numpy slicing (a zarr or numpy array) read by region; picklable.

    A zarr array decodes straight into ``out`` (no array of its own, no copy).
    """

    def __init__(self, array: Any, grid: Grid, layout: str) -> None:
        self.array, self.grid, self.layout = array, grid, layout
        self.dtype = np.dtype(array.dtype)
        self.counters = IOCounters()
        self.into = type(array).__module__.split(".")[0] == "zarr"

    def read(
        self,
        block: BlockIndex,
        region: Region,
        out: npt.NDArray[Any],
        staging: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        if self.into and out.dtype == self.dtype:
            from zarr.core.buffer import default_buffer_prototype

            nd = default_buffer_prototype().nd_buffer.from_numpy_array(out)
            self.array.get_basic_selection(region_slices(region), out=nd)
        else:
            out[...] = self.array[region_slices(region)]
        self.counters.add(
            opens=1, runs=1, read_runs=1, bytes_read=region_nbytes(region, self.dtype.itemsize)
        )


class H5Source:
    """An h5py dataset reopened by (file, dataset name) in each process.

    h5py objects cannot be pickled: handles are cached per process behind a lock,
    as xarray's ``CachingFileManager`` and ``HDF5_LOCK`` do.
    """

    def __init__(self, filename: str, name: str, grid: Grid, dtype: Any, layout: str) -> None:
        self.filename, self.name, self.grid, self.layout = filename, name, grid, layout
        self.dtype = np.dtype(dtype)
        self.counters = IOCounters()

    def read(
        self,
        block: BlockIndex,
        region: Region,
        out: npt.NDArray[Any],
        staging: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        import h5py

        key = (self.filename, self.name)
        with _H5_LOCK:
            if key not in _H5_HANDLES:
                _H5_HANDLES[key] = h5py.File(self.filename, "r")
            out[...] = _H5_HANDLES[key][self.name][region_slices(region)]
        self.counters.add(
            opens=1, runs=1, read_runs=1, bytes_read=region_nbytes(region, self.dtype.itemsize)
        )


def slab_chunks(
    shape: Sequence[int], out_chunks: Sequence[Sequence[int]], itemsize: int, slab_bytes: int
) -> tuple[tuple[int, ...], ...]:
    """A virtual input grid for an unchunked source: slabs along axis 0.

    Slabs are contiguous in C order, end on output block boundaries and hold about
    ``slab_bytes`` each (at least one output block), so every cut between them is clean.

    >>> slab_chunks((10, 4), ((3, 3, 3, 1), (4,)), 1, 24)
    ((6, 4), (4,))
    """
    row = math.prod(shape[1:]) * itemsize
    lengths: list[int] = []
    current = 0
    for c in out_chunks[0]:
        if current and (current + c) * row > slab_bytes:
            lengths.append(current)
            current = 0
        current += c
    lengths.append(current)
    return (tuple(lengths), *((int(r),) for r in shape[1:]))


def _open_source(source: Any, out_chunks: tuple[tuple[int, ...], ...], max_mem: int) -> Any:
    """A store over ``source``, or the dask array itself."""
    kind = type(source).__module__.split(".")[0]
    if not (hasattr(source, "shape") and hasattr(source, "dtype")):
        kind = "unknown"
    if kind == "zarr":
        return ArraySource(source, Grid.from_chunks(source.shape, source.chunks), "chunked")
    if kind == "h5py":
        shape, itemsize = tuple(source.shape), source.dtype.itemsize
        if source.chunks is not None:
            grid, layout = Grid.from_chunks(shape, source.chunks), "chunked"
        else:
            grid = Grid(shape, slab_chunks(shape, out_chunks, itemsize, max_mem // 4))
            layout = "contiguous"
        return H5Source(source.file.filename, source.name, grid, source.dtype, layout)
    if kind == "dask":
        return source
    if isinstance(source, np.ndarray):
        shape, itemsize = source.shape, source.dtype.itemsize
        grid = Grid(shape, slab_chunks(shape, out_chunks, itemsize, max_mem // 4))
        return ArraySource(source, grid, "contiguous")
    raise InvalidChunksError(
        f"source of type {type(source).__name__} is not supported; expected a zarr array, "
        "an h5py dataset, a numpy or dask array, or an xarray Dataset or DataArray"
    )


# -- one array ------------------------------------------------------------------------


@dataclass
class ArrayJob:
    """The rechunk of one array into ``path``: its plan, source and target options."""

    name: str
    path: str
    source: Any
    out_chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    zarr_format: int
    gp: GroupPlan
    dims: tuple[str, ...] | None = None
    attrs: dict[str, Any] | None = None
    budget: int = 0  # max_mem: what the tasks of one process reserve from

    @property
    def is_dask(self) -> bool:
        return type(self.source).__module__.split(".")[0] == "dask"

    @property
    def work(self) -> str:
        return self.path + TMP_SUFFIX

    @property
    def state(self) -> str:
        return os.path.join(self.work, dx.STATE_DIR)

    def fingerprint(self) -> dict[str, Any]:
        return {
            "shape": list(self.gp.shape),
            "dtype": self.gp.dtype.str,
            "chunks": list(self.out_chunks),
            "shards": list(self.shards or []),
            "zarr_format": self.zarr_format,
            "cuts": [list(c) for c in self.gp.cuts],
        }

    def resume_key(self) -> dict[str, Any]:
        """What names this job's resume state: target, source and plan (stable across
        processes: a re-run in a new process finds the state of an interrupted one)."""
        return {"target": self.path, "source": _source_id(self.source), **self.fingerprint()}

    def check_existing(self) -> None:
        """Refuse a target that holds an array of another shape, dtype or chunks."""
        if not os.path.exists(self.path):
            return
        import zarr

        try:
            arr = zarr.open_array(self.path, mode="r")
        except Exception:
            raise StoreMismatchError(
                f"target {self.path!r} exists and is not a Zarr array; expected an empty "
                "location or a Zarr array of the same shape and dtype"
            ) from None
        if tuple(arr.shape) != self.gp.shape or arr.dtype != self.gp.dtype:
            raise StoreMismatchError(
                f"target {self.path!r} holds an array of shape {tuple(arr.shape)} and dtype "
                f"{arr.dtype}; expected shape {self.gp.shape} and dtype {self.gp.dtype}"
            )

    def open_target(self, pieces_root: str) -> dx.Job:
        """Create the work array, or reopen it when it holds this job's progress."""
        marker = os.path.join(self.state, "job.json")
        resumable = False
        if os.path.exists(marker):
            resumable = read_json_state(marker, "job marker") == self.resume_key()
        if resumable:
            target = ZarrStore.resume(self.path)
        else:
            target = self._create()
            os.makedirs(self.state, exist_ok=True)
            with open(marker, "w") as f:
                json.dump(self.resume_key(), f)
        source = None if self.is_dask else self.source
        job = dx.Job(self.gp, source, target, self.state, pieces_root, self.budget)
        job.prepare()
        return job

    def _create(self) -> ZarrStore:
        import zarr

        if os.path.exists(self.work):
            shutil.rmtree(self.work)
        grid = self.gp.out_grid
        target = ZarrStore(self.path, grid, self.gp.dtype, writable=True)
        kwargs: dict[str, Any] = {}
        if self.dims is not None and self.zarr_format == 3:
            kwargs["dimension_names"] = self.dims
        arr = zarr.create_array(
            target.work_path,
            shape=self.gp.shape,
            dtype=self.gp.dtype,
            chunks=self.out_chunks,
            shards=self.shards,
            compressors=None,
            fill_value=None if self.dims is not None and self.zarr_format == 2 else 0,
            zarr_format=self.zarr_format,
            overwrite=True,
            **kwargs,  # type: ignore[arg-type]
        )
        attrs = dict(self.attrs or {})
        if self.dims is not None and self.zarr_format == 2:
            attrs["_ARRAY_DIMENSIONS"] = list(self.dims)
        if attrs:
            arr.attrs.update(attrs)
        target.write_progress()
        return target

    def finalize(self, job: dx.Job) -> None:
        """Drop the job state and the pieces, then move the array into place."""
        shutil.rmtree(self.state, ignore_errors=True)
        shutil.rmtree(job.pieces_root, ignore_errors=True)
        if os.path.exists(self.path):
            shutil.rmtree(self.path)
        _finalize(job.target)

    def summary(self) -> dict[str, Any]:
        s = self.gp.summary()
        return {
            "array": self.name,
            "shape": self.gp.shape,
            "dtype": str(self.gp.dtype),
            "source chunks": self.gp.in_grid.block_shape,
            "target chunks": self.out_chunks,
            "shards": self.shards,
            **s,
        }


def _source_id(store: Any) -> Any:
    """A description of a source that is the same in every process: the file or store
    root of zarr and h5py sources; the kind only for numpy and dask arrays."""
    if isinstance(store, H5Source):
        return ["h5py", os.path.abspath(store.filename), store.name]
    array = getattr(store, "array", None)
    zstore = getattr(array, "store", None)
    if zstore is not None:
        root = getattr(zstore, "root", None) or getattr(
            getattr(zstore, "_store", None), "root", None
        )
        if root is not None:
            return ["zarr", os.path.abspath(os.fspath(root)), str(getattr(array, "path", ""))]
    return [type(array if array is not None else store).__module__.split(".")[0]]


def _finalize(target: ZarrStore) -> None:
    """Drop the progress files and the temporary chunk files of killed writers, fsync
    every file (in parallel: fsync releases the GIL), and move the array into place."""
    from concurrent.futures import ThreadPoolExecutor

    work = target.work_path
    for name in (PROGRESS, JOURNAL):
        if os.path.exists(os.path.join(work, name)):
            os.remove(os.path.join(work, name))
    target.discard_partial()
    files = [os.path.join(root, n) for root, _, names in os.walk(work) for n in names]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(fsync_path, files))
    target.close()
    os.replace(work, target.path)
    fsync_dir(os.path.dirname(os.path.abspath(target.path)))


def _norm_target_chunks(
    chunks: Any, shape: tuple[int, ...], dims: tuple[str, ...] | None
) -> tuple[int, ...]:
    """Target chunks as ints; dicts by dimension name and None/-1 (whole axis) accepted."""
    if isinstance(chunks, Mapping):
        if dims is None:
            raise InvalidChunksError(
                f"target_chunks={chunks!r} names dimensions; the source has none"
            )
        chunks = tuple(chunks.get(d, r) for d, r in zip(dims, shape, strict=True))
    if isinstance(chunks, int):
        chunks = (chunks,) * len(shape)
    chunks = tuple(r if c is None or c == -1 else c for c, r in zip(chunks, shape, strict=False))
    return regular_chunks(Grid(shape, normalize_chunks(chunks, shape, "target_chunks")))


def _plan_array(
    name: str,
    path: str,
    source: Any,
    chunks: Any,
    max_mem: int,
    n_workers: int,
    options: Mapping[str, Any],
    dims: tuple[str, ...] | None = None,
    attrs: dict[str, Any] | None = None,
) -> ArrayJob:
    if not (hasattr(source, "shape") and hasattr(source, "dtype")):
        _open_source(source, (), max_mem)  # raises the message naming what is supported
    shape = tuple(int(s) for s in source.shape)
    out_chunks = _norm_target_chunks(chunks, shape, dims)
    shards = options.get("shards")
    if isinstance(shards, Mapping):  # by dimension name; a dimension not named: one chunk
        if dims is None:
            raise InvalidChunksError(f"shards={shards!r} names dimensions; the source has none")
        shards = tuple(shards.get(d, c) for d, c in zip(dims, out_chunks, strict=True))
    zarr_format = int(options.get("zarr_format", 3))
    unit = out_chunks if shards is None else tuple(int(s) for s in shards)
    if shards is not None and zarr_format != 3:
        raise InvalidChunksError(f"shards={shards!r} needs zarr_format=3, not {zarr_format}")
    out_grid = Grid.from_chunks(shape, unit, "shards" if shards else "target_chunks")
    store = _open_source(source, out_grid.chunks, max_mem)
    is_dask = type(store).__module__.split(".")[0] == "dask"
    in_chunks = store.chunks if is_dask else store.grid.chunks
    layout = ("chunked" if is_dask else store.layout, "chunked")
    cap = max_mem // 2 if is_dask else None
    # plan within what a task may use beyond its overheads; when no plan fits that,
    # plan at max_mem (the task then reserves the whole budget and runs alone)
    reduced = _plan_budget(max_mem, store, in_chunks, unit, source.dtype, shards is None)
    for budget in (reduced, max_mem):
        try:
            gp = plan_groups(
                shape,
                in_chunks,
                unit,
                source.dtype,
                budget,
                n_workers=n_workers,
                group_cap=cap,
                layout=layout,
            )
            gp.plan_of(max(gp.groups, key=lambda g: g.size))  # raises if groups cannot plan
            break
        except InsufficientMemoryError:
            if budget == max_mem:
                raise
    return ArrayJob(
        name,
        path,
        store,
        out_chunks,
        None if shards is None else unit,
        zarr_format,
        gp,
        dims,
        attrs,
        max_mem,
    )


def _plan_budget(
    max_mem: int,
    store: Any,
    in_chunks: tuple[tuple[int, ...], ...],
    unit: tuple[int, ...],
    dtype: Any,
    direct_chunks: bool,
) -> int:
    """What the group plans may use of ``max_mem``: the rest is what a task holds
    beyond its plan (:func:`~dask_io.execute.distributed.group_overhead`), so a task's
    reservation, plan peak plus overhead, fits the budget."""
    itemsize = np.dtype(dtype).itemsize
    in_block = math.prod(max(c) for c in in_chunks) * itemsize
    out_block = math.prod(unit) * itemsize
    decodes = type(store).__module__.split(".")[0] != "dask" and getattr(store, "into", True)
    direct_chunks = direct_chunks and direct_enabled()
    extra = dx.group_overhead(in_block, out_block, max_mem, direct_chunks, bool(decodes))
    return max(max_mem - extra, 1)


def _arrays_of(source: Any, target_chunks: Any) -> list[tuple[str, Any, Any, Any, Any]]:
    """(name, data, chunks, dims, attrs) per array; an xarray Dataset gives one per variable."""
    kind = type(source).__module__.split(".")[0]
    if kind != "xarray":
        return [("", source, target_chunks, None, None)]
    if hasattr(source, "data_vars"):
        out = []
        for name, var in source.variables.items():
            chunks = (
                target_chunks.get(name, target_chunks)
                if isinstance(target_chunks, Mapping)
                else target_chunks
            )
            if isinstance(chunks, Mapping):
                chunks = {d: c for d, c in chunks.items() if d in var.dims}
            out.append((str(name), var.data, chunks, tuple(map(str, var.dims)), dict(var.attrs)))
        return out
    return [("", source.data, target_chunks, tuple(map(str, source.dims)), dict(source.attrs))]


# -- the job ---------------------------------------------------------------------------


def _resolve_executor(executor: Any) -> tuple[str, Any, int]:
    if executor is None:
        try:
            from distributed import default_client

            executor = default_client()
        except (ImportError, ValueError):
            executor = "threads"
    if isinstance(executor, str):
        if executor not in EXECUTORS:
            raise InvalidChunksError(
                f"executor={executor!r} is unknown; expected 'threads', 'synchronous', "
                "a distributed.Client or None"
            )
        n = 1 if executor == "synchronous" else (os.cpu_count() or 1)
        return executor, None, n
    if hasattr(executor, "nthreads") and hasattr(executor, "get"):
        return "distributed", executor, max(1, sum(executor.nthreads().values()))
    raise InvalidChunksError(
        f"executor={executor!r} is unknown; expected 'threads', 'synchronous', "
        "a distributed.Client or None"
    )


def _target_path(target_store: Any) -> str:
    if isinstance(target_store, (str, os.PathLike)):
        return os.path.abspath(os.fspath(target_store))
    root = getattr(target_store, "root", None)
    if root is not None:
        return os.path.abspath(os.fspath(root))
    raise InvalidChunksError(
        f"target_store={target_store!r} is not supported; expected a path or a zarr LocalStore "
        "(every worker must reach it)"
    )


class Rechunk:
    """A planned rechunk; nothing is read or written until :meth:`execute`."""

    def __init__(
        self,
        source: Any,
        target_chunks: Any,
        target_store: Any,
        max_mem: Any,
        temp_store: Any = None,
        executor: Any = None,
        target_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.max_mem = parse_bytes(max_mem)
        self.kind, self.client, self.n_workers = _resolve_executor(executor)
        self.path = _target_path(target_store)
        self.temp_path = None if temp_store is None else _target_path(temp_store)
        self.is_dataset = hasattr(source, "data_vars")
        options = dict(target_options or {})
        self.arrays = [
            _plan_array(
                name,
                os.path.join(self.path, name) if name else self.path,
                data,
                chunks,
                self.max_mem,
                self.n_workers,
                options,
                dims,
                attrs,
            )
            for name, data, chunks, dims, attrs in _arrays_of(source, target_chunks)
        ]
        for a in self.arrays:
            a.check_existing()

    @property
    def plan(self) -> CostTable:
        """The exact cost table: one row per array (groups, seams, reads, writes, memory)."""
        return CostTable([a.summary() for a in self.arrays], self.max_mem)

    def execute(self, progress: bool | None = None) -> Any:
        """Run the rechunk; return the target (a zarr array, or a zarr group for a Dataset).

        Calling it again after an interruption redoes only the unfinished outputs.
        """
        with target_lock(self.path), io_errors(self.path):
            return self._execute(progress)

    def _execute(self, progress: bool | None) -> Any:
        import zarr

        if self.is_dataset:
            zarr.open_group(self.path, mode="a", zarr_format=self.arrays[0].zarr_format)
        dsk: dict[Any, Any] = {}
        keys: list[Any] = []
        jobs = []
        for n, a in enumerate(self.arrays):
            job = a.open_target(self._pieces_root(a, n))
            jobs.append(job)
            graph, ks = self._graph(a, job, n)
            dsk.update(graph)
            keys.extend(ks)
        if keys:
            self._run(dsk, keys, progress)
        for a, job in zip(self.arrays, jobs, strict=True):
            a.finalize(job)
        if self.is_dataset:
            if self.arrays[0].zarr_format == 2:  # format 3 has no consolidated metadata yet
                zarr.consolidate_metadata(self.path)
            return zarr.open_group(self.path, mode="r")
        return zarr.open_array(self.path, mode="r")

    def _pieces_root(self, a: ArrayJob, n: int) -> str:
        if self.temp_path is None:
            return os.path.join(a.state, "pieces")
        token = stable_token(a.resume_key())
        return os.path.join(self.temp_path, f"dask_io-{token}-{n}")

    def _graph(self, a: ArrayJob, job: dx.Job, n: int) -> tuple[dict[Any, Any], list[Any]]:
        from dask.base import tokenize

        name = tokenize(a.path, a.fingerprint(), n)
        block_keys = None
        dsk: dict[Any, Any] = {}
        done_groups, done_seams = job.done_groups(), job.done_seams()
        if a.is_dask:
            x = a.source
            dsk.update(dict(x.__dask_graph__()))

            def block_keys(b: BlockIndex) -> Any:
                return (x.name, *b)

        graph, keys = dx.build_graph(job, name, block_keys, done_groups, done_seams)
        dsk.update(graph)
        return dsk, keys

    def _run(self, dsk: dict[Any, Any], keys: list[Any], progress: bool | None) -> None:
        if self.kind == "distributed":
            dx.run_distributed(dsk, keys, self.client, progress)
        else:
            dx.run_local(dsk, keys, self.kind, self.n_workers, progress)

    def __repr__(self) -> str:
        lines = [
            f"<dask_io.Rechunk to {self.path!r}, executor={self.kind} "
            f"({self.n_workers} workers), max_mem={format_bytes(self.max_mem)}>"
        ]
        for row in self.plan.rows:
            lines.append("  " + _row_text(row))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = (
            f"<p><b>dask_io.Rechunk</b> to <code>{html.escape(self.path)}</code>, "
            f"executor={self.kind} ({self.n_workers} workers)</p>"
        )
        return head + self.plan._repr_html_()


def _row_text(row: Mapping[str, Any]) -> str:
    name = f"{row['array']}: " if row["array"] else ""
    return (
        f"{name}{row['shape']} {row['dtype']} {row['source chunks']} -> {row['target chunks']}"
        f"{' shards ' + str(row['shards']) if row['shards'] else ''}: {row['groups']} groups, "
        f"{row['seams']} seams ({row['pieces']} pieces, "
        f"{format_bytes(row['extra_bytes'])} intermediate I/O), {row['reads']} reads, "
        f"{row['writes']} writes, peak {format_bytes(row['peak_mem'])} per task"
    )


class CostTable:
    """The cost table of a rechunk, one row per array; readable as text and HTML."""

    COLUMNS = (
        "array",
        "shape",
        "dtype",
        "source chunks",
        "target chunks",
        "shards",
        "groups",
        "seams",
        "pieces",
        "finish_tasks",
        "reads",
        "writes",
        "piece_writes",
        "piece_reads",
        "extra_bytes",
        "peak_mem",
    )

    def __init__(self, rows: list[dict[str, Any]], max_mem: int) -> None:
        self.rows, self.max_mem = rows, max_mem

    def __getitem__(self, key: str) -> Any:
        """A column summed over arrays (numbers) or as a list (the rest)."""
        values = [r[key] for r in self.rows]
        return sum(values) if all(isinstance(v, int) for v in values) else values

    def __repr__(self) -> str:
        return "\n".join(
            [f"max_mem {format_bytes(self.max_mem)} per task", *(_row_text(r) for r in self.rows)]
        )

    def _repr_html_(self) -> str:
        def cell(k: str, v: Any) -> str:
            text = format_bytes(v) if k in ("extra_bytes", "peak_mem") else str(v)
            return f"<td>{html.escape(text)}</td>"

        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.COLUMNS)
        body = "".join(
            "<tr>" + "".join(cell(c, r[c]) for c in self.COLUMNS) + "</tr>" for r in self.rows
        )
        return f"<table><tr>{head}</tr>{body}</table>"


def rechunk(
    source: Any,
    target_chunks: Any,
    target_store: Any,
    max_mem: int | str,
    temp_store: Any = None,
    executor: Any = None,
    *,
    target_options: Mapping[str, Any] | None = None,
) -> Rechunk:
    """Plan the rechunk of ``source`` into a Zarr array at ``target_store``.

    Parameters
    ----------
    source : zarr.Array, h5py.Dataset, numpy or dask array, xarray Dataset or DataArray,
        or the path of a NIfTI file (``.nii``, ``.nii.gz``; axes in on-disk order)
    target_chunks : tuple of int, or dict by dimension name (xarray); for a Dataset
        also a dict by variable name. ``None`` or ``-1`` keeps an axis whole.
    target_store : str, os.PathLike or zarr.storage.LocalStore
        Where the Zarr array (or, for a Dataset, group) is written. An existing
        array there of another shape or dtype is refused before anything is written.
    max_mem : int or str
        Memory budget of one process (the local process, or each distributed worker
        process), e.g. ``"1GiB"``: every task reserves what it holds from one ledger
        of this size (:mod:`dask_io.execute.ledger`), so a process runs only as many
        tasks at once as fit, and its groups are planned within ``max_mem`` minus
        what a task holds beyond its plan.
    temp_store : str, optional
        Folder for the intermediate pieces (made only if the plan has seams,
        deleted afterwards); default inside the target's work folder.
    executor : "threads", "synchronous", distributed.Client or None
        None uses the default distributed client if there is one, else threads.
    target_options : dict, optional
        ``zarr_format`` (2 or 3, default 3) and ``shards`` (a shard shape, format 3;
        a dict by dimension name for xarray sources).

    Returns
    -------
    Rechunk
        Lazy: ``.plan`` is the cost table, ``.execute()`` runs it.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> x = np.arange(24, dtype="uint8").reshape(4, 6)
    >>> path = os.path.join(tempfile.mkdtemp(), "t.zarr")
    >>> job = rechunk(x, (2, 3), path, "1MiB", executor="synchronous")
    >>> bool((job.execute()[:] == x).all())
    True
    """
    if isinstance(source, (str, os.PathLike)):  # a NIfTI file (.nii, .nii.gz)
        from dask_io.storage.nifti import nifti_array

        source = nifti_array(os.fspath(source))
    return Rechunk(
        source, target_chunks, target_store, max_mem, temp_store, executor, target_options
    )
