"""By-key recipes against dict oracles, on many partitionings and skewed keys."""

from __future__ import annotations

import operator
from collections import Counter

import pytest
from bag_data import bag_of, oracle_group, oracle_reduce, skewed_pairs, split_into
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_io import bag as dbag
from dask_io.sketches.hashing import stable_hash

PAIRS = skewed_pairs(3000, 400, seed=1)
LAYOUTS = {
    "one-partition": [PAIRS],
    "skewed-sizes": split_into(PAIRS, 9, seed=2),
    "empty-partitions": [[], PAIRS[:1000], [], PAIRS[1000:], []],
    "more-partitions-than-keys": split_into(PAIRS[:40], 60, seed=3),
}


def partitions(bag):
    return [p.compute(scheduler="sync") for p in bag.to_delayed()]


def assert_hash_partitioned(parts, npartitions):
    assert len(parts) == npartitions
    for j, part in enumerate(parts):
        for k, _ in part:
            assert stable_hash(k) % npartitions == j


@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
@pytest.mark.parametrize("nout", [None, 1, 7])
def test_reduce_by_key_matches_dict_oracle(layout, nout):
    parts = LAYOUTS[layout]
    records = [r for p in parts for r in p]
    result = dbag.reduce_by_key(bag_of(parts), None, operator.add, npartitions=nout)
    expected_n = len(parts) if nout is None else nout
    assert result.npartitions == expected_n
    out = partitions(result)
    assert_hash_partitioned(out, expected_n)
    got = [r for p in out for r in p]
    assert len(got) == len({k for k, _ in got})  # each key once
    assert dict(got) == oracle_reduce(records, operator.add)


def test_equal_keys_of_different_types_meet():
    b = bag_of([[(1, 1), ("1", 10)], [(1.0, 2), (True, 4)], [(b"1", 100)]])
    got = dict(dbag.reduce_by_key(b, None, operator.add, npartitions=3).compute(scheduler="sync"))
    assert got == {1: 7, "1": 10, b"1": 100}


def test_reduce_by_key_with_key_function_and_value():
    recs = [{"user": f"u{i % 7}", "price": i} for i in range(100)]
    b = bag_of(split_into(recs, 5))
    got = dbag.reduce_by_key(b, "user", operator.add, 3, value=operator.itemgetter("price"))
    expected = oracle_reduce(((r["user"], r["price"]) for r in recs), operator.add)
    assert dict(got.compute(scheduler="sync")) == expected
    by_callable = dbag.reduce_by_key(
        b, lambda r: r["user"], lambda a, c: {**a, "price": a["price"] + c["price"]}
    )
    assert {k: v["price"] for k, v in by_callable.compute(scheduler="sync")} == expected


def test_group_by_key_keeps_bag_order():
    parts = LAYOUTS["empty-partitions"]
    got = dict(dbag.group_by_key(bag_of(parts), npartitions=4).compute(scheduler="sync"))
    assert got == oracle_group(r for p in parts for r in p)


def test_aggregate_by_key_copies_a_mutable_zero():
    parts = LAYOUTS["skewed-sizes"]

    def seq(acc, v):
        acc.append(v)
        return acc

    got = dbag.aggregate_by_key(bag_of(parts), None, [], seq, operator.add, npartitions=5)
    got = {k: sorted(v) for k, v in got.compute(scheduler="sync")}
    assert got == {k: sorted(v) for k, v in oracle_group(r for p in parts for r in p).items()}


def test_combine_by_key_mean():
    parts = LAYOUTS["skewed-sizes"]
    b = dbag.combine_by_key(
        bag_of(parts),
        None,
        lambda v: (v, 1),
        lambda c, v: (c[0] + v, c[1] + 1),
        lambda a, c: (a[0] + c[0], a[1] + c[1]),
        npartitions=3,
    )
    groups = oracle_group(r for p in parts for r in p)
    assert dict(b.compute(scheduler="sync")) == {k: (sum(v), len(v)) for k, v in groups.items()}


@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
def test_count_by_key(layout):
    parts = LAYOUTS[layout]
    result = dbag.count_by_key(bag_of(parts), npartitions=4)
    out = partitions(result)
    assert_hash_partitioned(out, 4)
    assert dict(r for p in out for r in p) == dict(Counter(k for p in parts for k, _ in p))


def test_count_by_key_with_key_function():
    words = ["a", "b", "a", "c", "a"]
    got = dbag.count_by_key(bag_of([words[:2], words[2:]]), key=lambda w: w)
    assert sorted(got.compute(scheduler="sync")) == [("a", 3), ("b", 1), ("c", 1)]


def test_top_k_by_key():
    parts = LAYOUTS["skewed-sizes"]
    got = dict(dbag.top_k_by_key(bag_of(parts), 3, npartitions=4).compute(scheduler="sync"))
    groups = oracle_group(r for p in parts for r in p)
    assert got == {k: sorted(v, reverse=True)[:3] for k, v in groups.items()}
    smallest = dbag.top_k_by_key(bag_of(parts), 2, order=operator.neg).compute(scheduler="sync")
    assert dict(smallest) == {k: sorted(v)[:2] for k, v in groups.items()}


def test_threaded_scheduler_gives_the_same_result():
    b = bag_of(LAYOUTS["skewed-sizes"])
    sync = dbag.reduce_by_key(b, None, operator.add, 6).compute(scheduler="sync")
    threads = dbag.reduce_by_key(b, None, operator.add, 6).compute(scheduler="threads")
    assert sorted(map(repr, sync)) == sorted(map(repr, threads))


def test_processes_scheduler():
    b = bag_of(LAYOUTS["skewed-sizes"])
    got = dbag.group_by_key(b, npartitions=3).compute(scheduler="processes", num_workers=2)
    assert dict(got) == oracle_group(r for p in LAYOUTS["skewed-sizes"] for r in p)


def test_graph_is_deterministic():
    b = bag_of(LAYOUTS["skewed-sizes"])
    assert dbag.count_by_key(b, None, 3).name == dbag.count_by_key(b, None, 3).name
    assert dbag.reduce_by_key(b, None, operator.add, 3).name.startswith("dask_io-reduce_by_key-")


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "3"])
def test_bad_npartitions(bad):
    b = bag_of([PAIRS[:10]])
    with pytest.raises(ValueError, match=rf"npartitions={bad!r} is invalid"):
        dbag.reduce_by_key(b, None, operator.add, npartitions=bad)
    with pytest.raises(ValueError, match="npartitions"):
        dbag.count_by_key(b, npartitions=bad)


def test_bad_k_and_bad_bag():
    with pytest.raises(ValueError, match="k=0 is invalid"):
        dbag.top_k_by_key(bag_of([PAIRS[:10]]), 0)
    with pytest.raises(TypeError, match=r"must be a dask\.bag\.Bag"):
        dbag.reduce_by_key([("a", 1)], None, operator.add)


def test_unhashable_key_raises_type_error():
    b = bag_of([[(["list"], 1)]])
    with pytest.raises(TypeError):
        dbag.count_by_key(b, npartitions=2).compute(scheduler="sync")


keys = st.one_of(
    st.none(),
    st.integers(-3, 3),
    st.sampled_from([0.0, 1.0, 2.5, True, False]),
    st.text(max_size=2),
    st.binary(max_size=2),
    st.tuples(st.integers(0, 2), st.text(max_size=1)),
)
layouts = st.lists(
    st.lists(st.tuples(keys, st.integers(-5, 5)), max_size=12), min_size=1, max_size=6
)


@settings(max_examples=60, deadline=None)
@given(parts=layouts, nout=st.integers(1, 5))
def test_by_key_properties(parts, nout):
    records = [r for p in parts for r in p]
    b = bag_of(parts)
    reduced = partitions(dbag.reduce_by_key(b, None, operator.add, nout))
    assert_hash_partitioned(reduced, nout)
    assert dict(r for p in reduced for r in p) == oracle_reduce(records, operator.add)
    grouped = dbag.group_by_key(b, npartitions=nout).compute(scheduler="sync")
    assert dict(grouped) == oracle_group(records)
    counted = dbag.count_by_key(b, npartitions=nout).compute(scheduler="sync")
    assert dict(counted) == dict(Counter(k for k, _ in records))
