"""Predicted seconds of a plan: the exact I/O counts of :class:`Cost` times per-machine constants.

The cost model counts what a plan does (opens, runs, bytes); this module says what
that costs on one machine::

    seconds = opens * open_s + runs * run_s
            + bytes_read / read_bw + bytes_written / write_bw
            + bytes_copied / copy_bw

``write_bw`` is the direct (``O_DIRECT``) bandwidth when the writes' runs average
:data:`DIRECT_MIN_BYTES` or more (the executor writes such runs past the page cache)
and the buffered one otherwise. Bytes copied are the kept pieces (copied into memory
when kept, and gathered again when their block is written) and, for chunked stores,
every chunk decoded into or encoded out of the buffer.

The constants come from ``dask-io calibrate DIR`` (stored in Dask config under
``dask_io.machine``); :data:`DEFAULT` holds the values measured on the 2-core VM the
project is developed on, used when nothing was calibrated.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from dask_io.plan.cost import Cost

DIRECT_MIN_BYTES = 1 << 20  # the executor writes runs of 1 MiB or more with O_DIRECT


@dataclass(frozen=True)
class Machine:
    """Per-machine I/O constants (seconds per operation, bytes per second).

    >>> Machine().seconds_per_gib_read > 0
    True
    """

    open_s: float = 60e-6  # open + close of one file (or one chunk key)
    run_s: float = 25e-6  # one more contiguous run: a system call and a jump on the device
    read_bw: float = 1.2e9  # cold reads
    write_bw: float = 0.40e9  # buffered writes up to fsync (new page-cache pages are dear)
    direct_write_bw: float = 1.6e9  # O_DIRECT writes up to fsync
    copy_bw: float = 3.0e9  # memory to memory, first touch of fresh pages included
    overlap: float = 0.7  # share of the shorter side hidden when two buffers are in flight
    source: str = "default"  # "default", or where and when it was calibrated

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name == "source":
                continue
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"machine constant {f.name}={value!r}: expected a positive number")
        if self.overlap > 1:
            raise ValueError(f"machine constant overlap={self.overlap!r}: expected at most 1")

    @property
    def seconds_per_gib_read(self) -> float:
        return 2**30 / self.read_bw

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Machine:
        """A machine from a mapping such as Dask config's ``dask_io.machine`` (unknown keys
        are refused by name, missing ones take the defaults)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown machine constants {unknown}; expected some of {sorted(known)}"
            )
        clean: dict[str, Any] = {
            k: (str(v) if k == "source" else float(v)) for k, v in values.items()
        }
        return replace(cls(), **clean)


DEFAULT = Machine()


def current_machine() -> Machine:
    """The calibrated machine (Dask config ``dask_io.machine``) or :data:`DEFAULT`.

    The plan layer never imports dask; it reads Dask config only when the caller
    has already imported it (every dask_io entry point does).
    """
    config = sys.modules.get("dask.config")
    if config is None:
        return DEFAULT
    values = config.get("dask_io.machine", None)
    if not values:
        return DEFAULT
    return Machine.from_mapping(values)


DEFAULT_OBJECTIVE = "seeks"  # as dask_io.yaml: see the note there


def current_objective() -> str:
    """What ``auto`` minimises by default: Dask config ``dask_io.objective``, else
    :data:`DEFAULT_OBJECTIVE`."""
    config = sys.modules.get("dask.config")
    value = None if config is None else config.get("dask_io.objective", None)
    return str(value or DEFAULT_OBJECTIVE)


@dataclass(frozen=True)
class Timing:
    """Predicted seconds of a plan, by what they are spent on."""

    opens: float
    runs: float
    read: float
    write: float
    copy: float
    direct: bool  # writes predicted to go past the page cache

    @property
    def seconds(self) -> float:
        return self.opens + self.runs + self.read + self.write + self.copy

    @property
    def io_seconds(self) -> float:
        """Reads and their runs only: what a second buffer can overlap with the writes."""
        return self.read


def copied_bytes(cost: Cost, layout: tuple[str, str]) -> int:
    """Bytes copied in memory: kept pieces twice (kept, then gathered), chunk codecs once."""
    copied = 2 * cost.kept_bytes
    if layout[0] == "chunked":
        copied += cost.bytes_read - cost.rmw_bytes
    if layout[1] == "chunked":
        copied += cost.bytes_written + cost.rmw_bytes
    return copied


def predict(cost: Cost, layout: tuple[str, str], machine: Machine | None = None) -> Timing:
    """The predicted seconds of a plan of cost ``cost``.

    >>> c = Cost(opens=2, read_runs=1, write_runs=1, bytes_read=2**30, bytes_written=2**30,
    ...          buffer_bytes=2**30, kept_peak=0, staging_bytes=0)
    >>> t = predict(c, ("contiguous", "contiguous"), Machine(read_bw=2**30, direct_write_bw=2**29))
    >>> round(t.read, 3), round(t.write, 3), t.direct
    (1.0, 2.0, True)
    """
    m = machine or current_machine()
    direct = layout[1] == "contiguous" and cost.bytes_written >= DIRECT_MIN_BYTES * max(
        cost.write_runs, 1
    )
    write_bw = m.direct_write_bw if direct else m.write_bw
    return Timing(
        opens=cost.opens * m.open_s,
        runs=cost.runs * m.run_s,
        read=cost.bytes_read / m.read_bw,
        write=cost.bytes_written / write_bw,
        copy=copied_bytes(cost, layout) / m.copy_bw,
        direct=direct,
    )


def seconds(cost: Cost, layout: tuple[str, str], machine: Machine | None = None) -> float:
    return predict(cost, layout, machine).seconds


def pipelined(cost: Cost, layout: tuple[str, str], machine: Machine | None = None) -> float:
    """Predicted seconds with two buffers in flight, the reads of one beside the writes of
    the other: the longer side, plus the part of the shorter one that does not overlap.

    >>> c = Cost(opens=2, read_runs=1, write_runs=1, bytes_read=2**30, bytes_written=2**30,
    ...          buffer_bytes=2**29, kept_peak=0, staging_bytes=0, read_opens=1)
    >>> m = Machine(read_bw=2**30, direct_write_bw=2**30, overlap=1.0)
    >>> round(pipelined(c, ("contiguous", "contiguous"), m), 3)
    1.0
    """
    m = machine or current_machine()
    t = predict(cost, layout, m)
    read_side = cost.read_opens * m.open_s + cost.read_runs * m.run_s + t.read
    write_side = t.seconds - read_side
    return max(read_side, write_side) + (1 - m.overlap) * min(read_side, write_side)
