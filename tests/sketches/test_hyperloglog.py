"""HyperLogLog: register ranks, accuracy from 10 to 10**7 items and, simulated, to 10**12."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dask_io.sketches import HyperLogLog, IncompatibleSketchError, SketchError, hll_precision
from dask_io.sketches.hashing import stable_hash
from dask_io.sketches.hyperloglog import ertl_estimate, register_ranks


def reference_registers(keys, p, seed=0):
    """Registers from the definition, one key at a time with Python ints."""
    q = 64 - p
    registers = [0] * (1 << p)
    for key in keys:
        h = stable_hash(key, seed)
        rest = h & ((1 << q) - 1)
        rank = q - rest.bit_length() + 1
        registers[h >> q] = max(registers[h >> q], rank)
    return np.array(registers, dtype=np.uint8)


def distinct_keys(n, seed):
    """``n`` distinct int64 keys, not consecutive."""
    # multiplying by an odd number is a bijection modulo 2**64, so keys stay distinct
    keys = np.arange(n, dtype=np.uint64) * np.uint64(0x2545F4914F6CDD1D) + np.uint64(seed)
    return keys.view(np.int64)


@pytest.mark.parametrize("p", [4, 10, 11, 14, 18])
def test_register_ranks_match_definition(p):
    rng = np.random.default_rng(p)
    hashes = rng.integers(0, 2**64, 2000, dtype=np.uint64, endpoint=False)
    q = 64 - p
    # edge cases: all-zero rest, single low bit, top bit of the rest
    hashes[:3] = [np.uint64(5 << q), np.uint64(1), np.uint64(1 << (q - 1))]
    index, rank = register_ranks(hashes, p)
    expected_rank = [q - (int(h) & ((1 << q) - 1)).bit_length() + 1 for h in hashes]
    assert index.tolist() == [int(h) >> q for h in hashes]
    assert rank.tolist() == expected_rank
    assert rank[0] == q + 1 and rank[1] == q and rank[2] == 1


@pytest.mark.parametrize("p", [4, 12])
def test_vectorised_update_equals_reference(p):
    keys = list(range(3000)) + [f"k{i}" for i in range(500)] + [(1, 2.5), None]
    hll = HyperLogLog(p, seed=3)
    hll.update(keys)
    assert np.array_equal(hll.registers, reference_registers(keys, p, seed=3))
    one = HyperLogLog(p, seed=3)
    for key in keys:
        one.add(key)
    assert one == hll


@pytest.mark.parametrize("n", [0, 1, 10, 100, 1000, 10_000, 100_000, 1_000_000, 10_000_000])
def test_relative_error_within_three_standard_errors(n):
    hll = HyperLogLog(14)
    hll.update(distinct_keys(n, seed=n))
    estimate = hll.count()
    assert abs(estimate - n) <= 3 * hll.standard_error * max(n, 1)
    assert len(hll) == round(estimate)


@pytest.mark.parametrize("p", [4, 8, 12, 16])
def test_small_range_is_nearly_exact(p):
    for n in (1, 2, 5, (1 << p) // 20):
        hll = HyperLogLog(p)
        hll.update(np.arange(n))
        assert abs(hll.count() - n) <= max(0.5, 3 * hll.standard_error * n)


def test_duplicates_do_not_count():
    hll = HyperLogLog(12)
    keys = np.repeat(distinct_keys(5000, seed=2) >> 20, 7)  # exact as float64 too
    assert len(np.unique(keys)) == 5000
    hll.update(keys)
    hll.update(keys.astype(np.float64))  # equal keys: 1 == 1.0
    assert abs(hll.count() - 5000) <= 3 * hll.standard_error * 5000


def test_string_keys():
    hll = HyperLogLog(14)
    hll.update([f"user-{i}" for i in range(200_000)])
    assert abs(hll.count() - 200_000) <= 3 * hll.standard_error * 200_000


def simulated_registers(n, p, rng):
    """Registers after ``n`` distinct uniform hashes, drawn from their exact distribution.

    Each register gets a multinomial share ``K`` of the hashes and holds the largest of
    ``K`` geometric ranks, capped at ``q + 1``: ``P(max <= r) = (1 - 2^-r)^K``.
    """
    m, q = 1 << p, 64 - p
    share = rng.multinomial(n, np.full(m, 1.0 / m)).astype(np.float64)
    u = rng.random(m)
    with np.errstate(divide="ignore"):
        tail = -np.expm1(np.log(u) / share)  # 1 - u^(1/K)
        rank = np.ceil(-np.log2(tail))
    rank = np.where(share == 0, 0, np.clip(rank, 1, q + 1))
    return rank.astype(np.int64)


@pytest.mark.parametrize("n", [10**3, 10**5, 10**8, 10**10, 10**12, 10**14])
@pytest.mark.parametrize("p", [10, 14])
def test_estimator_accurate_to_10_to_the_12(n, p):
    rng = np.random.default_rng([n % 2**32, p])
    errors = []
    for _ in range(5):
        registers = simulated_registers(n, p, rng)
        histogram = np.bincount(registers, minlength=66 - p).tolist()
        errors.append(ertl_estimate(histogram, p) / n - 1)
    se = 1.04 / math.sqrt(1 << p)
    assert max(abs(e) for e in errors) <= 3 * se
    assert abs(np.mean(errors)) <= 3 * se / math.sqrt(5)  # unbiased


def test_simulation_matches_real_registers():
    # the simulation used above has the register histogram of real hashing
    p, n = 12, 200_000
    hll = HyperLogLog(p)
    hll.update(np.arange(n))
    real = np.bincount(hll.registers, minlength=20)[:20]
    simulated = np.bincount(simulated_registers(n, p, np.random.default_rng(0)), minlength=20)
    simulated = simulated[:20]
    assert np.abs(real - simulated).max() <= 5 * np.sqrt(np.maximum(real, 1)).max()


def test_agrees_with_apache_datasketches():
    datasketches = pytest.importorskip("datasketches")
    n = 300_000
    keys = distinct_keys(n, seed=99)
    ours = HyperLogLog(14)
    ours.update(keys)
    theirs = datasketches.hll_sketch(14, datasketches.tgt_hll_type.HLL_8)
    for key in keys.tolist():
        theirs.update(key)
    se = 1.04 / math.sqrt(1 << 14)
    assert abs(theirs.get_estimate() - n) <= 3 * se * n
    # two independent estimates of n: their difference has standard deviation se*n*sqrt(2)
    assert abs(ours.count() - theirs.get_estimate()) <= 3 * math.sqrt(2) * se * n


def test_merge_is_register_maximum():
    a, b, whole = HyperLogLog(10), HyperLogLog(10), HyperLogLog(10)
    a.update(np.arange(0, 7000))
    b.update(np.arange(5000, 12000))
    whole.update(np.arange(12000))
    merged = a | b
    assert merged == whole
    assert np.array_equal(merged.registers, np.maximum(a.registers, b.registers))


@pytest.mark.parametrize("other", [HyperLogLog(11), HyperLogLog(10, seed=1)], ids=["p", "seed"])
def test_merge_mismatch_raises(other):
    with pytest.raises(IncompatibleSketchError, match=r"\(p=10, seed=0\)"):
        HyperLogLog(10).merge(other)
    with pytest.raises(IncompatibleSketchError, match="BloomFilter into a HyperLogLog"):
        from dask_io.sketches import BloomFilter

        HyperLogLog(10).merge(BloomFilter(10))


@pytest.mark.parametrize(("rel_error", "p"), [(0.01, 14), (0.02, 12), (0.3, 4), (0.5, 4)])
def test_from_error(rel_error, p):
    assert hll_precision(rel_error) == p
    hll = HyperLogLog.from_error(rel_error, seed=2)
    assert (hll.p, hll.seed) == (p, 2)
    assert hll.standard_error <= rel_error or p == 4


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: HyperLogLog(3), "p=3"),
        (lambda: HyperLogLog(19), "p=19"),
        (lambda: HyperLogLog(14.0), "p=14.0"),
        (lambda: HyperLogLog(14, seed=2**64), "seed="),
        (lambda: hll_precision(0.001), "p=21"),
        (lambda: hll_precision(0.0), "rel_error=0.0"),
    ],
)
def test_bad_parameters_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bytes_round_trip_and_corruption():
    hll = HyperLogLog(8, seed=6)
    hll.update(np.arange(1000))
    data = hll.to_bytes()
    assert data[:6] == b"DIOSH\x01"
    assert len(data) == 8 + 9 + 256
    assert HyperLogLog.from_bytes(data) == hll
    corrupt = bytearray(data)
    corrupt[-1] = 200
    with pytest.raises(SketchError, match="register of 200"):
        HyperLogLog.from_bytes(bytes(corrupt))
    with pytest.raises(SketchError, match="expected 265"):
        HyperLogLog.from_bytes(data + b"\x00")
