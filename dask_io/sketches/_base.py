"""What the three sketches share: errors, the byte header, merging, pickling, equality.

Every sketch serialises to ``header + payload``. The header is 8 bytes, then the
parameters::

    b"DIOS"   magic
    kind      1 byte: b"B" Bloom filter, b"C" Count-Min sketch, b"H" HyperLogLog
    version   1 byte (1)
    flags     2 bytes, little-endian, reserved (0)

Parameters and payload are little-endian on every platform. Pickling goes through
the same bytes, so sketches travel between worker processes as compact bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from dask_io.errors import IncompatibleSketchError, SketchError
from dask_io.sketches.hashing import hash_array

__all__ = ["IncompatibleSketchError", "Sketch", "SketchError", "is_batch"]

MAGIC = b"DIOS"
VERSION = 1
_HEADER = struct.Struct("<4sccH")

S = TypeVar("S", bound="Sketch")


def is_batch(items: Any) -> bool:
    """Whether ``items`` is a batch of keys (a numpy array or a list) rather than one key.

    Tuples, strings and bytes are single keys.

    >>> is_batch([1, 2]), is_batch((1, 2)), is_batch(np.arange(3)), is_batch("ab")
    (True, False, True, False)
    """
    return isinstance(items, (np.ndarray, list))


def check_batch(items: Any) -> Iterable[Any]:
    """Return ``items`` if it can be a batch of keys, else raise :class:`TypeError`."""
    if isinstance(items, (str, bytes, tuple)) or not isinstance(items, Iterable):
        raise TypeError(
            f"expected a batch of keys (numpy array, list or other iterable), got "
            f"{type(items).__name__} {items!r}; use add() for a single key"
        )
    return items


def hash_chunks(keys: Any, seed: int, chunk: int = 1 << 16) -> Iterator[npt.NDArray[np.uint64]]:
    """Hash a batch of keys chunk by chunk (numpy arrays) or at once (other iterables).

    Hashing a numpy array in chunks keeps the temporaries of the hash and of the
    sketch update in the CPU cache.
    """
    keys = check_batch(keys)
    if isinstance(keys, np.ndarray):
        flat = keys.reshape(-1)
        for start in range(0, len(flat), chunk):
            yield hash_array(flat[start : start + chunk], seed)
    else:
        yield hash_array(keys, seed)


class Sketch:
    """Base class: equality, ``|`` merging and pickling through ``to_bytes``.

    Subclasses define ``KIND``, ``_params()`` (the tuple that must match for a merge),
    ``_state()`` (the numpy array of counters), ``_merge_state(other)``,
    ``_encode_params()`` and ``_decode(params_and_payload)``.
    """

    KIND: ClassVar[bytes] = b"?"
    NAME: ClassVar[str] = "sketch"

    def update(self, keys: Any) -> None:
        """Add a batch of keys."""
        raise NotImplementedError

    def _params(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def _state(self) -> np.ndarray[Any, Any]:
        raise NotImplementedError

    def _merge_state(self, other: Any) -> None:
        raise NotImplementedError

    def _encode(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def _decode(cls: type[S], body: memoryview) -> S:
        raise NotImplementedError

    def copy(self: S) -> S:
        """Return an independent copy."""
        return type(self).from_bytes(self.to_bytes())

    def check_compatible(self, other: Any) -> None:
        """Raise :class:`IncompatibleSketchError` unless ``other`` can be merged into this one."""
        if type(other) is not type(self):
            raise IncompatibleSketchError(
                f"cannot merge a {type(other).__name__} into a {type(self).__name__}"
            )
        if other._params() != self._params():
            raise IncompatibleSketchError(
                f"cannot merge {self.NAME}s with different parameters: {self._describe()} "
                f"and {other._describe()}; build both with the same parameters and seed"
            )

    def _describe(self) -> str:
        names = self._param_names()
        return (
            "(" + ", ".join(f"{n}={v!r}" for n, v in zip(names, self._params(), strict=True)) + ")"
        )

    def _param_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def merge(self: S, *others: S) -> S:
        """Merge other sketches into this one, in place, and return it.

        The result is the sketch of the union (or, for Count-Min, the sum) of the
        data, exactly as if all of it had been added to one sketch.

        Raises
        ------
        IncompatibleSketchError
            If a sketch has a different type or different parameters (size, seed).
        """
        for other in others:
            self.check_compatible(other)
        for other in others:
            self._merge_state(other)
        return self

    def __or__(self: S, other: S) -> S:
        if not isinstance(other, Sketch):
            return NotImplemented
        return self.copy().merge(other)

    def __ior__(self: S, other: S) -> S:
        if not isinstance(other, Sketch):
            return NotImplemented
        return self.merge(other)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Sketch)
        return self._params() == other._params() and bool(
            np.array_equal(self._state(), other._state())
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def to_bytes(self) -> bytes:
        """Serialise to bytes: an 8-byte versioned header, the parameters, the counters."""
        return _HEADER.pack(MAGIC, self.KIND, bytes([VERSION]), 0) + self._encode()

    @classmethod
    def from_bytes(cls: type[S], data: bytes | bytearray | memoryview) -> S:
        """Rebuild a sketch from :meth:`to_bytes` output.

        Raises
        ------
        SketchError
            If ``data`` is not a serialised sketch of this type and version.
        """
        view = memoryview(data).cast("B")
        if len(view) < _HEADER.size:
            raise SketchError(f"{len(view)} bytes is too short for a serialised {cls.NAME}")
        magic, kind, version, _flags = _HEADER.unpack_from(view)
        if magic != MAGIC:
            raise SketchError(
                f"bad magic {bytes(magic)!r}: expected {MAGIC!r}, not a dask_io sketch"
            )
        if kind != cls.KIND:
            raise SketchError(
                f"serialised sketch has kind {kind!r}; expected {cls.KIND!r} for {cls.__name__}"
            )
        if version[0] != VERSION:
            raise SketchError(f"serialised {cls.NAME} has version {version[0]}; expected {VERSION}")
        return cls._decode(view[_HEADER.size :])

    def __reduce__(self) -> tuple[Any, ...]:
        # a module-level function, so that cloudpickle pickles it by reference
        return (restore, (type(self), self.to_bytes()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self._describe()}"


def restore(cls: type[S], data: bytes) -> S:
    """Unpickle a sketch: ``cls.from_bytes(data)``."""
    return cls.from_bytes(data)


def unpack_params(fmt: struct.Struct, body: memoryview, name: str) -> tuple[Any, ...]:
    """Unpack the parameter block at the start of ``body``, or raise :class:`SketchError`."""
    if len(body) < fmt.size:
        raise SketchError(f"serialised {name} is truncated: {len(body)} bytes of parameters")
    return fmt.unpack_from(body)


def read_payload(
    body: memoryview, offset: int, dtype: Any, count: int, name: str
) -> np.ndarray[Any, Any]:
    """Read ``count`` little-endian ``dtype`` values after ``offset``, checking the length."""
    dt = np.dtype(dtype).newbyteorder("<")
    expected = offset + count * dt.itemsize
    if len(body) != expected:
        raise SketchError(
            f"serialised {name} has {len(body)} bytes after its header; expected {expected}"
        )
    return np.frombuffer(body, dtype=dt, count=count, offset=offset).astype(
        np.dtype(dtype).newbyteorder("=")
    )
