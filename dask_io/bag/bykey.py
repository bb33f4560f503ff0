"""Aggregation by key with map-side combine, hash-partitioned into many outputs.

Spark's ``reduceByKey`` family on a :class:`dask.bag.Bag`. Unlike
``Bag.foldby`` / ``Bag.frequencies``, whose results land in one partition, the
output here is hash-partitioned by key into ``npartitions`` partitions
(``stable_hash(key) % npartitions``), so no single worker holds every key:

1. each input partition folds its records into one combiner per key (the
   lecture's "map-side reduce") and splits the combiners into ``npartitions``
   buckets by key hash;
2. each output partition merges the buckets it receives from every input.

Records are ``(key, value)`` pairs by default (``key=None``). With ``key`` a
callable, ``key(record)`` is the key and the whole record is the value; any
other ``key`` is a field: ``record[key]``. ``value=`` (a callable) extracts the
value from the record (or from the pair's value when ``key`` is ``None``).
Every output record is a ``(key, result)`` pair. Results do not depend on the
number of input or output partitions, for an associative and commutative
``binop`` (and, for ``group_by_key``, values keep the order of the bag).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any

from dask.bag import Bag

from dask_io.bag import _batch as B
from dask_io.bag import _kernels as K
from dask_io.bag import spill as S
from dask_io.bag._graph import check_bag, check_npartitions, hash_shuffle

__all__ = [
    "aggregate_by_key",
    "combine_by_key",
    "count_by_key",
    "group_by_key",
    "reduce_by_key",
    "top_k_by_key",
]


def _split_kernel(
    records: Any,
    getters: tuple[K.KeyFn, K.KeyFn],
    create: Callable[[Any], Any] | None,
    merge_value: Callable[[Any, Any], Any],
    npartitions: int,
    specs: tuple[Any, Any] | None = None,
) -> list[Any]:
    if B.is_batch(records) and create is None and specs is not None:
        ufunc = B.array_binop(merge_value)
        combined = None if ufunc is None else B.combine_batch(records, *specs, ufunc)
        if combined is not None:
            return K.Records(B.split_batch(combined, npartitions))
    combined = K.combine_partition(records, *getters, create, merge_value)
    return K.split_combined(combined, npartitions)


def _count_split_kernel(
    records: Any, keyfn: K.KeyFn, npartitions: int, spec: Any = None
) -> list[Any]:
    if B.is_batch(records):
        counts = B.count_batch(records, spec)
        if counts is not None:
            return K.Records(B.split_batch(counts, npartitions))
    return K.split_combined(K.count_partition(records, keyfn), npartitions)


def _merge_kernel(
    buckets: list[Any],
    merge_combiners: Callable[[Any, Any], Any],
    finish: Callable[[list[Any]], list[Any]] | None,
) -> list[Any]:
    if any(B.is_batch(b) for b in buckets):
        ufunc = B.array_binop(merge_combiners)
        if ufunc is not None and all(B.is_batch(b) for b in buckets):
            out = K.Records(B.merge_reduced(buckets, ufunc))
            return out if finish is None else finish(out)
        buckets = [K.KeyMap(b) if B.is_batch(b) else b for b in buckets]
    out = K.merge_combined(buckets, merge_combiners)
    return out if finish is None else finish(out)


def _by_key(
    bag: Bag,
    op: str,
    split: Callable[..., list[Any]],
    merge_combiners: Callable[[Any, Any], Any],
    npartitions: int | None,
    finish: Callable[[list[Any]], list[Any]] | None = None,
) -> Bag:
    check_bag(bag)
    nout = check_npartitions(npartitions, bag.npartitions)
    split = functools.partial(split, npartitions=nout)
    merge = functools.partial(_merge_kernel, merge_combiners=merge_combiners, finish=finish)
    return hash_shuffle(bag, split, merge, nout, op)


def combine_by_key(
    bag: Bag,
    key: Any,
    create: Callable[[Any], Any],
    merge_value: Callable[[Any, Any], Any],
    merge_combiners: Callable[[Any, Any], Any],
    npartitions: int | None = None,
    *,
    value: Callable[[Any], Any] | None = None,
) -> Bag:
    """Aggregate values by key with three functions, like Spark's ``combineByKey``.

    Parameters
    ----------
    bag : dask.bag.Bag
        The records.
    key : None, callable or field
        ``None``: records are ``(key, value)`` pairs. A callable: ``key(record)``.
        Anything else: ``record[key]``. Keys must be hashable by
        :func:`dask_io.sketches.hashing.stable_hash`.
    create : callable
        ``create(value)`` starts a combiner from a key's first value in a partition.
    merge_value : callable
        ``merge_value(combiner, value)`` adds a value; may mutate and return ``combiner``.
    merge_combiners : callable
        ``merge_combiners(c1, c2)`` merges combiners of two partitions.
    npartitions : int, optional
        Output partitions (default: as many as ``bag``).
    value : callable, optional
        Extracts the value from a record (default: the pair's value, or the record).

    Returns
    -------
    dask.bag.Bag
        ``(key, combiner)`` records, hash-partitioned by key into ``npartitions``.

    Examples
    --------
    >>> import dask.bag as db
    >>> b = db.from_sequence([("a", 1), ("b", 2), ("a", 3)], npartitions=2)
    >>> sorted(combine_by_key(b, None, lambda v: [v], lambda c, v: c + [v], operator.add))
    [('a', [1, 3]), ('b', [2])]
    """
    getters = K.key_value_getters(key, value)
    split = functools.partial(
        _split_kernel, getters=getters, create=create, merge_value=merge_value
    )
    return _by_key(bag, "combine_by_key", split, merge_combiners, npartitions)


def reduce_by_key(
    bag: Bag,
    key: Any,
    binop: Callable[[Any, Any], Any],
    npartitions: int | None = None,
    *,
    value: Callable[[Any], Any] | None = None,
) -> Bag:
    """Reduce the values of each key with an associative, commutative ``binop``.

    Spark's ``reduceByKey``: ``binop`` runs first inside each input partition
    (map-side combine), then across partitions. See :func:`combine_by_key` for
    ``key``, ``npartitions`` and ``value``.

    Examples
    --------
    >>> import dask.bag as db
    >>> b = db.from_sequence([("a", 1), ("b", 2), ("a", 3)], npartitions=2)
    >>> sorted(reduce_by_key(b, None, operator.add, npartitions=2))
    [('a', 4), ('b', 2)]
    """
    getters = K.key_value_getters(key, value)
    split = functools.partial(
        _split_kernel, getters=getters, create=None, merge_value=binop, specs=(key, value)
    )
    return _by_key(bag, "reduce_by_key", split, binop, npartitions)


def aggregate_by_key(
    bag: Bag,
    key: Any,
    zero: Any,
    seq_op: Callable[[Any, Any], Any],
    comb_op: Callable[[Any, Any], Any],
    npartitions: int | None = None,
    *,
    value: Callable[[Any], Any] | None = None,
) -> Bag:
    """Fold the values of each key into ``zero`` with ``seq_op``, merge with ``comb_op``.

    Spark's ``aggregateByKey``. Each key of each partition starts from its own
    copy of ``zero`` (a deep copy unless ``zero`` is immutable), so a mutable
    ``zero`` such as a list or set is safe. See :func:`combine_by_key`.

    Examples
    --------
    >>> import dask.bag as db
    >>> b = db.from_sequence([("a", 1), ("b", 2), ("a", 3)], npartitions=2)
    >>> sorted(aggregate_by_key(b, None, set(), lambda s, v: s | {v}, operator.or_))
    [('a', {1, 3}), ('b', {2})]
    """

    create = functools.partial(_create_from_zero, zero=zero, seq_op=seq_op)
    getters = K.key_value_getters(key, value)
    split = functools.partial(_split_kernel, getters=getters, create=create, merge_value=seq_op)
    return _by_key(bag, "aggregate_by_key", split, comb_op, npartitions)


def _create_from_zero(value: Any, zero: Any, seq_op: Callable[[Any, Any], Any]) -> Any:
    return seq_op(K.copy_zero(zero), value)


def _append(values: list[Any], v: Any) -> list[Any]:
    values.append(v)
    return values


def _extend(a: list[Any], b: list[Any]) -> list[Any]:
    a.extend(b)
    return a


def _singleton(v: Any) -> list[Any]:
    return [v]


def group_by_key(
    bag: Bag,
    key: Any = None,
    npartitions: int | None = None,
    *,
    value: Callable[[Any], Any] | None = None,
    max_mem: int | str | None = None,
    spill_dir: str | None = None,
) -> Bag:
    """Collect the values of each key into a list, in the order of the bag.

    Spark's ``groupByKey``, with output hash-partitioned into ``npartitions``.
    Prefer :func:`reduce_by_key` when the groups are only reduced afterwards.

    Groups that do not fit in memory spill to disk (:mod:`dask_io.bag.spill`): a
    task whose fragments exceed ``max_mem`` bytes writes them to local files under
    ``spill_dir``, and an output partition beyond ``max_mem`` is grouped a slice of
    keys at a time into a file it is then read back from, lazily. ``"auto"`` (the
    default): a quarter of a distributed worker's memory limit per thread, no
    spilling elsewhere; ``None``: never spill. One group must still fit in memory.

    Examples
    --------
    >>> import dask.bag as db
    >>> b = db.from_sequence([("a", 1), ("b", 2), ("a", 3)], npartitions=2)
    >>> sorted(group_by_key(b))
    [('a', [1, 3]), ('b', [2])]
    >>> sorted(group_by_key(b, max_mem=16))  # spills through files
    [('a', [1, 3]), ('b', [2])]
    """
    check_bag(bag)
    nout = check_npartitions(npartitions, bag.npartitions)
    max_mem = S.check_max_mem(max_mem)
    split = functools.partial(
        S.group_split,
        getters=K.key_value_getters(key, value),
        npartitions=nout,
        max_mem=max_mem,
        spill_dir=spill_dir,
    )
    merge = functools.partial(S.group_merge, max_mem=max_mem, spill_dir=spill_dir)
    return hash_shuffle(bag, split, merge, nout, "group_by_key")


def count_by_key(bag: Bag, key: Any = None, npartitions: int | None = None) -> Bag:
    """Count the records of each key: ``(key, count)`` records.

    Unlike Spark's ``countByKey`` (an action returning a dict) this stays lazy and
    hash-partitioned; ``dict(count_by_key(b).compute())`` gives the dict.

    Examples
    --------
    >>> import dask.bag as db
    >>> b = db.from_sequence(["x", "y", "x"], npartitions=2)
    >>> sorted(count_by_key(b, key=lambda r: r))
    [('x', 2), ('y', 1)]
    """
    split = functools.partial(_count_split_kernel, keyfn=K.key_value_getters(key)[0], spec=key)
    return _by_key(bag, "count_by_key", split, operator.add, npartitions)


def top_k_by_key(
    bag: Bag,
    k: int,
    key: Any = None,
    npartitions: int | None = None,
    *,
    value: Callable[[Any], Any] | None = None,
    order: Callable[[Any], Any] | None = None,
) -> Bag:
    """The ``k`` largest values of each key, largest first: ``(key, [values])``.

    Each partition keeps at most about ``2k`` values per key before the shuffle,
    so neither a key's values nor the set of keys ever meets in one place.
    ``order`` is the sort key of the values (default: the values themselves);
    among equal ``order`` values the ones kept are arbitrary.

    Examples
    --------
    >>> import dask.bag as db
    >>> b = db.from_sequence([("a", 1), ("a", 5), ("a", 3), ("b", 2)], npartitions=2)
    >>> sorted(top_k_by_key(b, 2))
    [('a', [5, 3]), ('b', [2])]
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r} is invalid; expected an int >= 1")
    order = _identity if order is None else order
    getters = K.key_value_getters(key, value)
    split = functools.partial(
        _split_kernel, getters=getters, create=_singleton, merge_value=K.topk_add(k, order)
    )
    finish = functools.partial(K.finish_topk, k=k, order=order)
    return _by_key(bag, "top_k_by_key", split, K.topk_merge(k, order), npartitions, finish)


def _identity(x: Any) -> Any:
    return x
