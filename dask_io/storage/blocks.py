"""Block stores: a directory with one file per block and a JSON manifest.

Layout of a block store ``blocks/``::

    blocks/manifest.json        {"dask_io": "block-store", "version": 1, "format": "npy",
                                 "shape": [...], "chunks": [[...], ...], "dtype": "<u2",
                                 "complete": true | false, "completed_blocks": [[i, j], ...],
                                 "nifti_header": "<base64>"}  (only for a NIfTI source)
    blocks/0.0.npy, 0.1.npy ... one C-order array per block, named by its block index
                                (``.h5`` files with one contiguous dataset ``data`` for
                                the ``hdf5`` format)

While a store is being written, ``complete`` is false and ``completed_blocks`` lists
the blocks already renamed into place; unfinished blocks live under
``<name>.dask_io-tmp``. ``nifti_header`` holds the header region (the bytes before
the voxels, base64) of the NIfTI file the blocks came from; their axes are then in
the file's on-disk order (:mod:`dask_io.storage.nifti`).
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

import numpy as np

from dask_io.errors import StoreMismatchError, StoreNotFoundError
from dask_io.plan.grid import Grid
from dask_io.plan.ops import BlockIndex
from dask_io.storage.files import hdf5_info, read_npy_header, write_json_atomic
from dask_io.storage.raw import RawBlocks
from dask_io.storage.rawio import RawArray
from dask_io.storage.zarr_store import _listed

MANIFEST = "manifest.json"
VERSION = 1
FORMATS = {"npy": ".npy", "hdf5": ".h5"}


def is_block_store(path: str) -> bool:
    """Whether ``path`` is a directory holding a block-store manifest."""
    return os.path.isfile(os.path.join(path, MANIFEST))


def read_manifest(path: str) -> dict[str, Any]:
    """The manifest of the block store at ``path``, checked for the fields it must have."""
    fn = os.path.join(path, MANIFEST)
    try:
        with open(fn) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise StoreNotFoundError(f"{path!r} is not a block store: no {MANIFEST}") from None
    except ValueError as e:
        raise StoreMismatchError(
            f"{fn!r} is not a readable manifest ({e}); expected the JSON object dask_io "
            "writes (truncated or edited?)"
        ) from None
    except OSError as e:
        raise StoreNotFoundError(f"{fn!r} is not a readable manifest: {e}") from None
    if not isinstance(data, dict):
        raise StoreMismatchError(f"{fn!r} holds a JSON {type(data).__name__}; expected an object")
    missing = [k for k in ("format", "shape", "chunks", "dtype") if k not in data]
    if data.get("dask_io") != "block-store" or missing:
        raise StoreMismatchError(
            f"{fn!r} is not a dask_io block-store manifest (missing {missing})"
        )
    if data["format"] not in FORMATS:
        raise StoreMismatchError(
            f"{fn!r} has format={data['format']!r}; expected one of {sorted(FORMATS)}"
        )
    manifest: dict[str, Any] = data
    return manifest


def _header_of(data: dict[str, Any], path: str) -> bytes | None:
    text = data.get("nifti_header")
    if text is None:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise StoreMismatchError(
            f"the manifest of {path!r} has a nifti_header that is not base64"
        ) from None


class BlockStore(RawBlocks):
    """A directory of block files (``npy`` or ``hdf5``) with a manifest.

    Open an existing store with :meth:`open`, start a new one with :meth:`create`.
    """

    def __init__(
        self, path: str, grid: Grid, dtype: Any, kind: str, writable: bool = False
    ) -> None:
        super().__init__(path, grid, dtype, writable)
        self.kind = kind
        self.job: dict[str, Any] = {}
        self.nifti_header: bytes | None = None
        self._manifest_time = 0.0

    # -- constructors ------------------------------------------------------------
    @classmethod
    def open(cls, path: str, check: bool = True) -> BlockStore:
        """Open the complete block store at ``path`` for reading; check every block file."""
        data = read_manifest(path)
        shape = tuple(int(n) for n in data["shape"])
        grid = Grid.from_chunks(shape, tuple(tuple(c) for c in data["chunks"]), "chunks")
        store = cls(path, grid, np.dtype(data["dtype"]), data["format"])
        store.nifti_header = _header_of(data, path)
        if not data.get("complete", False):
            n = len(data.get("completed_blocks", []))
            raise StoreMismatchError(
                f"block store {path!r} is incomplete ({n} of {grid.nblocks} blocks written); "
                "finish the run that writes it first"
            )
        if check:
            store.check_blocks()
        return store

    @classmethod
    def create(
        cls,
        path: str,
        grid: Grid,
        dtype: Any,
        kind: str = "npy",
        job: dict[str, Any] | None = None,
        nifti_header: bytes | None = None,
    ) -> BlockStore:
        """A new, writable block store at ``path`` (the directory may exist and be empty).

        ``nifti_header`` is kept in the manifest: the header region of a NIfTI source.
        """
        store = cls(path, grid, np.dtype(dtype), kind, writable=True)
        store.job = dict(job or {})
        store.nifti_header = nifti_header
        os.makedirs(path, exist_ok=True)
        store.write_manifest(complete=False)
        return store

    @classmethod
    def resume(cls, path: str) -> BlockStore:
        """Reopen an unfinished store for writing: find the blocks already complete."""
        data = read_manifest(path)
        shape = tuple(int(n) for n in data["shape"])
        grid = Grid.from_chunks(shape, tuple(tuple(c) for c in data["chunks"]), "chunks")
        store = cls(path, grid, np.dtype(data["dtype"]), data["format"], writable=True)
        store.job = data.get("job", {})
        store.nifti_header = _header_of(data, path)
        fn = os.path.join(path, MANIFEST)
        done = _listed(fn, data, grid)
        for block in grid.blocks():
            exists = os.path.exists(store.block_path(block))
            if block in done and not exists:
                raise StoreMismatchError(
                    f"{fn!r} lists block {block} as complete but {store.block_path(block)!r} "
                    "does not exist; pass overwrite=True (--overwrite) to start again"
                )
            if exists:
                store._check_block(block)
                store.completed.add(block)
        store._raws.clear()
        return store

    # -- manifest ------------------------------------------------------------------
    def manifest(self, complete: bool) -> dict[str, Any]:
        """The manifest's contents."""
        data: dict[str, Any] = {
            "dask_io": "block-store",
            "version": VERSION,
            "format": self.kind,
            "shape": list(self.shape),
            "chunks": [list(c) for c in self.grid.chunks],
            "dtype": self.dtype.str,
            "complete": complete,
        }
        if self.nifti_header is not None:
            data["nifti_header"] = base64.b64encode(self.nifti_header).decode("ascii")
        if not complete:
            with self._lock:
                data["completed_blocks"] = [list(b) for b in sorted(self.completed)]
            data["job"] = self.job
        return data

    def write_manifest(self, complete: bool) -> None:
        """Rewrite the manifest atomically."""
        write_json_atomic(os.path.join(self.path, MANIFEST), self.manifest(complete))
        self._manifest_time = time.monotonic()

    def _record(self, block: BlockIndex) -> None:
        if time.monotonic() - self._manifest_time > 0.5:
            self.write_manifest(complete=False)

    def finalize(self) -> None:
        """Every block is committed: mark the store complete."""
        missing = self.grid.nblocks - len(self.completed)
        if missing:
            raise RuntimeError(f"{missing} blocks of {self.path!r} were never committed")
        self.write_manifest(complete=True)

    # -- blocks --------------------------------------------------------------------
    def block_path(self, block: BlockIndex) -> str:
        name = ".".join(str(i) for i in block) + FORMATS[self.kind]
        return os.path.join(self.path, name)

    def _locate(self, block: BlockIndex) -> RawArray:
        fn = self.block_path(block)
        if self.kind == "npy":
            raw = read_npy_header(fn)
        else:
            shape, dtype, offset, _ = hdf5_info(fn, self.dataset)
            if offset is None:
                raise StoreMismatchError(
                    f"{fn!r}: dataset {self.dataset!r} is chunked, compressed or unallocated; "
                    "block files must hold one contiguous dataset"
                )
            raw = RawArray(fn, offset, shape, dtype)
        self.counters.add(meta_opens=1)
        return raw

    def _check_block(self, block: BlockIndex) -> None:
        raw = self.raw(block)
        want = tuple(b - a for a, b in self.grid.block_region(block))
        if raw.shape != want or raw.dtype != self.dtype:
            raise StoreMismatchError(
                f"block file {raw.path!r} holds shape {raw.shape} of {raw.dtype}; the manifest "
                f"of {self.path!r} expects shape {want} of {self.dtype}"
            )

    def check_blocks(self) -> None:
        """Check that every block file exists and matches the manifest's shape and dtype."""
        for block in self.grid.blocks():
            self._check_block(block)
