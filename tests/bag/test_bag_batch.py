"""Column batches (PairBatch): every array path against the record path (the oracle)."""

from __future__ import annotations

import operator
import os
import subprocess
import sys

import dask
import dask.bag as db
import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")

from dask_io import bag as dbag  # noqa: E402
from dask_io.bag import PairBatch, field  # noqa: E402
from dask_io.bag import _batch as B  # noqa: E402
from dask_io.bag import _kernels as K  # noqa: E402
from dask_io.sketches.hashing import stable_hash  # noqa: E402


def _records(n, nkeys, kind, seed):
    rng = np.random.default_rng(seed)
    k = rng.zipf(1.3, n) % nkeys
    v = rng.integers(-(2**40), 2**40, n)
    if kind == "str":
        keys = [f"user{x}" for x in k.tolist()]
    elif kind == "bytes":
        keys = [b"u%d" % x for x in k.tolist()]
    elif kind == "float":
        keys = (k / 4).tolist()
    else:
        keys = (k - nkeys // 2).tolist()
    return list(zip(keys, v.tolist()))


def _batch(recs):
    keys = [r[0] for r in recs]
    return PairBatch(keys, np.array([r[1] for r in recs], dtype=np.int64))


def _bags(nparts=4, n=3000, nkeys=400, kind="str"):
    parts = [_records(n, nkeys, kind, seed) for seed in range(nparts)]
    recs = db.from_sequence([r for p in parts for r in p], npartitions=nparts)
    batches = db.from_sequence(list(range(nparts)), npartitions=nparts).map_partitions(
        lambda ix: _batch(parts[ix[0]])
    )
    return recs, batches, parts


KINDS = ["str", "bytes", "int", "float"]


def test_batch_iterates_as_records():
    b = PairBatch(["a", "b"], (np.array([1, 2]), pa.array(["x", "y"])))
    assert list(b) == [("a", (1, "x")), ("b", (2, "y"))]
    assert len(b) == 2 and b.column(field(1, 1)).to_pylist() == ["x", "y"]
    assert dict(iter(b)) == {"a": (1, "x"), "b": (2, "y")}
    with pytest.raises(ValueError, match="nulls"):
        PairBatch(pa.array(["a", None]), np.array([1, 2]))
    with pytest.raises(ValueError, match="differ in length"):
        PairBatch(["a"], np.array([1, 2]))


@pytest.mark.parametrize("kind", KINDS)
def test_split_matches_stable_hash(kind):
    recs = _records(2000, 300, kind, 1)
    parts = B.split_batch(_batch(recs), 7)
    for j, part in enumerate(parts):
        assert all(stable_hash(k) % 7 == j for k, _ in part)
    assert sorted(r for p in parts for r in p) == sorted(recs)


def test_partitions_stable_across_processes():
    code = (
        "import numpy as np; from dask_io.bag import _batch as B, PairBatch;"
        "b=PairBatch(['k%d' % i for i in range(500)] , np.arange(500));"
        "print([len(p) for p in B.split_batch(b, 8)])"
    )
    outs = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        outs.add(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                capture_output=True, text=True).stdout)  # fmt: skip
    assert len(outs) == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("binop", [operator.add, min, max], ids=["add", "min", "max"])
def test_reduce_by_key_batch_equals_records(kind, binop):
    recs, batches, parts = _bags(kind=kind)
    with dask.config.set(scheduler="sync"):
        got = sorted(dbag.reduce_by_key(batches, None, binop, 5).compute())
        want = sorted(dbag.reduce_by_key(recs, None, binop, 5).compute())
    assert got == want
    oracle: dict = {}
    for k, v in (r for p in parts for r in p):
        oracle[k] = binop(oracle[k], v) if k in oracle else v
    assert dict(got) == oracle


def test_reduce_exact_in_int64():
    big = 2**53 + 1
    b = PairBatch([1, 1, 1], np.array([big, big, -1], dtype=np.int64))
    assert list(B.combine_batch(b, None, None, np.add)) == [(1, 2 * big - 1)]


def test_mixed_batches_and_records_meet():
    recs = _records(1000, 50, "str", 3)
    half = len(recs) // 2
    mixed = db.from_delayed(
        [dask.delayed(_batch)(recs[:half]), dask.delayed(K.Records)(recs[half:])]
    )
    with dask.config.set(scheduler="sync"):
        got = dict(dbag.reduce_by_key(mixed, None, operator.add, 3).compute())
        counts = dict(dbag.count_by_key(mixed, None, 3).compute())
    oracle: dict = {}
    for k, v in recs:
        oracle[k] = oracle.get(k, 0) + v
    assert got == oracle
    assert counts == {k: sum(1 for r in recs if r[0] == k) for k in oracle}


def test_count_by_key_and_field_specs():
    recs, batches, _ = _bags(kind="int")
    with dask.config.set(scheduler="sync"):
        assert sorted(dbag.count_by_key(batches, None, 3)) == sorted(
            dbag.count_by_key(recs, None, 3)
        )
        # key and value read as fields of the whole record
        got = sorted(dbag.reduce_by_key(batches, field(0), operator.add, 2, value=field(1)))
        want = sorted(dbag.reduce_by_key(recs, field(0), operator.add, 2, value=field(1)))
    assert got == want


def test_non_array_binop_falls_back_to_records():
    recs, batches, _ = _bags(nparts=2, n=300, kind="str")
    with dask.config.set(scheduler="sync"):
        got = sorted(dbag.reduce_by_key(batches, None, lambda a, b: a + b, 3))
        want = sorted(dbag.reduce_by_key(recs, None, operator.add, 3))
        groups = sorted(dbag.group_by_key(batches, None, 3))
        want_groups = sorted(dbag.group_by_key(recs, None, 3))
    assert got == want and groups == want_groups


@pytest.mark.parametrize("kind", ["str", "int"])
def test_joins_batch_equal_records(kind):
    recs, batches, _ = _bags(kind=kind, nkeys=300)
    keys = sorted({k for k, _ in recs.compute(scheduler="sync")})
    # a dimension table with some keys missing and one key repeated (many matches)
    small = [(k, f"cat{i % 7}") for i, k in enumerate(keys) if i % 5]
    small.append((keys[1], "extra"))
    small_bag = db.from_sequence(small, npartitions=3)
    with dask.config.set(scheduler="sync"):
        for join in (
            lambda b: dbag.broadcast_join(b, small),
            lambda b: dbag.hash_join(b, small_bag, npartitions=4),
        ):
            got, want = join(batches).compute(), join(recs).compute()
            assert sorted(got) == sorted(want)
            got, want = (
                sorted(dbag.reduce_by_key(j, field(1, 1), operator.add, 1, value=field(1, 0)))
                for j in (join(batches), join(recs))
            )
            assert got == want


def test_samples_batch_equal_records():
    recs, batches, _ = _bags(kind="str", nkeys=50)
    keys = {k for k, _ in recs.compute(scheduler="sync")}
    fractions = {k: (i % 4) / 4 for i, k in enumerate(sorted(keys))}
    with dask.config.set(scheduler="sync"):
        for fraction in (0.0, 0.3, 1.0):
            got = dbag.hash_sample(batches, None, fraction, salt=3).compute()
            assert got == dbag.hash_sample(recs, None, fraction, salt=3).compute()
        assert dbag.hash_sample(batches, None, 0.3).count().compute() == len(
            dbag.hash_sample(recs, None, 0.3).compute()
        )
        for repl in (False, True):
            got = dbag.sample_by_key(batches, None, fractions, 7, with_replacement=repl)
            want = dbag.sample_by_key(recs, None, fractions, 7, with_replacement=repl)
            assert got.compute() == want.compute()
