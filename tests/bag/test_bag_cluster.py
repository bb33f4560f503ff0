"""Every recipe on the processes scheduler and on a LocalCluster with worker processes:
the same results, and the same samples for the same seed, as the synchronous scheduler."""

from __future__ import annotations

import operator

import dask
import pytest
from bag_data import bag_of, canon, skewed_pairs, split_into

from dask_io import bag as dbag

PAIRS = skewed_pairs(4000, 300, seed=21)
# a dimension table: mostly distinct keys, a few repeated, None among them
_KEYS = list(dict.fromkeys(k for k, _ in skewed_pairs(300, 200, seed=22)))
SMALL = [(k, f"w{i}") for i, k in enumerate([*_KEYS, _KEYS[0], _KEYS[3], None])]


def recipes(nparts):
    b = bag_of(split_into(PAIRS, nparts, seed=23))
    ints = bag_of(split_into([(i % 97, i) for i in range(3000)], nparts))
    return {
        "reduce": dbag.reduce_by_key(b, None, operator.add, 5),
        "aggregate": dbag.aggregate_by_key(b, None, 0, operator.add, operator.add, 3),
        "group": dbag.group_by_key(b, npartitions=4),
        "count": dbag.count_by_key(b, npartitions=2),
        "topk": dbag.top_k_by_key(b, 3, npartitions=3),
        "broadcast": dbag.broadcast_join(b, SMALL, how="left"),
        "broadcast_bag": dbag.broadcast_join(b, bag_of([SMALL[:70], SMALL[70:]])),
        "hash_join": dbag.hash_join(b, bag_of([SMALL]), how="outer", npartitions=4),
        "sample": dbag.sample(b, 0.3, seed=5),
        "hash_sample": dbag.hash_sample(b, None, 0.3, salt=2),
        "sample_by_key": dbag.sample_by_key(b, None, {}, seed=6, default=0.25),
        "take_sample": dbag.take_sample(b, 100, seed=7),
        "sort": dbag.sort_by_key(ints, npartitions=4, ascending=False),
        "partition": dbag.partition_by_key(ints, npartitions=3, sort=True),
    }


ORDER_FREE = {"reduce", "aggregate", "group", "count", "topk", "hash_join"}
PARTITION_FREE = ORDER_FREE | {"broadcast", "broadcast_bag", "hash_sample", "sort", "partition"}


@pytest.fixture(scope="module")
def expected():
    rs = recipes(6)
    return dict(zip(rs, dask.compute(*rs.values(), scheduler="sync"), strict=True))


def check(got, expected, same_partitioning):
    for name, value in got.items():
        if name in ORDER_FREE:
            assert canon(value) == canon(expected[name]), name
        elif same_partitioning or name in PARTITION_FREE:
            assert value == expected[name], name


def test_processes_scheduler(expected):
    rs = recipes(6)
    got = dask.compute(*rs.values(), scheduler="processes", num_workers=2)
    check(dict(zip(rs, got, strict=True)), expected, True)


@pytest.mark.cluster
def test_distributed_cluster(client, expected):
    rs = recipes(6)
    got = dask.compute(*rs.values(), scheduler=client)
    check(dict(zip(rs, got, strict=True)), expected, True)
    # results that do not depend on the partitioning agree with another layout too
    rs = recipes(11)
    got = dask.compute(*rs.values(), scheduler=client)
    check(dict(zip(rs, got, strict=True)), expected, False)


@pytest.mark.cluster
def test_broadcast_join_scatter(client):
    b = bag_of(split_into(PAIRS, 4))
    with client.as_current():
        joined = dbag.broadcast_join(b, SMALL, how="left", scatter=True)
    got = joined.compute(scheduler=client)
    assert got == dbag.broadcast_join(b, SMALL, how="left").compute(scheduler="sync")


@pytest.mark.cluster
def test_files_written_by_workers(client, tmp_path):
    b = bag_of(split_into(PAIRS, 4))
    strs = b.map(lambda r: (repr(r[0]), r[1]))
    with dask.config.set(scheduler=client):
        files = dbag.write_sharded(strs, str(tmp_path / "s"), None, 3, sort=True)
        back = dbag.read_sharded(str(tmp_path / "s"), sort=True).compute()
    assert files
    assert sorted(map(tuple, back)) == sorted((repr(k), v) for k, v in PAIRS)
