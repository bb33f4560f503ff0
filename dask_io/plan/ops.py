"""The operations of a plan: what the executor does, in order.

A region is a tuple of ``(start, stop)`` pairs, one per axis, in *array*
coordinates (not block coordinates). A block is named by its block index in its
grid, as in ``dask``'s ``block_id``. Each operation that touches a file carries its
exact cost under the plan's layout: ``runs`` contiguous byte ranges and ``nbytes``
bytes moved on disk; each such operation also opens its file once.

The executor keeps one buffer. For every buffer of the plan it receives, in order:

1. ``LoadBuffer``: the buffer now holds ``region`` of the array (its previous
   contents are dead).
2. ``Read``: copy ``region`` of input block ``block`` from disk into the buffer.
3. ``WriteKept`` then ``Release``: the ``unit`` of output block ``block`` (the
   whole block, or a slab of it that spans its fast axes) is complete; write
   ``unit`` from the block's kept pieces plus ``region`` of the buffer, then drop
   the kept pieces.
4. ``Write``: write ``region`` of output block ``block`` straight from the buffer
   (``whole`` when ``region`` is the entire block).
5. ``Keep``: copy ``region`` of the buffer into memory, for output block ``block``.
"""

from __future__ import annotations

from dataclasses import dataclass

Region = tuple[tuple[int, int], ...]
BlockIndex = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class LoadBuffer:
    """Start buffer number ``index``, holding ``region`` of the array."""

    index: int
    region: Region


@dataclass(frozen=True, slots=True)
class Read:
    """Read ``region`` of input block ``block`` into the buffer."""

    block: BlockIndex
    region: Region
    runs: int
    nbytes: int


@dataclass(frozen=True, slots=True)
class Write:
    """Write ``region`` of output block ``block`` from the buffer.

    ``rmw_bytes`` is what a chunked store must read back first to update part of a
    chunk that already holds data (read-modify-write); 0 for contiguous files.
    """

    block: BlockIndex
    region: Region
    runs: int
    nbytes: int
    whole: bool
    rmw_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Keep:
    """Copy ``region`` of the buffer into memory, as a piece of output block ``block``."""

    block: BlockIndex
    region: Region
    nbytes: int


@dataclass(frozen=True, slots=True)
class WriteKept:
    """Write ``unit`` of output block ``block``: its kept pieces plus ``region`` of the buffer.

    ``unit`` is the whole block (``whole``) or a part of it that spans the block
    on its fast axes, so that it is written in ``runs`` contiguous runs.
    """

    block: BlockIndex
    region: Region
    runs: int
    nbytes: int
    unit: Region
    whole: bool = True


@dataclass(frozen=True, slots=True)
class Release:
    """Drop the kept pieces of output block ``block`` (``nbytes`` freed)."""

    block: BlockIndex
    nbytes: int


Operation = LoadBuffer | Read | Write | Keep | WriteKept | Release
