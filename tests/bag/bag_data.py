"""Test data and pure-Python oracles for the bag recipes."""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Iterable, Sequence
from typing import Any

from dask.bag import Bag
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph


def _const(part: list[Any]) -> list[Any]:
    return list(part)


def bag_of(parts: Sequence[Sequence[Any]]) -> Bag:
    """A bag whose partitions are exactly ``parts`` (empty ones included)."""
    parts = [list(p) for p in parts]
    name = "test-parts-" + tokenize(parts)
    dsk = {(name, i): (functools.partial(_const, p),) for i, p in enumerate(parts)}
    return Bag(HighLevelGraph.from_collections(name, dsk, []), name, len(parts))


def split_into(records: Sequence[Any], nparts: int, seed: int = 0) -> list[list[Any]]:
    """Cut records into ``nparts`` contiguous pieces of random sizes (some empty)."""
    rng = random.Random(seed)
    cuts = sorted(rng.randint(0, len(records)) for _ in range(nparts - 1))
    bounds = [0, *cuts, len(records)]
    return [list(records[a:b]) for a, b in itertools.pairwise(bounds)]


def skewed_pairs(n: int, nkeys: int, seed: int = 0, mixed: bool = True) -> list[tuple[Any, int]]:
    """``(key, value)`` pairs with Zipf-like skewed keys; with ``mixed`` keys include
    ``None``, ints, equal floats/bools, strings, bytes and tuples."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        rank = min(int(rng.paretovariate(1.1)) - 1, nkeys - 1)
        out.append((_key_of(rank, mixed), rng.randint(-50, 100)))
    return out


def _key_of(rank: int, mixed: bool) -> Any:
    if not mixed:
        return f"k{rank:04d}"
    kinds = (
        lambda r: f"user{r}",
        lambda r: r,
        lambda r: float(r),  # equal to the int key r
        lambda r: None if r % 3 == 0 else (r, "t"),
        lambda r: f"user{r}".encode(),  # distinct from the str key
        lambda r: r == 1,  # True == 1, False == 0
    )
    return kinds[rank % len(kinds)](rank)


# --------------------------------------------------------------------------- oracles


def oracle_reduce(pairs: Iterable[tuple[Any, Any]], binop: Any) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for k, v in pairs:
        out[k] = binop(out[k], v) if k in out else v
    return out


def oracle_group(pairs: Iterable[tuple[Any, Any]]) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = {}
    for k, v in pairs:
        out.setdefault(k, []).append(v)
    return out


def oracle_join(left: Sequence[Any], right: Sequence[Any], how: str) -> list[Any]:
    out = []
    right_keys = {k for k, _ in right}
    left_keys = {k for k, _ in left}
    for k, v in left:
        matches = [w for k2, w in right if k2 == k]
        out.extend((k, (v, w)) for w in matches)
        if not matches and how in ("left", "outer"):
            out.append((k, (v, None)))
    if how in ("right", "outer"):
        out.extend((k, (None, w)) for k, w in right if k not in left_keys)
    assert right_keys is not None
    return out


def canon(records: Iterable[Any]) -> list[str]:
    """An order-free, type-exact canonical form (1 and 1.0 stay distinct here)."""
    return sorted(repr(r) for r in records)
