"""Graph builders shared by the bag recipes: indexed maps, hash and range shuffles.

A shuffle here is the classic all-to-all exchange, built as plain tasks:

- one *split* task per input partition returns a list of ``npartitions`` buckets;
- one *bucket* task per (input, output) pair picks bucket ``j`` out of split ``i``
  (so a distributed worker fetches only that bucket, not the whole split);
- one *merge* task per output partition combines its buckets in input order.

Every callable's static arguments are bound with :func:`functools.partial`, so
no user value (a tuple of keys, say) is ever mistaken for a task by the scheduler.
Keys are ``dask_io-<op>-<tokenize(...)>``: deterministic, the same graph twice.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

from dask.bag import Bag
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph


def check_npartitions(npartitions: Any, default: int) -> int:
    """Validate ``npartitions`` (``None`` means ``default``)."""
    if npartitions is None:
        return default
    if isinstance(npartitions, bool) or not isinstance(npartitions, int) or npartitions < 1:
        raise ValueError(f"npartitions={npartitions!r} is invalid; expected an int >= 1")
    return npartitions


def check_fraction(fraction: Any, *, upper: float | None = 1.0, name: str = "fraction") -> float:
    """Validate a sampling fraction in ``[0, upper]`` (no upper bound if ``None``)."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise ValueError(f"{name}={fraction!r} is invalid; expected a number in [0, 1]")
    bad_upper = upper is not None and fraction > upper
    if not fraction >= 0 or bad_upper or fraction != fraction:
        expected = "a number in [0, 1]" if upper is not None else "a number >= 0"
        raise ValueError(f"{name}={fraction!r} is out of range; expected {expected}")
    return float(fraction)


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    """Validate a string option such as ``how``."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; expected one of {list(allowed)}")
    return str(value)


def check_seed(seed: Any, name: str = "seed") -> int:
    """Validate a seed: an int in ``[0, 2**63)``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"{name}={seed!r} is invalid; expected an int in [0, 2**63)")
    return seed


def check_bag(bag: Any, name: str = "bag") -> Bag:
    """Raise a clear error when a recipe is given something that is not a Bag."""
    if not isinstance(bag, Bag):
        raise TypeError(f"{name} must be a dask.bag.Bag, got {type(bag).__name__}")
    return bag


def make_name(op: str, *parts: Any) -> str:
    """A deterministic key prefix ``dask_io-<op>-<token>``."""
    return f"dask_io-{op}-{tokenize(op, *parts)}"


def new_bag(name: str, dsk: dict[Any, Any], npartitions: int, deps: Sequence[Any]) -> Bag:
    """Wrap a layer of tasks as a Bag depending on other collections."""
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=list(deps))
    return Bag(graph, name, npartitions)


def map_indexed(
    func: Callable[..., Any], bag: Bag, op: str, *token: Any, deps: Sequence[Any] = ()
) -> Bag:
    """Apply ``func(partition, index)`` to every partition, with its index."""
    name = make_name(op, bag, func, *token)
    dsk = {(name, i): (func, (bag.name, i), i) for i in range(bag.npartitions)}
    return new_bag(name, dsk, bag.npartitions, [bag, *deps])


def add_split_tasks(
    dsk: dict[Any, Any], bag: Bag, split: Callable[[Any], list[Any]], npartitions: int, name: str
) -> str:
    """Add split and bucket tasks of ``bag`` to ``dsk``; return the bucket key prefix."""
    split_name, bucket_name = f"{name}-split", f"{name}-bucket"
    for i in range(bag.npartitions):
        dsk[(split_name, i)] = (split, (bag.name, i))
        for j in range(npartitions):
            dsk[(bucket_name, i, j)] = (operator.getitem, (split_name, i), j)
    return bucket_name


def hash_shuffle(
    bag: Bag,
    split: Callable[[Any], list[Any]],
    merge: Callable[[list[Any]], Any],
    npartitions: int,
    op: str,
    *token: Any,
) -> Bag:
    """Shuffle ``bag`` into ``npartitions``: ``split`` each input into buckets, then
    ``merge(list of bucket j of every input, in input order)`` for each output ``j``."""
    name = make_name(op, bag, split, merge, npartitions, *token)
    dsk: dict[Any, Any] = {}
    buckets = add_split_tasks(dsk, bag, split, npartitions, name)
    for j in range(npartitions):
        dsk[(name, j)] = (merge, [(buckets, i, j) for i in range(bag.npartitions)])
    return new_bag(name, dsk, npartitions, [bag])


def co_shuffle(
    left: Bag,
    right: Bag,
    splits: tuple[Callable[[Any], list[Any]], Callable[[Any], list[Any]]],
    merge: Callable[[list[Any], list[Any]], Any],
    npartitions: int,
    op: str,
    *token: Any,
) -> Bag:
    """Shuffle two bags into the same ``npartitions`` and ``merge(left j, right j)``."""
    name = make_name(op, left, right, *splits, merge, npartitions, *token)
    dsk: dict[Any, Any] = {}
    lb = add_split_tasks(dsk, left, splits[0], npartitions, f"{name}-left")
    rb = add_split_tasks(dsk, right, splits[1], npartitions, f"{name}-right")
    for j in range(npartitions):
        lefts = [(lb, i, j) for i in range(left.npartitions)]
        rights = [(rb, i, j) for i in range(right.npartitions)]
        dsk[(name, j)] = (merge, lefts, rights)
    return new_bag(name, dsk, npartitions, [left, right])
