"""The exact cost of a plan, and its closed form for plans that keep nothing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from dask_io.plan.axes import AxisPairs, product_runs

LONG_RUN_BYTES = 1 << 20


@dataclass(frozen=True)
class Cost:
    """What a plan does to the disk and to memory, counted exactly.

    ``opens`` counts file (or chunk) accesses, ``runs`` contiguous byte ranges
    (``read_runs + write_runs``, read-modify-write reads of chunked stores
    included), ``seeks = opens + runs`` as in the paper. ``peak_mem`` is the
    buffer plus the most kept data alive at once plus the staging array.
    ``kept_bytes`` is all the data ever kept: what keeping costs in copies.
    """

    opens: int
    read_runs: int
    write_runs: int
    bytes_read: int
    bytes_written: int
    buffer_bytes: int
    kept_peak: int
    staging_bytes: int
    rmw_bytes: int = 0
    n_buffers: int = field(default=0, compare=False)
    kept_bytes: int = 0  # bytes ever kept (each copied in, then gathered into its write)
    read_opens: int = 0  # the opens of the reads (the rest are the writes')

    @property
    def runs(self) -> int:
        return self.read_runs + self.write_runs

    @property
    def seeks(self) -> int:
        return self.opens + self.runs

    @property
    def long_runs(self) -> bool:
        """Whether runs average :data:`LONG_RUN_BYTES` or more: seeks then hardly count.

        A seek costs about 0.1 ms on SSDs and virtual disks, moving 1 MiB about 1 ms
        at 1 GB/s: past this size, fewer copies or more overlap are worth more than
        the seeks a plan saves. Never true for a plan with read-modify-writes.
        """
        if self.rmw_bytes:  # read-modify-writes move extra bytes: not just seeks
            return False
        return self.bytes_read + self.bytes_written >= LONG_RUN_BYTES * max(self.runs, 1)

    @property
    def peak_mem(self) -> int:
        return self.buffer_bytes + self.kept_peak + self.staging_bytes

    def to_dict(self) -> dict[str, int]:
        """The cost as plain numbers, derived fields included."""
        out = asdict(self)
        out.update(runs=self.runs, seeks=self.seeks, peak_mem=self.peak_mem)
        return out


@dataclass(frozen=True)
class SideCost:
    """Cost of one side (all reads, or all writes) of a plan."""

    opens: int
    runs: int
    nbytes: int
    rmw_bytes: int = 0


def side_cost(
    pairs: Sequence[AxisPairs], itemsize: int, chunked: bool, write: bool
) -> SideCost:
    """Cost of accessing every piece a buffer partition cuts from a block grid.

    Exact for reads (every strategy reads each piece once) and for the writes of
    strategies that keep nothing. Under the chunked layout each piece costs one
    whole-chunk access, and every write to a chunk after its first one also reads
    the chunk back (read-modify-write).
    """
    pieces = math.prod(p.npairs for p in pairs)
    if chunked:
        touched = math.prod(p.block_weight_sum() for p in pairs) * itemsize
        nblocks = math.prod(len(p.blk) - 1 for p in pairs)
        array_bytes = math.prod(int(p.blk[-1]) for p in pairs) * itemsize
        if not write:
            return SideCost(pieces, pieces, touched)
        rmw_reads = pieces - nblocks
        return SideCost(pieces, pieces + rmw_reads, touched, touched - array_bytes)
    S = [int(p.buf[-1]) for p in pairs]
    F = [p.nfull for p in pairs]
    P = [p.npairs - f for p, f in zip(pairs, F)]
    nbytes = math.prod(S) * itemsize
    return SideCost(pieces, product_runs(S, P, F), nbytes)
