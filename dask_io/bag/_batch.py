"""Column batches: a partition of ``(key, value)`` records held as arrays.

A :class:`PairBatch` is a partition whose keys are one pyarrow array (numbers,
strings or bytes, no nulls) and whose value is an array or a nested tuple of
arrays (numpy or pyarrow). It iterates as the ``(key, value)`` tuples it stands
for, so every recipe accepts it; the recipes that know batches (reduce / count by
key with ``operator.add``, ``min`` or ``max``, broadcast and hash joins,
hash and stratified samples) work on its columns instead of on records:

- keys are factorised once (``dictionary_encode``), values combined by a stable
  sort of the key codes and ``numpy.add.reduceat`` (exact in int64: no float
  accumulation; int64 sums wrap past 2**63, unlike Python ints);
- a key's partition is ``stable_hash(key) % npartitions`` as on the record path,
  vectorised for numeric keys (:func:`dask_io.sketches.hashing.hash_array`) and
  computed once per distinct key for strings and bytes, so batches and record
  partitions of the same key meet in the same output partition, in every process.

Kernels here are pure (numpy and pyarrow only, imported when a batch is used).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from dask_io.sketches.hashing import hash_array

__all__ = ["PairBatch", "field"]


class field:
    """A key or value spec reading a nested field: ``field(1, 0)(r) == r[1][0]``.

    A plain callable on records; on a :class:`PairBatch` the recipes read the
    matching column instead (``field(0)`` the keys, ``field(1)`` the value,
    ``field(1, i)`` item ``i`` of a tuple value).

    >>> field(1, 0)(("k", (10, "books")))
    10
    """

    __slots__ = ("path",)

    def __init__(self, *path: int) -> None:
        if not path:
            raise ValueError("field() needs at least one index")
        self.path = tuple(path)

    def __call__(self, record: Any) -> Any:
        for i in self.path:
            record = record[i]
        return record

    def __repr__(self) -> str:
        return f"field{self.path!r}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, field) and other.path == self.path

    def __hash__(self) -> int:
        return hash(("field", self.path))

    def __reduce__(self) -> tuple[Any, ...]:
        return (field, self.path)

    def __dask_tokenize__(self) -> Any:
        return ("dask_io.bag.field", self.path)


def _as_key_array(keys: Any) -> Any:
    import pyarrow as pa

    arr = keys if isinstance(keys, pa.Array) else pa.array(keys)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count:
        raise ValueError("PairBatch keys must not contain nulls")
    t = arr.type
    if pa.types.is_large_string(t):
        arr = arr.cast(pa.string())
    elif pa.types.is_large_binary(t):
        arr = arr.cast(pa.binary())
    ok = (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_string(arr.type)
        or pa.types.is_binary(arr.type)
    )
    if not ok:
        raise TypeError(f"PairBatch keys must be numbers, str or bytes, got {t}")
    return arr


class PairBatch:
    """``(key, value)`` records as columns; iterates as those tuples.

    Parameters
    ----------
    keys : array-like
        One key per record: a pyarrow array (or anything ``pyarrow.array`` takes)
        of integers, floats, strings or bytes, without nulls.
    values : array or tuple
        A numpy or pyarrow array of the same length, or a (nested) tuple of them:
        record ``i`` is ``(keys[i], values[i])`` with tuples built element-wise.

    Examples
    --------
    >>> import numpy as np
    >>> b = PairBatch(["a", "b"], (np.array([1, 2]), np.array([10, 20])))
    >>> list(b)
    [('a', (1, 10)), ('b', (2, 20))]
    """

    __slots__ = ("key_col", "value_col")

    def __init__(self, keys: Any, values: Any) -> None:
        self.key_col = _as_key_array(keys)
        self.value_col = values
        n = len(self.key_col)
        for col in _leaves(values):
            if len(col) != n:
                raise ValueError(f"PairBatch columns differ in length: {len(col)} != {n} keys")

    def __len__(self) -> int:
        return len(self.key_col)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        return iter(list(zip(self.key_col.to_pylist(), _pylist(self.value_col), strict=True)))

    def __repr__(self) -> str:
        return f"PairBatch({len(self)} records, keys {self.key_col.type})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (PairBatch, (self.key_col, self.value_col))

    def take(self, indices: Any) -> PairBatch:
        """The records at ``indices`` (an integer numpy array), in that order."""
        return PairBatch(
            self.key_col.take(indices), _map(self.value_col, lambda c: _take(c, indices))
        )

    def column(self, spec: Any) -> Any:
        """The column a :class:`field` spec reads (``None``: the values)."""
        if spec is None:
            return self.value_col
        path = spec.path
        col: Any = self.key_col if path[0] == 0 else self.value_col
        if path[0] not in (0, 1):
            raise IndexError(f"{spec!r} is out of range for (key, value) records")
        for i in path[1:]:
            if not isinstance(col, tuple):
                raise TypeError(f"{spec!r}: the value column is not a tuple")
            col = col[i]
        return col


def _leaves(values: Any) -> list[Any]:
    if isinstance(values, tuple):
        return [leaf for v in values for leaf in _leaves(v)]
    return [values]


def _map(values: Any, func: Callable[[Any], Any]) -> Any:
    if isinstance(values, tuple):
        return tuple(_map(v, func) for v in values)
    return func(values)


def _pylist(values: Any) -> list[Any]:
    if isinstance(values, tuple):
        return list(zip(*(_pylist(v) for v in values), strict=True))
    if isinstance(values, np.ndarray):
        return values.tolist()  # type: ignore[no-any-return]
    return values.to_pylist()  # type: ignore[no-any-return]


def _take(col: Any, indices: Any) -> Any:
    if isinstance(col, np.ndarray):
        return col[indices]
    return col.take(indices)


def _concat(cols: Sequence[Any]) -> Any:
    import pyarrow as pa

    if isinstance(cols[0], tuple):
        return tuple(_concat([c[i] for c in cols]) for i in range(len(cols[0])))
    if all(isinstance(c, np.ndarray) for c in cols):
        return np.concatenate(cols)
    return pa.concat_arrays([c if isinstance(c, pa.Array) else pa.array(c) for c in cols])


def concat_batches(batches: Sequence[PairBatch]) -> PairBatch:
    """One batch of the records of ``batches``, in order."""
    import pyarrow as pa

    if len(batches) == 1:
        return batches[0]
    types = {b.key_col.type for b in batches}
    keys = [b.key_col for b in batches]
    if len(types) > 1:  # e.g. int32 and int64 buckets: widen numbers, else give up
        keys = [k.cast(pa.float64() if any(pa.types.is_floating(t) for t in types)
                       else pa.int64()) for k in keys]  # fmt: skip
    return PairBatch(pa.concat_arrays(keys), _concat([b.value_col for b in batches]))


def numeric(col: Any) -> np.ndarray | None:
    """``col`` as a numeric numpy array, or ``None`` if it is not numeric."""
    arr = col if isinstance(col, np.ndarray) else _to_numpy(col)
    if arr is None or arr.dtype.kind not in "biuf":
        return None
    return arr


def _to_numpy(col: Any) -> np.ndarray | None:
    import pyarrow as pa

    if not isinstance(col, pa.Array) or col.null_count:
        return None
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        return None
    return col.to_numpy(zero_copy_only=False)


# --------------------------------------------------------------------------- kernels


def factorize(keys: Any) -> tuple[Any, np.ndarray]:
    """``(distinct keys in first-seen order, code of every record)``.

    >>> import pyarrow as pa
    >>> u, codes = factorize(pa.array(["b", "a", "b"]))
    >>> u.to_pylist(), codes.tolist()
    (['b', 'a'], [0, 1, 0])
    """
    import pyarrow as pa

    if pa.types.is_floating(keys.type):  # -0.0 == 0.0 and NaNs: normalise first
        arr = keys.to_numpy(zero_copy_only=False) + 0.0
        arr = np.where(np.isnan(arr), np.nan, arr)
        keys = pa.array(arr)
    enc = keys.dictionary_encode()
    return enc.dictionary, enc.indices.to_numpy(zero_copy_only=False).astype(np.intp)


def key_partitions(uniques: Any, npartitions: int) -> np.ndarray:
    """``stable_hash(key) % npartitions`` for every distinct key (vectorised for
    numbers; one xxh3 per distinct string or bytes key)."""
    import pyarrow as pa

    t = uniques.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        hashes = hash_array(uniques.to_numpy(zero_copy_only=False))
    else:
        hashes = hash_array(uniques.to_pylist())
    return (hashes % np.uint64(npartitions)).astype(np.intp)


ARRAY_BINOPS: dict[Any, Any] = {operator.add: np.add, min: np.minimum, max: np.maximum}


def array_binop(binop: Any) -> Any:
    """The numpy ufunc standing for ``binop`` (``None`` if there is none)."""
    try:
        return ARRAY_BINOPS.get(binop)
    except TypeError:  # unhashable callable
        return None


def reduce_codes(codes: np.ndarray, values: np.ndarray, ufunc: Any, ngroups: int) -> np.ndarray:
    """Reduce ``values`` per code with ``ufunc`` (sort + ``reduceat``): one per group.

    >>> reduce_codes(np.array([1, 0, 1]), np.array([5, 7, 9]), np.add, 2).tolist()
    [7, 14]
    """
    if ufunc is np.add and values.dtype.kind in "biu":
        values = values.astype(np.uint64 if values.dtype.kind == "u" else np.int64)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    out = ufunc.reduceat(values[order], starts)
    if len(starts) == ngroups:
        return out  # type: ignore[no-any-return]
    full = np.zeros(ngroups, dtype=out.dtype)
    full[sorted_codes[starts]] = out
    return full


def batch_columns(batch: PairBatch, key: Any, value: Any) -> tuple[Any, Any] | None:
    """The ``(keys, values)`` columns that the specs ``key`` and ``value`` read (as in
    :func:`dask_io.bag._kernels.key_value_getters`), or ``None`` if they read none."""
    if key is None:
        if value is None:
            return batch.key_col, batch.value_col
        if isinstance(value, field):
            return batch.key_col, batch.column(field(1, *value.path))
        return None
    if isinstance(key, field) and isinstance(value, field):
        return batch.column(key), batch.column(value)
    return None


def combine_batch(batch: PairBatch, key: Any, value: Any, ufunc: Any) -> PairBatch | None:
    """Map-side combine of a batch: one ``(key, reduced value)`` per distinct key, or
    ``None`` when the specs read no numeric columns (the caller then iterates).

    >>> b = PairBatch(["a", "b", "a"], np.array([1, 2, 3]))
    >>> list(combine_batch(b, None, None, np.add))
    [('a', 4), ('b', 2)]
    """
    cols = batch_columns(batch, key, value)
    if cols is None:
        return None
    values = numeric(cols[1])
    if values is None:
        return None
    try:
        keys = _as_key_array(cols[0])
    except (TypeError, ValueError):
        return None
    if len(keys) == 0:
        return PairBatch(keys, values[:0])
    uniques, codes = factorize(keys)
    return PairBatch(uniques, reduce_codes(codes, values, ufunc, len(uniques)))


def _key_column(batch: PairBatch, key: Any) -> Any:
    if key is None:
        return batch.key_col
    if not isinstance(key, field):
        return None
    try:
        return _as_key_array(batch.column(key))
    except (TypeError, ValueError, IndexError):
        return None


def count_batch(batch: PairBatch, keyspec: Any) -> PairBatch | None:
    """Records per distinct key, as a batch (``None`` if ``keyspec`` has no column)."""
    keys = _key_column(batch, keyspec)
    if keys is None:
        return None
    uniques, codes = factorize(keys)
    return PairBatch(uniques, np.bincount(codes, minlength=len(uniques)).astype(np.int64))


def split_batch(batch: PairBatch, npartitions: int) -> list[PairBatch]:
    """Split a batch into ``npartitions`` batches by key hash (order kept inside each)."""
    if npartitions == 1:
        return [batch]
    uniques, codes = factorize(batch.key_col)
    parts = key_partitions(uniques, npartitions)[codes]
    order = np.argsort(parts, kind="stable")
    bounds = np.searchsorted(parts[order], np.arange(npartitions + 1))
    return [batch.take(order[bounds[j] : bounds[j + 1]]) for j in range(npartitions)]


def merge_reduced(batches: Sequence[PairBatch], ufunc: Any) -> list[tuple[Any, Any]]:
    """Reduce side: merge per-key results of every input; ``(key, value)`` tuples."""
    batches = [b for b in batches if len(b)] or list(batches[:1])
    if not batches:
        return []
    both = concat_batches(batches)
    if len(both) == 0:
        return []
    uniques, codes = factorize(both.key_col)
    values = reduce_codes(codes, numeric(both.value_col), ufunc, len(uniques))  # type: ignore[arg-type]
    return list(zip(uniques.to_pylist(), values.tolist(), strict=True))


class ArrayIndex:
    """The right side of a join as arrays: its distinct keys and, for each, the run
    of its values (in input order) in ``values``."""

    __slots__ = ("counts", "key_col", "starts", "value_col")

    def __init__(self, keys: Any, values: Any) -> None:
        uniques, codes = factorize(_as_key_array(keys))
        order = np.argsort(codes, kind="stable")
        self.key_col = uniques
        self.counts = np.bincount(codes, minlength=len(uniques))
        self.starts = np.r_[0, np.cumsum(self.counts)[:-1]].astype(np.intp)
        self.value_col = _take(values, order)

    @classmethod
    def from_records(cls, records: Sequence[tuple[Any, Any]]) -> ArrayIndex | None:
        """From ``(key, value)`` records; ``None`` if the keys or values do not fit
        one array each."""
        import pyarrow as pa

        try:
            keys = pa.array([r[0] for r in records])
            values = pa.array([r[1] for r in records])
            return cls(keys, values)
        except (pa.ArrowException, TypeError, ValueError):
            return None


def probe_batch(batch: PairBatch, index: ArrayIndex) -> PairBatch | None:
    """Inner join of a batch of pairs with an :class:`ArrayIndex`: ``(k, (v, w))`` as a
    batch (left records in order, each with its matches in the right side's order), or
    ``None`` if the key types cannot be compared."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = batch.key_col
    try:
        pos = pc.index_in(keys, value_set=index.key_col.cast(keys.type))
    except (pa.ArrowException, TypeError, ValueError):
        return None
    hit = pos.is_valid().to_numpy(zero_copy_only=False)
    left = np.flatnonzero(hit)
    code = pos.drop_null().to_numpy(zero_copy_only=False).astype(np.intp)
    counts = index.counts[code]
    if not len(counts) or (counts.max() == 1 and counts.min() == 1):
        li, ri = left, index.starts[code]
    else:
        li = np.repeat(left, counts)
        first = np.repeat(np.cumsum(counts) - counts, counts)
        ri = np.repeat(index.starts[code], counts) + (np.arange(len(li)) - first)
    leftvals = _map(batch.value_col, lambda c: _take(c, li))
    return PairBatch(keys.take(li), (leftvals, _take(index.value_col, ri)))


def hash_mask(batch: PairBatch, keyspec: Any, threshold: int, salt: int) -> np.ndarray | None:
    """Which records' keys hash (salted) below ``threshold``."""
    import pyarrow as pa

    keys = _key_column(batch, keyspec)
    if keys is None:
        return None
    uniques, codes = factorize(keys)
    t = uniques.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        hashes = hash_array(uniques.to_numpy(zero_copy_only=False), seed=salt)
    else:
        hashes = hash_array(uniques.to_pylist(), seed=salt)
    if threshold >= 2**64:
        return np.ones(len(codes), dtype=bool)
    return (hashes < np.uint64(threshold))[codes]  # type: ignore[no-any-return]


def key_fractions(
    batch: PairBatch, keyspec: Any, fraction_of: Callable[[Any], float]
) -> np.ndarray | None:
    """Every record's sampling fraction, looked up once per distinct key."""
    keys = _key_column(batch, keyspec)
    if keys is None:
        return None
    uniques, codes = factorize(keys)
    per_key = np.array([fraction_of(k) for k in uniques.to_pylist()], dtype=float)
    return per_key[codes]  # type: ignore[no-any-return]


def is_batch(obj: Any) -> bool:
    return isinstance(obj, PairBatch)


def batch_spec(spec: Any) -> bool:
    """Whether a key/value spec can be read as a column (``None`` or a field)."""
    return spec is None or isinstance(spec, field)
