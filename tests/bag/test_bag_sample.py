"""Seeded samplers: reproducibility, exactness and proportions within statistical bounds."""

from __future__ import annotations

import math
from collections import Counter
from itertools import combinations

import pytest
from bag_data import bag_of, skewed_pairs, split_into

from dask_io import bag as dbag
from dask_io.bag import _sample_kernels as S
from dask_io.sketches.hashing import stable_hash

RECORDS = list(range(20_000))
PARTS = split_into(RECORDS, 7, seed=11)


def within(observed, n, p, sigmas=5.0):
    """Whether a Binomial(n, p) count is within ``sigmas`` standard deviations."""
    return abs(observed - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 1.0])
def test_sample_is_bernoulli(fraction):
    got = dbag.sample(bag_of(PARTS), fraction, seed=3).compute(scheduler="sync")
    assert within(len(got), len(RECORDS), fraction)
    assert got == sorted(set(got))  # a subset, in bag order, no repeats
    assert set(got) <= set(RECORDS)


def test_sample_is_reproducible_and_seed_dependent():
    b = bag_of(PARTS)
    first = dbag.sample(b, 0.2, seed=9).compute(scheduler="sync")
    assert first == dbag.sample(b, 0.2, seed=9).compute(scheduler="threads")
    assert first != dbag.sample(b, 0.2, seed=10).compute(scheduler="sync")


def test_sample_with_replacement_is_poisson():
    got = dbag.sample(bag_of(PARTS), 2.0, seed=1, with_replacement=True).compute(scheduler="sync")
    assert abs(len(got) - 40_000) < 5 * math.sqrt(40_000)
    assert max(Counter(got).values()) > 1


def test_hash_sample_keeps_whole_keys_whatever_the_partitioning():
    pairs = skewed_pairs(5000, 2000, seed=2)
    a = dbag.hash_sample(bag_of([pairs]), None, 0.1, salt=5).compute(scheduler="sync")
    b = dbag.hash_sample(bag_of(split_into(pairs, 9)), None, 0.1, salt=5)
    assert b.compute(scheduler="threads") == a
    kept = {k for k, _ in a}
    assert a == [r for r in pairs if r[0] in kept]  # every record of a kept key
    assert kept == {k for k, _ in pairs if stable_hash(k, seed=5) < 0.1 * 2**64}


def test_hash_sample_proportion_of_keys():
    users = [(f"user-{i}", i) for i in range(20_000)]
    kept = dbag.hash_sample(bag_of(split_into(users, 4)), 0, 0.1, salt="daily").compute(
        scheduler="sync"
    )
    assert within(len(kept), len(users), 0.1)
    other = dbag.hash_sample(bag_of([users]), 0, 0.1, salt="weekly").compute(scheduler="sync")
    assert within(len(set(kept) & set(other)), len(users), 0.01)  # independent salts


def test_sample_by_key_proportions():
    pairs = [("PL", i) for i in range(20_000)] + [("BR", i) for i in range(10_000)]
    pairs += [("US", i) for i in range(5000)]
    fractions = {"PL": 0.05, "BR": 0.5, "US": 1.0}
    b = bag_of(split_into(pairs, 6, seed=4))
    got = dbag.sample_by_key(b, None, fractions, seed=2).compute(scheduler="sync")
    counts = Counter(k for k, _ in got)
    assert within(counts["PL"], 20_000, 0.05) and within(counts["BR"], 10_000, 0.5)
    assert counts["US"] == 5000
    assert got == dbag.sample_by_key(b, None, fractions, seed=2).compute(scheduler="threads")


def test_sample_by_key_missing_key():
    b = bag_of([[("PL", 1), ("DE", 2)]])
    with pytest.raises(ValueError, match="key 'DE' has no entry in fractions"):
        dbag.sample_by_key(b, None, {"PL": 0.5}).compute(scheduler="sync")
    got = dbag.sample_by_key(b, None, {"PL": 0.0}, default=1.0).compute(scheduler="sync")
    assert got == [("DE", 2)]


@pytest.mark.parametrize("n", [0, 1, 500, 20_000, 30_000])
def test_take_sample_is_exact(n):
    got = dbag.take_sample(bag_of(PARTS), n, seed=4)
    assert got.npartitions == 1
    got = got.compute(scheduler="sync")
    assert len(got) == min(n, len(RECORDS)) == len(set(got))
    assert set(got) <= set(RECORDS)


def test_take_sample_with_empty_and_tiny_partitions():
    parts = [[], ["a"], [], ["b", "c"], []]
    assert sorted(dbag.take_sample(bag_of(parts), 2, seed=1).compute(scheduler="sync")) in [
        ["a", "b"],
        ["a", "c"],
        ["b", "c"],
    ]
    assert dbag.take_sample(bag_of([[], []]), 3).compute(scheduler="sync") == []


def kernel_take_sample(parts, n, seed):
    """take_sample's four steps, run directly on the kernels."""
    reservoirs = [S.reservoir_sample(p, i, n, seed) for i, p in enumerate(parts)]
    alloc = S.allocate_sample([r[0] for r in reservoirs], n, seed)
    subs = [S.subsample(r, i, alloc[i], seed) for i, r in enumerate(reservoirs)]
    return S.shuffle_sample(subs, seed)


def test_take_sample_is_uniform_over_subsets():
    parts = [[0, 1], [], [2], [3, 4, 5, 6]]  # 21 subsets of size 2
    trials = 4200
    seen = Counter(frozenset(kernel_take_sample(parts, 2, seed=s)) for s in range(trials))
    assert set(seen) == {frozenset(c) for c in combinations(range(7), 2)}
    for count in seen.values():
        assert within(count, trials, 1 / 21)
    b = bag_of(parts)
    assert dbag.take_sample(b, 2, seed=12).compute(scheduler="sync") == kernel_take_sample(
        parts, 2, seed=12
    )


def test_take_sample_inclusion_probability_on_big_partitions():
    parts = split_into(list(range(300)), 5, seed=8)
    inclusion = Counter()
    for s in range(300):
        inclusion.update(kernel_take_sample(parts, 30, seed=s))
    for i in range(300):
        assert within(inclusion[i], 300, 0.1, sigmas=5.5)


def test_take_sample_reproducible():
    b = bag_of(PARTS)
    assert dbag.take_sample(b, 100, seed=7).compute(scheduler="sync") == dbag.take_sample(
        b, 100, seed=7
    ).compute(scheduler="threads")


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.5", None])
def test_bad_fraction(bad):
    b = bag_of([[("a", 1)]])
    with pytest.raises(ValueError, match="fraction="):
        dbag.sample(b, bad)
    with pytest.raises(ValueError, match="fraction="):
        dbag.hash_sample(b, None, bad)
    with pytest.raises(ValueError, match=r"fractions\['a'\]="):
        dbag.sample_by_key(b, None, {"a": bad})


def test_bad_sampling_arguments():
    b = bag_of([[("a", 1)]])
    with pytest.raises(ValueError, match="n=-1 is invalid"):
        dbag.take_sample(b, -1)
    with pytest.raises(ValueError, match="seed=-3 is invalid"):
        dbag.sample(b, 0.5, seed=-3)
    with pytest.raises(ValueError, match=r"salt=1\.5 is invalid"):
        dbag.hash_sample(b, None, 0.5, salt=1.5)
    with pytest.raises(ValueError, match="fraction=-1 is out of range; expected a number >= 0"):
        dbag.sample(b, -1, with_replacement=True)
