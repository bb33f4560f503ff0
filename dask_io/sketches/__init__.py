"""Mergeable sketches: Bloom filter, Count-Min sketch and HyperLogLog.

Pure numpy (plus xxhash for strings and bytes): this package never imports dask.
"""

from __future__ import annotations

from dask_io.sketches.hashing import hash_array, stable_hash

__all__ = ["hash_array", "stable_hash"]
