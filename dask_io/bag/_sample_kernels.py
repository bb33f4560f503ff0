"""Pure per-partition kernels of the samplers (see :mod:`dask_io.bag._kernels`).

Every random number comes from a numpy ``Generator`` seeded by ``(seed, stream,
partition index)`` only, never from global random state.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from dask_io.bag._batch import batch_spec, hash_mask, is_batch, key_fractions
from dask_io.bag._kernels import KeyFn, Records, as_list, concat_buckets, gc_paused
from dask_io.sketches.hashing import hash_array

# distinct random streams drawn from the same (seed, partition index)
STREAM_BERNOULLI, STREAM_STRATIFIED, STREAM_RESERVOIR, STREAM_MERGE = 1, 2, 3, 4


def make_rng(seed: int, stream: int, index: int) -> Any:
    """A numpy Generator seeded by ``(seed, stream, index)`` only: the same numbers in
    every process, on every scheduler and on every run."""
    import numpy as np

    return np.random.default_rng([seed, stream, index])


@gc_paused
def bernoulli_sample(
    records: Iterable[Any], index: int, fraction: float, seed: int, with_replacement: bool
) -> list[Any]:
    """Keep each record with probability ``fraction`` (or repeat it Poisson(fraction)
    times with replacement), drawing all numbers of the partition in one batch.

    >>> bernoulli_sample(range(5), 0, 1.0, 0, False)
    [0, 1, 2, 3, 4]
    """
    import numpy as np

    recs = as_list(records)
    rng = make_rng(seed, STREAM_BERNOULLI, index)
    if with_replacement:
        picks = np.repeat(np.arange(len(recs)), rng.poisson(fraction, len(recs)))
    else:
        picks = np.flatnonzero(rng.random(len(recs)) < fraction)
    return Records([recs[i] for i in picks.tolist()])


def hash_threshold(fraction: float) -> int:
    """The uint64 cut-off below which a key's hash is kept for ``fraction``."""
    return min(round(fraction * 2.0**64), 2**64)


@gc_paused
def hash_sample_partition(
    records: Iterable[Any], keyfn: KeyFn, threshold: int, salt: int
) -> list[Any]:
    """Keep the records whose key hashes (salted) below ``threshold``.

    The decision depends on the key alone, so the same keys are kept on every run
    and in every partition. The keys of a partition are hashed in one batch
    (:func:`dask_io.sketches.hashing.hash_array`, equal to ``stable_hash`` per key).

    >>> hash_sample_partition([("a", 1), ("b", 2)], None, 2**64, 0)
    [('a', 1), ('b', 2)]
    """
    import numpy as np

    if is_batch(records) and batch_spec(keyfn):
        mask = hash_mask(records, keyfn, threshold, salt)
        if mask is not None:
            return records.take(np.flatnonzero(mask))
    recs = as_list(records)
    if threshold >= 2**64 or not recs:
        return Records(recs if threshold >= 2**64 else [])
    getter = operator.itemgetter(0) if keyfn is None else keyfn
    hashes = hash_array([getter(r) for r in recs], seed=salt)
    picks = np.flatnonzero(hashes < np.uint64(threshold))
    return Records([recs[i] for i in picks.tolist()])


@gc_paused
def stratified_sample(
    records: Iterable[Any],
    index: int,
    keyfn: KeyFn,
    fractions: dict[Any, float],
    default: float | None,
    seed: int,
    with_replacement: bool,
) -> list[Any]:
    """Sample each record with the fraction of its key (PySpark's ``sampleByKey``).

    >>> stratified_sample([("a", 1), ("b", 2)], 0, None, {"a": 1.0, "b": 0.0}, None, 0, False)
    [('a', 1)]
    """
    import numpy as np

    if is_batch(records) and batch_spec(keyfn):
        probs = key_fractions(records, keyfn, lambda k: _fraction_of(k, fractions, default))
        if probs is not None:
            rng = make_rng(seed, STREAM_STRATIFIED, index)
            if with_replacement:
                return records.take(np.repeat(np.arange(len(records)), rng.poisson(probs)))
            return records.take(np.flatnonzero(rng.random(len(records)) < probs))
    recs = as_list(records)
    getter = operator.itemgetter(0) if keyfn is None else keyfn
    probs = np.fromiter(
        (_fraction_of(getter(r), fractions, default) for r in recs), float, len(recs)
    )
    rng = make_rng(seed, STREAM_STRATIFIED, index)
    if with_replacement:
        picks = np.repeat(np.arange(len(recs)), rng.poisson(probs))
    else:
        picks = np.flatnonzero(rng.random(len(recs)) < probs)
    return Records([recs[i] for i in picks.tolist()])


def _fraction_of(key: Any, fractions: dict[Any, float], default: float | None) -> float:
    fraction = fractions.get(key, default)
    if fraction is None:
        raise ValueError(
            f"sample_by_key: key {key!r} has no entry in fractions and no default was given"
        )
    return fraction


@gc_paused
def reservoir_sample(
    records: Iterable[Any], index: int, n: int, seed: int
) -> tuple[int, list[Any]]:
    """A uniform sample of ``min(n, len)`` records in one pass (Li's Algorithm L).

    Returns ``(number of records seen, sample)``.

    >>> reservoir_sample(["a", "b"], 0, 5, 0)
    (2, ['a', 'b'])
    """
    import math

    recs = as_list(records)
    total = len(recs)
    if total <= n or n == 0:
        return total, Records(recs[:n])
    draw = _uniforms(make_rng(seed, STREAM_RESERVOIR, index))
    sample = Records(recs[:n])
    w = math.exp(math.log(next(draw)) / n)
    i = n - 1
    while True:
        i += math.floor(math.log(next(draw)) / math.log1p(-w)) + 1 if w < 1 else 1
        if i >= total:
            return total, sample
        sample[min(int(next(draw) * n), n - 1)] = recs[i]
        w *= math.exp(math.log(next(draw)) / n)


def _uniforms(rng: Any, block: int = 4096) -> Iterator[float]:
    """Uniform floats in (0, 1], drawn from ``rng`` a block at a time."""
    while True:
        yield from (1.0 - rng.random(block)).tolist()


def allocate_sample(counts: Sequence[int], n: int, seed: int) -> list[int]:
    """How many of ``n`` uniformly drawn records fall in each partition.

    Draws ``min(n, sum(counts))`` distinct positions of the concatenated bag and
    counts them per partition: the multivariate hypergeometric law, exactly.

    >>> allocate_sample([3, 0, 2], 10, 0)
    [3, 0, 2]
    """
    import numpy as np

    total = sum(counts)
    m = min(n, total)
    if m == total:
        return list(counts)
    rng = make_rng(seed, STREAM_MERGE, 0)
    positions = rng.choice(total, size=m, replace=False)
    owner = np.searchsorted(np.cumsum(counts), positions, side="right")
    return np.bincount(owner, minlength=len(counts)).tolist()


@gc_paused
def subsample(reservoir: tuple[int, list[Any]], index: int, k: int, seed: int) -> list[Any]:
    """A uniform subset of ``k`` records of a partition's reservoir."""
    sample = reservoir[1]
    if k >= len(sample):
        return Records(sample)
    rng = make_rng(seed, STREAM_MERGE, index + 1)
    picks = sorted(rng.choice(len(sample), size=k, replace=False).tolist())
    return Records([sample[i] for i in picks])


@gc_paused
def shuffle_sample(parts: Iterable[list[Any]], seed: int) -> list[Any]:
    """Concatenate the per-partition samples and put them in a seeded random order."""
    out = concat_buckets(parts)
    rng = make_rng(seed, STREAM_MERGE, -1 % 2**32)
    return Records([out[i] for i in rng.permutation(len(out)).tolist()])
