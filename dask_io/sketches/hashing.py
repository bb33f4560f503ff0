"""The project's one stable hash: 64-bit, deterministic across processes and platforms.

:func:`stable_hash` hashes one key; :func:`hash_array` hashes many, vectorised for
numeric numpy arrays. Both return unsigned 64-bit values and never use Python's
salted :func:`hash`, so a key hashes the same in every worker process, on every run
and on every platform. Sketches built on different workers therefore merge exactly,
and bag recipes can partition records by key.

**Equal keys hash equal.** Keys that compare equal in Python hash the same, because
recipes put keys in dicts:

- ``1 == 1.0 == True == np.int64(1) == np.float64(1.0)`` all hash the same, and
  ``0 == 0.0 == -0.0 == False`` too: a float (or numpy float of any width, or a complex
  number with zero imaginary part) that is integral is hashed as that integer;
- a float that is not integral (``0.5``, ``inf``) is hashed by its IEEE 754 binary64
  bits; every NaN is hashed as the one canonical quiet NaN;
- integers of any size: those in ``[-2**63, 2**64)`` by a 64-bit mixer (SplitMix64's
  finaliser), larger ones by xxh3 over their two's-complement little-endian bytes;
- ``None`` has its own constant hash;
- ``str`` is hashed by xxh3-64 of its UTF-8 bytes (lone surrogates allowed), ``bytes``
  (and ``bytearray``, ``memoryview``, ``np.bytes_``) by xxh3-64 of the bytes, with a
  different seed, so ``"a"`` and ``b"a"`` hash differently;
- a tuple is hashed element by element, in order, so ``(1, "a")`` and ``(1.0, "a")``
  hash the same; a ``frozenset`` (or ``set``) by an order-free sum of its elements'
  hashes;
- numpy scalars are hashed like the Python value they stand for.

Any other type (``list``, ``dict``, ``Decimal``, ``datetime``, ...) raises
:class:`TypeError`: convert such keys to one of the types above first.

Each type has its own 64-bit key derived from ``seed`` and a type tag, so different
seeds give independent hash functions. The values are fixed by this module's code
and must never change: they are part of the serialised sketches.

>>> stable_hash(1) == stable_hash(1.0) == stable_hash(True)
True
>>> stable_hash("a") == stable_hash(b"a")
False
>>> int(hash_array(np.array([1, 2, 3]))[1]) == stable_hash(2)
True
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from functools import lru_cache
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt
import xxhash

__all__ = ["hash_array", "stable_hash"]

UInt64Array = npt.NDArray[np.uint64]

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # SplitMix64's increment, 2**64 / golden ratio
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB
_CANONICAL_NAN = 0x7FF8000000000000
_INT64_MIN = -(1 << 63)
_UINT64_LIMIT = 1 << 64

# type tags: each type hashes with its own key derived from (seed, tag)
_TAG_INT = 1
_TAG_UINT = 2
_TAG_BIGINT = 3
_TAG_FLOAT = 4
_TAG_NONE = 5
_TAG_STR = 6
_TAG_BYTES = 7
_TAG_TUPLE = 8
_TAG_FROZENSET = 9
_TAG_COMPLEX = 10

# chunk length of the vectorised mixer: keeps its temporaries in the CPU cache
_CHUNK = 1 << 15

_xxh3 = xxhash.xxh3_64_intdigest


def _mix(z: int) -> int:
    """SplitMix64's finaliser on a Python int in [0, 2**64): a bijection of 64 bits."""
    z = ((z ^ (z >> 30)) * _C1) & _MASK
    z = ((z ^ (z >> 27)) * _C2) & _MASK
    return z ^ (z >> 31)


@lru_cache(maxsize=256)
def _keys(seed: int) -> tuple[int, ...]:
    """The per-type 64-bit keys of ``seed``, indexed by type tag."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < _UINT64_LIMIT:
        raise ValueError(f"seed={seed!r} is invalid; expected an int in [0, 2**64)")
    return tuple(_mix((seed + tag * _GOLDEN) & _MASK) for tag in range(11))


def _hash_word(word: int, key: int) -> int:
    """Hash a 64-bit word with a type key: SplitMix64 at state ``word * golden + key``."""
    return _mix((word * _GOLDEN + key) & _MASK)


def _hash_int(value: int, keys: tuple[int, ...]) -> int:
    if _INT64_MIN <= value < (1 << 63):
        return _hash_word(value & _MASK, keys[_TAG_INT])
    if 0 <= value < _UINT64_LIMIT:
        return _hash_word(value, keys[_TAG_UINT])
    data = value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True)
    return int(_xxh3(data, keys[_TAG_BIGINT]))


def _hash_float(value: float, keys: tuple[int, ...]) -> int:
    if value.is_integer():  # False for inf and nan
        return _hash_int(int(value), keys)
    if value != value:
        return _hash_word(_CANONICAL_NAN, keys[_TAG_FLOAT])
    (bits,) = struct.unpack("<Q", struct.pack("<d", value))
    return _hash_word(bits, keys[_TAG_FLOAT])


def _hash_complex(value: complex, keys: tuple[int, ...]) -> int:
    if value.imag == 0:
        return _hash_float(value.real, keys)
    parts = (_hash_float(value.real, keys), _hash_float(value.imag, keys))
    return _hash_word((parts[0] * _GOLDEN + parts[1]) & _MASK, keys[_TAG_COMPLEX])


def _hash_str(value: str, keys: tuple[int, ...]) -> int:
    return int(_xxh3(value.encode("utf-8", "surrogatepass"), keys[_TAG_STR]))


def _hash_bytes(value: bytes | bytearray | memoryview, keys: tuple[int, ...]) -> int:
    if isinstance(value, memoryview):
        value = value.tobytes()
    return int(_xxh3(value, keys[_TAG_BYTES]))


def _hash_tuple(value: tuple[Any, ...], keys: tuple[int, ...]) -> int:
    acc = (keys[_TAG_TUPLE] + len(value) * _GOLDEN) & _MASK
    for item in value:
        acc = _mix((acc * _GOLDEN + _hash(item, keys)) & _MASK)
    return acc


def _hash_frozenset(value: frozenset[Any] | set[Any], keys: tuple[int, ...]) -> int:
    total = sum(_hash(item, keys) for item in value) & _MASK
    return _hash_word((total + len(value) * _C1) & _MASK, keys[_TAG_FROZENSET])


def _hash_none(value: None, keys: tuple[int, ...]) -> int:
    return _hash_word(0, keys[_TAG_NONE])


_EXACT = {
    int: _hash_int,
    str: _hash_str,
    float: _hash_float,
    bytes: _hash_bytes,
    tuple: _hash_tuple,
    bool: lambda v, keys: _hash_int(int(v), keys),
    type(None): _hash_none,
}


def _hash(obj: Any, keys: tuple[int, ...]) -> int:
    func = _EXACT.get(type(obj))
    if func is not None:
        return func(obj, keys)  # type: ignore[no-any-return,operator]
    return _hash_other(obj, keys)


def _hash_other(obj: Any, keys: tuple[int, ...]) -> int:
    """Subclasses of the exact types and numpy scalars."""
    if isinstance(obj, (bool, np.bool_, int, np.integer)):
        return _hash_int(int(obj), keys)
    if isinstance(obj, (float, np.floating)):
        return _hash_float(float(obj), keys)
    if isinstance(obj, (complex, np.complexfloating)):
        return _hash_complex(complex(obj), keys)
    if isinstance(obj, str):
        return _hash_str(obj, keys)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return _hash_bytes(obj, keys)
    if isinstance(obj, tuple):
        return _hash_tuple(obj, keys)
    if isinstance(obj, (frozenset, set)):
        return _hash_frozenset(obj, keys)
    raise TypeError(
        f"cannot hash {obj!r} of type {type(obj).__name__}; expected None, bool, int, "
        "float, complex, str, bytes, a tuple or frozenset of these, or a numpy scalar"
    )


def stable_hash(obj: Any, seed: int = 0) -> int:
    """Return a deterministic 64-bit hash of ``obj``, equal for keys that compare equal.

    Parameters
    ----------
    obj
        None, bool, int, float, complex, str, bytes-like, a numpy scalar, or a tuple or
        frozenset of these (see the module docstring for how each is hashed).
    seed
        Selects an independent hash function; an int in ``[0, 2**64)``.

    Returns
    -------
    int
        The hash, in ``[0, 2**64)``.

    Raises
    ------
    TypeError
        If ``obj`` (or an element of a tuple) has an unsupported type.
    ValueError
        If ``seed`` is not an int in ``[0, 2**64)``.

    Examples
    --------
    >>> stable_hash(2) == stable_hash(2.0) == stable_hash(np.int8(2))
    True
    >>> stable_hash((1, "a")) == stable_hash((True, "a"))
    True
    >>> stable_hash("key", seed=1) != stable_hash("key", seed=2)
    True
    """
    return _hash(obj, _keys(seed))


def _mix_array(z: UInt64Array) -> UInt64Array:
    """SplitMix64's finaliser on a uint64 array, in place, chunk by chunk."""
    tmp = np.empty(min(len(z), _CHUNK), dtype=np.uint64)
    c1, c2 = np.uint64(_C1), np.uint64(_C2)
    s30, s27, s31 = np.uint64(30), np.uint64(27), np.uint64(31)
    for start in range(0, len(z), _CHUNK):
        part = z[start : start + _CHUNK]
        t = tmp[: len(part)]
        np.right_shift(part, s30, out=t)
        part ^= t
        part *= c1
        np.right_shift(part, s27, out=t)
        part ^= t
        part *= c2
        np.right_shift(part, s31, out=t)
        part ^= t
    return z


def _hash_words(words: UInt64Array, key: int | UInt64Array) -> UInt64Array:
    """Vectorised :func:`_hash_word`: returns a new array."""
    z = words * np.uint64(_GOLDEN)
    z += key if isinstance(key, np.ndarray) else np.uint64(key)
    return _mix_array(z)


def _hash_uint_array(values: npt.NDArray[Any], keys: tuple[int, ...]) -> UInt64Array:
    words = values.astype(np.uint64)
    if values.dtype != np.uint64:
        return _hash_words(words, keys[_TAG_INT])
    high = words >= np.uint64(1 << 63)
    if not high.any():
        return _hash_words(words, keys[_TAG_INT])
    key = np.where(high, np.uint64(keys[_TAG_UINT]), np.uint64(keys[_TAG_INT]))
    return _hash_words(words, key)


def _hash_float_array(values: npt.NDArray[Any], keys: tuple[int, ...]) -> UInt64Array:
    x = values.astype(np.float64)
    with np.errstate(invalid="ignore"):
        integral = (np.trunc(x) == x) & np.isfinite(x)
    small = integral & (x >= -(2.0**63)) & (x < 2.0**63)
    if small.all():
        return _hash_words(x.astype(np.int64).view(np.uint64), keys[_TAG_INT])
    bits = np.where(np.isnan(x), np.uint64(_CANONICAL_NAN), x.view(np.uint64))
    out = _hash_words(bits, keys[_TAG_FLOAT])
    if small.any():
        out[small] = _hash_words(x[small].astype(np.int64).view(np.uint64), keys[_TAG_INT])
    large = integral & ~small
    if large.any():
        out[large] = [_hash_int(int(v), keys) for v in x[large].tolist()]
    return out


def _hash_list(items: list[Any], keys: tuple[int, ...]) -> UInt64Array:
    """Hash a list of Python objects, with fast paths for all-str and all-number lists."""
    if items and isinstance(items[0], str):
        hashes = _hash_strs(items, keys[_TAG_STR])
        if hashes is not None:
            return hashes
    types = set(map(type, items))
    if types == {bytes}:
        key = keys[_TAG_BYTES]
        return np.fromiter(map(_xxh3, items, repeat(key)), dtype=np.uint64, count=len(items))
    if types and types <= {int, bool, float}:
        try:
            array = np.array(items, dtype=np.float64 if float in types else np.int64)
        except OverflowError:
            pass
        else:
            if float in types and int in types and not _exact_as_float(items, array):
                return _hash_generic(items, keys)
            return _hash_numeric(array, keys)
    return _hash_generic(items, keys)


def _hash_strs(items: list[Any], key: int) -> UInt64Array | None:
    """xxh3 of the UTF-8 bytes of every item, or None unless all are str (without lone
    surrogates, which the generic path handles)."""
    try:
        encoded = map(str.encode, items)  # TypeError for any item that is not a str
        return np.fromiter(map(_xxh3, encoded, repeat(key)), dtype=np.uint64, count=len(items))
    except (TypeError, UnicodeEncodeError):
        return None


def _exact_as_float(items: list[Any], array: npt.NDArray[Any]) -> bool:
    """Whether every int in ``items`` survived conversion to float64 unchanged."""
    return all(type(v) is float or v == a for v, a in zip(items, array.tolist(), strict=True))


def _hash_generic(items: list[Any], keys: tuple[int, ...]) -> UInt64Array:
    return np.fromiter((_hash(v, keys) for v in items), dtype=np.uint64, count=len(items))


def _hash_numeric(values: npt.NDArray[Any], keys: tuple[int, ...]) -> UInt64Array:
    """Hash a 1-D array of bool, integer or floating dtype."""
    kind = values.dtype.kind
    if kind == "b":
        return _hash_words(values.astype(np.uint64), keys[_TAG_INT])
    if kind == "i":
        return _hash_words(values.astype(np.int64, copy=False).view(np.uint64), keys[_TAG_INT])
    if kind == "u":
        return _hash_uint_array(values, keys)
    return _hash_float_array(values, keys)


def _hash_ndarray(values: npt.NDArray[Any], keys: tuple[int, ...]) -> UInt64Array:
    flat = values.reshape(-1)
    kind = values.dtype.kind
    if kind in "biuf":
        return _hash_numeric(flat, keys)
    if kind in "cUSO":
        return _hash_list(flat.tolist(), keys)
    raise TypeError(
        f"cannot hash an array of dtype {values.dtype}; expected a bool, integer, float, "
        "complex, str, bytes or object dtype"
    )


def hash_array(values: Iterable[Any] | npt.ArrayLike, seed: int = 0) -> UInt64Array:
    """Hash many keys at once: element ``i`` of the result is ``stable_hash(values[i], seed)``.

    Vectorised (no Python loop) for numpy arrays of bool, integer and floating
    dtypes; arrays of str, bytes, complex or object dtype, and Python iterables,
    are accepted too (lists of only str, only bytes or only numbers take fast paths).

    Parameters
    ----------
    values
        A numpy array (any shape; hashed element-wise) or an iterable of keys. A tuple
        is an iterable of keys here, not one key.
    seed
        Selects an independent hash function; an int in ``[0, 2**64)``.

    Returns
    -------
    numpy.ndarray
        The hashes, dtype uint64, with the shape of ``values`` (1-D for iterables).

    Raises
    ------
    TypeError
        If an element, or the array's dtype, cannot be hashed.

    Examples
    --------
    >>> h = hash_array(np.arange(3, dtype=np.int32))
    >>> [int(v) for v in h] == [stable_hash(i) for i in range(3)]
    True
    >>> int(hash_array(np.array([2.0, 0.5]))[0]) == stable_hash(2)
    True
    >>> int(hash_array(["a", b"a"])[1]) == stable_hash(b"a")
    True
    """
    keys = _keys(seed)
    if isinstance(values, np.ndarray):
        hashes: UInt64Array = _hash_ndarray(values, keys).reshape(values.shape)
        return hashes
    if isinstance(values, (str, bytes)):
        raise TypeError(
            f"hash_array expects many keys, got one {type(values).__name__} {values!r}; "
            "use stable_hash for a single key"
        )
    items = list(values)  # type: ignore[arg-type]
    if not items:
        return np.empty(0, dtype=np.uint64)
    return _hash_list(items, keys)
