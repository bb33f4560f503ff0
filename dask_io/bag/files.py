"""Sharded and partitioned folder layouts: write a bag out, read it back with pruning.

Two layouts from the lecture:

- **sharded**: ``path/shard=00003/part-00012.jsonl`` holds the records of input
  partition 12 whose key hashes to shard 3 (``stable_hash(key) % nshards``).
  Every input partition writes its own files, so no shuffle is needed; reading
  shard ``s`` back concatenates (or, for sorted shards, k-way merges) its files.
- **partitioned** (Hive style): ``path/date=2022-05-04/region=eu/part-00012.jsonl``
  holds the records of input partition 12 with those field values. Reading back
  with ``filters`` never lists, opens or reads a folder that does not match.

Files are written under a hidden temporary name in their final folder and
renamed when complete, so no half-written file ever has a final name. Records
round-trip through JSON (``fmt="jsonl"``: tuples come back as lists) or CSV
(``fmt="csv"``: tuple or list records; fields come back as a tuple of ``str``).
Partition values are written as ``str(value)``, percent-encoded, ``None`` as
``__HIVE_DEFAULT_PARTITION__``; the records keep their fields.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, unquote

import dask.bag as db
from dask.bag import Bag

from dask_io.bag import _kernels as K
from dask_io.bag._graph import check_bag, check_choice, check_npartitions, make_name, new_bag
from dask_io.errors import StoreExistsError, StoreNotFoundError

__all__ = [
    "list_partitioned_files",
    "read_partitioned",
    "read_sharded",
    "write_partitioned",
    "write_sharded",
]

FORMATS = ("jsonl", "csv")
NULL_VALUE = "__HIVE_DEFAULT_PARTITION__"


# --------------------------------------------------------------------------- file kernels


def _encode(records: Iterable[Any], fmt: str) -> str:
    if fmt == "jsonl":
        dumps = json.JSONEncoder(separators=(",", ":")).encode
        return "".join(dumps(r) + "\n" for r in records)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for r in records:
        if isinstance(r, (Mapping, str, bytes)):
            raise TypeError(f"fmt='csv' needs tuple or list records, got {r!r}; use fmt='jsonl'")
        writer.writerow(r)
    return buf.getvalue()


def write_atomic(path: str, records: Iterable[Any], fmt: str) -> str:
    """Write ``records`` to ``path`` through a temporary file and a rename."""
    folder, base = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{base}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(_encode(records, fmt))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


@K.gc_paused
def read_records(path: str, fmt: str) -> list[Any]:
    """Read every record of one file written by :func:`write_atomic`."""
    with open(path, encoding="utf-8", newline="") as f:
        if fmt == "jsonl":
            return K.Records(json.loads(line) for line in f if line.strip())
        return K.Records(tuple(row) for row in csv.reader(f))


def _write_shards(
    records: Any, index: int, path: str, keyfn: K.KeyFn, nshards: int, fmt: str, sort: bool
) -> list[str]:
    written = []
    for shard, bucket in enumerate(K.bucket_records(records, keyfn, nshards)):
        if bucket:
            rows = K.sort_partition(bucket, keyfn, True) if sort else bucket
            name = os.path.join(path, f"shard={shard:05d}", f"part-{index:05d}.{fmt}")
            written.append(write_atomic(name, rows, fmt))
    return written


def _folder_of(values: tuple[Any, ...], names: Sequence[str]) -> str:
    parts = [
        f"{n}={NULL_VALUE if v is None else quote(str(v), safe='')}"
        for n, v in zip(names, values, strict=True)
    ]
    return os.path.join(*parts)


def _write_groups(
    records: Any,
    index: int,
    path: str,
    names: Sequence[str],
    getters: Sequence[Callable[[Any], Any]],
    fmt: str,
) -> list[str]:
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for r in records:
        groups.setdefault(tuple(g(r) for g in getters), []).append(r)
    written = []
    for values, rows in groups.items():
        name = os.path.join(path, _folder_of(values, names), f"part-{index:05d}.{fmt}")
        written.append(write_atomic(name, rows, fmt))
    return written


# --------------------------------------------------------------------------- writing


def _prepare_target(path: str, overwrite: bool) -> str:
    path = os.fspath(path)
    if os.path.exists(path) and os.listdir(path):
        if not overwrite:
            raise StoreExistsError(f"path={path!r} exists and is not empty; pass overwrite=True")
        shutil.rmtree(path)
    os.makedirs(path, exist_ok=True)
    return path


def _finish(paths: Bag, compute: bool) -> list[str] | Bag:
    if not compute:
        return paths
    return sorted(paths.compute())


def write_sharded(
    bag: Bag,
    path: str,
    key: Any,
    nshards: int,
    fmt: str = "jsonl",
    *,
    sort: bool = False,
    overwrite: bool = False,
    compute: bool = True,
) -> list[str] | Bag:
    """Write records into ``nshards`` hash shards: ``path/shard=SSSSS/part-IIIII.<fmt>``.

    Each input partition writes one file per non-empty shard (the lecture's
    ``shard.{worker_id}.{shard_id}``), optionally sorted by key, so a shard can be
    read back as one sorted stream with :func:`read_sharded`.

    Parameters
    ----------
    bag : dask.bag.Bag
        The records.
    path : str
        Target folder; must be absent or empty unless ``overwrite``.
    key : None, callable or field
        ``None`` for ``(key, value)`` pairs; ``key(record)``; or ``record[key]``.
    nshards : int
        Number of shards, ``>= 1``.
    fmt : {"jsonl", "csv"}
        File format.
    sort : bool, default False
        Sort each file by key.
    overwrite : bool, default False
        Remove an existing non-empty ``path`` first (at call time).
    compute : bool, default True
        Write now and return the sorted list of files, or return a lazy Bag of them.

    Examples
    --------
    >>> import dask.bag as db, tempfile
    >>> b = db.from_sequence([["u1", 1], ["u2", 2], ["u1", 3]], npartitions=2)
    >>> folder = tempfile.mkdtemp()
    >>> files = write_sharded(b, folder, None, nshards=2, sort=True, overwrite=True)
    >>> sorted(map(tuple, read_sharded(folder, sort=True)))
    [('u1', 1), ('u1', 3), ('u2', 2)]
    """
    check_bag(bag)
    check_choice("fmt", fmt, FORMATS)
    nshards = check_npartitions(nshards, 1)
    path = _prepare_target(path, overwrite)
    for shard in range(nshards):
        os.makedirs(os.path.join(path, f"shard={shard:05d}"), exist_ok=True)
    keyfn = K.key_value_getters(key)[0]
    func = functools.partial(
        _write_shards, path=path, keyfn=keyfn, nshards=nshards, fmt=fmt, sort=sort
    )
    return _finish(_map_with_index(func, bag, "write_sharded"), compute)


def _map_with_index(func: Callable[..., Any], bag: Bag, op: str) -> Bag:
    name = make_name(op, bag, func)
    dsk = {(name, i): (func, (bag.name, i), i) for i in range(bag.npartitions)}
    return new_bag(name, dsk, bag.npartitions, [bag])


def _by_getters(
    by: str | Sequence[str] | Mapping[str, Callable[[Any], Any]],
) -> tuple[list[str], list[Any]]:
    if isinstance(by, str):
        by = [by]
    if isinstance(by, Mapping):
        names, getters = list(by), list(by.values())
    else:
        names = list(by)
        getters = [functools.partial(_field, name=n) for n in names]
    if not names:
        raise ValueError(f"by={by!r} is empty; expected at least one field name")
    for n in names:
        if not isinstance(n, str) or not n or any(c in n for c in "=/\\") or n.startswith("."):
            raise ValueError(f"by contains {n!r}; expected names without '=', '/' or a leading '.'")
    return names, getters


def _field(record: Any, name: str) -> Any:
    return record[name]


def write_partitioned(
    bag: Bag,
    path: str,
    by: str | Sequence[str] | Mapping[str, Callable[[Any], Any]],
    fmt: str = "jsonl",
    *,
    overwrite: bool = False,
    compute: bool = True,
) -> list[str] | Bag:
    """Write records into a Hive-style folder tree: ``path/date=.../region=.../part-I.<fmt>``.

    Parameters
    ----------
    bag : dask.bag.Bag
        The records (dicts, or anything ``record[name]`` works on).
    path : str
        Target folder; must be absent or empty unless ``overwrite``.
    by : str, sequence of str, or mapping of str to callable
        Folder levels, outermost first: field names, or ``{name: function}``.
    fmt : {"jsonl", "csv"}
        File format.
    overwrite, compute : bool
        As for :func:`write_sharded`.

    Examples
    --------
    >>> import dask.bag as db, tempfile
    >>> b = db.from_sequence([{"date": "2022-05-04", "region": "eu", "x": 1},
    ...                       {"date": "2022-05-04", "region": "us", "x": 2}])
    >>> folder = tempfile.mkdtemp()
    >>> files = write_partitioned(b, folder, by=["date", "region"], overwrite=True)
    >>> read_partitioned(folder, filters={"region": "eu"}).compute()
    [{'date': '2022-05-04', 'region': 'eu', 'x': 1}]
    """
    check_bag(bag)
    check_choice("fmt", fmt, FORMATS)
    names, getters = _by_getters(by)
    path = _prepare_target(path, overwrite)
    func = functools.partial(_write_groups, path=path, names=names, getters=getters, fmt=fmt)
    return _finish(_map_with_index(func, bag, "write_partitioned"), compute)


# --------------------------------------------------------------------------- reading


def _matches(value: str, wanted: Any) -> bool:
    decoded = None if value == NULL_VALUE else unquote(value)
    if callable(wanted):
        return bool(wanted(decoded))
    if isinstance(wanted, (set, frozenset, list, tuple)):
        return any(_same(decoded, w) for w in wanted)
    return _same(decoded, wanted)


def _same(decoded: str | None, wanted: Any) -> bool:
    return decoded is None if wanted is None else decoded == str(wanted)


def list_partitioned_files(path: str, filters: Mapping[str, Any] | None = None) -> list[str]:
    """The data files under a partitioned folder whose folder values pass ``filters``.

    ``filters`` maps a level name to a value, a collection of values, or a
    predicate on the decoded string value (``None`` for null). Folders that fail
    are pruned: nothing under them is listed.
    """
    if not os.path.isdir(path):
        raise StoreNotFoundError(f"path={path!r} is not a folder")
    filters = dict(filters or {})
    files: list[str] = []
    stack = [path]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for e in sorted(entries, key=lambda e: e.name):
                if e.name.startswith("."):
                    continue
                if e.is_dir():
                    level, _, value = e.name.partition("=")
                    if level not in filters or _matches(value, filters[level]):
                        stack.append(e.path)
                elif e.name.endswith(tuple(f".{f}" for f in FORMATS)):
                    files.append(e.path)
    return sorted(files)


def _fmt_of(path: str, fmt: str | None) -> str:
    if fmt is not None:
        return check_choice("fmt", fmt, FORMATS)
    return check_choice("fmt (from the file name)", path.rsplit(".", 1)[-1], FORMATS)


def _read_many(paths: Sequence[str], fmts: Sequence[str], keyfn: K.KeyFn, sort: bool) -> list[Any]:
    parts = [read_records(p, f) for p, f in zip(paths, fmts, strict=True)]
    if sort:
        return K.Records(K.merge_streams(parts, keyfn))
    return K.concat_buckets(parts)


def _bag_of_files(
    groups: list[list[str]], fmt: str | None, keyfn: K.KeyFn, sort: bool, op: str
) -> Bag:
    if not groups:
        return db.from_sequence([], npartitions=1)
    func = functools.partial(_read_many, keyfn=keyfn, sort=sort)
    name = make_name(op, groups, fmt, func)
    dsk = {
        (name, i): (functools.partial(func, list(g), [_fmt_of(p, fmt) for p in g]),)
        for i, g in enumerate(groups)
    }
    return new_bag(name, dsk, len(groups), [])


def read_partitioned(
    path: str, filters: Mapping[str, Any] | None = None, fmt: str | None = None
) -> Bag:
    """Read a folder tree written by :func:`write_partitioned`, one partition per file.

    Folders whose ``name=value`` fails ``filters`` are never opened (partition
    pruning); see :func:`list_partitioned_files`. ``fmt`` defaults to each file's
    extension.
    """
    files = list_partitioned_files(path, filters)
    return _bag_of_files([[f] for f in files], fmt, None, False, "read_partitioned")


def read_sharded(path: str, fmt: str | None = None, *, key: Any = None, sort: bool = False) -> Bag:
    """Read a folder written by :func:`write_sharded`: partition ``s`` is shard ``s``.

    With ``sort=True`` (for shards written with ``sort=True``) each shard's files are
    k-way merged lazily into one stream sorted by ``key``.
    """
    if not os.path.isdir(path):
        raise StoreNotFoundError(f"path={path!r} is not a folder")
    shards = sorted(d for d in os.listdir(path) if d.startswith("shard="))
    groups = [
        sorted(
            os.path.join(path, s, f)
            for f in os.listdir(os.path.join(path, s))
            if not f.startswith(".")
        )
        for s in shards
    ]
    return _bag_of_files(groups, fmt, K.key_value_getters(key)[0], sort, "read_sharded")
