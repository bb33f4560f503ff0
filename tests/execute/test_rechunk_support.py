"""Shared helpers of the rechunk tests: a zarr store that logs chunk reads, sources."""

from __future__ import annotations

import collections
import os
import time

import numpy as np
import zarr
from zarr.storage import LocalStore, WrapperStore


class CountingStore(WrapperStore):
    """A zarr store that appends the key of every chunk read to a log file.

    The log is a file so that reads in worker processes are counted too; with
    ``delay`` each read sleeps (to make a job slow enough to interrupt); with
    ``fail_key`` the first read of that key raises, once (a flag file records it).
    """

    def __init__(self, store, log, delay=0.0, fail_key=None):
        super().__init__(store)
        self.log, self.delay, self.fail_key = log, delay, fail_key

    async def get(self, key, prototype, byte_range=None):
        name = key.rsplit("/", 1)[-1]
        if name not in ("zarr.json", ".zarray", ".zattrs", ".zgroup"):
            if self.fail_key == key and not os.path.exists(self.log + ".failed"):
                open(self.log + ".failed", "w").close()
                raise RuntimeError(f"injected failure reading {key}")
            with open(self.log, "a") as f:
                f.write(f"{key}\n")
            if self.delay:
                time.sleep(self.delay)
        return await super().get(key, prototype, byte_range)

    def __getstate__(self):
        return {
            "store": self._store,
            "log": self.log,
            "delay": self.delay,
            "fail_key": self.fail_key,
        }

    def __setstate__(self, state):
        self.__init__(state["store"], state["log"], state["delay"], state["fail_key"])

    def with_options(self, **kw):  # zarr may ask for a read-only copy
        return CountingStore(self._store.with_read_only(), self.log, self.delay, self.fail_key)


def reads(log):
    """How many times each chunk key was read."""
    if not os.path.exists(log):
        return collections.Counter()
    with open(log) as f:
        return collections.Counter(line.strip() for line in f if line.strip())


def counted_zarr(path, data, chunks, log, zarr_format=3, shards=None, **kw):
    """Write ``data`` to a zarr array at ``path``; return it reopened through a CountingStore."""
    arr = zarr.create_array(
        path,
        shape=data.shape,
        dtype=data.dtype,
        chunks=chunks,
        shards=shards,
        zarr_format=zarr_format,
        overwrite=True,
    )
    arr[...] = data
    store = CountingStore(LocalStore(path, read_only=True), log, **kw)
    return zarr.open_array(store, mode="r", zarr_format=zarr_format)


def chunk_key(arr, block):
    """The store key of chunk ``block`` of a zarr array (format 2 or 3, no shards)."""
    if arr.metadata.zarr_format == 2:
        return ".".join(map(str, block))
    return "c/" + "/".join(map(str, block))


def data(shape, seed=0, dtype="uint16"):
    """Values computed from a seed: a misplaced block never compares equal."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)
