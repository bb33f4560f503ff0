"""Large writes that bypass the page cache (``O_DIRECT``).

Writing a new page of the page cache is the most expensive thing a resplit does
on many machines: the kernel allocates, zeroes and accounts every page, then writes
it back. On the 2-core VM of ``benchmarks/`` a buffered 2 GiB write costs ~5.5 s of
kernel time, an ``O_DIRECT`` write of the same bytes 0.3 s (and 1.5 s of wall time,
the device's speed). Arrays larger than memory gain nothing from being cached on
their way to disk, so long runs go straight to the device.

``O_DIRECT`` wants the file offset, the memory address and the length aligned
(:data:`ALIGN`). A :class:`DirectStream` copies the bytes of one contiguous file
range into an aligned *bounce* buffer, placed so that file offsets and memory
addresses agree modulo :data:`ALIGN`, writes every whole aligned page with the
direct descriptor and the unaligned head and tail (less than a page each) through
the page cache. No page is ever written both ways: a page written directly lies
wholly inside one range, so no other range (they are disjoint) and no head or tail
touches it. The copy into the bounce costs ~0.1 ns per byte against the ~2.6 ns a
new cached page costs there.

Short ranges, file systems that refuse ``O_DIRECT`` (tmpfs, some network file
systems) and ``dask_io.direct-writes: false`` use ordinary ``pwrite``.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

ALIGN = 4096  # file offset, address and length unit of direct writes
MIN_DIRECT = 1 << 20  # ranges shorter than this go through the page cache
BOUNCE_BYTES = 8 << 20  # per thread
_MAX_CALL = 1 << 30

_local = threading.local()
_unsupported: set[int] = set()  # st_dev of file systems that refused O_DIRECT


def enabled() -> bool:
    """Whether direct writes are allowed (``dask_io.direct-writes``, default true)."""
    try:
        import dask

        return bool(dask.config.get("dask_io.direct-writes", True))
    except ImportError:  # pragma: no cover - dask is a dependency
        return True


def aligned_empty(nbytes: int, align: int = ALIGN) -> npt.NDArray[np.uint8]:
    """An uninitialised byte array of ``nbytes`` whose first byte is ``align``-aligned."""
    raw = np.empty(nbytes + align, np.uint8)
    skip = (-raw.ctypes.data) % align
    return raw[skip : skip + nbytes]


def _bounce() -> npt.NDArray[np.uint8]:
    buf: npt.NDArray[np.uint8] | None = getattr(_local, "bounce", None)
    if buf is None:
        buf = _local.bounce = aligned_empty(BOUNCE_BYTES + 3 * ALIGN)
    return buf


def _pwrite_all(fd: int, data: memoryview, pos: int) -> int:
    calls = done = 0
    while done < len(data):
        n = os.pwrite(fd, data[done : done + _MAX_CALL], pos + done)
        calls += 1
        if n <= 0:
            raise OSError(f"short write at byte {pos + done}")
        done += n
    return calls


def open_direct(path: str) -> int | None:
    """A write-only ``O_DIRECT`` descriptor of ``path``, or None where not possible."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag or not enabled():
        return None
    try:
        dev = os.stat(path).st_dev
    except OSError:
        return None
    if dev in _unsupported:
        return None
    try:
        return os.open(path, os.O_WRONLY | flag)
    except OSError:
        _unsupported.add(dev)
        return None


class DirectStream:
    """Write one contiguous file range ``[pos, ...)`` from pieces handed in order.

    ``fd`` is an ordinary writable descriptor of the file (heads and tails),
    ``dfd`` an ``O_DIRECT`` one (or None: everything goes through ``fd``).
    Use :meth:`reserve` / :meth:`commit` to fill the next bytes in place (for
    example with :func:`numpy.copyto` or a gather), or :meth:`put` for an array;
    :meth:`close` writes what is left. ``calls`` counts the system calls.
    """

    def __init__(self, fd: int, dfd: int | None, pos: int) -> None:
        self.fd, self.dfd = fd, dfd
        self.buf = _bounce()
        self.capacity = len(self.buf) - 3 * ALIGN
        self.lead = pos % ALIGN  # bounce index of the byte at file position ``start``
        self.start = pos  # file position of bounce[lead]
        self.fill = self.lead  # next free bounce index
        self.calls = 0

    def reserve(self, nbytes: int) -> npt.NDArray[np.uint8]:
        """The next ``nbytes`` (at most :attr:`capacity`) of the range, to be filled."""
        if nbytes > self.capacity:
            raise ValueError(f"reserve({nbytes}) exceeds the bounce buffer ({self.capacity})")
        if self.fill + nbytes > len(self.buf):
            self._flush(final=False)
        return self.buf[self.fill : self.fill + nbytes]

    def commit(self, nbytes: int) -> None:
        self.fill += nbytes

    def put(self, mem: npt.NDArray[Any]) -> None:
        """Append the C-order bytes of ``mem`` (any strides)."""
        if mem.nbytes <= self.capacity:
            dst = self.reserve(mem.nbytes).view(mem.dtype).reshape(mem.shape)
            np.copyto(dst, mem)
            self.commit(mem.nbytes)
            return
        row = mem[0].nbytes
        k = self.capacity // row if row else 0
        if k == 0:
            for j in range(mem.shape[0]):
                self.put(mem[j])
            return
        for j in range(0, mem.shape[0], k):
            self.put(mem[j : j + k])

    def _flush(self, final: bool) -> None:
        """Write what the bounce holds: whole pages directly, the rest when ``final``.

        The bounce holds file bytes ``[start, end)`` at indices ``[lead, fill)``,
        index and file position equal modulo :data:`ALIGN`. A non-final flush
        always finds a whole page (``reserve`` leaves three pages of slack), writes
        the head before it through the page cache, the pages directly, and moves
        the unaligned remainder (under a page) to the front.
        """
        end = self.start + (self.fill - self.lead)
        a = -(-self.start // ALIGN) * ALIGN  # first page boundary at or after start
        b = end - end % ALIGN  # last page boundary at or before end
        if self.dfd is None or b <= a:
            assert final or self.dfd is None, "a non-final flush without a whole page"
            data = self.buf[self.lead : self.fill].data
            self.calls += _pwrite_all(self.fd, data, self.start)
            self.start, self.lead = end, end % ALIGN
            self.fill = self.lead
            return
        i = self.lead + (a - self.start)  # bounce index of ``a``: a multiple of ALIGN
        if a > self.start:  # head, within the page before ``a``
            self.calls += _pwrite_all(self.fd, self.buf[self.lead : i].data, self.start)
        j = i + (b - a)
        self.calls += self._write_pages(self.buf[i:j], a)
        rest = self.fill - j
        if final:
            if rest:  # tail, within the page after ``b``
                self.calls += _pwrite_all(self.fd, self.buf[j : self.fill].data, b)
            self.start, self.lead, self.fill = end, end % ALIGN, end % ALIGN
            return
        if rest:
            self.buf[:rest] = self.buf[j : self.fill]
        self.start, self.lead, self.fill = b, 0, rest

    def _write_pages(self, pages: npt.NDArray[np.uint8], pos: int) -> int:
        assert self.dfd is not None
        try:
            return _pwrite_all(self.dfd, pages.data, pos)
        except OSError as err:
            if err.errno != errno.EINVAL:
                raise
            # the device wants another alignment: this and later writes go buffered
            _unsupported.add(os.fstat(self.dfd).st_dev)
            self.dfd = None
            return _pwrite_all(self.fd, pages.data, pos)

    def close(self) -> int:
        """Write the rest; return the number of system calls made."""
        if self.fill > self.lead:
            self._flush(final=True)
        return self.calls


def write_array(fd: int, dfd: int | None, mem: npt.NDArray[Any], pos: int) -> int:
    """Write the C-order bytes of ``mem`` at ``pos``; return the system calls made.

    Direct when ``dfd`` is given and the range is at least :data:`MIN_DIRECT` bytes,
    through the page cache otherwise (from ``mem`` itself when it is contiguous).
    """
    if dfd is None or mem.nbytes < MIN_DIRECT:
        if mem.flags.c_contiguous:
            return _pwrite_all(fd, memoryview(mem.reshape(-1).view(np.uint8).data), pos)
        dfd = None  # stream through the bounce, buffered
    stream = DirectStream(fd, dfd, pos)
    stream.put(mem)
    return stream.close()
