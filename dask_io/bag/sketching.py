"""Sketches as dask.bag aggregations, and the recipes built on them.

Each aggregation builds one sketch per partition with a vectorised batch update,
then merges the partition sketches in a tree reduction (``split_every`` of them per
task, as :meth:`dask.bag.Bag.reduction` does). Sketches travel between workers as
their compact bytes (they pickle through ``to_bytes``), and because keys are hashed
with :func:`~dask_io.sketches.hashing.stable_hash` the result is the same, byte for
byte, on any scheduler and any partitioning as a single-process build.

The sketch of a bag: :func:`bloom_filter`, :func:`count_min`, :func:`hyperloglog`.
Recipes: :func:`count_distinct` (HyperLogLog), :func:`count_distinct_by_key`,
:func:`heavy_hitters` (Count-Min with exact per-partition candidates) and
:func:`bloom_semi_join` (filter a large bag by membership in a small one, the
broadcast-join use of a Bloom filter).

``key`` selects what is sketched: ``None`` the record itself, a callable
``key(record)``, anything else ``record[key]`` (a tuple index or dict field).
All functions are lazy: they return a :class:`dask.bag.Item` (or a Bag).

>>> import dask.bag as db
>>> b = db.from_sequence(range(10_000), npartitions=4)
>>> count_distinct(b, key=lambda x: x % 100).compute()
100
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import dask.bag as db
import numpy as np
from dask.bag import Bag
from dask.bag.core import Item
from dask.base import tokenize

from dask_io.sketches import BloomFilter, CountMinSketch, HyperLogLog, Sketch, hash_array
from dask_io.sketches.hyperloglog import register_ranks

__all__ = [
    "bloom_filter",
    "bloom_semi_join",
    "count_distinct",
    "count_distinct_by_key",
    "count_min",
    "heavy_hitters",
    "hyperloglog",
]

KeyFn = Callable[[Any], Any] | None


# --------------------------------------------------------------------------- helpers


def _check_bag(bag: Any, name: str = "bag") -> Bag:
    if not isinstance(bag, Bag):
        raise TypeError(f"{name} must be a dask.bag.Bag, got {type(bag).__name__}")
    return bag


def _getter(key: Any) -> KeyFn:
    """``None`` -> the record itself; a callable as is; else ``record[key]``."""
    if key is None or callable(key):
        return key
    return operator.itemgetter(key)


def _keys_of(partition: Iterable[Any], keyfn: KeyFn) -> Any:
    """The keys of one partition: a numpy array as is, else a list."""
    if keyfn is None:
        return partition if isinstance(partition, np.ndarray) else list(partition)
    return [keyfn(record) for record in partition]


def _build(partition: Iterable[Any], make: Callable[[], Sketch], keyfn: KeyFn) -> Sketch:
    """The sketch of one partition."""
    sketch = make()
    sketch.update(_keys_of(partition, keyfn))
    return sketch


def _merge(sketches: Iterable[Sketch], make: Callable[[], Sketch]) -> Sketch:
    """Merge sketches into a new one (inputs are left unchanged).

    Dask's reduction drops empty partitions, so there may be no sketch at all: then
    the result is an empty sketch from ``make``.
    """
    result = make()
    return result.merge(*sketches)


def _reduce(
    bag: Bag, make: Callable[[], Sketch], key: Any, split_every: int | None, op: str
) -> Item:
    build = functools.partial(_build, make=make, keyfn=_getter(key))
    name = f"dask_io-{op}-{tokenize(bag, make, key, split_every)}"
    merge = functools.partial(_merge, make=make)
    return bag.reduction(build, merge, split_every=split_every, name=name)


def _factory(cls: type[Sketch], *args: Any, **kwargs: Any) -> Callable[[], Sketch]:
    """A picklable zero-argument constructor, validated now rather than on a worker."""
    cls(*args, **kwargs)
    return functools.partial(cls, *args, **kwargs)


# --------------------------------------------------------------------------- sketches


def bloom_filter(
    bag: Bag,
    key: Any = None,
    *,
    capacity: int,
    fpr: float = 0.01,
    seed: int = 0,
    split_every: int | None = None,
) -> Item:
    """A :class:`~dask_io.sketches.BloomFilter` of the keys of ``bag``.

    Parameters
    ----------
    bag
        The records.
    key
        What to add: ``None`` (the record), a callable, or an index/field name.
    capacity, fpr, seed
        The filter's size and seed (see :class:`~dask_io.sketches.BloomFilter`).
    split_every
        How many partition sketches one merge task takes (Dask's default if None).

    Returns
    -------
    dask.bag.Item
        Computes to the filter.

    Examples
    --------
    >>> import dask.bag as db
    >>> b = db.from_sequence([("u1", 3), ("u2", 5)], npartitions=2)
    >>> bf = bloom_filter(b, key=0, capacity=100).compute()
    >>> "u1" in bf, bf.num_hashes
    (True, 7)
    """
    make = _factory(BloomFilter, capacity, fpr, seed)
    return _reduce(_check_bag(bag), make, key, split_every, "bloom-filter")


def count_min(
    bag: Bag,
    key: Any = None,
    *,
    eps: float | None = None,
    confidence: float | None = None,
    width: int | None = None,
    depth: int | None = None,
    sizing: str = "classic",
    seed: int = 0,
    split_every: int | None = None,
) -> Item:
    """A :class:`~dask_io.sketches.CountMinSketch` counting the keys of ``bag``.

    Give ``eps`` and ``confidence``, or ``width`` and ``depth`` (see
    :class:`~dask_io.sketches.CountMinSketch`); the other arguments are as for
    :func:`bloom_filter`.

    Examples
    --------
    >>> import dask.bag as db
    >>> b = db.from_sequence(["a", "b", "a", "c", "a"], npartitions=3)
    >>> count_min(b, eps=0.01, confidence=0.99).compute().estimate("a")
    3
    """
    make = _factory(CountMinSketch, eps, confidence, seed, width=width, depth=depth, sizing=sizing)
    return _reduce(_check_bag(bag), make, key, split_every, "count-min")


def hyperloglog(
    bag: Bag, key: Any = None, *, p: int = 14, seed: int = 0, split_every: int | None = None
) -> Item:
    """A :class:`~dask_io.sketches.HyperLogLog` of the keys of ``bag``.

    Examples
    --------
    >>> import dask.bag as db
    >>> b = db.from_sequence(range(100_000), npartitions=4)
    >>> hll = hyperloglog(b, p=12).compute()
    >>> abs(hll.count() - 100_000) < 3 * hll.standard_error * 100_000
    True
    """
    make = _factory(HyperLogLog, p, seed)
    return _reduce(_check_bag(bag), make, key, split_every, "hyperloglog")


def count_distinct(
    bag: Bag, key: Any = None, *, p: int = 14, seed: int = 0, split_every: int | None = None
) -> Item:
    """The approximate number of distinct keys in ``bag`` (HyperLogLog), as an int.

    Relative standard error ``1.04 / sqrt(2**p)``: 0.81 % at ``p = 14``, using
    16 KiB per partition. Like Spark's ``approx_count_distinct``.

    Examples
    --------
    >>> import dask.bag as db
    >>> count_distinct(db.from_sequence(["a", "b", "a"], npartitions=2)).compute()
    2
    """
    return hyperloglog(bag, key, p=p, seed=seed, split_every=split_every).apply(_rounded_count)


def _rounded_count(sketch: HyperLogLog) -> int:
    return round(sketch.count())


# --------------------------------------------------------------------------- heavy hitters


def _heavy_partition(
    partition: Iterable[Any], make: Callable[[], Sketch], keyfn: KeyFn, phi: float
) -> tuple[CountMinSketch, list[Any]]:
    """The partition's Count-Min sketch and its exact local heavy keys (the candidates)."""
    keys = _keys_of(partition, keyfn)
    sketch = make()
    assert isinstance(sketch, CountMinSketch)
    hashes = hash_array(keys, sketch.seed).reshape(-1)
    sketch.update_hashes(hashes)
    _, first, counts = np.unique(hashes, return_index=True, return_counts=True)
    heavy = first[counts >= phi * len(hashes)]
    flat = keys.reshape(-1) if isinstance(keys, np.ndarray) else keys
    return sketch, [flat[i] for i in np.sort(heavy).tolist()]


def _heavy_merge(
    parts: Iterable[tuple[CountMinSketch, list[Any]]], make: Callable[[], Sketch], phi: float
) -> tuple[CountMinSketch, list[Any]]:
    """Merge sketches; keep the candidates whose estimate is heavy in the merged data.

    Safe pruning: a key heavy in the merged data is heavy in one of the parts, so it
    is among that part's candidates, and its estimate never falls below its count.
    """
    parts = list(parts)
    sketch = make().merge(*(s for s, _ in parts))
    assert isinstance(sketch, CountMinSketch)
    candidates = [key for _, keys in parts for key in keys]
    return sketch, [key for key, _ in sketch.heavy_hitters(candidates, phi)]


def _heavy_result(part: tuple[CountMinSketch, list[Any]], phi: float) -> list[tuple[Any, int]]:
    sketch, candidates = part
    return sketch.heavy_hitters(candidates, phi)


def heavy_hitters(
    bag: Bag,
    key: Any = None,
    *,
    phi: float = 0.01,
    eps: float | None = None,
    confidence: float = 0.99,
    seed: int = 0,
    split_every: int | None = None,
) -> Item:
    """The keys making up at least a fraction ``phi`` of ``bag``, with estimated counts.

    One pass: each partition builds a Count-Min sketch and lists its *local* heavy
    keys exactly (count >= ``phi`` × partition size); a key heavy in the whole bag
    is heavy in at least one partition, so no heavy key is missed. The merged
    sketch then keeps the candidates whose estimate reaches ``phi * N``.

    Parameters
    ----------
    bag, key
        The records and what to count (see :func:`bloom_filter`).
    phi
        The threshold, a fraction of the number of records, in (0, 1].
    eps, confidence
        The Count-Min error (default ``phi / 10``) and its confidence: a key reported
        has count >= ``(phi - eps) N`` with probability ``confidence``.
    seed, split_every
        As for :func:`bloom_filter`.

    Returns
    -------
    dask.bag.Item
        Computes to a list of ``(key, estimated count)``, largest first. Estimates
        are never below the true counts.

    Examples
    --------
    >>> import dask.bag as db
    >>> b = db.from_sequence(["a"] * 50 + ["b"] * 30 + list(range(20)), npartitions=4)
    >>> heavy_hitters(b, phi=0.2).compute()
    [('a', 50), ('b', 30)]
    """
    _check_bag(bag)
    if not 0.0 < phi <= 1.0:
        raise ValueError(f"phi={phi!r} is invalid; expected a fraction in (0, 1]")
    make = _factory(CountMinSketch, phi / 10 if eps is None else eps, confidence, seed)
    build = functools.partial(_heavy_partition, make=make, keyfn=_getter(key), phi=phi)
    merge = functools.partial(_heavy_merge, make=make, phi=phi)
    name = f"dask_io-heavy-hitters-{tokenize(bag, make, key, phi, split_every)}"
    merged = bag.reduction(build, merge, split_every=split_every, name=name)
    return merged.apply(functools.partial(_heavy_result, phi=phi))


# --------------------------------------------------------------------------- distinct by key


def _pair_getters(key: Any, value: Any) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """``key=None``: records are ``(key, value)`` pairs; else getters as for :func:`_getter`."""
    if key is None:
        keyfn: Callable[[Any], Any] = operator.itemgetter(0)
        valfn: Callable[[Any], Any] = operator.itemgetter(1)
        return keyfn, valfn if value is None else _compose(_getter(value), valfn)
    keyfn = _getter(key)  # type: ignore[assignment]
    return keyfn, _identity if value is None else _getter(value)  # type: ignore[return-value]


def _identity(record: Any) -> Any:
    return record


def _apply_both(record: Any, outer: Callable[[Any], Any], inner: Callable[[Any], Any]) -> Any:
    return outer(inner(record))


def _compose(outer: KeyFn, inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    assert outer is not None
    return functools.partial(_apply_both, outer=outer, inner=inner)


def _distinct_partition(
    partition: Iterable[Any],
    keyfn: Callable[[Any], Any],
    valfn: Callable[[Any], Any],
    p: int,
    seed: int,
) -> dict[Any, HyperLogLog]:
    """One HyperLogLog per key of the partition, all filled by one vectorised scatter."""
    groups: dict[Any, int] = {}
    ids, values = [], []
    for record in partition:
        ids.append(groups.setdefault(keyfn(record), len(groups)))
        values.append(valfn(record))
    if not groups:
        return {}
    index, rank = register_ranks(hash_array(values, seed), p)
    registers = np.zeros((len(groups), 1 << p), dtype=np.uint8)
    flat = np.asarray(ids, dtype=np.intp) * (1 << p) + index
    np.maximum.at(registers.reshape(-1), flat, rank)
    out = {}
    for k, i in groups.items():
        sketch = HyperLogLog(p, seed)
        sketch.merge_registers(registers[i])
        out[k] = sketch
    return out


def _distinct_merge(parts: Iterable[dict[Any, HyperLogLog]]) -> dict[Any, HyperLogLog]:
    out: dict[Any, HyperLogLog] = {}
    for part in parts:
        for k, sketch in part.items():
            if k in out:
                out[k] = out[k] | sketch
            else:
                out[k] = sketch
    return out


def _distinct_counts(sketches: dict[Any, HyperLogLog]) -> dict[Any, int]:
    return {k: round(s.count()) for k, s in sketches.items()}


def count_distinct_by_key(
    bag: Bag,
    key: Any = None,
    value: Any = None,
    *,
    p: int = 12,
    seed: int = 0,
    split_every: int | None = None,
) -> Item:
    """For each key, the approximate number of distinct values (one HyperLogLog per key).

    Parameters
    ----------
    bag
        The records.
    key, value
        ``key=None``: records are ``(key, value)`` pairs (``value``, if given, is then
        applied to the pair's value). Otherwise ``key`` and ``value`` are callables or
        index/field names; ``value=None`` counts distinct whole records.
    p
        HyperLogLog precision: ``2**p`` bytes per key, standard error
        ``1.04 / sqrt(2**p)`` (1.6 % at the default 12).
    seed, split_every
        As for :func:`bloom_filter`.

    Returns
    -------
    dask.bag.Item
        Computes to a dict ``{key: estimated distinct count}``.

    Examples
    --------
    >>> import dask.bag as db
    >>> orders = [("PL", "c1"), ("PL", "c2"), ("PL", "c1"), ("DE", "c3")]
    >>> count_distinct_by_key(db.from_sequence(orders, npartitions=2)).compute()
    {'PL': 2, 'DE': 1}
    """
    _check_bag(bag)
    HyperLogLog(p, seed)  # validate now, not on a worker
    keyfn, valfn = _pair_getters(key, value)
    build = functools.partial(_distinct_partition, keyfn=keyfn, valfn=valfn, p=p, seed=seed)
    name = f"dask_io-distinct-by-key-{tokenize(bag, key, value, p, seed, split_every)}"
    merged = bag.reduction(build, _distinct_merge, split_every=split_every, name=name)
    return merged.apply(_distinct_counts)


# --------------------------------------------------------------------------- semi-join


def _bloom_partition(
    partition: Iterable[Any],
    capacity: int,
    fpr: float,
    seed: int,
    keyfn: KeyFn,
) -> list[BloomFilter]:
    bf = BloomFilter(max(1, int(capacity)), fpr, seed)
    bf.update(_keys_of(partition, keyfn))
    return [bf]


def _merge_filters(filters: Iterable[Any], fpr: float, seed: int) -> BloomFilter:
    """Merge the one-filter lists of the partitions (or already merged filters).

    With no filter at all (every partition of the small side empty) the result is
    an empty filter, which keeps nothing.
    """
    flat = [f for item in filters for f in (item if isinstance(item, list) else [item])]
    if not flat:
        return BloomFilter(1, fpr, seed)
    return flat[0].copy().merge(*flat[1:])


def _filter_partition(partition: Iterable[Any], bf: BloomFilter, keyfn: KeyFn) -> list[Any]:
    records = partition if isinstance(partition, list) else list(partition)
    if not records:
        return []
    keys = records if keyfn is None else [keyfn(r) for r in records]
    found = bf.contains(keys)
    return [r for r, hit in zip(records, found.tolist(), strict=True) if hit]


def bloom_semi_join(
    big: Bag,
    small: Bag | Sequence[Any],
    on_big: Any = None,
    on_small: Any = None,
    *,
    capacity: int | None = None,
    fpr: float = 0.01,
    seed: int = 0,
    split_every: int | None = None,
) -> Bag:
    """The records of ``big`` whose key may occur in ``small``, via a Bloom filter.

    The lecture's broadcast-join use of a Bloom filter: build a filter of the small
    side's keys (per partition, merged in a tree), broadcast it (a few bytes per
    key) to every partition of the big side, and drop the records that surely have
    no match. Every record with a match is kept (no false negatives); a record
    without one is kept with probability about ``fpr`` (false positives), so follow
    with an exact join when exactness matters; it then shuffles far fewer records.

    Parameters
    ----------
    big
        The large bag to filter.
    small
        The small side: a Bag or a sequence of records.
    on_big, on_small
        The join keys: ``None`` (the record), a callable or an index/field name.
    capacity
        The filter's capacity; by default the number of records of ``small``
        (counted lazily).
    fpr, seed, split_every
        As for :func:`bloom_filter`.

    Returns
    -------
    dask.bag.Bag
        The kept records of ``big``, partition by partition, in order.

    Examples
    --------
    >>> import dask.bag as db
    >>> orders = db.from_sequence([(1, "o1"), (2, "o2"), (3, "o3"), (1, "o4")], npartitions=2)
    >>> vip = [(1, "alice"), (3, "carol")]
    >>> sorted(bloom_semi_join(orders, vip, on_big=0, on_small=0).compute())
    [(1, 'o1'), (1, 'o4'), (3, 'o3')]
    """
    _check_bag(big, "big")
    small_bag = small if isinstance(small, Bag) else db.from_sequence(list(small), npartitions=1)
    if capacity is not None:
        BloomFilter(capacity, fpr, seed)  # validate now
    else:
        BloomFilter(1, fpr, seed)
    size: Any = small_bag.count() if capacity is None else capacity
    filters = small_bag.map_partitions(_bloom_partition, size, fpr, seed, _getter(on_small))
    name = f"dask_io-bloom-semi-join-filter-{tokenize(small_bag, on_small, capacity, fpr, seed)}"
    merge = functools.partial(_merge_filters, fpr=fpr, seed=seed)
    bf = filters.reduction(merge, merge, split_every=split_every, name=name)
    return big.map_partitions(_filter_partition, bf, _getter(on_big))
