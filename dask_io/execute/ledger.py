"""One memory ledger per process: bytes are reserved before they are allocated.

A :class:`Ledger` is a thread-safe byte semaphore. Work that would allocate
``nbytes`` first reserves them; when the budget is spent it waits until another
reservation is released. A single request larger than the whole budget can never
be served and raises :class:`~dask_io.errors.InsufficientMemoryError` at once.

>>> ledger = Ledger(100)
>>> with ledger.reserve(60):
...     ledger.used
60
>>> ledger.used
0
>>> ledger.reserve(101)
Traceback (most recent call last):
...
dask_io.errors.InsufficientMemoryError: a reservation of 101 B exceeds the whole memory budget of 100 B
"""

from __future__ import annotations

import threading
from types import TracebackType

from dask_io.errors import InsufficientMemoryError
from dask_io.plan.units import format_bytes

__all__ = ["Ledger", "Reservation", "ledger_for", "process_ledger", "set_process_budget"]


class Reservation:
    """``nbytes`` held from a ledger; released once (by ``release`` or ``with``)."""

    def __init__(self, ledger: Ledger, nbytes: int) -> None:
        self.ledger, self.nbytes = ledger, nbytes
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self.ledger._give(self.nbytes)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class Ledger:
    """A byte budget shared by the threads of one process.

    Parameters
    ----------
    budget : int
        Bytes that may be reserved at once.
    """

    def __init__(self, budget: int) -> None:
        self.budget = int(budget)
        self.used = 0
        self.peak = 0
        self._cv = threading.Condition()

    def reserve(self, nbytes: int, timeout: float | None = None) -> Reservation:
        """Block until ``nbytes`` fit in the budget, then hold them.

        Raises InsufficientMemoryError if ``nbytes`` exceeds the whole budget, and
        TimeoutError if ``timeout`` seconds pass first.
        """
        nbytes = int(nbytes)
        if nbytes > self.budget:
            raise InsufficientMemoryError(
                f"a reservation of {format_bytes(nbytes)} exceeds the whole memory budget "
                f"of {format_bytes(self.budget)}"
            )
        with self._cv:
            if not self._cv.wait_for(lambda: self.used + nbytes <= self.budget, timeout):
                raise TimeoutError(
                    f"{format_bytes(nbytes)} not available within {timeout} s "
                    f"({format_bytes(self.used)} of {format_bytes(self.budget)} reserved)"
                )
            self.used += nbytes
            self.peak = max(self.peak, self.used)
        return Reservation(self, nbytes)

    def _give(self, nbytes: int) -> None:
        with self._cv:
            self.used -= nbytes
            self._cv.notify_all()


_PROCESS: Ledger | None = None
_PROCESS_LOCK = threading.Lock()


def set_process_budget(budget: int) -> Ledger:
    """Make a ledger of ``budget`` bytes the process ledger (replacing the old one)."""
    global _PROCESS
    with _PROCESS_LOCK:
        _PROCESS = Ledger(budget)
        return _PROCESS


def process_ledger() -> Ledger | None:
    """The process ledger, or None when no budget was set in this process."""
    return _PROCESS


def ledger_for(budget: int) -> Ledger:
    """The process ledger, made with ``budget`` bytes on first use.

    A ledger holding no reservation is replaced when another budget is asked for
    (the next job of the process); while reservations are held the budget stays.
    """
    global _PROCESS
    with _PROCESS_LOCK:
        if _PROCESS is None or (_PROCESS.budget != budget and _PROCESS.used == 0):
            _PROCESS = Ledger(budget)
        return _PROCESS
