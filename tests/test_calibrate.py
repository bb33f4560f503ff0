"""``dask-io calibrate``: measured constants, stored where Dask config finds them, used by plans."""

from __future__ import annotations

import os

import dask.config
import pytest
import yaml

from dask_io import calibrate, cli
from dask_io.plan import plan_resplit
from dask_io.plan.timing import DEFAULT, Machine, current_machine


def test_measure_gives_positive_constants_and_cleans_up(tmp_path) -> None:  # type: ignore[no-untyped-def]
    m = calibrate.measure(str(tmp_path), 32 << 20)
    for key, value in m.to_dict().items():
        if key != "source":
            assert value > 0, key
    assert str(tmp_path) in m.source
    assert os.listdir(tmp_path) == []  # the test files are removed


def test_save_keeps_other_keys_and_config_reads_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "dask_io.yaml"
    path.write_text(yaml.safe_dump({"dask_io": {"strategy": "keep"}, "other": 1}))
    machine = Machine(run_s=1e-3, open_s=2e-3, source="test")
    calibrate.save(machine, str(path))
    data = yaml.safe_load(path.read_text())
    assert data["other"] == 1 and data["dask_io"]["strategy"] == "keep"
    assert data["dask_io"]["machine"]["run_s"] == 1e-3
    with dask.config.set({"dask_io.machine": data["dask_io"]["machine"]}):
        assert current_machine() == machine
        plan = plan_resplit((64, 64), (8, 64), (64, 8), "u1", 2048)
        assert plan.seconds == pytest.approx(
            plan.cost.opens * 2e-3 + plan.cost.runs * 1e-3 + plan.timing.read + plan.timing.write
            + plan.timing.copy
        )
    assert current_machine() == DEFAULT


def test_cli_prints_and_saves(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "conf" / "dask_io.yaml"
    assert cli.main(["calibrate", str(tmp_path), "--size", "32MiB", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "read_bw" in text and f"saved to {out}" in text
    assert Machine.from_mapping(yaml.safe_load(out.read_text())["dask_io"]["machine"]).read_bw > 0


def test_cli_refuses_a_missing_folder_and_a_tiny_size(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["calibrate", str(tmp_path / "nope"), "--no-save"]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert cli.main(["calibrate", str(tmp_path), "--size", "1MiB", "--no-save"]) == 2
    assert "--size=1.0 MiB is too small" in capsys.readouterr().err


def test_plan_cli_prints_the_excessive_io_warning_first(capsys) -> None:  # type: ignore[no-untyped-def]
    args = ["plan", "--shape", "128,128,128", "--in-chunks", "128,1,128", "--out-chunks",
            "128,128,1", "--dtype", "uint8", "--max-mem", "17000"]
    assert cli.main(args) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("dask-io plan: warning: max_mem=16.6 KiB forces 69,120 seeks")
    assert "would bring it within 2x" in err[0]


def test_plan_cli_shows_predicted_seconds(capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["plan", "--shape", "64,64", "--in-chunks", "8,64", "--out-chunks", "64,8",
                     "--dtype", "uint8", "--max-mem", "4KiB", "--json"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    rows = {r["strategy"]: r for r in out["strategies"] if "seconds" in r}
    assert rows and all(r["seconds"] > 0 for r in rows.values())
    assert out["objective"] == "fewest seeks"  # the default (dask_io.yaml)
