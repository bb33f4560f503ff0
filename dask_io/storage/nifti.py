"""NIfTI-1/2 single files (``.nii``, ``.nii.gz``) as sources and targets, via nibabel.

NIfTI stores its voxels in Fortran order: the first axis of nibabel's array
(``i``) varies fastest on disk. A store exposes the array **in its on-disk order**,
with the axes reversed, so that its bytes are one C-order array and the raw I/O path
(:mod:`dask_io.storage.rawio`) and the plan's cost model apply unchanged::

    store[k, j, i] == nibabel.load(path).dataobj[i, j, k]   # unscaled voxel values

Out-chunks and regions are given in that order too (``(nz, ny, nx)`` for a 3-D
volume). The voxels are copied as stored, unscaled: ``scl_slope``/``scl_inter`` and
everything else of the header travel with the data.

- ``.nii`` is one contiguous block at the header's ``vox_offset``, read and written in
  raw runs like a ``.npy`` file (layout ``"contiguous"``).
- ``.nii.gz`` is read through nibabel's opener as one forward stream: its grid is
  slabs along the first (slowest) axis, decoded in order and kept one at a time
  (layout ``"chunked"``); ``counters.meta_opens`` counts the passes over the stream.
  As a target it is written uncompressed under a temporary name, then compressed in
  order through nibabel's opener.

The *header region* of a file is its bytes before ``vox_offset`` (the header, the
extension flag and any extensions). A block store made from a NIfTI file keeps it in
its manifest, and a NIfTI target made from such a store (or straight from a NIfTI
source) starts with the same bytes, so that merging gives back an equivalent file.
"""

from __future__ import annotations

import io
import os
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from dask_io.errors import InvalidChunksError, StoreMismatchError, StoreNotFoundError
from dask_io.plan.grid import Grid
from dask_io.plan.ops import BlockIndex, Region
from dask_io.storage.base import IOCounters, Layout, local_region
from dask_io.storage.files import TMP_SUFFIX, fsync_dir, fsync_path
from dask_io.storage.raw import RawBlocks
from dask_io.storage.rawio import RawArray

_COPY = 16 << 20  # bytes per step when compressing a finished target


def is_nifti_path(path: str) -> bool:
    """Whether ``path`` names a NIfTI file (``.nii`` or ``.nii.gz``)."""
    return path.lower().endswith((".nii", ".nii.gz"))


def is_gzipped(path: str) -> bool:
    return path.lower().endswith(".gz")


def _parse(region: bytes, path: str) -> Any:
    """The nibabel header held by a header region (NIfTI-1 or NIfTI-2, single file)."""
    import nibabel as nib

    errors = []
    klasses: tuple[Any, ...] = (nib.Nifti1Header, nib.Nifti2Header)  # nibabel is untyped
    for klass in klasses:
        size = klass.template_dtype.itemsize
        if len(region) < size:
            continue
        try:
            header = klass.from_fileobj(io.BytesIO(region), check=True)
        except Exception as e:  # nibabel raises HeaderDataError, ValueError ...
            errors.append(f"{klass.__name__}: {e}")
            continue
        magic = bytes(header["magic"]).rstrip(b"\0")
        if magic not in (b"n+1", b"n+2"):
            raise StoreMismatchError(
                f"{path!r} is a NIfTI header with magic {magic!r} (a .hdr/.img pair); "
                "expected a single .nii file (magic n+1 or n+2)"
            )
        return header
    raise StoreNotFoundError(f"{path!r} is not a readable NIfTI file ({'; '.join(errors)})")


def header_info(region: bytes, path: str) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """``(shape in on-disk order, on-disk dtype, vox_offset)`` of a header region."""
    header = _parse(region, path)
    shape = tuple(int(n) for n in header.get_data_shape())
    dtype = np.dtype(header.get_data_dtype())
    offset = int(header["vox_offset"])
    if dtype.hasobject or dtype.itemsize == 0:
        raise StoreMismatchError(f"{path!r} holds voxels of dtype {dtype}; expected numbers")
    return shape[::-1], dtype, offset


def read_header_region(path: str) -> bytes:
    """The bytes of ``path`` before its data (decompressed for ``.nii.gz``)."""
    from nibabel.openers import ImageOpener

    if not os.path.exists(path):
        raise StoreNotFoundError(f"source {path!r} does not exist")
    try:
        with ImageOpener(path, "rb") as f:
            head = f.read(540)  # the larger (NIfTI-2) header and extension flag
            _, _, offset = header_info(head, path)
            if offset > len(head):
                head += f.read(offset - len(head))
    except (OSError, EOFError) as e:
        raise StoreNotFoundError(f"{path!r} is not a readable NIfTI file: {e}") from None
    if len(head) < offset:
        raise StoreMismatchError(f"{path!r} ends inside its header (vox_offset {offset})")
    return head[:offset]


def make_header_region(
    shape: tuple[int, ...], dtype: np.dtype[Any], template: bytes | None, path: str
) -> bytes:
    """The header region of a new file holding ``shape`` (on-disk order) of ``dtype``.

    ``template`` (a header region from a NIfTI source) is kept byte for byte when its
    shape and dtype already match; otherwise only those fields change. Without a
    template the header is nibabel's default (identity affine, ``vox_offset`` 352).
    """
    import nibabel as nib

    dims = tuple(shape[::-1])
    if template is not None:
        tshape, tdtype, _ = header_info(template, path)
        if tshape == tuple(shape) and tdtype == dtype:
            return template
        header = _parse(template, path)
    else:
        default: Any = nib.Nifti1Header
        header = default()
        header["vox_offset"] = 352
    try:
        header.set_data_dtype(dtype)
        header.set_data_shape(dims)
    except Exception as e:  # HeaderDataError: a dtype or rank NIfTI cannot hold
        raise InvalidChunksError(
            f"NIfTI target {path!r} cannot hold {dims} of {dtype}: {e}"
        ) from None
    if np.dtype(header.get_data_dtype()) != dtype:  # nibabel stores its own byte order
        raise InvalidChunksError(
            f"NIfTI target {path!r} would store {header.get_data_dtype()}, not {dtype}"
        )
    buf = io.BytesIO()
    header.write_to(buf)
    extra = template[len(buf.getvalue()) :] if template is not None else b""
    region = buf.getvalue() + extra
    offset = int(header["vox_offset"])
    if offset < len(region):
        raise StoreMismatchError(f"{path!r}: vox_offset {offset} is inside the header")
    return region + b"\0" * (offset - len(region))


def _check_size(path: str, offset: int, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
    need = offset + int(np.prod(shape)) * dtype.itemsize
    have = os.path.getsize(path)
    if have < need:
        raise StoreMismatchError(
            f"{path!r} has {have} bytes; expected {need} for {shape[::-1]} voxels of {dtype}"
        )


class NiftiFile(RawBlocks):
    """One uncompressed ``.nii`` file: a single block at ``vox_offset``, axes reversed."""

    kind = "nifti"

    def __init__(
        self, path: str, grid: Grid, dtype: Any, writable: bool, header_region: bytes
    ) -> None:
        super().__init__(path, grid, dtype, writable)
        self.nifti_header = header_region

    @classmethod
    def open(cls, path: str) -> NiftiFile:
        """Open an existing ``.nii`` file for reading."""
        region = read_header_region(path)
        shape, dtype, offset = header_info(region, path)
        _check_size(path, offset, shape, dtype)
        store = cls(path, Grid.from_chunks(shape, shape), dtype, False, region)
        store._raws[store.origin_block] = RawArray(path, offset, shape, dtype)
        return store

    @classmethod
    def create(
        cls, path: str, shape: tuple[int, ...], dtype: Any, header_region: bytes | None = None
    ) -> NiftiFile:
        """A new ``.nii`` target (on-disk order ``shape``), written under a temporary name."""
        dtype = np.dtype(dtype)
        region = make_header_region(shape, dtype, header_region, path)
        return cls(path, Grid.from_chunks(shape, shape), dtype, True, region)

    @property
    def origin_block(self) -> BlockIndex:
        return (0,) * len(self.shape)

    def block_path(self, block: BlockIndex) -> str:
        return self.path

    def _locate(self, block: BlockIndex) -> RawArray:
        self.counters.add(meta_opens=1)
        shape, dtype, offset = header_info(read_header_region(self.path), self.path)
        return RawArray(self.path, offset, shape, dtype)

    def _open_for_write(self, block: BlockIndex, block_region: Region) -> tuple[int, RawArray]:
        tmp = self.tmp_path(block)
        raw = self._raws.get(block)
        if raw is not None:
            fd = os.open(tmp, os.O_WRONLY)
        else:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            region = self.nifti_header
            os.pwrite(fd, region, 0)
            os.ftruncate(fd, len(region) + int(np.prod(self.shape)) * self.dtype.itemsize)
            self.counters.add(syscalls=2)
            raw = self._raws[block] = RawArray(tmp, len(region), self.shape, self.dtype)
        self.counters.add(opens=1)
        return fd, raw

    def finalize(self) -> None:
        """The one block was committed (renamed) already: make the rename durable."""
        fsync_dir(os.path.dirname(os.path.abspath(self.path)))


class NiftiGzFile(NiftiFile):
    """A ``.nii.gz`` target: written as an uncompressed ``.nii`` under a temporary name,
    then compressed in order through nibabel's opener when the block is committed."""

    kind = "nifti-gz"

    def tmp_path(self, block: BlockIndex) -> str:
        return self.path + TMP_SUFFIX + ".nii"

    @property
    def _packed_path(self) -> str:
        return self.path + TMP_SUFFIX + ".gz"  # nibabel's opener compresses by the name

    def commit(self, block: BlockIndex) -> None:
        """Compress the finished temporary ``.nii`` into ``<path>.dask_io-tmp.gz``, then rename."""
        from nibabel.openers import ImageOpener

        tmp, packed = self.tmp_path(block), self._packed_path
        with open(tmp, "rb") as src, ImageOpener(packed, "wb") as dst:
            while chunk := src.read(_COPY):
                dst.write(chunk)
        self.counters.add(meta_opens=2)
        fsync_path(packed)
        os.replace(packed, self.path)
        os.remove(tmp)
        with self._lock:
            self._raws.pop(block, None)
            self.completed.add(block)

    def discard_partial(self) -> list[str]:
        removed = []
        for tmp in (self.tmp_path(self.origin_block), self._packed_path):
            if os.path.exists(tmp):
                os.remove(tmp)
                removed.append(tmp)
        return removed


def gz_slabs(
    shape: tuple[int, ...],
    itemsize: int,
    slab_bytes: int,
    cuts: tuple[int, ...] | None = None,
) -> tuple[tuple[int, ...], ...]:
    """Slabs along the first axis of about ``slab_bytes`` each (at least one row, or
    one of ``cuts``: then slabs end only where the lengths ``cuts`` do).

    >>> gz_slabs((10, 4), 1, 12)
    ((3, 3, 3, 1), (4,))
    >>> gz_slabs((10, 4), 1, 24, cuts=(3, 3, 3, 1))
    ((6, 4), (4,))
    """
    row = max(1, int(np.prod(shape[1:])) * itemsize)
    steps = cuts if cuts is not None else (1,) * shape[0]
    lengths: list[int] = []
    current = 0
    for c in steps:
        if current and (current + c) * row > slab_bytes:
            lengths.append(current)
            current = 0
        current += c
    lengths.append(current)
    return (tuple(lengths), *((int(n),) for n in shape[1:]))


class NiftiGzSource:
    """A ``.nii.gz`` source: slabs decoded from one forward stream, kept one at a time.

    Reading a slab before the stream's position starts a new pass (counted in
    ``counters.meta_opens``); a plan that visits slabs in order reads the file once.
    """

    layout: Layout = "chunked"
    kind = "nifti-gz"

    def __init__(
        self, path: str, grid: Grid, dtype: np.dtype[Any], offset: int, header_region: bytes
    ) -> None:
        self.path, self.grid, self.shape, self.dtype = path, grid, grid.shape, np.dtype(dtype)
        self.offset = offset
        self.nifti_header = header_region
        self.counters = IOCounters()
        self.completed: set[BlockIndex] = set()
        self._lock = threading.Lock()
        self._stream: Any = None
        self._pos = 0  # the next slab the stream yields
        self._slab: tuple[int, npt.NDArray[Any]] | None = None

    @classmethod
    def open(cls, path: str, slab_bytes: int = 64 << 20) -> NiftiGzSource:
        """Open a ``.nii.gz`` file; its grid is slabs of about ``slab_bytes``."""
        region = read_header_region(path)
        shape, dtype, offset = header_info(region, path)
        grid = Grid(shape, gz_slabs(shape, dtype.itemsize, slab_bytes))
        return cls(path, grid, dtype, offset, region)

    def with_slabs(self, chunks: tuple[tuple[int, ...], ...]) -> NiftiGzSource:
        """The same file seen through another slab grid (cut along axis 0 only)."""
        if any(len(c) != 1 for c in chunks[1:]):
            raise InvalidChunksError(f"slabs of {self.path!r} must be whole beyond axis 0")
        return NiftiGzSource(
            self.path, Grid(self.shape, chunks), self.dtype, self.offset, self.nifti_header
        )

    def _decode(self, index: int) -> npt.NDArray[Any]:
        from nibabel.openers import ImageOpener

        if self._slab is not None and self._slab[0] == index:
            return self._slab[1]
        self._slab = None
        if self._stream is None or index < self._pos:
            self.close()
            self._stream = ImageOpener(self.path, "rb")
            self._stream.seek(self.offset)
            self._pos = 0
            self.counters.add(meta_opens=1)
        row = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        lengths = self.grid.chunks[0]
        while self._pos < index:  # skip slabs nobody asked for, still in order
            self._stream.seek(lengths[self._pos] * row, os.SEEK_CUR)
            self._pos += 1
        n = lengths[index] * row
        data = self._stream.read(n)
        if len(data) != n:
            raise StoreMismatchError(f"{self.path!r} ends inside slab {index} of its voxels")
        self._pos = index + 1
        slab = np.frombuffer(data, self.dtype).reshape((lengths[index], *self.shape[1:]))
        self._slab = (index, slab)
        self.counters.add(opens=1, runs=1, read_runs=1, syscalls=1, bytes_read=n)
        return slab

    def read(
        self,
        block: BlockIndex,
        region: Region,
        out: npt.NDArray[Any],
        staging: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        """Copy ``region`` of slab ``block`` into ``out`` (decoding the slab if needed)."""
        with self._lock:
            slab = self._decode(block[0])
            origin = [a for a, _ in self.grid.block_region(block)]
            out[...] = slab[local_region(region, origin)]

    def write(self, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(f"store {self.path!r} is open read-only")

    def close(self) -> None:
        """Close the stream (a later read starts a new pass)."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._slab = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_lock")
        state["_stream"], state["_slab"], state["_pos"] = None, None, 0
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"NiftiGzSource({self.path!r}, shape={self.shape}, dtype={self.dtype})"


def open_nifti(path: str) -> NiftiFile | NiftiGzSource:
    """Open ``path`` (``.nii`` or ``.nii.gz``) as a source."""
    return NiftiGzSource.open(path) if is_gzipped(path) else NiftiFile.open(path)


class _GzSlabs:
    """Array-like over a :class:`NiftiGzSource` for ``dask.array.from_array`` (one slab a key)."""

    def __init__(self, source: NiftiGzSource) -> None:
        self.source, self.shape, self.dtype = source, source.shape, source.dtype
        self.ndim = len(source.shape)

    def __getitem__(self, index: tuple[slice, ...]) -> npt.NDArray[Any]:
        region = tuple(s.indices(n)[:2] for s, n in zip(index, self.shape, strict=True))
        out = np.empty([b - a for a, b in region], self.dtype)
        grid = self.source.grid
        for block in grid.blocks():
            common = intersect_region(grid.block_region(block), region)
            if common is not None:
                part = np.empty([b - a for a, b in common], self.dtype)
                self.source.read(block, common, part)
                out[local_region(common, [a for a, _ in region])] = part
        return out


def intersect_region(a: Region, b: Region) -> Region | None:
    from dask_io.plan.grid import intersect

    return intersect(a, b)


def nifti_array(path: str, slab_bytes: int = 64 << 20) -> Any:
    """A NIfTI file as an array for :func:`dask_io.rechunk`, axes in on-disk order.

    ``.nii``: a read-only ``numpy.memmap`` of the voxels at ``vox_offset`` (the raw path).
    ``.nii.gz``: a dask array with one slab of about ``slab_bytes`` per chunk.
    """
    if not is_nifti_path(path):
        raise InvalidChunksError(
            f"source {path!r}: a path source must be a NIfTI file (.nii, .nii.gz); open "
            "other files with zarr or h5py"
        )
    if is_gzipped(path):
        import dask.array as da

        src = NiftiGzSource.open(path, slab_bytes)
        from_array: Any = da.from_array
        return from_array(
            _GzSlabs(src),
            chunks=src.grid.chunks,
            asarray=True,
            name=f"nifti-{os.path.abspath(path)}",
            lock=True,
        )
    store = NiftiFile.open(path)
    raw = store.raw(store.origin_block)
    return np.memmap(path, raw.dtype, "r", raw.offset, raw.shape, order="C")
