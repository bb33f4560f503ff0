"""The interface every store implements, and the I/O counters they keep.

A *store* is one array on disk, cut into blocks (a :class:`~dask_io.plan.grid.Grid`):
the files of a block store, the chunks or shards of a Zarr array, or a single block
covering the whole array for one ``.npy`` file or one contiguous HDF5 dataset.

Regions are tuples of ``(start, stop)`` pairs in *array* coordinates, as in
:mod:`dask_io.plan.ops`. A store reads ``region`` of ``block`` into an array of the
region's shape, and writes ``region`` of ``block`` from *pieces*: a list of
``(region, array)`` pairs that together tile the region (one piece straight from the
executor's buffer, or the pieces of an output block kept in memory).

Stores are picklable: they hold paths and metadata, and open files lazily in each
process (the graph pass and the distributed executor ship them to dask workers).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from dask_io.plan.grid import Grid, intersect
from dask_io.plan.ops import BlockIndex, Region

Layout = Literal["contiguous", "chunked"]
Piece = tuple[Region, npt.NDArray[Any]]
Pieces = Sequence[Piece]


@dataclass
class IOCounters:
    """What a store really did on disk.

    ``opens``, ``runs``, ``bytes_read`` and ``bytes_written`` count data access in the
    units of the plan's cost model (an open per operation, a run per contiguous byte
    range, data bytes only). ``syscalls`` counts the read/write calls that moved the
    data (a run larger than the staging array takes several). ``meta_opens`` counts
    opens outside the cost model: headers checked before a run, files created, HDF5
    metadata. ``rmw_bytes`` counts bytes a chunked store read back to update part of
    a chunk.
    """

    opens: int = 0
    runs: int = 0
    read_runs: int = 0
    write_runs: int = 0
    syscalls: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    meta_opens: int = 0
    rmw_bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        """Add ``counts`` (field name to increment) atomically."""
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain dict."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_lock"}

    def __add__(self, other: IOCounters) -> IOCounters:
        total = IOCounters()
        total.add(**self.as_dict())
        total.add(**other.as_dict())
        return total

    @property
    def seeks(self) -> int:
        """Opens plus runs, the paper's seek count."""
        return self.opens + self.runs

    def __getstate__(self) -> dict[str, int]:
        return self.as_dict()

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__(**state)  # type: ignore[misc]


@runtime_checkable
class Store(Protocol):
    """One array on disk, read and written block by block."""

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    grid: Grid
    layout: Layout
    counters: IOCounters

    def read(
        self,
        block: BlockIndex,
        region: Region,
        out: npt.NDArray[Any],
        staging: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        """Read ``region`` (inside ``block``) into ``out``, an array of the region's shape."""

    def write(
        self,
        block: BlockIndex,
        region: Region,
        pieces: Pieces,
        staging: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        """Write ``region`` (inside ``block``) from ``pieces``, which tile it."""

    def close(self) -> None:
        """Release open handles (the store stays usable: files reopen lazily)."""


@runtime_checkable
class Target(Store, Protocol):
    """A store being written: blocks are committed one by one, then the whole."""

    completed: set[BlockIndex]

    def commit(self, block: BlockIndex) -> None:
        """Make output ``block`` durable under its final name and record it complete."""

    def finalize(self) -> None:
        """Mark the whole store complete and move it into place."""


def local_region(region: Region, origin: Sequence[int]) -> tuple[slice, ...]:
    """Slices selecting ``region`` in an array whose element 0 sits at ``origin``.

    >>> local_region(((2, 5), (0, 3)), (2, 0))
    (slice(0, 3, None), slice(0, 3, None))
    """
    return tuple(slice(a - o, b - o) for (a, b), o in zip(region, origin, strict=False))


def region_nbytes(region: Region, itemsize: int) -> int:
    """Bytes of data in ``region``."""
    n = itemsize
    for a, b in region:
        n *= b - a
    return n


def gather(pieces: Pieces, region: Region, dest: npt.NDArray[Any]) -> None:
    """Copy into ``dest`` (an array of ``region``'s shape) the parts of ``pieces`` inside it."""
    origin = [a for a, _ in region]
    for piece_region, data in pieces:
        common = intersect(region, piece_region)
        if common is None:
            continue
        src = data[local_region(common, [c for c, _ in piece_region])]
        np.copyto(dest[local_region(common, origin)], src, casting="no")


def assemble(pieces: Pieces, region: Region, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """``region`` as one array: a view into the piece that holds it all, else a gathered copy."""
    data = single_view(pieces, region)
    if data is None:
        data = np.empty([b - a for a, b in region], dtype)
        gather(pieces, region, data)
    return data


def single_view(pieces: Pieces, region: Region) -> npt.NDArray[Any] | None:
    """The view of ``region`` in the one piece that holds all of it, or None."""
    for piece_region, data in pieces:
        if all(c <= a and b <= d for (a, b), (c, d) in zip(region, piece_region, strict=False)):
            return data[local_region(region, [c for c, _ in piece_region])]
    return None
