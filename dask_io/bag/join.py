"""Joins of bags: broadcast (map-side), shuffle hash join and sort-merge join.

Every join gives PySpark's record shape ``(k, (v, w))``: ``v`` from the left
(big) side and ``w`` from the right (small) side, ``None`` for the missing side
of an outer match. A key spec (``on_big``, ``on_left``, ...) is ``None`` for
``(key, value)`` pairs, a callable ``f`` (key ``f(record)``, value the record)
or a field (key ``record[field]``, value the record). Keys repeated on both
sides give every pair of values, as in SQL. ``None`` is a key like any other
(it matches ``None``), as in PySpark's RDD joins.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Iterable
from typing import Any

import xxhash
from dask import delayed
from dask.bag import Bag
from dask.base import tokenize
from dask.delayed import Delayed

from dask_io.bag import _kernels as K
from dask_io.bag._graph import (
    check_bag,
    check_choice,
    check_npartitions,
    co_shuffle,
    make_name,
    new_bag,
)

__all__ = ["broadcast_join", "hash_join", "merge_join"]


def _index_of_bag(*partitions: Any, getters: tuple[K.KeyFn, K.KeyFn]) -> dict[Any, list[Any]]:
    index: dict[Any, list[Any]] = K.KeyMap()
    for part in partitions:
        for k, vs in K.build_index(part, *getters).items():
            index.setdefault(k, []).extend(vs)
    return index


def _small_index(small: Any, getters: tuple[K.KeyFn, K.KeyFn], scatter: bool) -> Any:
    """One graph key (or future) holding the small side's hash index."""
    if isinstance(small, Bag):
        name = make_name("broadcast-index", small, getters)
        task = (functools.partial(_index_of_bag, getters=getters), *small.__dask_keys__())
        return Delayed(name, new_bag(name, {name: task}, 1, [small]).dask)
    if isinstance(small, Delayed):
        return delayed(K.build_index, pure=True)(small, *getters)
    if not scatter:
        return _pickled_index(list(small), getters)
    index = K.build_index(list(small), *getters)
    client = _current_client()
    if client is None:
        raise ValueError("scatter=True needs a current dask.distributed Client; none was found")
    # a list of one item: scattering a dict would scatter each of its values
    return client.scatter([index], broadcast=True, hash=True)[0]


def _pickled_index(small: list[Any], getters: tuple[K.KeyFn, K.KeyFn]) -> Delayed:
    """A graph key whose task builds the index from the small side pickled to bytes.

    One bytes literal keeps the graph cheap to tokenize, send and schedule (a big
    list or dict literal is walked element by element by dask and distributed).
    """
    blob = pickle.dumps(small, protocol=pickle.HIGHEST_PROTOCOL)
    name = f"dask_io-broadcast-index-{xxhash.xxh3_128_hexdigest(blob)}-{tokenize(getters)}"
    task = (functools.partial(_index_from_bytes, getters=getters), blob)
    return Delayed(name, {name: task})


def _index_from_bytes(blob: bytes, getters: tuple[K.KeyFn, K.KeyFn]) -> dict[Any, list[Any]]:
    return K.build_index(pickle.loads(blob), *getters)


def _current_client() -> Any:
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def _probe(records: Any, index: dict[Any, list[Any]], getters: Any, how: str) -> list[Any]:
    return K.probe_index(records, *getters, index, how)


def broadcast_join(
    big: Bag,
    small: Bag | Delayed | Iterable[Any],
    on_big: Any = None,
    on_small: Any = None,
    how: str = "inner",
    *,
    scatter: bool = False,
) -> Bag:
    """Join a big bag with a small collection shipped whole to every worker.

    The map-side join of the lecture (Spark's broadcast variable): the small side
    is indexed by key once, held by a single graph key (or, for an in-memory
    ``small`` with a distributed client current, a future scattered to every
    worker), and every partition of ``big`` probes that index. Nothing is shuffled,
    and the output keeps ``big``'s partitioning.

    Parameters
    ----------
    big : dask.bag.Bag
        The large side.
    small : dask.bag.Bag, dask.delayed.Delayed or iterable
        The small side; it must fit in a worker's memory.
    on_big, on_small : None, callable or field
        Key specs (see the module docstring).
    how : {"inner", "left"}
        ``"left"`` keeps unmatched records of ``big`` with ``w = None``.
    scatter : bool, default False
        For an in-memory ``small`` only: build the index here and scatter it to
        every worker (``broadcast=True``) through the current distributed client,
        instead of holding it in the graph. The result must then be computed on
        that client.

    Returns
    -------
    dask.bag.Bag
        ``(k, (v, w))`` records, ``big.npartitions`` partitions.

    Examples
    --------
    >>> import dask.bag as db
    >>> orders = db.from_sequence([("p1", 10), ("p2", 5), ("p9", 1)], npartitions=2)
    >>> products = [("p1", "books"), ("p2", "toys")]
    >>> broadcast_join(orders, products, how="left").compute()
    [('p1', (10, 'books')), ('p2', (5, 'toys')), ('p9', (1, None))]
    """
    check_bag(big, "big")
    check_choice("how", how, ("inner", "left"))
    index = _small_index(small, K.key_value_getters(on_small), scatter)
    probe = functools.partial(_probe, getters=K.key_value_getters(on_big), how=how)
    name = make_name("broadcast_join", big, index.key, probe)
    if isinstance(index, Delayed):
        dsk = {(name, i): (probe, (big.name, i), index.key) for i in range(big.npartitions)}
        return new_bag(name, dsk, big.npartitions, [big, index])
    # a scattered future: the tasks hold the future itself, which keeps it alive
    dsk = {(name, i): (probe, (big.name, i), index) for i in range(big.npartitions)}
    return new_bag(name, dsk, big.npartitions, [big])


def _join_split(records: Any, keyfn: K.KeyFn, npartitions: int) -> list[list[Any]]:
    return K.bucket_records(records, keyfn, npartitions)


def _join_merge(lefts: list[Any], rights: list[Any], getters: Any, how: str) -> list[Any]:
    return K.join_buckets(K.concat_buckets(lefts), K.concat_buckets(rights), *getters, how)


def hash_join(
    left: Bag,
    right: Bag,
    on_left: Any = None,
    on_right: Any = None,
    how: str = "inner",
    npartitions: int | None = None,
) -> Bag:
    """Join two large bags by shuffling both on the key hash (Spark's ``join``).

    Both sides are split by ``stable_hash(key) % npartitions``; output partition
    ``j`` indexes the right records of its keys and probes it with the left ones.

    Parameters
    ----------
    left, right : dask.bag.Bag
        The two sides.
    on_left, on_right : None, callable or field
        Key specs (see the module docstring).
    how : {"inner", "left", "right", "outer"}
        Which unmatched records to keep (with ``None`` for the other side).
    npartitions : int, optional
        Output partitions (default: the larger of the two inputs').

    Returns
    -------
    dask.bag.Bag
        ``(k, (v, w))`` records, hash-partitioned by key.

    Examples
    --------
    >>> import dask.bag as db
    >>> a = db.from_sequence([("k", 1), ("x", 2)], npartitions=2)
    >>> b = db.from_sequence([("k", "a"), ("k", "b")], npartitions=1)
    >>> sorted(hash_join(a, b, how="left"))
    [('k', (1, 'a')), ('k', (1, 'b')), ('x', (2, None))]
    """
    check_bag(left, "left")
    check_bag(right, "right")
    check_choice("how", how, K.JOIN_HOWS)
    nout = check_npartitions(npartitions, max(left.npartitions, right.npartitions))
    lget, rget = K.key_value_getters(on_left), K.key_value_getters(on_right)
    splits = (
        functools.partial(_join_split, keyfn=lget[0], npartitions=nout),
        functools.partial(_join_split, keyfn=rget[0], npartitions=nout),
    )
    merge = functools.partial(_join_merge, getters=(lget, rget), how=how)
    return co_shuffle(left, right, splits, merge, nout, "hash_join")


def merge_join(
    left: Bag,
    right: Bag,
    on_left: Any = None,
    on_right: Any = None,
    how: str = "inner",
) -> Bag:
    """Join two bags already co-partitioned and sorted by key, in one streaming pass.

    Partition ``i`` of ``left`` is merged with partition ``i`` of ``right``: both
    bags must have the same number of partitions, every key must live in the same
    partition index on both sides (as produced by :func:`dask_io.bag.partition_by_key`
    with ``sort=True``, or :func:`dask_io.bag.sort_by_key` with shared
    ``boundaries``), and each partition must be sorted ascending by key (checked:
    a ``ValueError`` names the first key out of order).

    Parameters
    ----------
    left, right : dask.bag.Bag
        The sorted, co-partitioned sides.
    on_left, on_right : None, callable or field
        Key specs (see the module docstring); keys must be mutually comparable.
    how : {"inner", "left", "right", "outer"}
        Which unmatched records to keep.

    Returns
    -------
    dask.bag.Bag
        ``(k, (v, w))`` records, sorted by key within each partition.

    Examples
    --------
    >>> import dask.bag as db
    >>> users = db.from_sequence([("u1", "ann"), ("u3", "bob")], npartitions=1)
    >>> buys = db.from_sequence([("u1", 10), ("u1", 12), ("u2", 7)], npartitions=1)
    >>> merge_join(users, buys, how="left").compute()
    [('u1', ('ann', 10)), ('u1', ('ann', 12)), ('u3', ('bob', None))]
    """
    check_bag(left, "left")
    check_bag(right, "right")
    check_choice("how", how, K.JOIN_HOWS)
    if left.npartitions != right.npartitions:
        raise ValueError(
            f"merge_join needs co-partitioned bags, got left.npartitions={left.npartitions} "
            f"and right.npartitions={right.npartitions}"
        )
    getters = (K.key_value_getters(on_left), K.key_value_getters(on_right))
    func = functools.partial(_merge_join_kernel, getters=getters, how=how)
    name = make_name("merge_join", left, right, func)
    dsk = {(name, i): (func, (left.name, i), (right.name, i)) for i in range(left.npartitions)}
    return new_bag(name, dsk, left.npartitions, [left, right])


def _merge_join_kernel(left: Any, right: Any, getters: Any, how: str) -> list[Any]:
    return K.merge_join_sorted(left, right, *getters, how)
