"""Count-Min sketch: approximate counts of keys, never below the true count.

A ``depth × width`` table of int64 counters (Cormode and Muthukrishnan 2005). Adding
key ``x`` with count ``c`` adds ``c`` to one counter per row, ``table[j, h_j(x)]``;
the estimate of ``x`` is the smallest of its ``depth`` counters.

**Error bound.** With ``N`` the total of all counts added (:attr:`CountMinSketch.total`),
every estimate satisfies ``true <= estimate``, and ``estimate <= true + eps * N`` with
probability at least ``1 - delta`` for each key, where

- classic sizing (the paper): ``width = ceil(e / eps)``, ``depth = ceil(ln(1 / delta))``;
- Spark sizing (``org.apache.spark.util.sketch.CountMinSketch``): ``width = ceil(2 / eps)``,
  ``depth = ceil(log2(1 / delta))`` (one row errs by more than ``eps N`` with
  probability at most 1/2, by Markov's inequality).

``delta = 1 - confidence``. A sketch built from ``(width, depth)`` reports the bound
of classic sizing: :attr:`eps` ``= e / width`` and :attr:`delta` ``= exp(-depth)``.

**Positions.** Each key is hashed once to 64 bits; row ``j`` uses
``floor(((h1 + j h2) mod 2^32) * width / 2^32)``, with ``h1`` and ``h2`` the low and
high 32 bits of the hash (double hashing, Kirsch and Mitzenmacher 2006).

**Heavy hitters.** A sketch cannot list its keys, so :meth:`CountMinSketch.heavy_hitters`
takes a *candidate set* and returns the candidates whose estimate reaches
``phi * N``. If the candidates include every key with ``count >= phi N`` (as the
per-partition candidates of :func:`dask_io.bag.sketching.heavy_hitters` do), no
heavy hitter is missed; each key returned has ``count >= (phi - eps) N`` with
probability at least ``1 - delta``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from dask_io.sketches._base import (
    Sketch,
    SketchError,
    check_batch,
    hash_chunks,
    is_batch,
    read_payload,
    unpack_params,
)
from dask_io.sketches.hashing import hash_array, stable_hash

__all__ = ["CountMinSketch", "count_min_size"]

_PARAMS = struct.Struct("<IIQqB")  # width, depth, seed, total, sizing code
_SIZINGS = ("classic", "spark")
_S32 = np.uint64(32)
_CHUNK = 1 << 16
Sizing = Literal["classic", "spark"]


def count_min_size(eps: float, confidence: float, sizing: Sizing = "classic") -> tuple[int, int]:
    """The ``(width, depth)`` for error ``eps * N`` with probability ``confidence``.

    >>> count_min_size(0.001, 0.99)
    (2719, 5)
    >>> count_min_size(0.001, 0.99, sizing="spark")
    (2000, 7)
    """
    if not 0.0 < eps < 1.0:
        raise SketchError(f"eps={eps!r} is invalid; expected a relative error in (0, 1)")
    if not 0.0 < confidence < 1.0:
        raise SketchError(f"confidence={confidence!r} is invalid; expected a value in (0, 1)")
    delta = 1.0 - confidence
    if sizing == "classic":
        return math.ceil(math.e / eps), max(1, math.ceil(math.log(1.0 / delta)))
    if sizing == "spark":
        return math.ceil(2.0 / eps), max(1, math.ceil(math.log2(1.0 / delta)))
    raise SketchError(f"sizing={sizing!r} is invalid; expected 'classic' or 'spark'")


class CountMinSketch(Sketch):
    """A Count-Min sketch over hashable keys, with vectorised batch updates.

    Give either ``eps`` and ``confidence`` (sized by ``sizing``) or ``width`` and
    ``depth``.

    Parameters
    ----------
    eps
        Relative error: estimates exceed true counts by at most ``eps * total``...
    confidence
        ... with this probability for each key.
    seed
        Hash seed; only sketches with equal width, depth and seed can be merged.
    width, depth
        The table shape, instead of ``eps`` and ``confidence``.
    sizing
        ``"classic"`` or ``"spark"`` (see the module docstring).

    Examples
    --------
    >>> cms = CountMinSketch(eps=0.01, confidence=0.99)
    >>> cms.width, cms.depth
    (272, 5)
    >>> cms.update(["a", "b", "a"])
    >>> cms.add("a", count=2)
    >>> cms.estimate("a"), cms.total
    (4, 5)
    >>> cms.estimate(["a", "c"]).tolist()
    [4, 0]
    """

    KIND = b"C"
    NAME = "Count-Min sketch"

    def __init__(
        self,
        eps: float | None = None,
        confidence: float | None = None,
        seed: int = 0,
        *,
        width: int | None = None,
        depth: int | None = None,
        sizing: Sizing = "classic",
    ) -> None:
        width, depth = _resolve_shape(eps, confidence, width, depth, sizing)
        stable_hash(0, seed)  # validates the seed
        self._setup(width, depth, seed, sizing)
        self._table = np.zeros((depth, width), dtype=np.int64)
        self.total = 0

    def _setup(self, width: int, depth: int, seed: int, sizing: str) -> None:
        self.width = width
        self.depth = depth
        self.seed = seed
        self.sizing = sizing

    @property
    def eps(self) -> float:
        """The relative error of the estimates (``e / width``, or ``2 / width`` for Spark sizing)."""
        return (math.e if self.sizing == "classic" else 2.0) / self.width

    @property
    def delta(self) -> float:
        """The probability that one estimate errs by more than ``eps * total``."""
        return math.exp(-self.depth) if self.sizing == "classic" else 2.0**-self.depth

    @property
    def error_bound(self) -> float:
        """``eps * total``: the overcount not exceeded with probability ``1 - delta``."""
        return self.eps * self.total

    @property
    def table(self) -> npt.NDArray[np.int64]:
        """A read-only view of the ``depth × width`` counters."""
        view: npt.NDArray[np.int64] = self._table.view()
        view.flags.writeable = False
        return view

    @property
    def nbytes(self) -> int:
        """Memory used by the counters."""
        return int(self._table.nbytes)

    def _params(self) -> tuple[int, int, int]:
        return (self.width, self.depth, self.seed)

    def _param_names(self) -> tuple[str, ...]:
        return ("width", "depth", "seed")

    def _state(self) -> npt.NDArray[np.int64]:
        return self._table

    def __eq__(self, other: object) -> bool:
        equal = super().__eq__(other)
        if equal is NotImplemented or not equal:
            return equal
        assert isinstance(other, CountMinSketch)
        return self.total == other.total

    def _merge_state(self, other: CountMinSketch) -> None:
        self._table += other._table
        self.total += other.total

    # ------------------------------------------------------------------ update

    def add(self, key: Any, count: int = 1) -> None:
        """Add ``count`` (a non-negative int) occurrences of one key."""
        hashes = np.array([stable_hash(key, self.seed)], dtype=np.uint64)
        self.update_hashes(hashes, np.array([count]))

    def update(
        self, keys: Iterable[Any] | npt.ArrayLike, counts: npt.ArrayLike | None = None
    ) -> None:
        """Add a batch of keys, each once or ``counts[i]`` times (non-negative ints)."""
        if counts is None:
            for hashes in hash_chunks(keys, self.seed):
                self.update_hashes(hashes)
        else:
            self.update_hashes(hash_array(check_batch(keys), self.seed), counts)

    def update_hashes(
        self, hashes: npt.NDArray[np.uint64], counts: npt.ArrayLike | None = None
    ) -> None:
        """Add keys already hashed with ``hash_array(keys, seed=self.seed)``."""
        hashes = np.asarray(hashes, dtype=np.uint64).reshape(-1)
        weights = None if counts is None else _check_counts(counts, len(hashes))
        for start in range(0, len(hashes), _CHUNK):
            part = hashes[start : start + _CHUNK]
            w = None if weights is None else weights[start : start + _CHUNK]
            for row, index in enumerate(self._rows(part)):
                np.add.at(self._table[row], index, 1 if w is None else w)
        self.total += len(hashes) if weights is None else int(weights.sum())

    def _rows(self, hashes: npt.NDArray[np.uint64]) -> Iterable[npt.NDArray[np.intp]]:
        """The column of each hash in each row, row by row."""
        x = hashes.astype(np.uint32)  # the low 32 bits
        step = (hashes >> _S32).astype(np.uint32)
        width = np.uint64(self.width)
        for _ in range(self.depth):
            wide = x.astype(np.uint64)
            wide *= width
            wide >>= _S32
            yield wide.view(np.intp)
            x += step

    # ------------------------------------------------------------------ queries

    def estimate(self, keys: Any) -> Any:
        """The estimated count of one key (an int), or of a batch (an int64 array).

        A numpy array or a list is a batch; anything else (a tuple too) is one key.
        """
        if not is_batch(keys):
            hashes = np.array([stable_hash(keys, self.seed)], dtype=np.uint64)
            return int(self.estimate_hashes(hashes)[0])
        shape = keys.shape if isinstance(keys, np.ndarray) else (len(keys),)
        return self.estimate_hashes(hash_array(keys, self.seed).reshape(-1)).reshape(shape)

    def estimate_hashes(self, hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """:meth:`estimate` for keys already hashed with ``hash_array(keys, seed=self.seed)``."""
        hashes = np.asarray(hashes, dtype=np.uint64).reshape(-1)
        out = np.empty(len(hashes), dtype=np.int64)
        for start in range(0, len(hashes), _CHUNK):
            part = hashes[start : start + _CHUNK]
            rows = [self._table[row][index] for row, index in enumerate(self._rows(part))]
            out[start : start + _CHUNK] = np.minimum.reduce(rows)
        return out

    def heavy_hitters(self, candidates: Iterable[Any], phi: float) -> list[tuple[Any, int]]:
        """The candidates whose estimated count is at least ``phi * total``.

        Parameters
        ----------
        candidates
            Keys that may be heavy; duplicates are ignored.
        phi
            The threshold, as a fraction of :attr:`total`, in (0, 1].

        Returns
        -------
        list of (key, estimate)
            Sorted by decreasing estimate (ties by key hash, for a stable order).
        """
        if not 0.0 < phi <= 1.0:
            raise SketchError(f"phi={phi!r} is invalid; expected a fraction in (0, 1]")
        keys = list(dict.fromkeys(candidates))
        if not keys:
            return []
        hashes = hash_array(keys, self.seed)
        estimates = self.estimate_hashes(hashes)
        keep = np.flatnonzero(estimates >= phi * self.total)
        order = keep[np.lexsort((hashes[keep], -estimates[keep]))]
        return [(keys[i], int(estimates[i])) for i in order]

    # ------------------------------------------------------------------ bytes

    def _encode(self) -> bytes:
        code = _SIZINGS.index(self.sizing)
        params = _PARAMS.pack(self.width, self.depth, self.seed, self.total, code)
        return params + self._table.astype("<i8").tobytes()

    @classmethod
    def _decode(cls, body: memoryview) -> CountMinSketch:
        width, depth, seed, total, code = unpack_params(_PARAMS, body, cls.NAME)
        if width < 1 or depth < 1 or code >= len(_SIZINGS):
            raise SketchError(
                f"serialised Count-Min sketch has width={width}, depth={depth}, "
                f"sizing code {code}; expected positive sizes and a code below {len(_SIZINGS)}"
            )
        self = cls.__new__(cls)
        self._setup(width, depth, seed, _SIZINGS[code])
        table = read_payload(body, _PARAMS.size, np.int64, width * depth, cls.NAME)
        self._table = table.reshape(depth, width)
        self.total = total
        return self


def _resolve_shape(
    eps: float | None,
    confidence: float | None,
    width: int | None,
    depth: int | None,
    sizing: Sizing,
) -> tuple[int, int]:
    if width is not None or depth is not None:
        if eps is not None or confidence is not None:
            raise SketchError(
                f"got eps={eps!r}, confidence={confidence!r} and width={width!r}, "
                f"depth={depth!r}; expected either eps and confidence or width and depth"
            )
        for name, value in (("width", width), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise SketchError(f"{name}={value!r} is invalid; expected an int >= 1")
        assert width is not None and depth is not None
        if width > 2**32 or depth > 2**16:
            raise SketchError(
                f"width={width}, depth={depth} is too large; expected width <= 2**32, "
                "depth <= 2**16"
            )
        if sizing not in _SIZINGS:
            raise SketchError(f"sizing={sizing!r} is invalid; expected 'classic' or 'spark'")
        return int(width), int(depth)
    if eps is None or confidence is None:
        raise SketchError(
            f"got eps={eps!r}, confidence={confidence!r}; expected both, or width and depth"
        )
    return count_min_size(eps, confidence, sizing)


def _check_counts(counts: npt.ArrayLike, n: int) -> npt.NDArray[np.int64]:
    array = np.asarray(counts)
    if array.shape != (n,):
        raise SketchError(f"counts has shape {array.shape}; expected ({n},), one per key")
    if array.dtype.kind not in "iub":
        raise SketchError(f"counts has dtype {array.dtype}; expected integers")
    weights = array.astype(np.int64)
    if n and int(weights.min()) < 0:
        raise SketchError(
            f"counts has a negative value {int(weights.min())}; expected counts >= 0 "
            "(Count-Min estimates are only bounded for non-negative updates)"
        )
    return weights
