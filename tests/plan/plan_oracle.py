"""A brute-force replay of a plan's operations on numpy "disks".

The replay knows nothing of the planner: it takes the array shape and the two
regular chunk shapes, cuts its own blocks, then executes ``plan.operations()``
one by one on real data while counting, from the regions alone, what the cost
model of DESIGN.md §1 says each access costs. Tests compare its counts with
``plan.cost`` and its output with the input array.

Conventions checked (taken from ``dask_io/plan/ops.py``):

- ``LoadBuffer`` starts a new buffer; ``Read`` fills part of it from one input block.
- ``Write`` copies part of the buffer to one output block.
- ``Keep`` copies part of the buffer into memory for one output block.
- ``WriteKept`` writes ``unit`` of an output block (the whole block when the op has
  no ``unit``) from the block's kept pieces plus part of the buffer; the following
  ``Release`` frees exactly the kept pieces it consumed.

Cost counted here (contiguous layout): one open per file access; a piece costs the
product of its extents on the axes before the last axis on which it does not span
its block (1 if it spans every axis after the first); bytes are the piece's bytes.
Chunked layout: every chunk access is one open and one run and moves the whole
chunk; writing part of a chunk that already holds written data first reads it back
(one more run, the chunk's bytes read, counted with the writes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dask_io.plan.ops import Keep, LoadBuffer, Read, Release, Write, WriteKept

Region = tuple[tuple[int, int], ...]


def blocks_of(shape: Sequence[int], chunks: Sequence[int]) -> dict[tuple[int, ...], Region]:
    """Every block of a regular grid (edge blocks smaller), by block index."""
    counts = [-(-r // c) for r, c in zip(shape, chunks)]
    out = {}
    for index in np.ndindex(*counts):
        out[tuple(int(i) for i in index)] = tuple(
            (i * c, min((i + 1) * c, r)) for i, c, r in zip(index, chunks, shape)
        )
    return out


def size(region: Region) -> int:
    return math.prod(b - a for a, b in region)


def inside(inner: Region, outer: Region) -> bool:
    return all(o0 <= i0 < i1 <= o1 for (i0, i1), (o0, o1) in zip(inner, outer))


def local(region: Region, origin: Region) -> tuple[slice, ...]:
    """Slices of ``region`` inside an array that holds ``origin``."""
    return tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(region, origin))


def glob(region: Region) -> tuple[slice, ...]:
    return tuple(slice(a, b) for a, b in region)


def contiguous_runs(piece: Region, block: Region) -> int:
    """Runs to access ``piece`` of a C-order ``block``, by walking the axes.

    Find the last axis on which the piece does not cover the block; every
    combination of indices on the axes before it starts a new run.
    """
    last = None
    for d in range(len(block)):
        if piece[d] != block[d]:
            last = d
    if last is None:
        return 1
    runs = 1
    for d in range(last):
        runs *= piece[d][1] - piece[d][0]
    return runs


@dataclass
class Replay:
    """What replaying a plan did and cost, counted from its regions."""

    opens: int = 0
    read_runs: int = 0
    write_runs: int = 0  # read-modify-write reads included, as in Cost
    bytes_read: int = 0  # read-modify-write bytes included, as in Cost
    bytes_written: int = 0
    rmw_bytes: int = 0
    kept_peak: int = 0
    max_buffer_bytes: int = 0
    n_buffers: int = 0
    buffers: list[Region] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)
    writes: list[Write | WriteKept] = field(default_factory=list)
    n_keeps: int = 0
    output: np.ndarray | None = None
    write_count: np.ndarray | None = None
    read_count: np.ndarray | None = None
    buffer_count: np.ndarray | None = None

    def cost_fields(self) -> dict[str, int]:
        return {
            "opens": self.opens,
            "read_runs": self.read_runs,
            "write_runs": self.write_runs,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "rmw_bytes": self.rmw_bytes,
            "kept_peak": self.kept_peak,
            "buffer_bytes": self.max_buffer_bytes,
            "n_buffers": self.n_buffers,
        }


class Replayer:
    """Execute a plan's operations on numpy arrays and count their cost."""

    def __init__(
        self,
        data: np.ndarray,
        in_chunks: Sequence[int],
        out_chunks: Sequence[int],
        layout: str | tuple[str, str] = "contiguous",
    ) -> None:
        self.data = data
        self.isz = data.dtype.itemsize
        layouts = (layout, layout) if isinstance(layout, str) else tuple(layout)
        self.chunked_in = layouts[0] == "chunked"
        self.chunked_out = layouts[1] == "chunked"
        self.in_blocks = blocks_of(data.shape, in_chunks)
        self.out_blocks = blocks_of(data.shape, out_chunks)
        # the input "disk": one array per block file
        self.disk_in = {k: data[glob(r)].copy() for k, r in self.in_blocks.items()}
        self.r = Replay()
        self.r.output = np.zeros_like(data)
        self.r.write_count = np.zeros(data.shape, dtype=np.int64)
        self.r.read_count = np.zeros(data.shape, dtype=np.int64)
        self.r.buffer_count = np.zeros(data.shape, dtype=np.int64)
        self.written: set[tuple[int, ...]] = set()
        self.kept: dict[tuple[int, ...], list[tuple[Region, np.ndarray]]] = {}
        self.pending: dict[tuple[int, ...], int] = {}
        self.alive = 0
        self.region: Region | None = None
        self.buf: np.ndarray | None = None
        self.valid: np.ndarray | None = None

    # -- the operations --------------------------------------------------
    def run(self, operations) -> Replay:  # type: ignore[no-untyped-def]
        handlers = {
            LoadBuffer: self.load,
            Read: self.read,
            Write: self.write,
            Keep: self.keep,
            WriteKept: self.write_kept,
            Release: self.release,
        }
        for op in operations:
            handlers[type(op)](op)
        assert not self.pending, f"WriteKept without Release for {sorted(self.pending)}"
        assert not any(self.kept.values()), "kept pieces never written"
        assert self.alive == 0
        return self.r

    def load(self, op: LoadBuffer) -> None:
        assert op.index == self.r.n_buffers, "buffers must be numbered in order"
        assert not self.pending, "Release must follow its WriteKept"
        self.region = op.region
        self.buf = np.zeros(tuple(b - a for a, b in op.region), dtype=self.data.dtype)
        self.valid = np.zeros(self.buf.shape, dtype=bool)
        self.r.n_buffers += 1
        self.r.buffers.append(op.region)
        self.r.max_buffer_bytes = max(self.r.max_buffer_bytes, size(op.region) * self.isz)
        self.r.buffer_count[glob(op.region)] += 1

    def read(self, op: Read) -> None:
        block = self.in_blocks[op.block]
        assert inside(op.region, block), f"{op} reads outside its block {block}"
        assert self.region is not None and inside(op.region, self.region)
        dst = local(op.region, self.region)
        assert not self.valid[dst].any(), f"{op} reads part of the buffer twice"
        self.buf[dst] = self.disk_in[op.block][local(op.region, block)]
        self.valid[dst] = True
        self.r.read_count[glob(op.region)] += 1
        if self.chunked_in:
            runs, nbytes = 1, size(block) * self.isz
        else:
            runs, nbytes = contiguous_runs(op.region, block), size(op.region) * self.isz
        assert (op.runs, op.nbytes) == (runs, nbytes), f"{op}: expected runs={runs}, nbytes={nbytes}"
        self.r.opens += 1
        self.r.read_runs += runs
        self.r.bytes_read += nbytes
        self.r.reads.append(op)

    def _from_buffer(self, region: Region) -> np.ndarray:
        assert self.region is not None and inside(region, self.region), "outside the buffer"
        src = local(region, self.region)
        assert self.valid[src].all(), f"{region} uses buffer data that was never read"
        return self.buf[src]

    def _count_write(self, block_id: tuple[int, ...], part: Region) -> tuple[int, int, int]:
        """(runs, bytes written, read-modify-write bytes) of writing ``part`` of a block."""
        block = self.out_blocks[block_id]
        whole = part == block
        if self.chunked_out:
            rmw = size(block) * self.isz if (not whole and block_id in self.written) else 0
            runs, nbytes = 1 + (rmw > 0), size(block) * self.isz
        else:
            rmw, runs, nbytes = 0, contiguous_runs(part, block), size(part) * self.isz
        self.written.add(block_id)
        self.r.opens += 1
        self.r.write_runs += runs
        self.r.bytes_written += nbytes
        self.r.bytes_read += rmw
        self.r.rmw_bytes += rmw
        self.r.write_count[glob(part)] += 1
        return runs, nbytes, rmw

    def write(self, op: Write) -> None:
        block = self.out_blocks[op.block]
        assert inside(op.region, block), f"{op} writes outside its block {block}"
        self.r.output[glob(op.region)] = self._from_buffer(op.region)
        assert op.whole == (op.region == block), f"{op}: whole flag wrong"
        runs, nbytes, rmw = self._count_write(op.block, op.region)
        runs -= rmw > 0  # an op's runs are its writes; the read-back shows as rmw_bytes
        got = (op.runs, op.nbytes, op.rmw_bytes)
        assert got == (runs, nbytes, rmw), f"{op}: expected runs/nbytes/rmw {runs, nbytes, rmw}"
        self.r.writes.append(op)

    def keep(self, op: Keep) -> None:
        assert inside(op.region, self.out_blocks[op.block]), f"{op} outside its block"
        piece = self._from_buffer(op.region).copy()
        assert op.nbytes == piece.nbytes, f"{op}: expected nbytes={piece.nbytes}"
        self.kept.setdefault(op.block, []).append((op.region, piece))
        self.alive += piece.nbytes
        self.r.kept_peak = max(self.r.kept_peak, self.alive)
        self.r.n_keeps += 1

    def write_kept(self, op: WriteKept) -> None:
        block = self.out_blocks[op.block]
        unit = getattr(op, "unit", block)
        assert inside(unit, block) and inside(op.region, unit), f"{op}: bad unit/region"
        out = np.zeros(tuple(b - a for a, b in unit), dtype=self.data.dtype)
        cover = np.zeros(out.shape, dtype=np.int64)
        out[local(op.region, unit)] = self._from_buffer(op.region)
        cover[local(op.region, unit)] += 1
        used, rest = [], []
        for region, piece in self.kept.get(op.block, []):
            (used if inside(region, unit) else rest).append((region, piece))
        for region, piece in used:
            out[local(region, unit)] = piece
            cover[local(region, unit)] += 1
        assert (cover == 1).all(), f"{op}: kept pieces and buffer do not tile the unit once"
        self.kept[op.block] = rest
        self.pending[op.block] = sum(p.nbytes for _, p in used)
        self.r.output[glob(unit)] = out
        runs, nbytes, _ = self._count_write(op.block, unit)
        assert (op.runs, op.nbytes) == (runs, nbytes), f"{op}: expected runs={runs}, nbytes={nbytes}"
        self.r.writes.append(op)

    def release(self, op: Release) -> None:
        assert op.block in self.pending, f"{op} without a WriteKept"
        freed = self.pending.pop(op.block)
        assert op.nbytes == freed, f"{op}: the WriteKept consumed {freed} kept bytes"
        self.alive -= freed


def replay(plan, data: np.ndarray, in_chunks, out_chunks, layout="contiguous") -> Replay:  # type: ignore[no-untyped-def]
    """Replay ``plan.operations()`` on ``data`` and return what it did and cost."""
    return Replayer(data, in_chunks, out_chunks, layout).run(plan.operations())


def check_replay(r: Replay, data: np.ndarray) -> None:
    """The data-level invariants every plan must satisfy."""
    assert (r.buffer_count == 1).all(), "buffers must tile the array"
    assert (r.read_count == 1).all(), "every input element must be read exactly once"
    assert (r.write_count == 1).all(), "every output element must be written exactly once"
    np.testing.assert_array_equal(r.output, data)
