"""Byte sizes: parse ``"4GiB"`` and print ``4.0 GiB``, with no dependency on dask."""

from __future__ import annotations

import re

from dask_io.errors import InvalidChunksError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_bytes(value: int | float | str, name: str = "max_mem") -> int:
    """Return a byte count from an int or a string such as ``"4GiB"`` or ``"1.5 GB"``.

    >>> parse_bytes("4GiB")
    4294967296
    >>> parse_bytes(1000)
    1000
    """
    if isinstance(value, bool):
        raise InvalidChunksError(f"{name}={value!r} is not a size; expected bytes or '4GiB'")
    if isinstance(value, (int, float)):
        n = value
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise InvalidChunksError(
                f"{name}={value!r} is not a size; expected bytes or a string like '4GiB' or '500MB'"
            )
        n = float(match.group(1)) * _UNITS[unit]
    else:
        raise InvalidChunksError(f"{name}={value!r} is not a size; expected bytes or '4GiB'")
    if n != n or n <= 0 or n == float("inf"):
        raise InvalidChunksError(f"{name}={value!r} must be a positive number of bytes")
    return int(n)


def format_bytes(n: int | float) -> str:
    """Return a short human-readable size using binary prefixes.

    >>> format_bytes(3 * 2**20)
    '3.0 MiB'
    """
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"
