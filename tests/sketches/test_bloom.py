"""Bloom filter: sizing, no false negatives, measured false-positive rate, exact vectorisation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dask_io.sketches import BloomFilter, IncompatibleSketchError, SketchError, bloom_size
from dask_io.sketches.hashing import stable_hash

M32 = (1 << 32) - 1
ROTATE = 0xD6E8FEB86659FD93


def reference_bits(keys, num_bits, num_hashes, seed=0):
    """The documented positions, one key at a time with Python ints: an independent oracle."""
    bits = bytearray(num_bits // 8)
    nbytes = num_bits // 8
    for key in keys:
        h = stable_hash(key, seed)
        lo, hi = h & M32, h >> 32
        rotation = ((h * ROTATE) & ((1 << 64) - 1)) >> 61
        for i in range(num_hashes):
            byte = (((lo + i * hi) & M32) * nbytes) >> 32
            bits[byte] |= 1 << ((rotation + i) & 7)
    return bytes(bits)


def payload(bf):
    return bf.to_bytes()[-(bf.num_bits // 8) :]


def binomial_bounds(n, p, z=5.0):
    """Two-sided bounds on a Binomial(n, p) count, failing with probability < 1e-6."""
    sd = math.sqrt(n * p * (1 - p))
    return n * p - z * sd, n * p + z * sd


@pytest.mark.parametrize(
    ("capacity", "fpr", "bits", "hashes"),
    [(1000, 0.01, 9600, 7), (1, 0.5, 64, 1), (10**6, 0.001, 14377600, 10), (100, 0.1, 512, 3)],
)
def test_sizing(capacity, fpr, bits, hashes):
    assert bloom_size(capacity, fpr) == (bits, hashes)
    exact = -capacity * math.log(fpr) / math.log(2) ** 2
    assert bits >= exact > bits - 64 or bits == 64


def test_about_9_6_bits_per_key_at_one_percent():
    bf = BloomFilter(10**6, 0.01)
    assert 9.5 < bf.num_bits / 10**6 < 9.7
    assert bf.num_hashes == 7
    assert bf.nbytes == bf.num_bits // 8


@pytest.mark.parametrize(
    "keys",
    [
        np.arange(-500, 1500, dtype=np.int64),
        np.linspace(-3, 3, 777),
        [f"user-{i}" for i in range(300)],
        [(i, str(i)) for i in range(200)] + [None, b"x", 2**70],
    ],
    ids=["int64", "float64", "str", "mixed"],
)
def test_vectorised_update_equals_reference(keys):
    bf = BloomFilter(1000, 0.02, seed=5)
    bf.update(keys)
    assert payload(bf) == reference_bits(list(keys), bf.num_bits, bf.num_hashes, seed=5)
    one_by_one = BloomFilter(1000, 0.02, seed=5)
    for key in list(keys):
        one_by_one.add(key)
    assert one_by_one == bf


def test_more_than_eight_hashes_equals_reference():
    bf = BloomFilter(500, 1e-5)
    assert bf.num_hashes > 8
    keys = np.arange(400)
    bf.update(keys)
    assert payload(bf) == reference_bits(keys.tolist(), bf.num_bits, bf.num_hashes)
    assert bf.contains(keys).all()


@pytest.mark.parametrize("fpr", [0.1, 0.01, 0.001])
def test_false_positive_rate_int64(fpr):
    n = 20_000
    bf = BloomFilter(n, fpr, seed=1)
    rng = np.random.default_rng(42)
    keys = rng.choice(2**40, size=2 * n + 100_000, replace=False).astype(np.int64)
    inserted, fresh = keys[:n], keys[2 * n :]
    bf.update(inserted)
    assert bf.contains(inserted).all()  # no false negatives, ever
    false_positives = int(bf.contains(fresh).sum())
    theory = (1 - math.exp(-bf.num_hashes * n / bf.num_bits)) ** bf.num_hashes
    low, high = binomial_bounds(len(fresh), theory)
    assert low <= false_positives <= high
    assert false_positives <= binomial_bounds(len(fresh), fpr)[1]  # the target itself
    assert bf.estimated_fpr == pytest.approx(theory, rel=0.05)
    assert bf.estimated_count == pytest.approx(n, rel=0.02)


def test_false_positive_rate_strings():
    n = 10_000
    bf = BloomFilter(n, 0.01, seed=3)
    bf.update([f"customer-{i}" for i in range(n)])
    assert bf.contains([f"customer-{i}" for i in range(n)]).all()
    fresh = np.array([f"visitor-{i}" for i in range(100_000)])
    false_positives = int(bf.contains(fresh).sum())
    low, high = binomial_bounds(len(fresh), 0.01)
    assert low <= false_positives <= high


def test_single_keys_and_equal_keys():
    bf = BloomFilter(100, 0.01)
    bf.add((1, "a"))
    bf.add(2.5)
    assert (1.0, "a") in bf
    assert (True, "a") in bf
    assert 2.5 in bf
    assert np.float32(2.5) in bf
    assert bf.contains([(1, "a"), 2.5]).tolist() == [True, True]


def test_empty_filter_contains_nothing():
    bf = BloomFilter(1000, 0.01)
    assert not bf.contains(np.arange(1000)).any()
    assert bf.estimated_fpr == 0.0
    assert bf.estimated_count == 0.0
    assert bf.contains([]).shape == (0,)
    bf.update([])
    assert bf.bits_set == 0


def test_contains_keeps_array_shape():
    bf = BloomFilter(100, 0.01)
    bf.update(np.arange(10))
    found = bf.contains(np.arange(20).reshape(4, 5))
    assert found.shape == (4, 5)
    assert found.ravel()[:10].all()


def test_saturated_filter():
    bf = BloomFilter(10, 0.5)
    bf.update(np.arange(10_000))
    assert bf.bits_set == bf.num_bits
    assert bf.estimated_fpr == 1.0
    assert bf.estimated_count == math.inf


def test_merge_is_union():
    a, b, whole = BloomFilter(1000, 0.01), BloomFilter(1000, 0.01), BloomFilter(1000, 0.01)
    a.update(np.arange(0, 600))
    b.update(np.arange(400, 1000))
    whole.update(np.arange(1000))
    assert (a | b) == whole
    assert a != whole  # | returns a new filter
    a |= b
    assert a == whole


@pytest.mark.parametrize(
    "other",
    [BloomFilter(2000, 0.01), BloomFilter(1000, 0.01, seed=1), BloomFilter(1000, 0.001)],
    ids=["size", "seed", "hashes"],
)
def test_merge_mismatch_raises(other):
    with pytest.raises(IncompatibleSketchError, match="different parameters"):
        BloomFilter(1000, 0.01).merge(other)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"capacity": 0}, "capacity=0"),
        ({"capacity": 1.5}, "capacity=1.5"),
        ({"capacity": 10, "fpr": 1.0}, "fpr=1.0"),
        ({"capacity": 10, "fpr": 0}, "fpr=0"),
        ({"capacity": 10, "seed": -1}, "seed=-1"),
        ({"capacity": 10**12, "fpr": 1e-9}, "too large"),
    ],
)
def test_bad_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BloomFilter(**kwargs)


def test_single_key_given_to_update_raises():
    bf = BloomFilter(10)
    with pytest.raises(TypeError, match="batch of keys"):
        bf.update("abc")
    with pytest.raises(TypeError, match="batch of keys"):
        bf.contains((1, 2))


def test_bytes_layout_and_errors():
    bf = BloomFilter(1000, 0.01, seed=9)
    bf.update(np.arange(100))
    data = bf.to_bytes()
    assert data[:6] == b"DIOSB\x01"
    assert len(data) == 8 + 36 + bf.num_bits // 8
    copy = BloomFilter.from_bytes(data)
    assert copy == bf and copy.capacity == 1000 and copy.fpr == 0.01 and copy.seed == 9
    copy.add(10**9)  # the copy is writable and independent
    assert copy != bf
    with pytest.raises(SketchError, match=r"truncated|expected"):
        BloomFilter.from_bytes(data[:-1])
    with pytest.raises(SketchError, match="bad magic"):
        BloomFilter.from_bytes(b"XXXX" + data[4:])
    with pytest.raises(SketchError, match="version 2"):
        BloomFilter.from_bytes(data[:5] + b"\x02" + data[6:])
    with pytest.raises(SketchError, match="too short"):
        BloomFilter.from_bytes(b"DIO")
