"""Sorting, range and hash partitioning, and k-way merging of sorted streams.

:func:`sort_by_key` is Spark's ``sortByKey``: partitions are sorted locally,
evenly spaced keys of each are sampled, weighted boundaries cut the key space
into ``npartitions`` ranges, and every output partition merges the sorted runs
of its range. Concatenating the output partitions gives the whole bag sorted;
sorting is stable. ``None`` keys sort first (last when descending), as Spark
sorts nulls; other keys must be mutually comparable.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Iterator
from typing import Any

from dask.bag import Bag

from dask_io.bag import _kernels as K
from dask_io.bag._graph import (
    check_bag,
    check_npartitions,
    hash_shuffle,
    make_name,
    new_bag,
)

__all__ = ["merge_sorted", "partition_by_key", "sort_by_key"]

SAMPLES_PER_PARTITION = 64


def _sort(records: Any, keyfn: K.KeyFn, ascending: bool) -> list[Any]:
    return K.sort_partition(records, keyfn, ascending)


def _sample(sorted_records: list[Any], keyfn: K.KeyFn, size: int) -> tuple[int, list[Any]]:
    return K.sample_sorted(sorted_records, keyfn, size)


def _boundaries(samples: list[Any], npartitions: int) -> list[Any]:
    return K.choose_boundaries(samples, npartitions)


def _split(sorted_records: list[Any], boundaries: list[Any], **kwargs: Any) -> list[list[Any]]:
    return K.split_sorted(sorted_records, boundaries=boundaries, **kwargs)


def _merge(runs: list[Any], keyfn: K.KeyFn, ascending: bool) -> list[Any]:
    return K.merge_runs(runs, keyfn, ascending)


def sort_by_key(
    bag: Bag,
    key: Any = None,
    npartitions: int | None = None,
    ascending: bool = True,
    *,
    boundaries: list[Any] | None = None,
) -> Bag:
    """Sort a bag globally by key, range-partitioned into ``npartitions``.

    Parameters
    ----------
    bag : dask.bag.Bag
        The records (returned unchanged, only reordered).
    key : None, callable or field
        ``None`` for ``(key, value)`` pairs (sort by the first item); ``key(record)``;
        or ``record[key]``.
    npartitions : int, optional
        Output partitions (default: as many as ``bag``). With skewed keys some
        ranges may be empty: all records of one key stay in one partition.
    ascending : bool, default True
        Sort order.
    boundaries : list, optional
        Ascending range boundaries to use instead of sampling (``npartitions`` is
        then ``len(boundaries) + 1``): sort two bags with the same boundaries and
        they are co-partitioned for :func:`dask_io.bag.merge_join`.

    Returns
    -------
    dask.bag.Bag
        The records sorted; partition ``p`` holds keys of the ``p``-th range.

    Examples
    --------
    >>> import dask.bag as db
    >>> b = db.from_sequence([(3, "c"), (1, "a"), (2, "b"), (5, "e")], npartitions=2)
    >>> sort_by_key(b, npartitions=2).compute()
    [(1, 'a'), (2, 'b'), (3, 'c'), (5, 'e')]
    >>> [k for k, _ in sort_by_key(b, ascending=False)]
    [5, 3, 2, 1]
    """
    check_bag(bag)
    if boundaries is not None:
        nout = len(boundaries) + 1
        if npartitions is not None and npartitions != nout:
            raise ValueError(
                f"npartitions={npartitions!r} contradicts {len(boundaries)} boundaries; "
                f"expected {nout} or None"
            )
    else:
        nout = check_npartitions(npartitions, bag.npartitions)
    keyfn = K.key_value_getters(key)[0]
    name = make_name("sort_by_key", bag, keyfn, nout, ascending, boundaries)
    srt, smp, bnd, spl, bkt = (
        f"{name}-{s}" for s in ("sorted", "sample", "bounds", "split", "bucket")
    )
    sorter = functools.partial(_sort, keyfn=keyfn, ascending=ascending)
    sampler = functools.partial(_sample, keyfn=keyfn, size=SAMPLES_PER_PARTITION * nout)
    split = functools.partial(_split, keyfn=keyfn, ascending=ascending, npartitions=nout)
    dsk: dict[Any, Any] = {}
    for i in range(bag.npartitions):
        dsk[(srt, i)] = (sorter, (bag.name, i))
        if boundaries is None:
            dsk[(smp, i)] = (sampler, (srt, i))
        dsk[(spl, i)] = (split, (srt, i), bnd)
        for j in range(nout):
            dsk[(bkt, i, j)] = (operator.getitem, (spl, i), j)
    if boundaries is None:
        samples = [(smp, i) for i in range(bag.npartitions)]
        dsk[bnd] = (functools.partial(_boundaries, npartitions=nout), samples)
    else:
        dsk[bnd] = (functools.partial(_constant, value=list(boundaries)),)
    merge = functools.partial(_merge, keyfn=keyfn, ascending=ascending)
    for j in range(nout):
        dsk[(name, j)] = (merge, [(bkt, i, j) for i in range(bag.npartitions)])
    return new_bag(name, dsk, nout, [bag])


def _constant(value: Any) -> Any:
    return value


def _bucket_and_sort(records: Any, keyfn: K.KeyFn, npartitions: int, sort: bool) -> list[list[Any]]:
    buckets = K.bucket_records(records, keyfn, npartitions)
    if sort:
        return [K.sort_partition(b, keyfn, True) for b in buckets]
    return buckets


def _concat_or_merge(buckets: list[Any], keyfn: K.KeyFn, sort: bool) -> list[Any]:
    if sort:
        return K.merge_runs(buckets, keyfn, True)
    return K.concat_buckets(buckets)


def partition_by_key(
    bag: Bag, key: Any = None, npartitions: int | None = None, *, sort: bool = False
) -> Bag:
    """Hash-partition records by key (``stable_hash(key) % npartitions``), no combine.

    All records of a key end up in one partition, in bag order; with ``sort=True``
    each partition is also sorted by key (the lecture's sorted shards), so two
    bags partitioned this way with the same ``npartitions`` can be joined with
    :func:`dask_io.bag.merge_join`.

    Examples
    --------
    >>> import dask.bag as db
    >>> b = db.from_sequence([("b", 1), ("a", 2), ("b", 3)], npartitions=2)
    >>> parts = partition_by_key(b, npartitions=2, sort=True).to_delayed()
    >>> sorted(r for p in parts for r in p.compute())
    [('a', 2), ('b', 1), ('b', 3)]
    """
    check_bag(bag)
    nout = check_npartitions(npartitions, bag.npartitions)
    keyfn = K.key_value_getters(key)[0]
    split = functools.partial(_bucket_and_sort, keyfn=keyfn, npartitions=nout, sort=sort)
    merge = functools.partial(_concat_or_merge, keyfn=keyfn, sort=sort)
    return hash_shuffle(bag, split, merge, nout, "partition_by_key")


def _merge_partitions(*parts: Any, keyfn: K.KeyFn, reverse: bool) -> list[Any]:
    return K.Records(K.merge_streams(parts, keyfn, reverse))


def merge_sorted(
    *sources: Bag | Iterable[Any],
    key: Any = None,
    reverse: bool = False,
    partitionwise: bool = False,
) -> Bag | Iterator[Any]:
    """k-way merge of sorted streams (stable: equal keys keep the order of the sources).

    Parameters
    ----------
    *sources : dask.bag.Bag or iterable
        Sorted streams. For a Bag, *each partition* is one sorted stream (a sorted
        shard file, say).
    key : None, callable or field
        ``None`` for ``(key, value)`` pairs; ``key(record)``; or ``record[key]``.
    reverse : bool, default False
        The streams are sorted descending.
    partitionwise : bool, default False
        For bags with the same number of partitions: merge partition ``i`` of every
        bag into output partition ``i`` (shard by shard) instead of merging every
        partition into a single one.

    Returns
    -------
    iterator or dask.bag.Bag
        For plain iterables, a lazy iterator (constant memory per stream). If any
        source is a Bag, a Bag: one partition, or one per shard with ``partitionwise``.

    Examples
    --------
    >>> list(merge_sorted([1, 4, 7], [2, 5], [3, 6], key=lambda x: x))
    [1, 2, 3, 4, 5, 6, 7]
    >>> import dask.bag as db
    >>> shards = db.from_sequence([("a", 1), ("c", 3), ("b", 2), ("d", 4)], npartitions=2)
    >>> merge_sorted(shards).compute()
    [('a', 1), ('b', 2), ('c', 3), ('d', 4)]
    """
    keyfn = K.key_value_getters(key)[0]
    bags = [s for s in sources if isinstance(s, Bag)]
    if not bags:
        return K.merge_streams(sources, keyfn, reverse)  # type: ignore[arg-type]
    sources = tuple(s if isinstance(s, Bag) else list(s) for s in sources)
    func = functools.partial(_merge_partitions, keyfn=keyfn, reverse=reverse)
    name = make_name("merge_sorted", *sources, func, partitionwise)
    if not partitionwise:
        inputs = [_inputs_of(s) for s in sources]
        dsk = {(name, 0): (func, *[i for ins in inputs for i in ins])}
        return new_bag(name, dsk, 1, bags)
    if len({b.npartitions for b in bags}) > 1 or len(bags) != len(sources):
        raise ValueError(
            "merge_sorted(partitionwise=True) needs bags only, all with the same npartitions; "
            f"got npartitions {[getattr(s, 'npartitions', None) for s in sources]}"
        )
    n = bags[0].npartitions
    dsk = {(name, i): (func, *[(b.name, i) for b in bags]) for i in range(n)}
    return new_bag(name, dsk, n, bags)


def _inputs_of(source: Any) -> list[Any]:
    if isinstance(source, Bag):
        return list(source.__dask_keys__())
    return [(functools.partial(_constant, value=list(source)),)]
