"""Bloom filter: set membership with no false negatives and a chosen false-positive rate.

Sizing (Bloom 1970; the usual optimum): for ``n = capacity`` items and a target
false-positive rate ``p``, ``m = ceil(-n ln p / (ln 2)^2)`` bits (9.59 bits per item at
1 %) and ``k = round(m / n * ln 2)`` hash functions (7 at 1 %). ``m`` is rounded up to
a whole number of 64-bit words. With ``n`` items added the false-positive rate is
``(1 - exp(-k n / m))^k``, about ``p``.

**Positions.** Each key is hashed once to 64 bits with :func:`~dask_io.sketches.
hashing.hash_array`; the ``k`` positions come from double hashing (Kirsch and
Mitzenmacher 2006): byte ``floor(((h1 + i h2) mod 2^32) * m/8 / 2^32)`` for probe
``i = 0 .. k-1``, where ``h1`` and ``h2`` are the low and high 32 bits of the hash.
Within that byte, probe ``i`` sets bit ``(r + i) mod 8``, where ``r`` (0..7) is a
third function of the hash. So every position is uniform over the ``m`` bits, as in
the classic filter, and the up to 8 probes of one key never share a bit. It also
makes a vectorised update exact: keys with the same ``r`` set the same bit in every
byte they touch during one probe, so a numpy scatter with repeated indices loses
nothing, and the bits stay packed 8 per byte.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from dask_io.sketches._base import (
    Sketch,
    SketchError,
    check_batch,
    hash_chunks,
    read_payload,
    unpack_params,
)
from dask_io.sketches.hashing import hash_array, stable_hash

__all__ = ["BloomFilter", "bloom_size"]

_PARAMS = struct.Struct("<QIQQd")  # num_bits, num_hashes, seed, capacity, fpr
_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_S61 = np.uint64(61)
_ROTATE = np.uint64(0xD6E8FEB86659FD93)  # odd multiplier: r = top 3 bits of h * _ROTATE
_CHUNK = 1 << 16
_MAX_BYTES = 1 << 32
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def bloom_size(capacity: int, fpr: float) -> tuple[int, int]:
    """The optimal ``(num_bits, num_hashes)`` for ``capacity`` items at false-positive rate ``fpr``.

    ``num_bits`` is rounded up to a multiple of 64.

    >>> bloom_size(1000, 0.01)
    (9600, 7)
    """
    if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
        raise SketchError(f"capacity={capacity!r} is invalid; expected an int >= 1")
    if not 0.0 < float(fpr) < 1.0:
        raise SketchError(f"fpr={fpr!r} is invalid; expected a false-positive rate in (0, 1)")
    exact = -int(capacity) * math.log(fpr) / math.log(2) ** 2
    num_bits = max(64, math.ceil(exact / 64) * 64)
    num_hashes = max(1, round(exact / int(capacity) * math.log(2)))
    return num_bits, num_hashes


class BloomFilter(Sketch):
    """A Bloom filter over hashable keys, with vectorised batch updates and lookups.

    Parameters
    ----------
    capacity
        The number of distinct keys the filter is sized for.
    fpr
        The target false-positive rate once ``capacity`` keys are in.
    seed
        Hash seed; only filters with equal seeds (and sizes) can be merged.

    Notes
    -----
    No false negatives: a key that was added is always reported present. A key
    that was not added is reported present with probability :attr:`estimated_fpr`
    (about ``fpr`` when ``capacity`` keys are in). Merging (``a | b``) is the
    bitwise OR: the filter of the union, bit for bit. Keys are hashed with
    :func:`~dask_io.sketches.hashing.stable_hash`, so equal keys (``1``, ``1.0``)
    are the same key.

    Examples
    --------
    >>> bf = BloomFilter(capacity=1000, fpr=0.01)
    >>> bf.update(np.arange(500))
    >>> 7 in bf, bool(bf.contains(np.array([3, 499])).all())
    (True, True)
    >>> bf.num_bits, bf.num_hashes
    (9600, 7)
    """

    KIND = b"B"
    NAME = "Bloom filter"

    def __init__(self, capacity: int, fpr: float = 0.01, seed: int = 0) -> None:
        num_bits, num_hashes = bloom_size(capacity, fpr)
        stable_hash(0, seed)  # validates the seed
        self._setup(num_bits, num_hashes, seed, int(capacity), float(fpr))
        self._bits = np.zeros(num_bits // 8, dtype=np.uint8)

    def _setup(self, num_bits: int, num_hashes: int, seed: int, capacity: int, fpr: float) -> None:
        if num_bits // 8 > _MAX_BYTES:
            raise SketchError(
                f"a Bloom filter of {num_bits} bits is too large; expected at most 2**35 bits"
            )
        self.num_bits = num_bits
        self.num_hashes = num_hashes
        self.seed = seed
        self.capacity = capacity
        self.fpr = fpr

    def _params(self) -> tuple[int, int, int]:
        return (self.num_bits, self.num_hashes, self.seed)

    def _param_names(self) -> tuple[str, ...]:
        return ("num_bits", "num_hashes", "seed")

    def _state(self) -> npt.NDArray[np.uint8]:
        return self._bits

    def _merge_state(self, other: BloomFilter) -> None:
        np.bitwise_or(self._bits, other._bits, out=self._bits)

    # ------------------------------------------------------------------ update

    def add(self, key: Any) -> None:
        """Add one key."""
        self.update_hashes(np.array([stable_hash(key, self.seed)], dtype=np.uint64))

    def update(self, keys: Iterable[Any] | npt.ArrayLike) -> None:
        """Add a batch of keys: a numpy array (vectorised) or any iterable of keys."""
        for hashes in hash_chunks(keys, self.seed):
            self.update_hashes(hashes)

    def update_hashes(self, hashes: npt.NDArray[np.uint64]) -> None:
        """Add keys already hashed with ``hash_array(keys, seed=self.seed)``."""
        hashes = np.asarray(hashes, dtype=np.uint64).reshape(-1)
        rotation = _rotation(hashes)
        order = np.argsort(rotation, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(rotation, minlength=8))])
        grouped = hashes[order]
        for r in range(8):
            group = grouped[bounds[r] : bounds[r + 1]]
            for start in range(0, len(group), _CHUNK):
                self._set_bits(group[start : start + _CHUNK], r)

    def _set_bits(self, hashes: npt.NDArray[np.uint64], rotation: int) -> None:
        """Set the bits of keys that all have the same rotation ``r``."""
        step = (hashes >> _S32).astype(np.uint32)
        x = hashes.astype(np.uint32)  # the low 32 bits
        nbytes = np.uint64(len(self._bits))
        wide = np.empty(len(hashes), dtype=np.uint64)
        for i in range(self.num_hashes):
            index = _byte_index(x, nbytes, wide)
            self._bits[index] |= np.uint8(1 << ((rotation + i) & 7))
            x += step

    # ------------------------------------------------------------------ queries

    def __contains__(self, key: Any) -> bool:
        hashes = np.array([stable_hash(key, self.seed)], dtype=np.uint64)
        return bool(self.contains_hashes(hashes)[0])

    def contains(self, keys: Iterable[Any] | npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether each key of a batch may be in the filter (False: surely not)."""
        keys = check_batch(keys)
        shape = keys.shape if isinstance(keys, np.ndarray) else None
        found = self.contains_hashes(hash_array(keys, self.seed).reshape(-1))
        return found.reshape(shape) if shape is not None else found

    def contains_hashes(self, hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        """:meth:`contains` for keys already hashed with ``hash_array(keys, seed=self.seed)``."""
        hashes = np.asarray(hashes, dtype=np.uint64).reshape(-1)
        found = np.empty(len(hashes), dtype=np.bool_)
        for start in range(0, len(hashes), _CHUNK):
            found[start : start + _CHUNK] = self._test_bits(hashes[start : start + _CHUNK])
        return found

    def _test_bits(self, hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        rotation = _rotation(hashes)
        step = (hashes >> _S32).astype(np.uint32)
        x = hashes.astype(np.uint32)  # the low 32 bits
        nbytes = np.uint64(len(self._bits))
        wide = np.empty(len(hashes), dtype=np.uint64)
        acc = np.full(len(hashes), 1, dtype=np.uint8)
        for i in range(self.num_hashes):
            index = _byte_index(x, nbytes, wide)
            shift = (rotation + np.uint8(i)) & np.uint8(7)
            acc &= self._bits[index] >> shift
            x += step
        return acc.astype(np.bool_)

    # ------------------------------------------------------------------ estimates

    @property
    def bits_set(self) -> int:
        """The number of bits that are 1."""
        return int(_POPCOUNT[self._bits].sum(dtype=np.int64))

    @property
    def estimated_fpr(self) -> float:
        """The false-positive rate now: (fraction of bits set) ** num_hashes."""
        return float((self.bits_set / self.num_bits) ** self.num_hashes)

    @property
    def estimated_count(self) -> float:
        """The number of distinct keys added, estimated from the bits set (Swamidass and Baldi)."""
        fill = self.bits_set / self.num_bits
        if fill >= 1.0:
            return math.inf
        return -self.num_bits / self.num_hashes * math.log1p(-fill)

    @property
    def nbytes(self) -> int:
        """Memory used by the bits."""
        return int(self._bits.nbytes)

    # ------------------------------------------------------------------ bytes

    def _encode(self) -> bytes:
        params = _PARAMS.pack(self.num_bits, self.num_hashes, self.seed, self.capacity, self.fpr)
        return params + self._bits.tobytes()

    @classmethod
    def _decode(cls, body: memoryview) -> BloomFilter:
        num_bits, num_hashes, seed, capacity, fpr = unpack_params(_PARAMS, body, cls.NAME)
        if num_bits % 64 or num_bits == 0 or num_hashes < 1:
            raise SketchError(
                f"serialised Bloom filter has num_bits={num_bits}, num_hashes={num_hashes}; "
                "expected a positive multiple of 64 bits and at least one hash"
            )
        self = cls.__new__(cls)
        self._setup(num_bits, num_hashes, seed, capacity, fpr)
        bits = read_payload(body, _PARAMS.size, np.uint8, num_bits // 8, cls.NAME)
        self._bits = bits
        return self


def _byte_index(
    x: npt.NDArray[np.uint32], nbytes: np.uint64, wide: npt.NDArray[np.uint64]
) -> npt.NDArray[np.intp]:
    """``floor(x * nbytes / 2**32)``: maps 32-bit values uniformly onto the bytes."""
    np.multiply(x, nbytes, out=wide)
    wide >>= _S32
    return wide.view(np.intp)


def _rotation(hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint8]:
    """The bit rotation ``r`` in 0..7 of each hash: the top 3 bits of ``h * _ROTATE``."""
    rotation: npt.NDArray[np.uint8] = ((hashes * _ROTATE) >> _S61).astype(np.uint8)
    return rotation
