"""Sharded and Hive-partitioned folders: round trips, pruning, atomic names."""

from __future__ import annotations

import os

import dask
import pytest
from bag_data import bag_of, split_into

from dask_io import bag as dbag
from dask_io.errors import StoreExistsError, StoreNotFoundError
from dask_io.sketches.hashing import stable_hash

PAIRS = [[f"user{(i * 7) % 23}", i] for i in range(300)]
EVENTS = [
    {"date": f"2022-05-0{1 + i % 4}", "region": ["eu", "us", "asia"][i % 3], "n": i}
    for i in range(120)
]


@pytest.fixture(autouse=True)
def sync_scheduler():
    with dask.config.set(scheduler="sync"):
        yield


def all_files(root):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("sort", [False, True])
def test_write_sharded_round_trip(tmp_path, fmt, sort):
    b = bag_of(split_into(PAIRS, 4))
    files = dbag.write_sharded(b, str(tmp_path / "out"), None, nshards=5, fmt=fmt, sort=sort)
    assert files == all_files(tmp_path / "out")
    assert not any(os.path.basename(f).startswith(".") for f in files)
    back = dbag.read_sharded(str(tmp_path / "out"), sort=sort)
    assert back.npartitions == 5
    for s, part in enumerate(p.compute(scheduler="sync") for p in back.to_delayed()):
        part = [(k, int(v)) for k, v in part]  # csv gives strings back
        expected = [(k, v) for k, v in PAIRS if stable_hash(k) % 5 == s]
        if sort:
            assert part == sorted(expected, key=lambda r: r[0])
        else:
            assert sorted(part) == sorted(expected)


def test_sorted_shards_merge_join(tmp_path):
    users = [[f"user{i}", f"name{i}"] for i in range(0, 23, 2)]
    dbag.write_sharded(bag_of(split_into(PAIRS, 3)), str(tmp_path / "p"), 0, 4, sort=True)
    dbag.write_sharded(bag_of([users]), str(tmp_path / "u"), 0, 4, sort=True)
    purchases = dbag.read_sharded(str(tmp_path / "p"), key=0, sort=True)
    people = dbag.read_sharded(str(tmp_path / "u"), key=0, sort=True)
    got = dbag.merge_join(people, purchases, how="left").compute(scheduler="sync")
    names = dict(users)
    expected = [(k, (names[k], v)) for k, v in PAIRS if k in names]
    assert sorted(got) == sorted(expected)


def test_write_partitioned_and_prune(tmp_path):
    root = str(tmp_path / "events")
    files = dbag.write_partitioned(bag_of(split_into(EVENTS, 3)), root, by=["date", "region"])
    assert all("date=2022-05-0" in f and "/region=" in f for f in files)
    back = dbag.read_partitioned(root).compute(scheduler="sync")
    assert sorted(back, key=lambda r: r["n"]) == EVENTS
    eu = dbag.list_partitioned_files(root, filters={"region": "eu", "date": {"2022-05-01"}})
    assert eu and all("region=eu" in f and "date=2022-05-01" in f for f in eu)
    got = dbag.read_partitioned(root, filters={"region": "eu", "date": ["2022-05-01"]})
    assert got.npartitions == len(eu)
    expected = [e for e in EVENTS if e["region"] == "eu" and e["date"] == "2022-05-01"]
    assert sorted(got.compute(scheduler="sync"), key=lambda r: r["n"]) == expected
    late = dbag.read_partitioned(root, filters={"date": lambda d: d >= "2022-05-03"})
    assert {r["date"] for r in late.compute(scheduler="sync")} == {"2022-05-03", "2022-05-04"}


def test_pruned_folders_are_never_listed(tmp_path, monkeypatch):
    root = str(tmp_path / "events")
    dbag.write_partitioned(bag_of([EVENTS]), root, by=["date", "region"])
    seen = []
    real = os.scandir

    def spy(path):
        seen.append(os.path.relpath(path, root))
        return real(path)

    monkeypatch.setattr(os, "scandir", spy)
    dbag.list_partitioned_files(root, filters={"date": "2022-05-02"})
    regions = [f"date=2022-05-02/region={r}" for r in ("asia", "eu", "us")]
    assert sorted(seen) == [".", "date=2022-05-02", *regions]


def test_partition_values_are_encoded(tmp_path):
    recs = [{"path": "a/b=c", "x": 1}, {"path": None, "x": 2}, {"path": "plain", "x": 3}]
    root = str(tmp_path / "enc")
    dbag.write_partitioned(bag_of([recs]), root, by="path")
    assert sorted(os.listdir(root)) == [
        "path=__HIVE_DEFAULT_PARTITION__",
        "path=a%2Fb%3Dc",
        "path=plain",
    ]
    assert dbag.read_partitioned(root, {"path": "a/b=c"}).compute(scheduler="sync") == [recs[0]]
    assert dbag.read_partitioned(root, {"path": None}).compute(scheduler="sync") == [recs[1]]


def test_failed_write_leaves_no_file(tmp_path):
    b = bag_of([[("ok", 1)], [("bad", object())]])
    with pytest.raises(TypeError):
        dbag.write_sharded(b, str(tmp_path / "s"), None, nshards=1)
    names = [f for d, _, fs in os.walk(tmp_path / "s") for f in fs]
    assert "part-00001.jsonl" not in names and not any(n.endswith(".tmp") for n in names)


def test_existing_target_and_bad_arguments(tmp_path):
    b = bag_of([[("a", 1)]])
    root = str(tmp_path / "t")
    dbag.write_sharded(b, root, None, 2)
    with pytest.raises(StoreExistsError, match="exists and is not empty"):
        dbag.write_sharded(b, root, None, 2)
    assert dbag.write_sharded(b, root, None, 3, overwrite=True)
    assert len(os.listdir(root)) == 3
    with pytest.raises(ValueError, match="fmt='parquet' is not supported"):
        dbag.write_sharded(b, root, None, 2, fmt="parquet", overwrite=True)
    with pytest.raises(ValueError, match="npartitions=0 is invalid"):
        dbag.write_sharded(b, root, None, 0, overwrite=True)
    with pytest.raises(ValueError, match="by contains 'a=b'"):
        dbag.write_partitioned(b, root, by="a=b", overwrite=True)
    with pytest.raises(TypeError, match="fmt='csv' needs tuple or list records"):
        dbag.write_partitioned(bag_of([[{"k": 1}]]), root, by="k", fmt="csv", overwrite=True)
    with pytest.raises(StoreNotFoundError):
        dbag.read_partitioned(str(tmp_path / "missing"))


def test_lazy_write(tmp_path):
    paths = dbag.write_sharded(bag_of([[("a", 1)]]), str(tmp_path / "l"), None, 1, compute=False)
    assert all_files(tmp_path / "l") == []
    assert paths.compute(scheduler="sync") == all_files(tmp_path / "l")
