"""File-level helpers: ``.npy`` headers, contiguous HDF5 datasets, atomic small writes.

Every block file is a C-order array stored contiguously after a header: an ``.npy``
header, or the metadata of an HDF5 file holding one contiguous, uncompressed dataset
(created with early allocation and no fill, so that its byte address is known before
any data is written and nothing is written twice).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from dask_io.errors import DaskIOError, StoreIOError, StoreMismatchError, StoreNotFoundError
from dask_io.storage.rawio import RawArray

TMP_SUFFIX = ".dask_io-tmp"
_H5_ERRNO = re.compile(r"errno = (\d+)")


@contextlib.contextmanager
def io_errors(path: str, action: str = "write") -> Iterator[None]:
    """Turn an OSError with an errno (a full disk, an I/O error, a permission denied)
    raised inside into a :class:`StoreIOError` naming ``path`` (or the error's own file).

    HDF5's errors carry the errno in their text only (``errno = 28``).
    """
    try:
        yield
    except DaskIOError:
        raise
    except OSError as e:
        code = e.errno
        if code is None:
            found = _H5_ERRNO.search(str(e))
            code = int(found.group(1)) if found else None
        if not code:
            raise
        named = e.filename if isinstance(e.filename, str) else path
        raise StoreIOError.of(OSError(code, os.strerror(code)), named, action) from e


def npy_header(shape: tuple[int, ...], dtype: np.dtype[Any]) -> bytes:
    """The bytes of a version 1.0 ``.npy`` header for a C-order array."""
    buf = io.BytesIO()
    info = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, info)
    return buf.getvalue()


def parse_npy_header(f: Any) -> tuple[tuple[int, ...], bool, np.dtype[Any], int]:
    """``(shape, fortran_order, dtype, data offset)`` of the ``.npy`` header at the start of ``f``."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    return tuple(shape), bool(fortran), np.dtype(dtype), f.tell()


def read_npy_header(path: str) -> RawArray:
    """Parse the header of the ``.npy`` file at ``path``: where its data is and what it is."""
    try:
        with open(path, "rb") as f:
            shape, fortran, dtype, offset = parse_npy_header(f)
    except FileNotFoundError:
        raise StoreNotFoundError(f"{path!r} does not exist") from None
    except (OSError, ValueError) as e:
        raise StoreNotFoundError(f"{path!r} is not a readable .npy file: {e}") from None
    if fortran and len(shape) > 1:
        raise StoreMismatchError(f"{path!r} is in Fortran order; expected C order")
    if dtype.hasobject:
        raise StoreMismatchError(f"{path!r} holds Python objects (dtype {dtype}); expected numbers")
    raw = RawArray(path, offset, tuple(int(n) for n in shape), dtype)
    _check_size(raw)
    return raw


def _check_size(raw: RawArray) -> None:
    need = raw.offset + int(np.prod(raw.shape)) * raw.dtype.itemsize
    have = os.path.getsize(raw.path)
    if have < need:
        raise StoreMismatchError(
            f"{raw.path!r} has {have} bytes; expected {need} for shape {raw.shape} of {raw.dtype}"
        )


def create_npy(fd: int, shape: tuple[int, ...], dtype: np.dtype[Any]) -> int:
    """Write the header of a new ``.npy`` file open as ``fd`` and size it; return the data offset."""
    header = npy_header(shape, dtype)
    os.pwrite(fd, header, 0)
    os.ftruncate(fd, len(header) + int(np.prod(shape)) * dtype.itemsize)
    return len(header)


def create_hdf5(path: str, dataset: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> int:
    """Create ``path`` with one contiguous, allocated, unfilled dataset; return its byte offset."""
    import h5py

    with h5py.File(path, "w", libver="latest") as f:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        dcpl.set_layout(h5py.h5d.CONTIGUOUS)
        space = h5py.h5s.create_simple(shape)
        tid = h5py.h5t.py_create(dtype, logical=True)
        parent = f.require_group(os.path.dirname(dataset) or "/")
        dsid = h5py.h5d.create(parent.id, os.path.basename(dataset).encode(), tid, space, dcpl=dcpl)
        offset = dsid.get_offset()
        dsid.close()
    if offset is None:
        raise OSError(f"HDF5 gave no byte offset for dataset {dataset!r} in {path!r}")
    return int(offset)


def hdf5_info(path: str, dataset: str) -> tuple[tuple[int, ...], np.dtype[Any], int | None, Any]:
    """Shape, dtype, raw byte offset (None unless contiguous and allocated) and chunks."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise StoreNotFoundError(f"{path!r} does not exist") from None
    except OSError as e:
        raise StoreNotFoundError(f"{path!r} is not a readable HDF5 file: {e}") from None
    with f:
        if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
            names = [k for k in f if isinstance(f[k], h5py.Dataset)]
            raise StoreNotFoundError(
                f"{path!r} has no dataset {dataset!r}; datasets at its root: {names}"
            )
        ds = f[dataset]
        raw = ds.chunks is None and not ds.compression and ds.dtype.kind != "O"
        offset = ds.id.get_offset() if raw else None
        return tuple(ds.shape), np.dtype(ds.dtype), offset, ds.chunks


def read_json_state(path: str, what: str) -> dict[str, Any]:
    """The JSON object in ``path`` (a manifest, progress or job file, ``what``), or a
    StoreMismatchError naming the file when it is truncated or not such an object."""
    try:
        with open(path) as f:
            data = json.load(f)
    except ValueError as e:
        raise StoreMismatchError(
            f"{path!r} is not a readable {what} ({e}); expected the JSON object dask_io "
            "writes (truncated or edited?); pass overwrite=True (--overwrite) to start again"
        ) from None
    if not isinstance(data, dict):
        raise StoreMismatchError(
            f"{path!r} holds a JSON {type(data).__name__}; expected the {what} object "
            "dask_io writes; pass overwrite=True (--overwrite) to start again"
        )
    return data


def parse_block_lines(path: str, ndim: int, numblocks: tuple[int, ...] | None) -> set[Any]:
    """Block indices listed one per line (``1.0.2``) in journal ``path``; a torn last
    line (a killed write) is ignored, any other bad line is a StoreMismatchError."""
    done = set()
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                break
            text = raw.decode(errors="replace").strip()
            try:
                block = tuple(int(i) for i in text.split("."))
            except ValueError:
                block = ()
            bad = len(block) != ndim or any(i < 0 for i in block)
            if not bad and numblocks is not None:
                bad = any(i >= m for i, m in zip(block, numblocks, strict=True))
            if bad:
                shape = f" below {numblocks}" if numblocks is not None else ""
                raise StoreMismatchError(
                    f"{path!r} line {n} is {text!r}; expected a block index of {ndim} "
                    f"integers{shape} like {'.'.join(['0'] * ndim)} (truncated or edited?); "
                    "pass overwrite=True (--overwrite) to start again"
                )
            done.add(block)
    return done


def write_json_atomic(path: str, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file, fsync and rename."""
    tmp = path + TMP_SUFFIX
    with io_errors(tmp):
        try:
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
        os.replace(tmp, path)
        fsync_dir(os.path.dirname(path) or ".")


def fsync_dir(path: str) -> None:
    """Make renames inside directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: str) -> None:
    """fsync the file at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
