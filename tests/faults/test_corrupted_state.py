"""Item 7 of issue 15: a truncated or hand-edited manifest, progress file or journal,
a block file of the wrong size: a clear error naming the file and what was expected,
never silent wrong data."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from dask_io.cli import main
from dask_io.errors import StoreMismatchError
from dask_io.storage.blocks import MANIFEST, BlockStore
from dask_io.storage.files import TMP_SUFFIX
from dask_io.storage.zarr_store import JOURNAL, PROGRESS, ZarrStore
from dask_io.testing.data import check_path, write_block_store

SHAPE, IN = (24, 30, 20), (8, 15, 20)
TAIL = "pass overwrite=True (--overwrite) to start again"


def _argv(tmp_path, target):
    return ["resplit", str(tmp_path / "in"), str(target), "--out-chunks", "6,10,10",
            "--strategy", "naive", "--prefetch", "off", "--max-mem", "64KiB",
            "--no-progress"]  # fmt: skip


def _interrupted(tmp_path, monkeypatch, target, cls):
    """An unfinished target: the run stopped after 3 committed blocks."""
    write_block_store(str(tmp_path / "in"), SHAPE, IN)
    commit, calls = cls.commit, []

    def crash(self, block):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(block)
        commit(self, block)

    with monkeypatch.context() as m:
        m.setattr(cls, "commit", crash)
        with pytest.raises(KeyboardInterrupt):
            main(_argv(tmp_path, target))
    return calls


def _refused(tmp_path, target, capsys, line):
    assert main(_argv(tmp_path, target)) == 2
    assert capsys.readouterr().err == f"dask-io resplit: error: {line}\n"
    assert main([*_argv(tmp_path, target), "--overwrite"]) == 0  # the way out works
    check_path(str(target))


def test_truncated_manifest(tmp_path, monkeypatch, capsys):
    target = tmp_path / "out"
    _interrupted(tmp_path, monkeypatch, target, BlockStore)
    fn = target / MANIFEST
    text = fn.read_text()[:40]
    fn.write_text(text)
    try:
        json.loads(text)
    except ValueError as e:
        reason = str(e)
    _refused(tmp_path, target, capsys, f"{str(fn)!r} is not a readable manifest ({reason}); "
             "expected the JSON object dask_io writes (truncated or edited?)")  # fmt: skip


@pytest.mark.parametrize("entry", [[9, 0, 0], [0, 0], "0.0.0"])
def test_edited_manifest_lists_a_block_that_is_not_one(tmp_path, monkeypatch, capsys, entry):
    target = tmp_path / "out"
    _interrupted(tmp_path, monkeypatch, target, BlockStore)
    fn = target / MANIFEST
    data = json.loads(fn.read_text())
    data["completed_blocks"].append(entry)
    fn.write_text(json.dumps(data))
    _refused(tmp_path, target, capsys, f"{str(fn)!r} lists {entry!r} in completed_blocks; "
             f"expected block indices below (4, 3, 2) (truncated or edited?); {TAIL}")  # fmt: skip


def test_manifest_lists_a_missing_block_file(tmp_path, monkeypatch, capsys):
    target = tmp_path / "out"
    calls = _interrupted(tmp_path, monkeypatch, target, BlockStore)
    fn = target / MANIFEST
    data = json.loads(fn.read_text())
    data["completed_blocks"] = [list(b) for b in calls]
    fn.write_text(json.dumps(data))
    gone = target / (".".join(map(str, calls[0])) + ".npy")
    os.remove(gone)
    _refused(tmp_path, target, capsys, f"{str(fn)!r} lists block {calls[0]} as complete but "
             f"{str(gone)!r} does not exist; {TAIL}")  # fmt: skip


def test_block_file_of_wrong_size_in_a_resumed_target(tmp_path, monkeypatch, capsys):
    target = tmp_path / "out"
    calls = _interrupted(tmp_path, monkeypatch, target, BlockStore)
    fn = target / (".".join(map(str, calls[-1])) + ".npy")
    size = os.path.getsize(fn)
    os.truncate(fn, size - 100)
    _refused(tmp_path, target, capsys, f"{str(fn)!r} has {size - 100} bytes; expected {size} "
             "for shape (6, 10, 10) of uint16")  # fmt: skip


def test_source_block_file_of_wrong_size(tmp_path, capsys):
    write_block_store(str(tmp_path / "in"), SHAPE, IN)
    fn = tmp_path / "in" / "1.1.0.npy"
    size = os.path.getsize(fn)
    os.truncate(fn, size - 1)
    assert main(_argv(tmp_path, tmp_path / "out")) == 2
    assert capsys.readouterr().err == (
        f"dask-io resplit: error: {str(fn)!r} has {size - 1} bytes; expected {size} for shape "
        "(8, 15, 20) of uint16\n"
    )
    assert not os.path.exists(tmp_path / "out")


def test_edited_zarr_journal(tmp_path, monkeypatch, capsys):
    target = tmp_path / "out.zarr"
    _interrupted(tmp_path, monkeypatch, target, ZarrStore)
    fn = str(target) + TMP_SUFFIX + "/" + JOURNAL
    with open(fn, "a") as f:
        f.write("1.x.0\n")
    n = open(fn).read().count("\n")  # noqa: SIM115
    _refused(tmp_path, target, capsys, f"{fn!r} line {n} is '1.x.0'; expected a block index "
             f"of 3 integers below (4, 3, 2) like 0.0.0 (truncated or edited?); {TAIL}")  # fmt: skip


def test_truncated_zarr_progress(tmp_path, monkeypatch, capsys):
    target = tmp_path / "out.zarr"
    _interrupted(tmp_path, monkeypatch, target, ZarrStore)
    fn = str(target) + TMP_SUFFIX + "/" + PROGRESS
    with open(fn, "r+") as f:
        f.truncate(10)
        f.seek(0)
        text = f.read()
    try:
        json.loads(text)
    except ValueError as e:
        reason = str(e)
    _refused(tmp_path, target, capsys, f"{fn!r} is not a readable progress file ({reason}); "
             f"expected the JSON object dask_io writes (truncated or edited?); {TAIL}")  # fmt: skip


def test_truncated_rechunk_job_marker(tmp_path):
    import dask_io.execute.distributed as dx
    import dask_io.execute.rechunk as rk

    x = np.arange(np.prod(SHAPE), dtype="uint16").reshape(SHAPE)
    target = str(tmp_path / "out.zarr")
    job = rk.rechunk(x, (6, 10, 10), target, "64KiB", executor="synchronous")
    marker = os.path.join(target + TMP_SUFFIX, dx.STATE_DIR, "job.json")
    os.makedirs(os.path.dirname(marker))
    with open(marker, "w") as f:
        f.write('{"target": ')
    with pytest.raises(StoreMismatchError) as info:
        job.execute(progress=False)
    assert str(info.value).startswith(f"{marker!r} is not a readable job marker (")
