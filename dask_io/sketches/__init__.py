"""Mergeable sketches: Bloom filter, Count-Min sketch and HyperLogLog.

Pure numpy (plus xxhash for strings and bytes): this package never imports dask.
Every sketch has vectorised batch updates (``update``), ``merge`` and ``|`` for
sketches built with the same parameters, ``to_bytes``/``from_bytes`` with a small
versioned header, pickling through those bytes, and equality. Keys are hashed with
:func:`stable_hash`, the same on every worker, so sketches built on different
workers merge exactly as if built on one.

>>> import numpy as np
>>> a, b = HyperLogLog(p=12), HyperLogLog(p=12)
>>> a.update(np.arange(0, 6000)); b.update(np.arange(4000, 10000))
>>> whole = HyperLogLog(p=12); whole.update(np.arange(10000))
>>> (a | b) == whole
True
"""

from __future__ import annotations

from dask_io.sketches._base import IncompatibleSketchError, Sketch, SketchError
from dask_io.sketches.bloom import BloomFilter, bloom_size
from dask_io.sketches.countmin import CountMinSketch, count_min_size
from dask_io.sketches.hashing import hash_array, stable_hash
from dask_io.sketches.hyperloglog import HyperLogLog, hll_precision

__all__ = [
    "BloomFilter",
    "CountMinSketch",
    "HyperLogLog",
    "IncompatibleSketchError",
    "Sketch",
    "SketchError",
    "bloom_size",
    "count_min_size",
    "hash_array",
    "hll_precision",
    "stable_hash",
]
