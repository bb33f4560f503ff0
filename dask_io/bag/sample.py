"""Seeded, reproducible sampling of bags.

Every random number is drawn from a numpy ``Generator`` seeded by the user's
``seed``, a stream number and the partition index, never from global random
state: the same seed gives the same sample on the threaded, processes and
distributed schedulers, with any number of workers, on every run. (Like
Spark's samplers, a random sample does depend on how the bag is partitioned;
:func:`hash_sample` does not even depend on that.)
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from dask.bag import Bag

from dask_io.bag import _kernels as K
from dask_io.bag import _sample_kernels as S
from dask_io.bag._graph import (
    check_bag,
    check_fraction,
    check_seed,
    make_name,
    map_indexed,
    new_bag,
)

__all__ = ["hash_sample", "sample", "sample_by_key", "take_sample"]


def _bernoulli(records: Any, index: int, **kwargs: Any) -> list[Any]:
    return S.bernoulli_sample(records, index, **kwargs)


def sample(bag: Bag, fraction: float, seed: int = 0, *, with_replacement: bool = False) -> Bag:
    """Keep each record independently with probability ``fraction`` (Bernoulli).

    PySpark's ``RDD.sample``. With ``with_replacement=True`` each record appears
    a Poisson(``fraction``)-distributed number of times and ``fraction`` may
    exceed 1. The random numbers of a partition are drawn in one batch.

    Parameters
    ----------
    bag : dask.bag.Bag
        The records.
    fraction : float
        Probability of keeping each record, in ``[0, 1]`` (``>= 0`` with replacement).
    seed : int, default 0
        Seed in ``[0, 2**63)``.
    with_replacement : bool, default False
        Poisson sampling instead of Bernoulli.

    Returns
    -------
    dask.bag.Bag
        The kept records, in bag order, with ``bag``'s partitioning.

    Examples
    --------
    >>> import dask.bag as db
    >>> b = db.from_sequence(range(1000), npartitions=4)
    >>> s = sample(b, 0.1, seed=42).compute()
    >>> s == sample(b, 0.1, seed=42).compute(), 50 < len(s) < 150
    (True, True)
    """
    check_bag(bag)
    upper = None if with_replacement else 1.0
    fraction = check_fraction(fraction, upper=upper)
    seed = check_seed(seed)
    func = functools.partial(
        _bernoulli, fraction=fraction, seed=seed, with_replacement=with_replacement
    )
    return map_indexed(func, bag, "sample")


def _salt_of(salt: Any) -> int:
    if isinstance(salt, bool) or not isinstance(salt, (int, str, bytes)):
        raise ValueError(f"salt={salt!r} is invalid; expected an int, str or bytes")
    if isinstance(salt, int):
        if not 0 <= salt < 2**64:
            raise ValueError(f"salt={salt!r} is out of range; expected an int in [0, 2**64)")
        return salt
    return K.stable_hash(salt)


def hash_sample(bag: Bag, key: Any, fraction: float, salt: int | str | bytes = 0) -> Bag:
    """Keep the records whose key hashes below ``fraction``: the same keys, every run.

    The lecture's ``hash(user_id) % 1000 < 100``, done with the stable 64-bit hash
    (``stable_hash(key, seed=salt) < fraction * 2**64``): every record of a kept key
    is kept, whatever the partitioning, scheduler or process. Change ``salt`` for an
    independent sample of keys.

    Parameters
    ----------
    bag : dask.bag.Bag
        The records.
    key : None, callable or field
        ``None`` for ``(key, value)`` pairs; ``key(record)``; or ``record[key]``.
    fraction : float
        Share of keys kept, in ``[0, 1]``.
    salt : int, str or bytes, default 0
        Selects the hash function.

    Returns
    -------
    dask.bag.Bag
        The kept records, with ``bag``'s partitioning.

    Examples
    --------
    >>> import dask.bag as db
    >>> b = db.from_sequence([(u % 50, u) for u in range(500)], npartitions=3)
    >>> users = {k for k, _ in hash_sample(b, None, 0.2, salt=7)}
    >>> users == {k for k, _ in hash_sample(b.repartition(5), None, 0.2, salt=7)}
    True
    """
    check_bag(bag)
    fraction = check_fraction(fraction)
    salt_int = _salt_of(salt)
    func = functools.partial(
        S.hash_sample_partition,
        keyfn=K.key_value_getters(key)[0],
        threshold=S.hash_threshold(fraction),
        salt=salt_int,
    )
    return bag.map_partitions(func, token="dask_io-hash_sample")


def _stratified(records: Any, index: int, **kwargs: Any) -> list[Any]:
    return S.stratified_sample(records, index, **kwargs)


def sample_by_key(
    bag: Bag,
    key: Any,
    fractions: Mapping[Any, float],
    seed: int = 0,
    *,
    default: float | None = None,
    with_replacement: bool = False,
) -> Bag:
    """Stratified sample: keep each record with the fraction of its key.

    PySpark's ``sampleByKey``. A record whose key is missing from ``fractions``
    uses ``default``; with no ``default`` it raises ``ValueError`` at compute time.

    Parameters
    ----------
    bag : dask.bag.Bag
        The records.
    key : None, callable or field
        ``None`` for ``(key, value)`` pairs; ``key(record)``; or ``record[key]``.
    fractions : mapping
        ``{key: fraction}``, each fraction in ``[0, 1]`` (``>= 0`` with replacement).
    seed : int, default 0
        Seed in ``[0, 2**63)``.
    default : float, optional
        Fraction for keys missing from ``fractions``.
    with_replacement : bool, default False
        Poisson sampling instead of Bernoulli.

    Examples
    --------
    >>> import dask.bag as db
    >>> b = db.from_sequence([("PL", i) for i in range(100)] + [("BR", 1)], npartitions=2)
    >>> s = sample_by_key(b, None, {"PL": 0.5, "BR": 0.0}, seed=1).compute()
    >>> {k for k, _ in s}
    {'PL'}
    """
    check_bag(bag)
    upper = None if with_replacement else 1.0
    checked = {
        k: check_fraction(f, upper=upper, name=f"fractions[{k!r}]") for k, f in fractions.items()
    }
    if default is not None:
        default = check_fraction(default, upper=upper, name="default")
    func = functools.partial(
        _stratified,
        keyfn=K.key_value_getters(key)[0],
        fractions=checked,
        default=default,
        seed=check_seed(seed),
        with_replacement=with_replacement,
    )
    return map_indexed(func, bag, "sample_by_key")


def _reservoir(records: Any, index: int, n: int, seed: int) -> tuple[int, list[Any]]:
    return S.reservoir_sample(records, index, n, seed)


def _count_of(reservoir: tuple[int, list[Any]]) -> int:
    return reservoir[0]


def _allocate(counts: list[int], n: int, seed: int) -> list[int]:
    return S.allocate_sample(counts, n, seed)


def _subsample(reservoir: Any, alloc: list[int], index: int, seed: int) -> list[Any]:
    return S.subsample(reservoir, index, alloc[index], seed)


def take_sample(bag: Bag, n: int, seed: int = 0) -> Bag:
    """An exact uniform sample of ``min(n, len(bag))`` records, without replacement.

    PySpark's ``takeSample(False, n, seed)``, in one pass over the data and lazy:

    1. each partition keeps a uniform reservoir of ``n`` records and its length;
    2. one small task draws how many of the ``n`` fall in each partition (the
       multivariate hypergeometric law of the partition lengths), from the lengths only;
    3. each partition sub-samples its own reservoir to that many records;
    4. the pieces are concatenated in a seeded random order.

    Only lengths and the final ``n`` records travel between workers.

    Parameters
    ----------
    bag : dask.bag.Bag
        The records.
    n : int
        Sample size, ``>= 0``.
    seed : int, default 0
        Seed in ``[0, 2**63)``.

    Returns
    -------
    dask.bag.Bag
        One partition holding the sample, in random order.

    Examples
    --------
    >>> import dask.bag as db
    >>> b = db.from_sequence(range(100), npartitions=5)
    >>> s = take_sample(b, 10, seed=3).compute()
    >>> len(s), len(set(s)), s == take_sample(b, 10, seed=3).compute()
    (10, 10, True)
    """
    check_bag(bag)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n={n!r} is invalid; expected an int >= 0")
    seed = check_seed(seed)
    name = make_name("take_sample", bag, n, seed)
    res, cnt, alloc, sub = (f"{name}-{s}" for s in ("reservoir", "count", "alloc", "sub"))
    reservoir = functools.partial(_reservoir, n=n, seed=seed)
    subsample = functools.partial(_subsample, seed=seed)
    dsk: dict[Any, Any] = {}
    for i in range(bag.npartitions):
        dsk[(res, i)] = (reservoir, (bag.name, i), i)
        dsk[(cnt, i)] = (_count_of, (res, i))
        dsk[(sub, i)] = (subsample, (res, i), alloc, i)
    counts = [(cnt, i) for i in range(bag.npartitions)]
    dsk[alloc] = (functools.partial(_allocate, n=n, seed=seed), counts)
    parts = [(sub, i) for i in range(bag.npartitions)]
    dsk[(name, 0)] = (functools.partial(S.shuffle_sample, seed=seed), parts)
    return new_bag(name, dsk, 1, [bag])
