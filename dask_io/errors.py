"""The error and warning classes of dask_io.

Every error is a :class:`DaskIOError` and also inherits the builtin that matches
it, so callers that catch ``ValueError`` or ``FileNotFoundError`` keep working.
This module imports nothing but the standard library: the pure layers use it.
"""

from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "DaskIOError",
    "DaskIOWarning",
    "ExcessiveIOWarning",
    "IncompatibleSketchError",
    "InsufficientMemoryError",
    "InvalidChunksError",
    "QueryPlanningWarning",
    "SketchError",
    "StoreExistsError",
    "StoreIOError",
    "StoreMismatchError",
    "StoreNotFoundError",
]


class DaskIOError(Exception):
    """Base class of every error raised by dask_io."""


class InvalidChunksError(DaskIOError, ValueError):
    """A shape, chunk shape, dtype or other argument has an invalid value."""


class InsufficientMemoryError(DaskIOError, ValueError):
    """The memory budget is below the smallest buffer any strategy can use."""


class StoreNotFoundError(DaskIOError, FileNotFoundError):
    """A source store does not exist or cannot be read."""


class StoreExistsError(DaskIOError, FileExistsError):
    """A target already exists and ``overwrite`` was not given."""


class StoreMismatchError(DaskIOError, ValueError):
    """A store's contents disagree with its manifest or with the requested array."""


class StoreIOError(DaskIOError, OSError):
    """The system refused a read or write of a store's file: a full disk (ENOSPC), an
    I/O error (EIO), a read-only file system or a permission denied.

    The message names the file and the errno; ``errno`` and ``filename`` are set too.
    The command line exits with status 1 on it (2 is for bad input).
    """

    @classmethod
    def of(cls, error: OSError, path: str, action: str = "write") -> StoreIOError:
        """The error for ``error`` (an OSError with an errno) raised on file ``path``."""
        code = error.errno or 0
        name = _errno.errorcode.get(code, str(code))
        reason = os.strerror(code) if code else str(error)
        new = cls(f"cannot {action} {path!r}: {reason} (errno {code} {name})")
        new.errno, new.strerror, new.filename = code, reason, path
        return new

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[object, ...]:  # keep errno and filename through pickle
        return (_store_io_error, (self.args, self.errno, self.strerror, self.filename))


def _store_io_error(args: tuple[object, ...], code: int, reason: str, path: str) -> StoreIOError:
    new = StoreIOError(*args)
    new.errno, new.strerror, new.filename = code, reason, path
    return new


class SketchError(DaskIOError, ValueError):
    """Invalid sketch parameters, or bytes that are not a serialised sketch."""


class IncompatibleSketchError(SketchError):
    """Two sketches with different parameters (size, hash count, seed) cannot be merged."""


class DaskIOWarning(UserWarning):
    """Base class of every warning emitted by dask_io."""


class QueryPlanningWarning(DaskIOWarning):
    """Dask's array query planning is on, so no ``array_optimize`` hook runs."""


class ExcessiveIOWarning(DaskIOWarning):
    """The memory budget forces a plan of more than 100 times the lower bound in seeks.

    The message names the budget that would bring the plan within 2x of it.
    """
