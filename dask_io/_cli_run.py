"""The ``resplit``, ``split``, ``merge`` and ``demo`` subcommands of ``dask-io``.

``dask_io.cli`` builds the parser and calls :func:`register`; every subcommand sets
``func``, called with the parsed arguments and returning the exit status. Bad input
(a dask_io error) prints one line on stderr and returns 2; a read or write the system
refused (a full disk, an I/O error, a permission denied: :class:`StoreIOError`) prints
one line naming the file and the errno and returns 1.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from typing import Any

from dask_io.errors import DaskIOError, InvalidChunksError, StoreIOError

Handler = Callable[[argparse.Namespace], int]


def parse_chunks(text: str, name: str = "--out-chunks") -> tuple[int, ...]:
    """``"200,300,350"`` -> ``(200, 300, 350)``.

    >>> parse_chunks("200, 300,350")
    (200, 300, 350)
    """
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        values = ()
    if not values:
        raise InvalidChunksError(f"{name}={text!r} is not a chunk shape; expected e.g. 200,300,350")
    return values


def _guard(name: str, func: Handler) -> Handler:
    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except StoreIOError as e:  # the system refused a read or write: not bad input
            print(f"dask-io {name}: error: {e}", file=sys.stderr)
            return 1
        except DaskIOError as e:
            print(f"dask-io {name}: error: {e}", file=sys.stderr)
            return 2

    return run


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-mem", default="1GiB", help="memory budget (default 1GiB)")
    p.add_argument(
        "--strategy",
        default="auto",
        choices=["auto", "naive", "clustered", "multiple", "keep"],
        help="planning strategy (default auto: the cheapest that fits)",
    )
    p.add_argument("--format", choices=["npy", "hdf5", "zarr"], help="target format")
    p.add_argument("--overwrite", action="store_true", help="replace an existing target")
    p.add_argument("--zarr-format", type=int, choices=[2, 3], default=3)
    p.add_argument("--inner-chunks", help="Zarr target: inner chunks (out-chunks are shards)")
    p.add_argument(
        "--prefetch",
        choices=["auto", "on", "off"],
        default="auto",
        help="read the next buffer on a background thread",
    )
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None)
    bar.add_argument("--no-progress", dest="progress", action="store_false")


def register(subparsers: Any) -> None:
    """Add the ``resplit``, ``split``, ``merge`` and ``demo`` subcommands."""
    for name, helptext in (
        ("resplit", "rewrite an array with another block shape"),
        ("split", "split one array (.npy, .h5, .zarr, .nii, .nii.gz) into a block store"),
        ("merge", "merge a block store into one array"),
    ):
        p = subparsers.add_parser(name, help=helptext, description=helptext)
        p.add_argument(
            "source",
            help="a .npy file, file.h5[:/dataset], a .zarr array, a NIfTI file (.nii, .nii.gz; "
            "axes in on-disk order, the reverse of nibabel's) or a block store",
        )
        p.add_argument("target", help="same kinds; any other path is a block store")
        if name != "merge":
            p.add_argument(
                "--out-chunks", required=True, help="output block shape, e.g. 200,300,350"
            )
        _common(p)
        p.set_defaults(func=_guard(name, functools.partial(_run, name)))
    from dask_io.execute.demo import add_demo_parser

    add_demo_parser(subparsers, _guard)


def _run(name: str, args: argparse.Namespace) -> int:
    from dask_io.execute import api

    progress = sys.stderr.isatty() if args.progress is None else args.progress
    kwargs: dict[str, Any] = {
        "max_mem": args.max_mem,
        "strategy": args.strategy,
        "format": args.format,
        "progress": progress,
        "overwrite": args.overwrite,
        "prefetch": {"auto": None, "on": True, "off": False}[args.prefetch],
        "zarr_format": args.zarr_format,
        "inner_chunks": parse_chunks(args.inner_chunks, "--inner-chunks")
        if args.inner_chunks
        else None,
    }
    if name == "merge":
        report = api.merge(args.source, args.target, **kwargs)
    else:
        func = api.split if name == "split" else api.resplit
        report = func(args.source, args.target, parse_chunks(args.out_chunks), **kwargs)
    print(report.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run these subcommands on their own (the ``dask-io`` command adds ``plan``)."""
    parser = argparse.ArgumentParser(prog="dask-io")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
