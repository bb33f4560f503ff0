"""``dask-io plan``: a row per strategy, the lower bound, the chosen plan; bad input exits 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dask_io.cli import main
from dask_io.plan import plan_resplit

CASE = ["--shape", "20,15,10", "--in-chunks", "7,6,5", "--out-chunks", "10,9,8",
        "--dtype", "uint16", "--max-mem", "2KiB"]
ARGS = ((20, 15, 10), (7, 6, 5), (10, 9, 8), "uint16", "2KiB")
N_IN, N_OUT = 3 * 3 * 2, 2 * 2 * 2
STRATEGIES = ("naive", "clustered", "multiple", "keep")


def run(capsys, *argv: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = main(["plan", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_has_a_row_per_strategy_matching_the_planner(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, *CASE, "--json")
    assert code == 0 and err == ""
    doc = json.loads(out)
    lower = N_IN + N_OUT
    assert doc["lower_bound"] == {"runs": lower, "opens": lower, "seeks": 2 * lower}
    rows = {r["strategy"]: r for r in doc["strategies"]}
    assert sorted(rows) == sorted(STRATEGIES)
    auto = plan_resplit(*ARGS)
    assert doc["chosen"] == auto.strategy
    assert [r["strategy"] for r in doc["strategies"] if r.get("chosen")] == [auto.strategy]
    for name, row in rows.items():
        plan = auto.alternatives[name]  # == plan_resplit(..., strategy=name), tests/plan
        c = plan.cost
        assert (row["opens"], row["runs"], row["seeks"]) == (c.opens, c.runs, c.seeks)
        assert (row["bytes_read"], row["bytes_written"]) == (c.bytes_read, c.bytes_written)
        assert row["peak_mem"] == c.peak_mem and row["n_buffers"] == plan.n_buffers
        assert row["planning_time"] >= 0


def test_table_lists_every_strategy_the_lower_bound_and_the_choice(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, *CASE)
    assert code == 0
    lines = out.splitlines()
    lower = [ln for ln in lines if ln.split()[:1] == ["lower"]]
    assert len(lower) == 1 and lower[0].split()[1:4] == ["26", "26", "52"]  # 18 in + 8 out
    for s in STRATEGIES:
        assert sum(1 for ln in lines if ln[2:].split()[:1] == [s]) == 1
    chosen = [ln for ln in lines if ln.startswith("* ") and not ln.startswith("* chosen by")]
    auto = plan_resplit(*ARGS)
    assert len(chosen) == 1 and chosen[0][2:].split()[0] == auto.strategy


def test_infeasible_strategy_is_a_row_not_an_error(capsys) -> None:  # type: ignore[no-untyped-def]
    # 500 B cannot hold one 20x15x1 uint16 input block (600 B): naive is infeasible
    code, out, _ = run(capsys, "--shape", "20,15,10", "--in-chunks", "20,15,1",
                       "--out-chunks", "10,9,8", "--dtype", "uint16", "--max-mem", "500", "--json")
    assert code == 0
    rows = {r["strategy"]: r for r in json.loads(out)["strategies"]}
    assert "infeasible" in rows["naive"] and "strategy='naive'" in rows["naive"]["infeasible"]
    assert "infeasible" not in rows["keep"] and rows["keep"]["peak_mem"] <= 500


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--shape", "0,30,20"], "shape=(0, 30, 20) has 0; expected positive integers"),
        (["--shape", "40,x,20"], "--shape='40,x,20' is not a shape; expected integers"),
        (["--in-chunks", "7,6"], "in_chunks=(7, 6) has 2 dimensions; expected 3"),
        (["--out-chunks", "10,-9,8"], "out_chunks=(10, -9, 8) has -9"),
        (["--dtype", "uint17"], "dtype='uint17' is not a numpy dtype"),
        (["--max-mem", "lots"], "max_mem='lots' is not a size"),
        (["--max-mem", "10"], "max_mem=10 B is below the smallest feasible buffer of"),
    ],
    ids=["shape-zero", "shape-text", "dims", "negative-chunk", "dtype", "max-mem-text", "max-mem-low"],
)
def test_bad_input_prints_one_line_and_exits_2(capsys, argv, match) -> None:  # type: ignore[no-untyped-def]
    args = list(CASE)
    for flag, value in zip(argv[::2], argv[1::2]):
        args[args.index(flag) + 1] = value
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and match in err
    assert "Traceback" not in err


def test_real_process_exit_status_and_stderr() -> None:
    args = [sys.executable, "-m", "dask_io.cli", "plan", *CASE]
    bad = list(args)
    bad[bad.index("--max-mem") + 1] = "12"
    proc = subprocess.run(bad, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "smallest feasible buffer" in proc.stderr
    ok = subprocess.run([*args, "--json"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and len(json.loads(ok.stdout)["strategies"]) == 4


def test_unknown_strategy_choice_exits_2(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as info:
        main(["plan", *CASE, "--strategy", "fast"])
    assert info.value.code == 2
    assert "invalid choice: 'fast'" in capsys.readouterr().err
