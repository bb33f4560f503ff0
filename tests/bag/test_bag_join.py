"""Joins against a nested-loop oracle: repeated keys on both sides, None keys."""

from __future__ import annotations

import pickle

import dask
import pytest
from bag_data import bag_of, canon, oracle_join, skewed_pairs, split_into
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_io import bag as dbag
from dask_io.sketches.hashing import stable_hash

BIG = skewed_pairs(1500, 120, seed=5)
SMALL = [(k, f"w{i}") for i, (k, _) in enumerate(skewed_pairs(200, 150, seed=6))]
SMALL += [(None, "null-1"), (None, "null-2"), ("only-small", 0)]
BIG_PARTS = {
    "one": [BIG],
    "many": split_into(BIG, 8, seed=7),
    "empty": [[], BIG[:700], [], BIG[700:]],
}


@pytest.mark.parametrize("layout", BIG_PARTS, ids=list(BIG_PARTS))
@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("small_kind", ["list", "bag", "delayed"])
def test_broadcast_join(layout, how, small_kind):
    parts = BIG_PARTS[layout]
    small = {
        "list": SMALL,
        "bag": bag_of(split_into(SMALL, 3)),
        "delayed": dask.delayed(SMALL, traverse=False),
    }[small_kind]
    joined = dbag.broadcast_join(bag_of(parts), small, how=how)
    assert joined.npartitions == len(parts)
    # order is the big side's, matches in the small side's order: compare exactly
    assert joined.compute(scheduler="sync") == oracle_join(BIG, SMALL, how)


def test_broadcast_join_ships_the_small_side_once():
    small = [(f"key-{i}", "x" * 50) for i in range(2000)]
    one_copy = len(pickle.dumps(small))
    for nparts in (1, 16):
        big = bag_of([[("key-1", 0)]] * nparts)
        graph = dict(dbag.broadcast_join(big, small).__dask_graph__())
        base = len(pickle.dumps(dict(big.__dask_graph__())))
        # the index is held by one graph key, not copied into every task
        assert len(pickle.dumps(graph)) - base < 1.5 * one_copy


def test_broadcast_join_with_key_functions():
    users = [{"id": i % 13, "name": f"n{i}"} for i in range(60)]
    orders = [{"user": i % 17, "amount": i} for i in range(90)]
    joined = dbag.broadcast_join(
        bag_of(split_into(orders, 4)), users, on_big="user", on_small=lambda u: u["id"], how="left"
    )
    expected = oracle_join([(o["user"], o) for o in orders], [(u["id"], u) for u in users], "left")
    assert joined.compute(scheduler="sync") == expected


@pytest.mark.parametrize("how", ["inner", "left", "right", "outer"])
@pytest.mark.parametrize("nout", [None, 1, 5])
def test_hash_join(how, nout):
    left = bag_of(split_into(BIG, 6, seed=8))
    right = bag_of([[], *split_into(SMALL, 3, seed=9)])
    joined = dbag.hash_join(left, right, how=how, npartitions=nout)
    assert joined.npartitions == (6 if nout is None else nout)
    parts = [p.compute(scheduler="sync") for p in joined.to_delayed()]
    for j, part in enumerate(parts):
        assert all(stable_hash(k) % joined.npartitions == j for k, _ in part)
    assert canon(r for p in parts for r in p) == canon(oracle_join(BIG, SMALL, how))


@pytest.mark.parametrize("how", ["inner", "left", "right", "outer"])
def test_merge_join_of_sorted_shards(how):
    left = [(k, v) for k, v in BIG if k is not None and isinstance(k, str)]
    right = [(k, w) for k, w in SMALL if k is not None and isinstance(k, str)]
    lb = dbag.partition_by_key(bag_of(split_into(left, 4)), npartitions=3, sort=True)
    rb = dbag.partition_by_key(bag_of(split_into(right, 2)), npartitions=3, sort=True)
    joined = dbag.merge_join(lb, rb, how=how)
    assert canon(joined.compute(scheduler="sync")) == canon(oracle_join(left, right, how))


def test_merge_join_of_range_partitioned_bags():
    left = [(i % 50, i) for i in range(300)]
    right = [(i % 70, -i) for i in range(140)]
    bounds = [10, 25, 40]
    lb = dbag.sort_by_key(bag_of(split_into(left, 5)), boundaries=bounds)
    rb = dbag.sort_by_key(bag_of(split_into(right, 2)), boundaries=bounds)
    joined = dbag.merge_join(lb, rb, how="outer")
    assert canon(joined.compute(scheduler="sync")) == canon(oracle_join(left, right, "outer"))


def test_merge_join_detects_unsorted_input():
    lb = bag_of([[("b", 1), ("a", 2)]])
    rb = bag_of([[("a", 3)]])
    with pytest.raises(ValueError, match="sorted by key, but key 'a' comes after 'b'"):
        dbag.merge_join(lb, rb).compute(scheduler="sync")


def test_bad_join_arguments():
    b = bag_of([BIG[:5]])
    with pytest.raises(
        ValueError, match=r"how='right' is not supported; expected one of \['inner', 'left'\]"
    ):
        dbag.broadcast_join(b, SMALL, how="right")
    with pytest.raises(ValueError, match="how='cross' is not supported"):
        dbag.hash_join(b, b, how="cross")
    with pytest.raises(ValueError, match="npartitions=0 is invalid"):
        dbag.hash_join(b, b, npartitions=0)
    with pytest.raises(
        ValueError, match=r"co-partitioned bags, got left\.npartitions=1 and right\.npartitions=2"
    ):
        dbag.merge_join(b, bag_of([[], []]))
    with pytest.raises(ValueError, match=r"scatter=True needs a current dask\.distributed Client"):
        dbag.broadcast_join(b, SMALL, scatter=True)


keys = st.one_of(st.none(), st.integers(0, 4), st.sampled_from([1.0, True, "a", b"a"]))
sides = st.lists(st.tuples(keys, st.integers(0, 9)), max_size=15)


@settings(max_examples=50, deadline=None)
@given(
    left=sides,
    right=sides,
    how=st.sampled_from(["inner", "left", "right", "outer"]),
    nl=st.integers(1, 4),
    nr=st.integers(1, 3),
    nout=st.integers(1, 4),
)
def test_join_properties(left, right, how, nl, nr, nout):
    lb, rb = bag_of(split_into(left, nl)), bag_of(split_into(right, nr))
    expected = canon(oracle_join(left, right, how))
    got = dbag.hash_join(lb, rb, how=how, npartitions=nout).compute(scheduler="sync")
    assert canon(got) == expected
    if how in ("inner", "left"):
        assert canon(dbag.broadcast_join(lb, right, how=how).compute(scheduler="sync")) == expected
