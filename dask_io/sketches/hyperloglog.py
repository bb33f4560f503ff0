"""HyperLogLog: the number of distinct keys, in ``2**p`` bytes, from 0 to beyond 10**12.

Each key is hashed once to 64 bits (:func:`~dask_io.sketches.hashing.hash_array`).
The top ``p`` bits choose one of ``m = 2**p`` registers; the register keeps the
largest *rank* seen, where the rank is one plus the number of leading zeros of the
remaining ``q = 64 - p`` bits (``q + 1`` if they are all zero). Merging two sketches
takes the register-wise maximum, so the merge of partition sketches is exactly
the sketch of all the data.

**Estimator.** :meth:`HyperLogLog.count` uses Ertl's improved raw estimator
("New cardinality estimation algorithms for HyperLogLog sketches", 2017, eq. 17):
from the histogram ``C_k`` of register values,

    n ≈ m² / (2 ln 2 · (m σ(C_0/m) + Σ_{k=1..q} C_k 2^-k + m τ(1 - C_{q+1}/m) 2^-q))

with ``σ(x) = x + Σ_{k≥1} x^(2^k) 2^(k-1)`` and ``τ(x) = (1 - x - Σ_{k≥1} (1 -
x^(2^-k))² 2^-k) / 3``. It needs no bias tables and no switch to linear counting:
it is unbiased to within a fraction of its standard error from one key up to
``2**64`` hashes, i.e. far beyond 10**12 distinct keys with 64-bit hashes.

**Error.** The relative standard error is about ``1.04 / sqrt(m)`` (0.81 % at the
default ``p = 14``, 16 KiB); for small counts (below about ``m / 10``) the estimate
is nearly exact.
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
    hash_chunks,
    read_payload,
    unpack_params,
)
from dask_io.sketches.hashing import stable_hash

__all__ = ["HyperLogLog", "ertl_estimate", "hll_precision"]

_PARAMS = struct.Struct("<BQ")  # p, seed
MIN_P = 4
MAX_P = 18
_CHUNK = 1 << 16
_EXACT_BITS = 53  # integers below 2**53 convert to float64 exactly


def hll_precision(rel_error: float) -> int:
    """The smallest ``p`` whose standard error ``1.04 / sqrt(2**p)`` is at most ``rel_error``.

    >>> hll_precision(0.01), hll_precision(0.02)
    (14, 12)
    """
    if not 0.0 < rel_error < 1.0:
        raise SketchError(f"rel_error={rel_error!r} is invalid; expected a value in (0, 1)")
    p = max(MIN_P, math.ceil(math.log2((1.04 / rel_error) ** 2)))
    if p > MAX_P:
        raise SketchError(
            f"rel_error={rel_error!r} needs p={p}; expected at most p={MAX_P} "
            f"(standard error {1.04 / math.sqrt(2**MAX_P):.5f})"
        )
    return p


class HyperLogLog(Sketch):
    """A HyperLogLog distinct-count sketch with ``2**p`` one-byte registers.

    Parameters
    ----------
    p
        Precision, 4 to 18: ``2**p`` registers and bytes, standard error
        ``1.04 / sqrt(2**p)``.
    seed
        Hash seed; only sketches with equal ``p`` and seed can be merged.

    Examples
    --------
    >>> hll = HyperLogLog(p=12)
    >>> hll.update(np.arange(100_000))
    >>> abs(hll.count() - 100_000) < 3 * hll.standard_error * 100_000
    True
    >>> HyperLogLog.from_error(0.01).p
    14
    """

    KIND = b"H"
    NAME = "HyperLogLog"

    def __init__(self, p: int = 14, seed: int = 0) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not MIN_P <= p <= MAX_P:
            raise SketchError(f"p={p!r} is invalid; expected an int from {MIN_P} to {MAX_P}")
        stable_hash(0, seed)  # validates the seed
        self.p = int(p)
        self.seed = seed
        self._registers = np.zeros(1 << self.p, dtype=np.uint8)

    @classmethod
    def from_error(cls, rel_error: float, seed: int = 0) -> HyperLogLog:
        """A sketch whose standard error is at most ``rel_error`` (see :func:`hll_precision`)."""
        return cls(hll_precision(rel_error), seed)

    @property
    def m(self) -> int:
        """The number of registers, ``2**p``."""
        return 1 << self.p

    @property
    def standard_error(self) -> float:
        """The relative standard error of :meth:`count`: ``1.04 / sqrt(m)``."""
        return 1.04 / math.sqrt(self.m)

    @property
    def registers(self) -> npt.NDArray[np.uint8]:
        """A read-only view of the registers."""
        view: npt.NDArray[np.uint8] = self._registers.view()
        view.flags.writeable = False
        return view

    @property
    def nbytes(self) -> int:
        """Memory used by the registers."""
        return int(self._registers.nbytes)

    def _params(self) -> tuple[int, int]:
        return (self.p, self.seed)

    def _param_names(self) -> tuple[str, ...]:
        return ("p", "seed")

    def _state(self) -> npt.NDArray[np.uint8]:
        return self._registers

    def _merge_state(self, other: HyperLogLog) -> None:
        np.maximum(self._registers, other._registers, out=self._registers)

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
        for start in range(0, len(hashes), _CHUNK):
            index, rank = register_ranks(hashes[start : start + _CHUNK], self.p)
            np.maximum.at(self._registers, index, rank)

    def merge_registers(self, registers: npt.ArrayLike) -> None:
        """Merge raw registers (``2**p`` values, e.g. built by :func:`register_ranks`)."""
        values = np.asarray(registers)
        if values.shape != (self.m,) or values.dtype.kind not in "iu":
            raise SketchError(
                f"registers have shape {values.shape} and dtype {values.dtype}; "
                f"expected ({self.m},) integers"
            )
        if values.size and not 0 <= int(values.min()) <= int(values.max()) <= 65 - self.p:
            raise SketchError(
                f"registers range over [{int(values.min())}, {int(values.max())}]; "
                f"expected values in [0, {65 - self.p}] for p={self.p}"
            )
        np.maximum(self._registers, values.astype(np.uint8), out=self._registers)

    def count(self) -> float:
        """The estimated number of distinct keys added (Ertl's improved estimator)."""
        histogram = np.bincount(self._registers, minlength=66 - self.p)
        return ertl_estimate(histogram.tolist(), self.p)

    def __len__(self) -> int:
        return round(self.count())

    def _encode(self) -> bytes:
        return _PARAMS.pack(self.p, self.seed) + self._registers.tobytes()

    @classmethod
    def _decode(cls, body: memoryview) -> HyperLogLog:
        p, seed = unpack_params(_PARAMS, body, cls.NAME)
        self = cls(p, seed)
        registers = read_payload(body, _PARAMS.size, np.uint8, 1 << p, cls.NAME)
        if registers.size and int(registers.max()) > 65 - p:
            raise SketchError(
                f"serialised HyperLogLog has a register of {int(registers.max())}; "
                f"expected at most {65 - p} for p={p}"
            )
        self._registers = registers
        return self


def register_ranks(
    hashes: npt.NDArray[np.uint64], p: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.uint8]]:
    """The register index (top ``p`` bits) and rank of each 64-bit hash.

    The rank is one plus the number of leading zeros of the low ``q = 64 - p``
    bits, or ``q + 1`` when they are all zero.

    >>> idx, rank = register_ranks(np.array([2**63 + 1, 2**40], dtype=np.uint64), 4)
    >>> idx.tolist(), rank.tolist()
    ([8, 0], [60, 20])
    """
    q = 64 - p
    index = (hashes >> np.uint64(q)).astype(np.intp)
    rest = hashes & np.uint64((1 << q) - 1)
    shift = max(q - _EXACT_BITS, 0)  # keep at most 53 bits, so the float is exact
    top = rest >> np.uint64(shift) if shift else rest
    exponent = (top.astype(np.float64).view(np.uint64) >> np.uint64(52)).astype(np.int64)
    # exponent - 1023 is floor(log2(top)); for top == 0 the exponent field is 0
    rank = (q - shift) - (exponent - 1023)
    zero = top == 0
    if zero.any():
        rank[zero] = [_rank_of_low_bits(int(r), q, shift) for r in rest[zero].tolist()]
    return index, rank.astype(np.uint8)


def _rank_of_low_bits(rest: int, q: int, shift: int) -> int:
    """Rank when the top ``q - shift`` bits are zero (only possible for p < 11)."""
    return q - rest.bit_length() + 1


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        previous = z
        z += x * y
        y += y
        if z == previous:
            return z


def _tau(x: float) -> float:
    if x == 0.0 or x == 1.0:
        return 0.0
    y, z = 1.0, 1.0 - x
    while True:
        x = math.sqrt(x)
        previous = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z == previous:
            return z / 3.0


def ertl_estimate(histogram: list[int], p: int) -> float:
    """Ertl's improved HyperLogLog estimate from the register histogram.

    Parameters
    ----------
    histogram
        ``histogram[k]`` is the number of registers equal to ``k``, for
        ``k = 0 .. q + 1`` with ``q = 64 - p``.
    p
        The precision: ``m = 2**p`` registers.

    >>> ertl_estimate([16] + [0] * 61, 4)
    0.0
    >>> round(ertl_estimate([15, 1] + [0] * 60, 4), 2)
    1.03
    """
    m = 1 << p
    q = 64 - p
    counts = list(histogram) + [0] * (q + 2 - len(histogram))
    z = m * _tau(1.0 - counts[q + 1] / m)
    for k in range(q, 0, -1):
        z = 0.5 * (z + counts[k])
    z += m * _sigma(counts[0] / m)
    if math.isinf(z):
        return 0.0
    return m * m / (2.0 * math.log(2.0) * z)
