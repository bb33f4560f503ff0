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

import collections
import functools
import pickle
import threading
from collections.abc import Iterable
from typing import Any

import xxhash
from dask import delayed
from dask.bag import Bag
from dask.base import tokenize
from dask.delayed import Delayed

from dask_io.bag import _batch as B
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


def _pickle_partitions(*partitions: Any) -> bytes:
    records: list[Any] = []
    for part in partitions:
        records.extend(part)
    return pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL)


def _pickle_list(small: Any) -> bytes:
    return pickle.dumps(list(small), protocol=pickle.HIGHEST_PROTOCOL)


def _small_blob(small: Any, scatter: bool) -> tuple[Any, Any]:
    """The small side as pickled bytes: ``(graph key or future, dependency or None)``.

    Bytes travel between processes without per-object (de)serialization, and a
    single bytes literal keeps the graph cheap to tokenize, send and schedule.
    """
    if isinstance(small, Bag):
        name = make_name("broadcast-small", small)
        dsk = {name: (_pickle_partitions, *small.__dask_keys__())}
        return name, Delayed(name, new_bag(name, dsk, 1, [small]).dask)
    if isinstance(small, Delayed):
        blob = delayed(_pickle_list, pure=True)(small)
        return blob.key, blob
    blob = pickle.dumps(list(small), protocol=pickle.HIGHEST_PROTOCOL)
    if not scatter:
        name = f"dask_io-broadcast-small-{xxhash.xxh3_128_hexdigest(blob)}"
        return name, Delayed(name, {name: blob})
    client = _current_client()
    if client is None:
        raise ValueError("scatter=True needs a current dask.distributed Client; none was found")
    return client.scatter(blob, broadcast=True, hash=True), None


def _current_client() -> Any:
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


# Hash indexes built in this process, by (small side key, key spec token): each
# worker process builds a broadcast side's index once, whatever the number of
# partitions it probes. A few recent indexes are kept.
_INDEXES: collections.OrderedDict[str, dict[Any, list[Any]]] = collections.OrderedDict()
_INDEXES_LOCK = threading.Lock()
_INDEXES_KEPT = 4


def cached_index(name: str, blob: bytes, getters: tuple[K.KeyFn, K.KeyFn]) -> dict[Any, list[Any]]:
    """The index of a pickled small side, built at most once per process."""
    with _INDEXES_LOCK:
        index = _INDEXES.get(name)
        if index is None:
            index = K.build_index(pickle.loads(blob), *getters)
            _INDEXES[name] = index
            while len(_INDEXES) > _INDEXES_KEPT:
                _INDEXES.popitem(last=False)
        _INDEXES.move_to_end(name)
    return index


_ARRAY_INDEXES: collections.OrderedDict[str, Any] = collections.OrderedDict()


def cached_array_index(name: str, blob: bytes) -> B.ArrayIndex | None:
    """The small side of ``(key, value)`` pairs as a :class:`~dask_io.bag._batch.ArrayIndex`,
    built at most once per process (``None`` if its keys or values are not one array)."""
    with _INDEXES_LOCK:
        if name not in _ARRAY_INDEXES:
            _ARRAY_INDEXES[name] = B.ArrayIndex.from_records(K.as_list(pickle.loads(blob)))
            while len(_ARRAY_INDEXES) > _INDEXES_KEPT:
                _ARRAY_INDEXES.popitem(last=False)
        _ARRAY_INDEXES.move_to_end(name)
        return _ARRAY_INDEXES[name]


def _batch_join_ok(records: Any, getters: Any, how: str) -> bool:
    return B.is_batch(records) and how == "inner" and tuple(getters) == (None, None)


def _probe(records: Any, blob: bytes, name: str, small_getters: Any, getters: Any, how: str) -> Any:
    if _batch_join_ok(records, getters, how) and tuple(small_getters) == (None, None):
        index = cached_array_index(name, blob)
        joined = None if index is None else B.probe_batch(records, index)
        if joined is not None:
            return joined
    index = cached_index(name, blob, small_getters)
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
    is pickled to bytes held by a single graph key (or, with ``scatter=True``, a
    future scattered to every worker), so it travels to each worker process once
    as one buffer; there its hash index is built once (an index is kept per
    process for the few most recent small sides) and every partition of ``big``
    probes it. Nothing is shuffled, and the output keeps ``big``'s partitioning.

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
        For an in-memory ``small`` only: scatter its bytes to every worker
        (``broadcast=True``) through the current distributed client instead of
        holding them in the graph. The result must then be computed on that client.

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
    small_getters = K.key_value_getters(on_small)
    blob, dep = _small_blob(small, scatter)
    blob_key = blob if isinstance(blob, str) else blob.key
    index_name = f"{blob_key}-{tokenize(small_getters)}"
    probe = functools.partial(
        _probe,
        name=index_name,
        small_getters=small_getters,
        getters=K.key_value_getters(on_big),
        how=how,
    )
    name = make_name("broadcast_join", big, blob_key, probe)
    # a scattered future is held by the tasks themselves, which keeps it alive
    ref = blob if dep is None else blob_key
    dsk = {(name, i): (probe, (big.name, i), ref) for i in range(big.npartitions)}
    return new_bag(name, dsk, big.npartitions, [big] if dep is None else [big, dep])


def _join_split(records: Any, keyfn: K.KeyFn, npartitions: int) -> list[Any]:
    if B.is_batch(records) and keyfn is None:
        return K.Records(B.split_batch(records, npartitions))
    return K.bucket_records(records, keyfn, npartitions)


def _join_merge(lefts: list[Any], rights: list[Any], getters: Any, how: str) -> Any:
    if (
        lefts
        and all(_batch_join_ok(b, getters[0], how) for b in lefts)
        and tuple(getters[1]) == (None, None)
    ):
        joined = _join_batches(lefts, rights)
        if joined is not None:
            return joined
    return K.join_buckets(K.concat_buckets(lefts), K.concat_buckets(rights), *getters, how)


def _join_batches(lefts: list[Any], rights: list[Any]) -> Any:
    """Inner join of batch buckets with the right side's buckets (batches or pairs)."""
    if rights and all(B.is_batch(b) for b in rights):
        both = B.concat_batches(rights)
        index: B.ArrayIndex | None = B.ArrayIndex(both.key_col, both.value_col)
    else:
        index = B.ArrayIndex.from_records(K.concat_buckets(rights))
    if index is None:
        return None
    return B.probe_batch(B.concat_batches(lefts), index)


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
