"""Pure per-partition kernels of the bag recipes.

Every function here takes plain Python data (a partition is any iterable of
records) and returns plain Python data: no dask, no scheduler, no global random
state. The graph builders in the other modules of :mod:`dask_io.bag` wire these
kernels into tasks; keeping them pure lets them be tested one by one against
``dict``/``sorted``/``itertools`` oracles.

A *key spec* is ``None`` (records are ``(key, value)`` pairs), a callable
(``key(record)`` is the key and the record is the value) or any other object
``f`` (``record[f]`` is the key and the record is the value). The graph builders
turn it into ``(keyfn, valfn)`` with :func:`key_value_getters`; ``keyfn is None``
means "pairs", the fast path.
"""

from __future__ import annotations

import copy
import functools
import gc
import operator
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any

from dask_io.sketches.hashing import stable_hash

KeyFn = Callable[[Any], Any] | None
_MISSING = object()
_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None), tuple, frozenset)


class Records(list):  # type: ignore[type-arg]
    """A partition or bucket of records: a plain ``list`` in all but its type.

    dask.distributed serializes a task result whose type is exactly ``list``,
    ``tuple`` or ``dict`` element by element (one frame per element: about 40 s
    for 200,000 small tuples here); any other type is pickled in one piece. Every
    kernel result that may travel between workers is therefore a ``Records`` or a
    :class:`KeyMap`.
    """

    __slots__ = ()


class KeyMap(dict):  # type: ignore[type-arg]
    """A ``dict`` of per-key combiners or an index; see :class:`Records` for why."""

    __slots__ = ()


def gc_paused(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a kernel with Python's cyclic garbage collector paused.

    Kernels allocate many small acyclic tuples and lists, which reference counting
    frees; each allocation burst also triggers collections that traverse every
    object of the process, and a dask worker holds millions (its stored partitions).
    Measured here: a join probe on a worker took 3 s per 25,000 records with the
    collector on and 0.04 s with it paused. The collector is re-enabled on exit only
    if it was enabled on entry, so concurrent kernels never leave it off.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return func(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return wrapper


def key_value_getters(key: Any, value: Callable[[Any], Any] | None = None) -> tuple[KeyFn, KeyFn]:
    """Turn a key spec (and an optional value function) into ``(keyfn, valfn)``.

    >>> key_value_getters(None)
    (None, None)
    >>> keyfn, valfn = key_value_getters("user")
    >>> keyfn({"user": "u1"}), valfn
    ('u1', None)
    """
    if key is None:
        if value is not None:
            return operator.itemgetter(0), _compose_value(value)
        return None, None
    keyfn = key if callable(key) else operator.itemgetter(key)
    return keyfn, value


def _compose_value(value: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def pair_value(record: Any) -> Any:
        return value(record[1])

    return pair_value


def iter_pairs(records: Iterable[Any], keyfn: KeyFn, valfn: KeyFn = None) -> Iterable[Any]:
    """Yield ``(key, value)`` for every record of a partition.

    >>> list(iter_pairs([("a", 1)], None))
    [('a', 1)]
    >>> list(iter_pairs([{"k": "a"}], operator.itemgetter("k")))
    [('a', {'k': 'a'})]
    """
    if keyfn is None:
        return records
    if valfn is None:
        return ((keyfn(r), r) for r in records)
    return ((keyfn(r), valfn(r)) for r in records)


def partition_of(key: Hashable, npartitions: int) -> int:
    """The output partition of ``key``: ``stable_hash(key) % npartitions``.

    >>> partition_of("user-1", 1)
    0
    """
    return stable_hash(key) % npartitions


def as_list(records: Iterable[Any]) -> list[Any]:
    """The partition as a list (partitions may arrive as lists, tuples or iterators)."""
    return records if isinstance(records, list) else list(records)


# --------------------------------------------------------------------------- by key


def copy_zero(zero: Any) -> Any:
    """A fresh copy of an aggregation's zero value (immutable values are shared)."""
    return zero if isinstance(zero, _IMMUTABLE) else copy.deepcopy(zero)


@gc_paused
def combine_partition(
    records: Iterable[Any],
    keyfn: KeyFn,
    valfn: KeyFn,
    create: Callable[[Any], Any] | None,
    merge_value: Callable[[Any, Any], Any],
) -> dict[Any, Any]:
    """Map-side combine: fold every value of a partition into one combiner per key.

    ``create(value)`` starts a combiner (``None`` means the value itself);
    ``merge_value(combiner, value)`` adds a value to it.

    >>> combine_partition([("a", 1), ("b", 2), ("a", 3)], None, None, None, operator.add)
    {'a': 4, 'b': 2}
    """
    acc: dict[Any, Any] = KeyMap()
    get = acc.get
    for k, v in iter_pairs(records, keyfn, valfn):
        old = get(k, _MISSING)
        if old is _MISSING:
            acc[k] = v if create is None else create(v)
        else:
            acc[k] = merge_value(old, v)
    return acc


@gc_paused
def count_partition(records: Iterable[Any], keyfn: KeyFn) -> dict[Any, int]:
    """Count the records of each key in a partition.

    >>> count_partition([("a", 1), ("b", 2), ("a", 3)], None)
    {'a': 2, 'b': 1}
    """
    getter = operator.itemgetter(0) if keyfn is None else keyfn
    return KeyMap(Counter(map(getter, records)))


@gc_paused
def split_combined(combined: dict[Any, Any], npartitions: int) -> list[dict[Any, Any]]:
    """Split a partition's combiners into ``npartitions`` dicts by key hash.

    >>> split_combined({"a": 1}, 1)
    [{'a': 1}]
    """
    if npartitions == 1:
        return Records([combined])
    buckets: list[dict[Any, Any]] = Records(KeyMap() for _ in range(npartitions))
    for k, acc in combined.items():
        buckets[stable_hash(k) % npartitions][k] = acc
    return buckets


@gc_paused
def merge_combined(
    buckets: Iterable[dict[Any, Any]], merge_combiners: Callable[[Any, Any], Any]
) -> list[tuple[Any, Any]]:
    """Reduce side: merge the combiners that every input partition sent for its keys.

    Buckets are merged in input-partition order, so order-sensitive combiners
    (lists) see values in the order of the bag.

    >>> merge_combined([{"a": 1}, {"a": 2, "b": 5}], operator.add)
    [('a', 3), ('b', 5)]
    """
    out: dict[Any, Any] = {}
    get = out.get
    for bucket in buckets:
        for k, acc in bucket.items():
            old = get(k, _MISSING)
            out[k] = acc if old is _MISSING else merge_combiners(old, acc)
    return Records(out.items())


@gc_paused
def bucket_records(records: Iterable[Any], keyfn: KeyFn, npartitions: int) -> list[list[Any]]:
    """Split a partition's records into ``npartitions`` lists by key hash (no combine).

    Each key's partition is hashed once per partition and remembered.

    >>> bucket_records([("a", 1), ("a", 2)], None, 1)
    [[('a', 1), ('a', 2)]]
    """
    if npartitions == 1:
        return Records([Records(records)])
    buckets: list[list[Any]] = Records(Records() for _ in range(npartitions))
    appends = [b.append for b in buckets]
    where: dict[Any, Any] = {}
    getter = operator.itemgetter(0) if keyfn is None else keyfn
    for r in records:
        k = getter(r)
        app = where.get(k)
        if app is None:
            app = where[k] = appends[stable_hash(k) % npartitions]
        app(r)
    return buckets


@gc_paused
def concat_buckets(buckets: Iterable[Iterable[Any]]) -> list[Any]:
    """Concatenate the buckets an output partition received, in input order."""
    out: list[Any] = Records()
    for b in buckets:
        out.extend(b)
    return out


def topk_add(k: int, order: Callable[[Any], Any]) -> Callable[[list[Any], Any], list[Any]]:
    """A ``merge_value`` that appends and trims to the ``k`` largest now and then."""
    import heapq

    def add(acc: list[Any], value: Any) -> list[Any]:
        acc.append(value)
        if len(acc) >= 2 * k + 8:
            acc[:] = heapq.nlargest(k, acc, key=order)
        return acc

    return add


def topk_merge(k: int, order: Callable[[Any], Any]) -> Callable[[list[Any], list[Any]], list[Any]]:
    """A ``merge_combiners`` keeping the ``k`` largest values, largest first."""
    import heapq

    def merge(a: list[Any], b: list[Any]) -> list[Any]:
        return heapq.nlargest(k, a + b, key=order)

    return merge


@gc_paused
def finish_topk(
    pairs: Iterable[tuple[Any, list[Any]]], k: int, order: Callable[[Any], Any]
) -> list[tuple[Any, list[Any]]]:
    """Sort each key's kept values, largest first, and keep ``k``."""
    import heapq

    return Records((key, heapq.nlargest(k, acc, key=order)) for key, acc in pairs)


# --------------------------------------------------------------------------- sorted streams


def merge_streams(
    streams: Sequence[Iterable[Any]], keyfn: KeyFn, reverse: bool = False
) -> Iterator[Any]:
    """Lazily k-way merge sorted streams (stable: equal keys keep stream order).

    >>> list(merge_streams([[("a", 1), ("c", 3)], [("b", 2)]], None))
    [('a', 1), ('b', 2), ('c', 3)]
    """
    import heapq

    getter = operator.itemgetter(0) if keyfn is None else keyfn
    return heapq.merge(*streams, key=getter, reverse=reverse)


# --------------------------------------------------------------------------- joins

JOIN_HOWS = ("inner", "left", "right", "outer")


@gc_paused
def build_index(records: Iterable[Any], keyfn: KeyFn, valfn: KeyFn = None) -> dict[Any, list[Any]]:
    """Index a collection by key: ``{key: [value, ...]}`` in input order.

    >>> build_index([("a", 1), ("b", 2), ("a", 3)], None)
    {'a': [1, 3], 'b': [2]}
    """
    index: dict[Any, list[Any]] = KeyMap()
    get = index.get
    for k, v in iter_pairs(records, keyfn, valfn):
        vs = get(k)
        if vs is None:
            index[k] = [v]
        else:
            vs.append(v)
    return index


@gc_paused
def probe_index(
    records: Iterable[Any],
    keyfn: KeyFn,
    valfn: KeyFn,
    index: dict[Any, list[Any]],
    how: str,
    matched: set[Any] | None = None,
) -> list[tuple[Any, tuple[Any, Any]]]:
    """Join a partition against an index, giving PySpark's ``(k, (v, w))`` records.

    ``how`` is ``"inner"`` or ``"left"`` (unmatched records get ``w = None``).
    Keys that found a match are added to ``matched`` when it is given.

    >>> probe_index([("a", 1), ("z", 2)], None, None, {"a": ["x", "y"]}, "left")
    [('a', (1, 'x')), ('a', (1, 'y')), ('z', (2, None))]
    """
    keep_unmatched = how in ("left", "outer")
    out: list[tuple[Any, tuple[Any, Any]]] = Records()
    app = out.append
    get = index.get
    for k, v in iter_pairs(records, keyfn, valfn):
        ws = get(k)
        if ws is None:
            if keep_unmatched:
                app((k, (v, None)))
            continue
        if matched is not None:
            matched.add(k)
        for w in ws:
            app((k, (v, w)))
    return out


@gc_paused
def join_buckets(
    left: Iterable[Any],
    right: Iterable[Any],
    left_getters: tuple[KeyFn, KeyFn],
    right_getters: tuple[KeyFn, KeyFn],
    how: str,
) -> list[tuple[Any, tuple[Any, Any]]]:
    """Hash-join the records of one output partition of a shuffle join.

    >>> join_buckets([("a", 1)], [("a", 2), ("b", 3)], (None, None), (None, None), "outer")
    [('a', (1, 2)), ('b', (None, 3))]
    """
    right = as_list(right)
    index = build_index(right, *right_getters)
    matched: set[Any] | None = set() if how in ("right", "outer") else None
    out = probe_index(left, *left_getters, index, how, matched)
    if matched is not None:
        out.extend((k, (None, w)) for k, w in iter_pairs(right, *right_getters) if k not in matched)
    return out


def _sorted_groups(pairs: Iterable[Any], side: str) -> Iterator[tuple[Any, list[Any]]]:
    """Group consecutive equal keys of a sorted stream, checking it is sorted."""
    import itertools

    previous: Any = _MISSING
    for k, group in itertools.groupby(pairs, key=operator.itemgetter(0)):
        if previous is not _MISSING and not previous < k:
            raise ValueError(
                f"merge_join needs each {side} partition sorted by key, but key {k!r} "
                f"comes after {previous!r}"
            )
        previous = k
        yield k, [v for _, v in group]


@gc_paused
def merge_join_sorted(
    left: Iterable[Any],
    right: Iterable[Any],
    left_getters: tuple[KeyFn, KeyFn],
    right_getters: tuple[KeyFn, KeyFn],
    how: str,
) -> list[tuple[Any, tuple[Any, Any]]]:
    """Join two partitions sorted by key in one streaming pass (sort-merge join).

    >>> merge_join_sorted([("a", 1), ("c", 3)], [("b", 2), ("c", 4)], (None, None), (None, None), "left")
    [('a', (1, None)), ('c', (3, 4))]
    """
    lg = _sorted_groups(iter_pairs(left, *left_getters), "left")
    rg = _sorted_groups(iter_pairs(right, *right_getters), "right")
    keep_left, keep_right = how in ("left", "outer"), how in ("right", "outer")
    out: list[tuple[Any, tuple[Any, Any]]] = Records()
    lcur, rcur = next(lg, None), next(rg, None)
    while lcur is not None and rcur is not None:
        if lcur[0] == rcur[0]:
            out.extend((lcur[0], (v, w)) for v in lcur[1] for w in rcur[1])
            lcur, rcur = next(lg, None), next(rg, None)
        elif lcur[0] < rcur[0]:
            if keep_left:
                out.extend((lcur[0], (v, None)) for v in lcur[1])
            lcur = next(lg, None)
        else:
            if keep_right:
                out.extend((rcur[0], (None, w)) for w in rcur[1])
            rcur = next(rg, None)
    while lcur is not None:  # drained even when unused, to check the order
        if keep_left:
            out.extend((lcur[0], (v, None)) for v in lcur[1])
        lcur = next(lg, None)
    while rcur is not None:
        if keep_right:
            out.extend((rcur[0], (None, w)) for w in rcur[1])
        rcur = next(rg, None)
    return out


# --------------------------------------------------------------------------- sorting


def none_first(key: Any) -> tuple[bool, Any]:
    """A sort key that puts ``None`` before every other key (as Spark sorts nulls)."""
    return (key is not None, key)


@gc_paused
def sort_partition(records: Iterable[Any], keyfn: KeyFn, ascending: bool) -> list[Any]:
    """Sort a partition by key (stable; ``None`` keys first when ascending).

    >>> sort_partition([("b", 1), (None, 2), ("a", 3)], None, True)
    [(None, 2), ('a', 3), ('b', 1)]
    """
    getter = operator.itemgetter(0) if keyfn is None else keyfn
    recs = as_list(records)
    out = Records(recs)
    try:
        out.sort(key=getter, reverse=not ascending)
    except TypeError:
        out.sort(key=lambda r: none_first(getter(r)), reverse=not ascending)
    return out


def sample_sorted(sorted_records: Sequence[Any], keyfn: KeyFn, size: int) -> tuple[int, list[Any]]:
    """Evenly spaced keys of a sorted partition: ``(partition length, keys)``.

    >>> sample_sorted([(i, None) for i in range(10)], None, 2)
    (10, [2, 7])
    """
    getter = operator.itemgetter(0) if keyfn is None else keyfn
    total = len(sorted_records)
    take = min(size, total)
    return total, [getter(sorted_records[int((j + 0.5) * total / take)]) for j in range(take)]


def choose_boundaries(samples: Iterable[tuple[int, list[Any]]], npartitions: int) -> list[Any]:
    """Pick ``npartitions - 1`` ascending boundary keys from weighted key samples.

    Each sampled key stands for ``count / len(keys)`` records of its partition;
    the boundaries cut the weighted keys into equal shares.

    >>> choose_boundaries([(4, [1, 2, 3, 4]), (4, [5, 6, 7, 8])], 2)
    [4]
    """
    weighted = [(k, count / len(keys)) for count, keys in samples if keys for k in keys]
    if not weighted:
        return []
    weighted.sort(key=lambda kw: none_first(kw[0]))
    total = sum(w for _, w in weighted)
    bounds, acc, step = [], 0.0, total / npartitions
    j = 1
    for k, w in weighted:
        acc += w
        while j < npartitions and acc >= j * step - 1e-9 * total:
            bounds.append(k)
            j += 1
    return bounds


@gc_paused
def split_sorted(
    sorted_records: list[Any],
    keyfn: KeyFn,
    boundaries: list[Any],
    ascending: bool,
    npartitions: int,
) -> list[list[Any]]:
    """Cut a sorted partition into ``npartitions`` key ranges at the boundaries.

    Ascending range ``p`` holds keys ``boundaries[p-1] < key <= boundaries[p]``;
    descending output puts the largest range first.

    >>> split_sorted([(1, 0), (2, 0), (3, 0)], None, [1], True, 2)
    [[(1, 0)], [(2, 0), (3, 0)]]
    """
    import bisect

    getter = operator.itemgetter(0) if keyfn is None else keyfn
    recs = sorted_records if ascending else sorted_records[::-1]
    cuts = [0]
    for b in boundaries:
        cuts.append(
            bisect.bisect_right(
                recs, none_first(b), lo=cuts[-1], key=lambda r: none_first(getter(r))
            )
        )
    cuts.extend([len(recs)] * (npartitions + 1 - len(cuts)))
    pieces = [recs[cuts[p] : cuts[p + 1]] for p in range(npartitions)]
    if ascending:
        return Records(Records(piece) for piece in pieces)
    return Records(Records(piece[::-1]) for piece in reversed(pieces))


@gc_paused
def merge_runs(runs: Sequence[Iterable[Any]], keyfn: KeyFn, ascending: bool) -> list[Any]:
    """Merge sorted runs into one sorted list (stable across runs).

    >>> merge_runs([[(1, "a"), (3, "a")], [(2, "b")]], None, True)
    [(1, 'a'), (2, 'b'), (3, 'a')]
    """
    import heapq

    getter = operator.itemgetter(0) if keyfn is None else keyfn
    runs = [as_list(r) for r in runs]
    try:
        return Records(heapq.merge(*runs, key=getter, reverse=not ascending))
    except TypeError:
        return Records(
            heapq.merge(*runs, key=lambda r: none_first(getter(r)), reverse=not ascending)
        )
