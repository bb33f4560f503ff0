"""Sketch aggregations on dask.bag: equal to a single-process build, on any scheduler."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter, defaultdict

import dask
import dask.bag as db
import numpy as np
import pytest

from dask_io.bag.sketching import (
    bloom_filter,
    bloom_semi_join,
    count_distinct,
    count_distinct_by_key,
    count_min,
    heavy_hitters,
    hyperloglog,
)
from dask_io.sketches import BloomFilter, CountMinSketch, HyperLogLog, SketchError


def bag_from_parts(parts):
    """A bag whose partitions are exactly ``parts`` (empty ones included)."""
    return db.from_delayed([dask.delayed(list)(p) for p in parts])


def cut(records, nparts, seed=0):
    rng = random.Random(seed)
    bounds = [0, *sorted(rng.randint(0, len(records)) for _ in range(nparts - 1)), len(records)]
    return [records[a:b] for a, b in itertools.pairwise(bounds)]


def orders(n, seed=0):
    """Order-like records ``(country, customer, product)`` with Zipf-skewed products."""
    rng = np.random.default_rng(seed)
    countries = ["PL", "DE", "FR", "US", "JP"]
    c = rng.choice(len(countries), n, p=[0.4, 0.3, 0.15, 0.1, 0.05])
    customers = rng.integers(0, n // 3, n)
    products = np.minimum(rng.zipf(1.4, n), 10**6)
    return [
        (countries[i], f"c{cu}", int(pr))
        for i, cu, pr in zip(c.tolist(), customers.tolist(), products.tolist(), strict=True)
    ]


RECORDS = orders(6000, seed=1)
SYNC = {"scheduler": "sync"}


def direct(sketch, keys):
    sketch.update(keys)
    return sketch


@pytest.mark.parametrize("nparts", [1, 3, 8])
@pytest.mark.parametrize("split_every", [None, 2, 3])
def test_sketches_equal_single_process_build(nparts, split_every):
    b = bag_from_parts(cut(RECORDS, nparts, seed=nparts))
    customers = [r[1] for r in RECORDS]
    bf = bloom_filter(b, 1, capacity=5000, fpr=0.02, split_every=split_every)
    cms = count_min(b, 1, eps=0.01, confidence=0.9, split_every=split_every)
    hll = hyperloglog(b, 1, p=10, split_every=split_every)
    bf, cms, hll = dask.compute(bf, cms, hll, **SYNC)
    assert bf == direct(BloomFilter(5000, 0.02), customers)
    assert cms == direct(CountMinSketch(0.01, 0.9), customers)
    assert hll == direct(HyperLogLog(10), customers)


@pytest.mark.parametrize(
    ("key", "records"),
    [
        (None, [r[1] for r in RECORDS]),
        (lambda r: r[1], RECORDS),
        (1, RECORDS),
        ("customer", [{"customer": r[1]} for r in RECORDS]),
    ],
    ids=["record", "callable", "index", "field"],
)
def test_key_specs(key, records):
    b = db.from_sequence(records, npartitions=4)
    expected = direct(HyperLogLog(12), [r[1] for r in RECORDS])
    assert hyperloglog(b, key, p=12).compute(**SYNC) == expected


def test_numpy_partitions_are_sketched_whole():
    b = db.from_delayed([dask.delayed(np.arange)(i * 100, (i + 1) * 100) for i in range(4)])
    assert bloom_filter(b, capacity=400).compute(**SYNC) == direct(BloomFilter(400), np.arange(400))


def test_count_distinct_is_within_three_standard_errors():
    b = db.from_sequence(RECORDS, npartitions=5)
    exact = len({r[1] for r in RECORDS})
    estimate = count_distinct(b, 1).compute(**SYNC)
    assert isinstance(estimate, int)
    assert abs(estimate - exact) <= 3 * 1.04 / math.sqrt(2**14) * exact
    assert count_distinct(bag_from_parts([[], []])).compute(**SYNC) == 0


def test_count_distinct_by_key_against_exact_sets():
    b = db.from_sequence(RECORDS, npartitions=6)
    exact = defaultdict(set)
    for country, customer, _ in RECORDS:
        exact[country].add(customer)
    pairs = b.map(lambda r: (r[0], r[1]))
    by_pairs = count_distinct_by_key(pairs, p=12, split_every=2).compute(**SYNC)
    by_fields = count_distinct_by_key(b, 0, 1, p=12).compute(**SYNC)
    assert by_pairs == by_fields
    assert set(by_pairs) == set(exact)
    for country, customers in exact.items():
        n = len(customers)
        assert abs(by_pairs[country] - n) <= max(1, 3 * 1.04 / 64 * n)
    # and each per-key sketch is the single-process sketch of that key's values
    whole = {}
    for country, customers in exact.items():
        whole[country] = round(direct(HyperLogLog(12), sorted(customers)).count())
    assert by_pairs == whole


def test_count_distinct_by_key_value_on_pairs_and_whole_records():
    pairs = [("a", (1, "x")), ("a", (2, "x")), ("b", (1, "y")), ("a", (1, "z"))]
    b = db.from_sequence(pairs, npartitions=2)
    assert count_distinct_by_key(b, value=0).compute(**SYNC) == {"a": 2, "b": 1}
    records = [{"k": "a", "v": 1}, {"k": "a", "v": 1}, {"k": "b", "v": 2}]
    whole = db.from_sequence([tuple(r.items()) for r in records], npartitions=2)
    assert count_distinct_by_key(whole, key=lambda r: r[0][1]).compute(**SYNC) == {
        "a": 1,
        "b": 1,
    }


@pytest.mark.parametrize("phi", [0.02, 0.1])
def test_heavy_hitters_against_exact_counts(phi):
    products = [r[2] for r in RECORDS]
    truth = Counter(products)
    n = len(products)
    b = bag_from_parts(cut(RECORDS, 7, seed=3))
    found = heavy_hitters(b, 2, phi=phi, split_every=3).compute(**SYNC)
    keys = [k for k, _ in found]
    assert {k for k, c in truth.items() if c >= phi * n} <= set(keys)
    for key, estimate in found:
        assert estimate >= truth[key]
        assert truth[key] >= (phi - phi / 10) * n
    assert [e for _, e in found] == sorted((e for _, e in found), reverse=True)


def test_heavy_hitter_spread_evenly_over_partitions_is_found():
    # heavy overall (25 %) but never the largest key in any partition
    parts = [[f"x{i}"] * 30 + [f"y{i}"] * 31 + ["h"] * 20 for i in range(5)]
    parts = [p + [f"z{i}-{j}" for j in range(19)] for i, p in enumerate(parts)]
    found = dict(heavy_hitters(bag_from_parts(parts), phi=0.19).compute(**SYNC))
    assert found["h"] == 100


def test_bloom_semi_join_keeps_every_match():
    big = [(r[1], r[2]) for r in RECORDS]
    small = [(f"c{i}", "vip") for i in range(0, 2000, 7)]
    b = bag_from_parts(cut(big, 6, seed=4))
    kept = bloom_semi_join(b, small, on_big=0, on_small=0, fpr=0.01).compute(**SYNC)
    vip = {k for k, _ in small}
    exact = [r for r in big if r[0] in vip]
    matched = [r for r in kept if r[0] in vip]
    assert matched == exact  # every match kept, in order
    extra = len(kept) - len(exact)
    non_matching = len(big) - len(exact)
    assert extra <= non_matching * 0.01 + 5 * math.sqrt(non_matching * 0.01)
    # kept records are a subsequence of big, in order
    it = iter(big)
    assert all(any(r == s for s in it) for r in kept)


def test_bloom_semi_join_with_bag_and_fixed_capacity():
    big = db.from_sequence(range(10_000), npartitions=4)
    small = db.from_sequence([{"id": i} for i in range(0, 10_000, 100)], npartitions=3)
    kept = bloom_semi_join(big, small, on_small="id", capacity=100, fpr=0.001)
    result = kept.compute(**SYNC)
    assert set(range(0, 10_000, 100)) <= set(result)
    assert len(result) < 100 + 30
    assert kept.npartitions == 4


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda b: bloom_filter(b, capacity=0), SketchError, "capacity=0"),
        (lambda b: count_min(b, eps=0.1), SketchError, "expected both"),
        (lambda b: hyperloglog(b, p=30), SketchError, "p=30"),
        (lambda b: count_distinct_by_key(b, p=2), SketchError, "p=2"),
        (lambda b: heavy_hitters(b, phi=0), ValueError, "phi=0"),
        (lambda b: bloom_semi_join(b, [1], fpr=2), SketchError, "fpr=2"),
        (lambda b: hyperloglog([1, 2]), TypeError, "dask.bag.Bag"),
        (lambda b: bloom_semi_join([1], b), TypeError, "big must be"),
    ],
)
def test_bad_arguments_raise_when_the_graph_is_built(call, error, match):
    with pytest.raises(error, match=match):
        call(db.from_sequence([1, 2], npartitions=1))


@pytest.mark.cluster
def test_cluster_gives_the_same_sketch_bytes(client):
    b = bag_from_parts(cut(RECORDS, 9, seed=9))
    customers = [r[1] for r in RECORDS]
    items = {
        "bloom": bloom_filter(b, 1, capacity=5000, split_every=3),
        "cms": count_min(b, 1, width=500, depth=4, split_every=2),
        "hll": hyperloglog(b, 1, p=11),
    }
    futures = client.compute(list(items.values()))
    results = dict(zip(items, client.gather(futures), strict=True))
    assert results["bloom"].to_bytes() == direct(BloomFilter(5000), customers).to_bytes()
    expected_cms = direct(CountMinSketch(width=500, depth=4), customers)
    assert results["cms"].to_bytes() == expected_cms.to_bytes()
    assert results["hll"].to_bytes() == direct(HyperLogLog(11), customers).to_bytes()


@pytest.mark.cluster
def test_cluster_recipes_match_sync(client):
    b = bag_from_parts(cut(RECORDS, 6, seed=6))
    small = [(f"c{i}", 1) for i in range(0, 2000, 11)]
    recipes = [
        count_distinct(b, 1),
        count_distinct_by_key(b, 0, 1, p=10),
        heavy_hitters(b, 2, phi=0.05),
        bloom_semi_join(b, small, on_big=1, on_small=0),
    ]
    on_cluster = client.gather(client.compute(recipes))
    assert list(on_cluster) == list(dask.compute(*recipes, **SYNC))


def test_empty_partitions_and_empty_bags():
    empty = bag_from_parts([[], [], []])
    assert bloom_filter(empty, capacity=10).compute(**SYNC) == BloomFilter(10)
    assert count_min(empty, width=5, depth=2).compute(**SYNC) == CountMinSketch(width=5, depth=2)
    assert heavy_hitters(empty).compute(**SYNC) == []
    assert count_distinct_by_key(empty).compute(**SYNC) == {}
    big = db.from_sequence(range(100), npartitions=3)
    assert bloom_semi_join(big, empty).compute(**SYNC) == []
    assert bloom_semi_join(big, []).compute(**SYNC) == []


def test_order_logs_round_trip_through_text_files(tmp_path):
    from dask_io.testing.orders import COUNTRIES, order_record, parse_order, write_orders

    cols = write_orders(tmp_path, 5000, nfiles=4, seed=3)
    b = db.read_text(str(tmp_path / "orders-*.csv")).map(parse_order)
    records = b.compute(**SYNC)
    assert records == [order_record(cols, i) for i in range(5000)]
    assert len(list(tmp_path.iterdir())) == 4
    counts = np.bincount(cols["country"], minlength=len(COUNTRIES))
    assert counts[0] > counts[5] > counts[20]  # Zipf-skewed countries
    # a sketch over the files agrees with numpy's exact answer
    estimate = count_distinct(b, 2, p=14).compute(**SYNC)
    exact = len(np.unique(cols["customer_id"]))
    assert abs(estimate - exact) <= 3 * 1.04 / 128 * exact
