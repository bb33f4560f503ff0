"""The process memory ledger: reservations block, release and refuse what cannot fit."""

from __future__ import annotations

import threading
import time

import pytest

from dask_io.errors import InsufficientMemoryError
from dask_io.execute import ledger as lg


def test_reserve_release_and_peak():
    ledger = lg.Ledger(100)
    with ledger.reserve(60) as r:
        assert ledger.used == 60 and r.nbytes == 60
        second = ledger.reserve(40)
        assert ledger.used == 100
        second.release()
        second.release()  # once only
    assert ledger.used == 0 and ledger.peak == 100


def test_one_request_above_the_budget_names_both_sizes():
    with pytest.raises(InsufficientMemoryError, match=r"101 B .* 100 B"):
        lg.Ledger(100).reserve(101)


def test_reserve_waits_for_a_release_and_times_out():
    ledger = lg.Ledger(100)
    held = ledger.reserve(70)
    with pytest.raises(TimeoutError, match="70 B of 100 B reserved"):
        ledger.reserve(40, timeout=0.05)
    threading.Timer(0.05, held.release).start()
    with ledger.reserve(40, timeout=5):
        assert ledger.used == 40


def test_concurrent_holders_never_exceed_the_budget():
    ledger = lg.Ledger(10)
    inside, worst = [0], [0]
    lock = threading.Lock()

    def work(n):
        with ledger.reserve(n):
            with lock:
                inside[0] += n
                worst[0] = max(worst[0], inside[0])
            time.sleep(0.002)
            with lock:
                inside[0] -= n

    threads = [threading.Thread(target=work, args=(1 + k % 6,)) for k in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert worst[0] <= 10 and ledger.peak <= 10 and ledger.used == 0
    assert worst[0] > 6  # several held at once: the ledger did not serialise everything


def test_ledger_for_replaces_an_idle_ledger_only(monkeypatch):
    monkeypatch.setattr(lg, "_PROCESS", None)
    first = lg.ledger_for(100)
    assert lg.ledger_for(100) is first and lg.process_ledger() is first
    held = first.reserve(10)
    assert lg.ledger_for(200) is first  # busy: the budget stays
    held.release()
    second = lg.ledger_for(200)
    assert second is not first and second.budget == 200
    assert lg.set_process_budget(50).budget == 50


def test_rechunk_tasks_reserve_from_the_process_ledger(tmp_path, monkeypatch):
    """Group and finishing tasks hold their bytes from one ledger of max_mem."""
    import numpy as np
    import zarr

    import dask_io
    from dask_io.execute import distributed as dx

    monkeypatch.setattr(lg, "_PROCESS", None)
    held = []
    real = dx._reserve

    def spy(job, nbytes):
        held.append(nbytes)
        return real(job, nbytes)

    monkeypatch.setattr(dx, "_reserve", spy)
    x = np.arange(60 * 50 * 40, dtype="u2").reshape(60, 50, 40)
    src = zarr.create_array(tmp_path / "s.zarr", shape=x.shape, chunks=(20, 50, 40), dtype="u2")
    src[...] = x
    budget = 2 << 20
    job = dask_io.rechunk(src, (60, 7, 9), str(tmp_path / "t.zarr"), budget, executor="threads")
    out = job.execute(progress=False)
    np.testing.assert_array_equal(out[...], x)
    ledger = lg.process_ledger()
    assert ledger is not None and ledger.budget == budget and ledger.used == 0
    assert len(held) == job.plan["groups"] + len(job.arrays[0].gp.batches)
    assert 0 < ledger.peak <= budget
