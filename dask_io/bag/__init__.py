"""Spark-style batch recipes on :class:`dask.bag.Bag`.

By key (map-side combine, output hash-partitioned into ``npartitions``):
:func:`reduce_by_key`, :func:`aggregate_by_key`, :func:`combine_by_key`,
:func:`group_by_key`, :func:`count_by_key`, :func:`top_k_by_key`.
Joins, with PySpark's ``(k, (v, w))`` records: :func:`broadcast_join`,
:func:`hash_join`, :func:`merge_join`.
Seeded sampling: :func:`sample`, :func:`hash_sample`, :func:`sample_by_key`,
:func:`take_sample`.
Sorting and sharding: :func:`sort_by_key`, :func:`partition_by_key`,
:func:`merge_sorted`, :func:`write_sharded`, :func:`read_sharded`,
:func:`write_partitioned`, :func:`read_partitioned`.
Sketches (from :mod:`dask_io.bag.sketching`): Bloom filter, Count-Min sketch,
HyperLogLog and the recipes built on them.

Column batches: a partition may be one :class:`PairBatch` (keys and values as
arrays) instead of a list of records. It iterates as its records, so every
recipe accepts it, and reduce/count by key (``operator.add``, ``min``, ``max``),
the inner broadcast and hash joins and the hash and stratified samples then run
on its columns; :class:`field` reads nested fields of its records
(``field(1, 0)`` is ``r[1][0]``) as columns.

Every recipe that partitions by key uses
:func:`dask_io.sketches.hashing.stable_hash`: a key goes to the same partition
in every process and on every run, and keys that compare equal (``1``, ``1.0``,
``True``) go to the same partition, while ``"a"`` and ``b"a"`` are different
keys. Keys must be ``None``, numbers, ``str``, ``bytes`` or tuples/frozensets of
these. All recipes are lazy and run on the threaded, processes and distributed
schedulers alike.

>>> import dask.bag as db
>>> from dask_io import bag as dbag
>>> b = db.from_sequence([("a", 1), ("b", 2), ("a", 3)], npartitions=2)
>>> sorted(dbag.reduce_by_key(b, None, lambda x, y: x + y, npartitions=2))
[('a', 4), ('b', 2)]
"""

from __future__ import annotations

from dask_io.bag import sketching
from dask_io.bag._batch import PairBatch, field
from dask_io.bag.bykey import (
    aggregate_by_key,
    combine_by_key,
    count_by_key,
    group_by_key,
    reduce_by_key,
    top_k_by_key,
)
from dask_io.bag.files import (
    list_partitioned_files,
    read_partitioned,
    read_sharded,
    write_partitioned,
    write_sharded,
)
from dask_io.bag.join import broadcast_join, hash_join, merge_join
from dask_io.bag.sample import hash_sample, sample, sample_by_key, take_sample
from dask_io.bag.sketching import *  # noqa: F403
from dask_io.bag.sort import merge_sorted, partition_by_key, sort_by_key

__all__ = [
    "PairBatch",
    "aggregate_by_key",
    "broadcast_join",
    "combine_by_key",
    "count_by_key",
    "field",
    "group_by_key",
    "hash_join",
    "hash_sample",
    "list_partitioned_files",
    "merge_join",
    "merge_sorted",
    "partition_by_key",
    "read_partitioned",
    "read_sharded",
    "reduce_by_key",
    "sample",
    "sample_by_key",
    "sort_by_key",
    "take_sample",
    "top_k_by_key",
    "write_partitioned",
    "write_sharded",
]

# the sketch recipes (Bloom filter, Count-Min sketch, HyperLogLog), written separately
__all__ += list(sketching.__all__)
