"""Name a source or a target by a path: the format follows from it, or ``format`` says it.

=====================================  =========================================
path                                   store
=====================================  =========================================
``x.npy``                              one ``.npy`` file (:class:`NpyFile`)
``x.h5``, ``x.h5:/path/to/dataset``    one HDF5 dataset (``/data`` by default)
``x.zarr`` (or a Zarr directory)       a Zarr array, format 2 or 3, maybe sharded
``x.nii``, ``x.nii.gz``                a NIfTI volume, axes in on-disk order
                                       (:mod:`dask_io.storage.nifti`)
a directory with ``manifest.json``     a block store (npy or hdf5 block files)
=====================================  =========================================

A target named by any other path is a block store, with ``format`` (``"npy"`` or
``"hdf5"``) choosing its block files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dask_io.errors import (
    InvalidChunksError,
    StoreExistsError,
    StoreMismatchError,
    StoreNotFoundError,
)
from dask_io.plan.grid import Grid
from dask_io.storage.base import Layout
from dask_io.storage.blocks import MANIFEST, BlockStore, is_block_store, read_manifest
from dask_io.storage.files import TMP_SUFFIX, hdf5_info, read_json_state
from dask_io.storage.nifti import NiftiFile, NiftiGzFile, is_gzipped, is_nifti_path, open_nifti
from dask_io.storage.rawio import RawArray
from dask_io.storage.single import HDF5Chunked, HDF5File, NpyFile, split_h5_path
from dask_io.storage.zarr_store import PROGRESS, ZarrStore, is_zarr, remove_tree

FORMATS = ("npy", "hdf5", "zarr")
_H5 = (".h5", ".hdf5", ".hdf")


def is_hdf5_path(path: str) -> bool:
    """Whether ``path`` names an HDF5 file (``.h5``, ``.hdf5``, maybe with ``:/dataset``)."""
    return split_h5_path(path)[0].lower().endswith(_H5)


def open_source(path: str) -> Any:
    """Open the array at ``path`` for reading, checking everything readable up front.

    Raises :class:`StoreNotFoundError` for a missing or unreadable source and
    :class:`StoreMismatchError` when a block file disagrees with its manifest.
    """
    path = os.fspath(path)
    if is_hdf5_path(path):
        return _open_hdf5(*split_h5_path(path))
    if path.lower().endswith(".npy"):
        return NpyFile.open(path)
    if is_nifti_path(path):
        return open_nifti(path)
    if is_block_store(path):
        return BlockStore.open(path)
    if os.path.isdir(path) and is_zarr(path):
        return ZarrStore.open(path)
    if not os.path.exists(path):
        raise StoreNotFoundError(f"source {path!r} does not exist")
    raise StoreNotFoundError(
        f"source {path!r} is not a .npy file, an HDF5 file, a NIfTI file (.nii, .nii.gz), "
        f"a Zarr array or a block store (no {MANIFEST})"
    )


def _open_hdf5(fn: str, dataset: str) -> Any:
    shape, dtype, offset, _ = hdf5_info(fn, dataset)
    if offset is None:
        return HDF5Chunked.open(fn, dataset)
    store = HDF5File(fn, dataset, Grid.from_chunks(shape, shape), dtype)
    store._raws[(0,) * len(shape)] = RawArray(fn, offset, shape, dtype)
    store._stamp(fn)
    return store


@dataclass
class TargetSpec:
    """Where and how a target is written; checked before anything is created.

    ``kind`` is ``"blocks"``, ``"npy"``, ``"hdf5"``, ``"zarr"``, ``"nifti"`` or
    ``"nifti-gz"``; ``block_format`` the files of a block store; ``dataset`` the HDF5
    dataset. ``options["nifti_header"]`` is the header region a NIfTI target or a block
    store starts from (the source's, when it has one).
    """

    path: str
    kind: str
    block_format: str = "npy"
    dataset: str = "/data"
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_path(
        cls, path: str, format: str | None = None, default_blocks: str = "npy"
    ) -> TargetSpec:
        """The target named by ``path`` and ``format`` (see the module docstring)."""
        path = os.fspath(path)
        if format is not None and format not in FORMATS:
            raise InvalidChunksError(f"format={format!r} is unknown; expected one of {FORMATS}")
        if format == "zarr" or (format is None and path.rstrip("/").endswith(".zarr")):
            return cls(path, "zarr")
        if is_hdf5_path(path):
            if format == "npy":
                raise InvalidChunksError(f"format='npy' does not match the HDF5 target {path!r}")
            fn, dataset = split_h5_path(path)
            return cls(fn, "hdf5", dataset=dataset)
        if path.lower().endswith(".npy"):
            if format == "hdf5":
                raise InvalidChunksError(f"format='hdf5' does not match the .npy target {path!r}")
            return cls(path, "npy")
        if is_nifti_path(path):
            if format is not None:
                raise InvalidChunksError(
                    f"format={format!r} does not match the NIfTI target {path!r}"
                )
            return cls(path, "nifti-gz" if is_gzipped(path) else "nifti")
        return cls(path, "blocks", block_format=format or default_blocks)

    @property
    def display(self) -> str:
        return f"{self.path}:{self.dataset}" if self.kind == "hdf5" else self.path

    def layout(self, grid: Grid) -> Layout:
        """The cost-model layout this target will have for output blocks ``grid``."""
        if self.kind == "zarr" or (self.kind == "hdf5" and grid.nblocks > 1):
            return "chunked"
        return "contiguous"

    def check_chunks(self, grid: Grid) -> None:
        """Single-file targets hold one block (or regular HDF5 chunks); Zarr needs regular chunks."""
        if self.kind in ("npy", "nifti", "nifti-gz") and grid.nblocks != 1:
            what = ".npy" if self.kind == "npy" else "NIfTI"
            raise InvalidChunksError(
                f"out_chunks={grid.block_shape} for the {what} target {self.path!r}; a {what} "
                f"file is one block: expected out_chunks={grid.shape} (or a directory target "
                "for blocks)"
            )
        if self.kind == "zarr" or (self.kind == "hdf5" and grid.nblocks > 1):
            from dask_io.storage.zarr_store import regular_chunks

            regular_chunks(grid)

    # -- what is on disk ------------------------------------------------------------
    @property
    def work_path(self) -> str:
        """Where an unfinished single-file or Zarr target lives."""
        return self.path + TMP_SUFFIX

    def exists(self) -> bool:
        """Whether a finished target (or anything else) is in the way."""
        if self.kind == "blocks":
            if not os.path.exists(self.path):
                return False
            if not os.path.isdir(self.path):
                return True
            if is_block_store(self.path):
                return bool(read_manifest(self.path).get("complete", False))
            return bool(os.listdir(self.path))
        return os.path.lexists(self.path)

    def unfinished_job(self) -> dict[str, Any] | None:
        """The job record of an interrupted run that wrote this target, if any."""
        if self.kind == "blocks" and is_block_store(self.path):
            data = read_manifest(self.path)
            return None if data.get("complete") else dict(data.get("job", {}))
        if self.kind == "zarr":
            fn = os.path.join(self.work_path, PROGRESS)
            if os.path.isfile(fn):
                return dict(read_json_state(fn, "progress file").get("job", {}))
        return None

    def remove(self) -> None:
        """Delete the target and any unfinished work (``overwrite=True``)."""
        remove_tree(self.path)
        remove_tree(self.work_path)

    # -- create or resume -------------------------------------------------------------
    def create(self, grid: Grid, dtype: np.dtype[Any], job: dict[str, Any]) -> Any:
        """Start writing a new target for output blocks ``grid``."""
        header = self.options.get("nifti_header")
        if self.kind == "blocks":
            return BlockStore.create(self.path, grid, dtype, self.block_format, job, header)
        if self.kind in ("nifti", "nifti-gz"):
            cls = NiftiGzFile if self.kind == "nifti-gz" else NiftiFile
            return cls.create(self.path, grid.shape, dtype, header)
        if self.kind == "zarr":
            return ZarrStore.create(
                self.path,
                grid,
                dtype,
                zarr_format=self.options.get("zarr_format", 3),
                inner_chunks=self.options.get("inner_chunks"),
                job=job,
            )
        if self.kind == "npy":
            return NpyFile.create(self.path, grid.shape, dtype)
        if grid.nblocks == 1:
            return HDF5File.create(self.path, self.dataset, grid.shape, dtype)
        return HDF5Chunked.create(self.path, self.dataset, grid, dtype)

    def resume(self, grid: Grid, dtype: np.dtype[Any]) -> Any:
        """Reopen the interrupted target, checking it is the same array."""
        store: Any = (
            BlockStore.resume(self.path) if self.kind == "blocks" else ZarrStore.resume(self.path)
        )
        if store.grid.chunks != grid.chunks or store.dtype != dtype:
            raise StoreMismatchError(
                f"the unfinished target {self.path!r} has chunks {store.grid.block_shape} of "
                f"{store.dtype}; this run writes {grid.block_shape} of {dtype} "
                "(pass overwrite=True to start again)"
            )
        return store


def existing_error(spec: TargetSpec) -> StoreExistsError:
    """The error for a target that exists and may not be overwritten."""
    return StoreExistsError(
        f"target {spec.display!r} already exists; pass overwrite=True (--overwrite) to replace it"
    )
