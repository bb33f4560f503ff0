"""Count-Min sketch: sizing, never undercounts, overcount within eps*N, heavy hitters."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from dask_io.sketches import CountMinSketch, IncompatibleSketchError, SketchError, count_min_size
from dask_io.sketches.hashing import stable_hash

M32 = (1 << 32) - 1


def reference_table(keys, counts, width, depth, seed=0):
    """The documented counters, one key at a time with Python ints: an independent oracle."""
    table = np.zeros((depth, width), dtype=np.int64)
    for key, count in zip(keys, counts, strict=True):
        h = stable_hash(key, seed)
        lo, hi = h & M32, h >> 32
        for row in range(depth):
            table[row, (((lo + row * hi) & M32) * width) >> 32] += count
    return table


def zipf_keys(n, seed=0, a=1.3):
    return np.random.default_rng(seed).zipf(a, n).astype(np.int64)


@pytest.mark.parametrize(
    ("eps", "confidence", "sizing", "shape"),
    [
        (0.001, 0.99, "classic", (2719, 5)),
        (0.01, 0.999, "classic", (272, 7)),
        (0.001, 0.99, "spark", (2000, 7)),
        (0.5, 0.5, "spark", (4, 1)),
    ],
)
def test_sizing(eps, confidence, sizing, shape):
    assert count_min_size(eps, confidence, sizing) == shape
    cms = CountMinSketch(eps, confidence, sizing=sizing)
    assert (cms.width, cms.depth) == shape
    assert cms.eps <= eps
    assert cms.delta <= 1 - confidence + 1e-12


def test_width_depth_constructor():
    cms = CountMinSketch(width=100, depth=3, seed=4)
    assert (cms.width, cms.depth, cms.seed) == (100, 3, 4)
    assert cms.eps == pytest.approx(math.e / 100)
    assert cms.delta == pytest.approx(math.exp(-3))
    assert cms.nbytes == 100 * 3 * 8


@pytest.mark.parametrize(
    "keys",
    [
        zipf_keys(5000),
        [f"product-{i % 37}" for i in range(1000)],
        [(i % 5, "x") for i in range(100)] + [None, 1.5, b"b"],
    ],
    ids=["int64", "str", "mixed"],
)
def test_vectorised_update_equals_reference(keys):
    cms = CountMinSketch(width=97, depth=4, seed=2)
    cms.update(keys)
    expected = reference_table(list(keys), [1] * len(keys), 97, 4, seed=2)
    assert np.array_equal(cms.table, expected)
    assert cms.total == len(keys)


def test_weighted_update_equals_repeated_keys():
    rng = np.random.default_rng(5)
    keys = rng.integers(0, 50, 300)
    counts = rng.integers(0, 20, 300)
    weighted = CountMinSketch(width=64, depth=3)
    weighted.update(keys, counts=counts)
    repeated = CountMinSketch(width=64, depth=3)
    repeated.update(np.repeat(keys, counts))
    assert weighted == repeated
    assert weighted.total == int(counts.sum())
    single = CountMinSketch(width=64, depth=3)
    for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
        single.add(key, count)
    assert single == weighted


@pytest.mark.parametrize("sizing", ["classic", "spark"])
def test_never_undercounts_and_overcount_within_bound(sizing):
    eps, confidence = 0.002, 0.95
    keys = zipf_keys(300_000, seed=7)
    cms = CountMinSketch(eps, confidence, seed=3, sizing=sizing)
    cms.update(keys)
    distinct, true = np.unique(keys, return_counts=True)
    estimates = cms.estimate(distinct)
    assert (estimates >= true).all()
    assert cms.total == len(keys)
    over = estimates - true
    fraction_bad = float((over > eps * len(keys)).mean())
    delta = 1 - confidence
    # each key errs with probability <= delta: allow a 5-sigma binomial margin
    assert fraction_bad <= delta + 5 * math.sqrt(delta * (1 - delta) / len(distinct))
    # and the sketch is not trivially exact: collisions do happen in the tail
    assert over.max() > 0


def test_estimates_for_unseen_keys_are_small():
    cms = CountMinSketch(0.01, 0.99)
    cms.update(zipf_keys(50_000, seed=1))
    unseen = cms.estimate(np.arange(-1000, 0))
    assert (unseen <= cms.error_bound).mean() >= 0.99


def test_estimate_single_and_batch():
    cms = CountMinSketch(0.01, 0.99)
    cms.update([("a", 1), ("a", 1), ("b", 2)])
    assert cms.estimate(("a", 1)) == 2  # a tuple is one key
    assert cms.estimate(("a", 1.0)) == 2
    assert cms.estimate([("a", 1), ("b", 2), "zz"]).tolist() == [2, 1, 0]
    assert cms.estimate(np.array([[1, 2]])).shape == (1, 2)


def test_heavy_hitters_with_candidates():
    keys = zipf_keys(200_000, seed=11, a=1.5)
    phi = 0.01
    cms = CountMinSketch(phi / 10, 0.99)
    cms.update(keys)
    truth = Counter(keys.tolist())
    heavy = {k for k, c in truth.items() if c >= phi * len(keys)}
    found = cms.heavy_hitters(list(truth) + list(truth), phi)  # duplicates are ignored
    found_keys = [k for k, _ in found]
    assert heavy <= set(found_keys)
    assert len(found_keys) == len(set(found_keys))
    estimates = [e for _, e in found]
    assert estimates == sorted(estimates, reverse=True)
    for key, estimate in found:
        assert estimate >= truth[key] >= (phi - cms.eps) * len(keys)
    assert cms.heavy_hitters([], phi) == []
    with pytest.raises(SketchError, match="phi=0"):
        cms.heavy_hitters([1], 0)


def test_merge_is_sum():
    a, b, whole = (CountMinSketch(0.01, 0.9) for _ in range(3))
    keys = zipf_keys(10_000)
    a.update(keys[:3000])
    b.update(keys[3000:])
    whole.update(keys)
    assert (a | b) == whole
    assert (a | b).total == len(keys)


@pytest.mark.parametrize(
    "other",
    [
        CountMinSketch(width=100, depth=4),
        CountMinSketch(width=101, depth=3),
        CountMinSketch(width=100, depth=3, seed=1),
    ],
    ids=["depth", "width", "seed"],
)
def test_merge_mismatch_raises(other):
    with pytest.raises(IncompatibleSketchError, match="width=100, depth=3, seed=0"):
        CountMinSketch(width=100, depth=3).merge(other)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((), {}, "expected both"),
        ((0.01,), {}, "expected both"),
        ((0.01, 0.9), {"width": 3}, "either eps"),
        ((), {"width": 0, "depth": 2}, "width=0"),
        ((), {"width": 10, "depth": 2.5}, "depth=2.5"),
        ((), {"width": 2**33, "depth": 2}, "too large"),
        ((2.0, 0.9), {}, "eps=2.0"),
        ((0.1, 1.0), {}, "confidence=1.0"),
        ((0.1, 0.9), {"sizing": "exact"}, "sizing='exact'"),
    ],
)
def test_bad_parameters_raise(args, kwargs, match):
    with pytest.raises(SketchError, match=match):
        CountMinSketch(*args, **kwargs)


@pytest.mark.parametrize(
    ("counts", "match"),
    [([1, -1], "negative"), ([1.5, 2.0], "integers"), ([1], r"shape \(1,\)")],
)
def test_bad_counts_raise(counts, match):
    cms = CountMinSketch(width=10, depth=2)
    with pytest.raises(SketchError, match=match):
        cms.update([1, 2], counts=counts)
    assert cms.total == 0


def test_bytes_round_trip_keeps_total_and_sizing():
    cms = CountMinSketch(0.05, 0.9, seed=8, sizing="spark")
    cms.update(zipf_keys(1000))
    data = cms.to_bytes()
    assert data[:6] == b"DIOSC\x01"
    copy = CountMinSketch.from_bytes(data)
    assert copy == cms
    assert (copy.total, copy.sizing, copy.seed) == (1000, "spark", 8)
    copy.add(1)
    assert copy != cms
    with pytest.raises(SketchError, match="kind"):
        CountMinSketch.from_bytes(b"DIOSH" + data[5:])
