"""NIfTI sources and targets: round trips against nibabel, I/O against the plan, errors."""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict

import nibabel as nib
import numpy as np
import pytest

import dask_io
from dask_io.errors import InvalidChunksError, StoreMismatchError, StoreNotFoundError
from dask_io.plan import plan_resplit
from dask_io.storage import open_source
from dask_io.storage.blocks import read_manifest
from dask_io.storage.files import TMP_SUFFIX
from dask_io.storage.nifti import NiftiGzSource

SHAPE = (20, 17, 13)  # nibabel's (i, j, k); the stores see (13, 17, 20)
DISK = SHAPE[::-1]


def _write_volume(path, dtype="<i2", slope=2.0, inter=-3.0):
    """A synthetic volume with an affine, a description, scaling and an extension."""
    rng = np.random.default_rng(16)
    data = rng.integers(-1000, 1000, SHAPE).astype(dtype)
    affine = np.diag([0.5, 0.6, 0.7, 1.0])
    affine[:3, 3] = [10, -20, 30]
    order = np.dtype(dtype).byteorder
    header = nib.Nifti1Header(endianness=">" if order == ">" else "<")
    img = nib.Nifti1Image(data, affine, header=header)
    img.set_data_dtype(dtype)
    img.header["descrip"] = b"dask_io synthetic volume"
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"kept on merge"))
    plain = str(path).removesuffix(".gz")
    img.to_filename(plain)
    # nibabel writes int data unscaled: set the scaling fields in the file itself
    with open(plain, "rb") as f:
        header = nib.Nifti1Header.from_fileobj(f)
    header["scl_slope"], header["scl_inter"] = slope, inter
    with open(plain, "r+b") as f:
        f.write(header.binaryblock)
    if str(path).endswith(".gz"):
        with open(plain, "rb") as f, gzip.open(path, "wb") as g:
            g.write(f.read())
        os.remove(plain)
    return str(path)


def _raw_bytes(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        return f.read()


def _file_header(path):
    """The header as stored (nib.load moves scl_slope/scl_inter into the proxy)."""
    return nib.Nifti1Header.from_fileobj(io.BytesIO(_raw_bytes(path)), check=False)


def _same_header(a, b):
    for key in a:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        if not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
            return key
    return None


def _check_equivalent(src, out):
    a, b = nib.load(src), nib.load(out)
    assert b.get_data_dtype() == a.get_data_dtype()
    np.testing.assert_array_equal(b.dataobj.get_unscaled(), a.dataobj.get_unscaled())
    np.testing.assert_array_equal(b.get_fdata(), a.get_fdata())
    assert (b.dataobj.slope, b.dataobj.inter) == (a.dataobj.slope, a.dataobj.inter) == (2.0, -3.0)
    np.testing.assert_array_equal(b.affine, a.affine)
    assert _same_header(_file_header(src), _file_header(out)) is None
    assert [e.get_content() for e in b.header.extensions] == [b"kept on merge"]
    assert _raw_bytes(out) == _raw_bytes(src)  # header region and voxels byte for byte


@pytest.fixture(params=["nii", "nii.gz"])
def volume(request, tmp_path):
    return _write_volume(tmp_path / f"brain.{request.param}")


def test_store_is_the_on_disk_order(volume):
    store = open_source(volume)
    ref = np.asarray(nib.load(volume).dataobj.get_unscaled())
    assert store.shape == DISK and store.dtype == ref.dtype
    out = np.empty(DISK, store.dtype)
    block = (0,) * 3
    if isinstance(store, NiftiGzSource):
        out = np.concatenate([_read_block(store, b) for b in store.grid.blocks()])
    else:
        store.read(block, tuple((0, n) for n in DISK), out)
        assert store.layout == "contiguous"
    np.testing.assert_array_equal(out, ref.T)  # store[k, j, i] == dataobj[i, j, k]


def _read_block(store, block):
    region = store.grid.block_region(block)
    out = np.empty([b - a for a, b in region], store.dtype)
    store.read(block, region, out)
    return out


def test_split_resplit_merge_round_trip(volume, tmp_path):
    ext = "nii.gz" if volume.endswith(".gz") else "nii"
    r1 = dask_io.split(volume, tmp_path / "a", (5, 6, 7), max_mem="6KiB")
    assert r1.plan.out_grid.nblocks == 3 * 3 * 3
    manifest = read_manifest(str(tmp_path / "a"))
    assert "nifti_header" in manifest and manifest["shape"] == list(DISK)
    r2 = dask_io.resplit(tmp_path / "a", tmp_path / "b", (4, 8, 3), max_mem="6KiB")
    assert "nifti_header" in read_manifest(str(tmp_path / "b"))
    out = str(tmp_path / f"merged.{ext}")
    r3 = dask_io.merge(tmp_path / "b", out, max_mem="6KiB")
    _check_equivalent(volume, out)
    assert not [f for f in os.listdir(tmp_path) if TMP_SUFFIX in f]
    reports = [r2, r3] if ext == "nii.gz" else [r1, r2, r3]
    for r in reports:
        assert r.mismatches() == {}, r.summary()
    if ext == "nii.gz":  # split: slabs decoded from one pass over the stream
        assert r1.plan.in_grid.nblocks > 1
        assert r1.read.meta_opens == 1
        assert r1.read.bytes_read == int(np.prod(SHAPE)) * 2


def test_nifti_to_nifti_and_across_compression(tmp_path):
    src = _write_volume(tmp_path / "v.nii")
    dask_io.resplit(src, tmp_path / "v2.nii.gz", DISK, max_mem="64KiB")
    _check_equivalent(src, str(tmp_path / "v2.nii.gz"))
    dask_io.resplit(tmp_path / "v2.nii.gz", tmp_path / "v3.nii", DISK, max_mem="64KiB")
    _check_equivalent(src, str(tmp_path / "v3.nii"))


@pytest.mark.parametrize("dtype", [">i2", "<f4", "u1"])
def test_byte_orders_and_dtypes_are_kept(tmp_path, dtype):
    src = _write_volume(tmp_path / "v.nii", dtype=dtype)
    assert nib.load(src).get_data_dtype() == np.dtype(dtype)
    dask_io.split(src, tmp_path / "b", (6, 5, 7), max_mem="8KiB")
    assert np.dtype(read_manifest(str(tmp_path / "b"))["dtype"]) == np.dtype(dtype)
    dask_io.merge(tmp_path / "b", tmp_path / "m.nii", max_mem="8KiB")
    _check_equivalent(src, str(tmp_path / "m.nii"))


def test_array_without_header_gets_a_default_one(tmp_path):
    data = np.arange(np.prod(DISK), dtype="<u2").reshape(DISK)
    np.save(tmp_path / "a.npy", data)
    dask_io.resplit(tmp_path / "a.npy", tmp_path / "a.nii", DISK, max_mem="64KiB")
    img = nib.load(tmp_path / "a.nii")
    assert img.shape == SHAPE and img.get_data_dtype() == np.dtype("<u2")
    np.testing.assert_array_equal(img.dataobj.get_unscaled(), data.T)
    assert int(_file_header(tmp_path / "a.nii")["vox_offset"]) == 352


def test_rechunk_accepts_nifti_paths(volume, tmp_path):
    job = dask_io.rechunk(
        volume, (4, 5, 6), str(tmp_path / "t.zarr"), "1MiB", executor="synchronous"
    )
    z = job.execute()
    ref = np.asarray(nib.load(volume).dataobj.get_unscaled()).T
    assert z.chunks == (4, 5, 6)
    np.testing.assert_array_equal(z[:], ref)


# -- measured I/O (strace) equals the plan ------------------------------------------------

_CALL = re.compile(r"^(\w+)\((\d+)<([^>]*)>(?:, (.*))?\) += (-?\d+)")
_OPEN = re.compile(r'^openat\(AT_FDCWD<[^>]*>, "[^"]*", ([A-Z_|]+)(?:, \d+)?\) = (\d+)<([^>]*)>')
_DATA = {"pread64", "pwrite64", "preadv", "preadv2", "pwritev", "pwritev2"}


def _traced_cli(args, cwd, trace):
    # -ff: one file per thread, so no call is split into "unfinished" / "resumed" lines
    cmd = [
        "strace",
        "-ff",
        "-qq",
        "-y",
        "-o",
        str(trace),
        "-e",
        "trace=openat,close,pread64,pwrite64,preadv,preadv2,pwritev,pwritev2",
        sys.executable,
        "-m",
        "dask_io.cli",
        *args,
        "--prefetch",
        "off",
        "--no-progress",
    ]
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _io_of(trace, path, data_start):
    """Opens that moved data, runs (contiguous ranges per open) and bytes, per path."""
    opens, runs, nbytes = 0, 0, 0
    for name in os.listdir(os.path.dirname(trace)):
        if name.startswith(os.path.basename(trace) + "."):
            o, r, n = _io_of_thread(os.path.join(os.path.dirname(trace), name), path, data_start)
            opens, runs, nbytes = opens + o, runs + r, nbytes + n
    return opens, runs, nbytes


def _io_of_thread(trace, path, data_start):
    opens, runs, nbytes = 0, 0, 0
    end: dict[int, int | None] = {}
    used: dict[int, bool] = defaultdict(bool)
    with open(trace) as f:
        lines = f.readlines()
    for line in lines:
        m = _OPEN.match(line)
        if m and m.group(3) == path:
            end[int(m.group(2))] = None
            continue
        m = _CALL.match(line)
        if not m or m.group(3) != path:
            continue
        fd = int(m.group(2))
        if m.group(1) == "close":
            opens += used.pop(fd, False)
            end.pop(fd, None)
            continue
        assert "unfinished" not in line and "resumed" not in line, line
        if m.group(1) not in _DATA:
            continue
        args = m.group(4).rsplit(", ", 3 if m.group(1).endswith("v2") else 2)
        pos, n = int(args[-2] if m.group(1).endswith("v2") else args[-1]), int(m.group(5))
        assert n > 0, line
        if pos < data_start:  # the header region of a new file
            continue
        used[fd] = True
        if end.get(fd) != pos:
            runs += 1
        end[fd] = pos + n
        nbytes += n
    assert not used, "a file was left open"
    return opens, runs, nbytes


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_cli_split_and_merge_io_equal_the_plan(tmp_path):
    src = _write_volume(tmp_path / "brain.nii")
    offset = int(_file_header(src)["vox_offset"])
    assert offset > 352  # the extension lies before the voxels
    mem = 3000
    _traced_cli(
        ["split", "brain.nii", "blocks", "--out-chunks", "5,6,7", "--max-mem", str(mem)],
        tmp_path,
        tmp_path / "split.txt",
    )
    plan = plan_resplit(
        DISK, DISK, (5, 6, 7), "<i2", mem, layout=("contiguous", "contiguous"), warn=False
    )
    assert plan.n_buffers > 1
    c = plan.cost
    assert _io_of(tmp_path / "split.txt", src, offset) == (c.read_opens, c.read_runs, c.bytes_read)

    _traced_cli(
        ["merge", "blocks", "merged.nii", "--max-mem", str(mem)], tmp_path, tmp_path / "merge.txt"
    )
    plan = plan_resplit(
        DISK, (5, 6, 7), DISK, "<i2", mem, layout=("contiguous", "contiguous"), warn=False
    )
    c = plan.cost
    tmp = str(tmp_path / "merged.nii") + TMP_SUFFIX
    written = _io_of(tmp_path / "merge.txt", tmp, offset)
    assert written == (c.opens - c.read_opens, c.write_runs, c.bytes_written)
    _check_equivalent(src, str(tmp_path / "merged.nii"))


# -- bad input ----------------------------------------------------------------------------


def test_not_a_nifti_file(tmp_path):
    (tmp_path / "x.nii").write_bytes(b"not a header" * 50)
    with pytest.raises(StoreNotFoundError, match="not a readable NIfTI"):
        open_source(str(tmp_path / "x.nii"))
    with pytest.raises(StoreNotFoundError, match="does not exist"):
        open_source(str(tmp_path / "missing.nii.gz"))


def test_truncated_voxels(tmp_path):
    src = _write_volume(tmp_path / "v.nii")
    with open(src, "r+b") as f:
        f.truncate(os.path.getsize(src) - 10)
    with pytest.raises(StoreMismatchError, match=r"expected \d+ for \(20, 17, 13\) voxels"):
        open_source(src)


def test_truncated_gz_voxels(tmp_path):
    src = _write_volume(tmp_path / "v.nii.gz")
    data = _raw_bytes(src)
    with gzip.open(src, "wb") as g:
        g.write(data[:-10])
    with pytest.raises(StoreMismatchError, match="ends inside slab"):
        dask_io.split(src, tmp_path / "b", (5, 6, 7), max_mem="64KiB")


def test_header_image_pair_is_refused(tmp_path):
    header = nib.nifti1.Nifti1PairHeader()  # magic "ni1": voxels in a separate .img file
    header.set_data_shape(SHAPE)
    (tmp_path / "pair.nii").write_bytes(header.binaryblock + b"\0" * 4)
    with pytest.raises(StoreMismatchError, match=r"\.hdr/\.img pair"):
        open_source(str(tmp_path / "pair.nii"))


def test_bad_targets(tmp_path):
    src = _write_volume(tmp_path / "v.nii")
    with pytest.raises(InvalidChunksError, match="NIfTI file is one block"):
        dask_io.resplit(src, tmp_path / "w.nii", (5, 6, 7))
    with pytest.raises(InvalidChunksError, match="split writes a block store"):
        dask_io.split(src, tmp_path / "w.nii", (5, 6, 7))
    with pytest.raises(InvalidChunksError, match="format='npy' does not match the NIfTI"):
        dask_io.resplit(src, tmp_path / "w.nii", DISK, format="npy")
    np.save(tmp_path / "b.npy", np.zeros((3, 4), bool))
    with pytest.raises(InvalidChunksError, match="cannot hold"):
        dask_io.resplit(tmp_path / "b.npy", tmp_path / "b.nii", (3, 4))
    assert not os.path.exists(tmp_path / "b.nii")


def test_cli_error_is_one_line(tmp_path):
    (tmp_path / "x.nii").write_bytes(b"\0" * 10)
    done = subprocess.run(
        [sys.executable, "-m", "dask_io.cli", "split", "x.nii", "b", "--out-chunks", "2,2,2"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=os.getcwd()),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "x.nii" in done.stderr
