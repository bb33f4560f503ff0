"""sort_by_key, partition_by_key and merge_sorted against sorted()/heapq oracles."""

from __future__ import annotations

import heapq
import random

import pytest
from bag_data import bag_of, split_into
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_io import bag as dbag
from dask_io.sketches.hashing import stable_hash


def skewed_int_pairs(n, seed=0):
    rng = random.Random(seed)
    return [(min(int(rng.paretovariate(0.8)), 10_000), i) for i in range(n)]


PAIRS = skewed_int_pairs(4000, seed=1)
LAYOUTS = {
    "one": [PAIRS],
    "many": split_into(PAIRS, 9, seed=2),
    "empty": [[], PAIRS[:100], [], PAIRS[100:], []],
}


def parts_of(bag):
    return [p.compute(scheduler="sync") for p in bag.to_delayed()]


@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
@pytest.mark.parametrize("nout", [None, 1, 6, 20])
@pytest.mark.parametrize("ascending", [True, False])
def test_sort_by_key_is_global_and_stable(layout, nout, ascending):
    parts = LAYOUTS[layout]
    result = dbag.sort_by_key(bag_of(parts), npartitions=nout, ascending=ascending)
    assert result.npartitions == (len(parts) if nout is None else nout)
    out = parts_of(result)
    flat = [r for p in out for r in p]
    records = [r for p in parts for r in p]
    assert flat == sorted(records, key=lambda r: r[0], reverse=not ascending)
    # each key lives in exactly one output partition
    owner = {}
    for j, p in enumerate(out):
        for k, _ in p:
            assert owner.setdefault(k, j) == j


def test_sort_balances_distinct_keys():
    pairs = [(i, None) for i in range(10_000)]
    out = parts_of(dbag.sort_by_key(bag_of(split_into(pairs, 5)), npartitions=8))
    assert all(900 <= len(p) <= 1600 for p in out), [len(p) for p in out]


def test_sort_with_key_function_and_none_keys():
    recs = [{"k": k} for k in [3, None, 1, None, 2, 7]]
    got = dbag.sort_by_key(bag_of([recs[:3], recs[3:]]), key="k", npartitions=3)
    assert [r["k"] for r in got.compute(scheduler="sync")] == [None, None, 1, 2, 3, 7]
    got = dbag.sort_by_key(bag_of([recs[:3], recs[3:]]), key=lambda r: r["k"], ascending=False)
    assert [r["k"] for r in got.compute(scheduler="sync")] == [7, 3, 2, 1, None, None]


def test_sort_with_given_boundaries():
    got = dbag.sort_by_key(bag_of(LAYOUTS["many"]), boundaries=[1, 5, 100])
    out = parts_of(got)
    assert len(out) == 4
    assert all(k <= 1 for k, _ in out[0]) and all(1 < k <= 5 for k, _ in out[1])
    assert all(5 < k <= 100 for k, _ in out[2]) and all(k > 100 for k, _ in out[3])
    with pytest.raises(ValueError, match="npartitions=2 contradicts 3 boundaries"):
        dbag.sort_by_key(bag_of([PAIRS]), npartitions=2, boundaries=[1, 2, 3])


@pytest.mark.parametrize("sort", [False, True])
def test_partition_by_key(sort):
    parts = LAYOUTS["many"]
    out = parts_of(dbag.partition_by_key(bag_of(parts), npartitions=4, sort=sort))
    assert len(out) == 4
    records = [r for p in parts for r in p]
    for j, p in enumerate(out):
        assert all(stable_hash(k) % 4 == j for k, _ in p)
        mine = [r for r in records if stable_hash(r[0]) % 4 == j]
        assert p == (sorted(mine, key=lambda r: r[0]) if sort else mine)


def test_merge_sorted_iterables_is_lazy_and_stable():
    a, b, c = [(1, "a"), (4, "a")], [(1, "b"), (2, "b")], iter([(0, "c"), (9, "c")])
    merged = dbag.merge_sorted(a, b, c)
    assert not isinstance(merged, list)
    assert list(merged) == [(0, "c"), (1, "a"), (1, "b"), (2, "b"), (4, "a"), (9, "c")]
    assert list(dbag.merge_sorted([3, 1], [2], key=lambda x: x, reverse=True)) == [3, 2, 1]


def test_merge_sorted_bags_of_shards():
    streams = [sorted(random.Random(s).sample(range(1000), 50)) for s in range(6)]
    shards = bag_of(streams[:4])
    merged = dbag.merge_sorted(shards, streams[4], bag_of(streams[5:]), key=lambda x: x)
    assert merged.npartitions == 1
    assert merged.compute(scheduler="sync") == list(heapq.merge(*streams))


def test_merge_sorted_partitionwise():
    a = bag_of([[1, 5], [2, 3]])
    b = bag_of([[0, 9], [4]])
    merged = dbag.merge_sorted(a, b, key=lambda x: x, partitionwise=True)
    assert parts_of(merged) == [[0, 1, 5, 9], [2, 3, 4]]
    with pytest.raises(ValueError, match="same npartitions"):
        dbag.merge_sorted(a, bag_of([[1]]), partitionwise=True)


def test_bad_sort_arguments():
    with pytest.raises(ValueError, match="npartitions=0 is invalid"):
        dbag.sort_by_key(bag_of([PAIRS]), npartitions=0)
    with pytest.raises(ValueError, match="npartitions=-1 is invalid"):
        dbag.partition_by_key(bag_of([PAIRS]), npartitions=-1)


@settings(max_examples=40, deadline=None)
@given(
    keys=st.lists(st.one_of(st.none(), st.integers(-5, 5)), max_size=40),
    nin=st.integers(1, 5),
    nout=st.integers(1, 6),
    ascending=st.booleans(),
)
def test_sort_properties(keys, nin, nout, ascending):
    records = [(k, i) for i, k in enumerate(keys)]
    got = dbag.sort_by_key(bag_of(split_into(records, nin)), None, nout, ascending)
    expected = sorted(records, key=lambda r: (r[0] is not None, r[0] or 0), reverse=not ascending)
    assert got.compute(scheduler="sync") == expected
