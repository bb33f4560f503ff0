"""Properties shared by the three sketches, checked with hypothesis.

Merging is associative and commutative, the merge of partition sketches is the
sketch of all the data, ``from_bytes(to_bytes(s)) == s``, pickling round-trips,
and sketches with different parameters refuse to merge.
"""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_io.sketches import (
    BloomFilter,
    CountMinSketch,
    HyperLogLog,
    IncompatibleSketchError,
    Sketch,
)

MAKERS = {
    "bloom": lambda seed=0: BloomFilter(200, 0.05, seed=seed),
    "countmin": lambda seed=0: CountMinSketch(width=31, depth=3, seed=seed),
    "hll": lambda seed=0: HyperLogLog(6, seed=seed),
}
OTHER_PARAMETERS = {
    "bloom": lambda: BloomFilter(300, 0.05),
    "countmin": lambda: CountMinSketch(width=32, depth=3),
    "hll": lambda: HyperLogLog(7),
}
KEY = (
    st.integers(-(2**70), 2**70)
    | st.text(max_size=6)
    | st.tuples(st.integers(0, 9), st.text(max_size=2))
)
BATCH = st.lists(KEY, max_size=40)
KINDS = st.sampled_from(sorted(MAKERS))
EXAMPLES = settings(max_examples=60, deadline=None)


def build(kind: str, keys, seed: int = 0) -> Sketch:
    sketch = MAKERS[kind](seed)
    sketch.update(keys)
    return sketch


@EXAMPLES
@given(KINDS, BATCH, BATCH, BATCH)
def test_merge_is_associative_and_commutative(kind, xs, ys, zs):
    a, b, c = (build(kind, keys) for keys in (xs, ys, zs))
    assert (a | b) == (b | a)
    assert ((a | b) | c) == (a | (b | c))
    assert a.copy().merge(b, c) == (a | b | c)


@EXAMPLES
@given(KINDS, BATCH, st.lists(st.integers(0, 40), max_size=5), st.integers(0, 3))
def test_merged_partitions_equal_whole(kind, keys, cuts, seed):
    bounds = [0, *sorted(cuts), len(keys)]
    parts = [keys[lo:hi] for lo, hi in itertools.pairwise(bounds)]
    merged = MAKERS[kind](seed)
    for part in parts:
        merged |= build(kind, part, seed)
    assert merged == build(kind, keys, seed)


@EXAMPLES
@given(KINDS, BATCH)
def test_numpy_and_list_batches_agree(kind, keys):
    ints = [k for k in keys if isinstance(k, int) and -(2**63) <= k < 2**63]
    assert build(kind, np.array(ints, dtype=np.int64)) == build(kind, ints)
    assert build(kind, iter(ints)) == build(kind, ints)


@EXAMPLES
@given(KINDS, BATCH, st.integers(0, 2**64 - 1))
def test_bytes_and_pickle_round_trip(kind, keys, seed):
    sketch = build(kind, keys, seed)
    assert type(sketch).from_bytes(sketch.to_bytes()) == sketch
    assert type(sketch).from_bytes(bytearray(sketch.to_bytes())) == sketch
    assert pickle.loads(pickle.dumps(sketch)) == sketch
    assert sketch.copy() == sketch


@EXAMPLES
@given(KINDS, BATCH, BATCH)
def test_equality_sees_any_difference(kind, xs, ys):
    a, b = build(kind, xs), build(kind, ys)
    if a == b:
        assert a.to_bytes() == b.to_bytes()
    else:
        assert a.to_bytes() != b.to_bytes()
    assert build(kind, xs, seed=1) != build(kind, xs, seed=2) or not xs


@EXAMPLES
@given(BATCH)
def test_bloom_never_has_false_negatives(keys):
    bf = build("bloom", keys)
    assert all(key in bf for key in keys)
    assert bf.contains(keys).all()


@EXAMPLES
@given(BATCH)
def test_countmin_never_undercounts(keys):
    cms = build("countmin", keys)
    for key in set(keys):
        assert cms.estimate(key) >= keys.count(key)


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_mismatched_parameters_raise(kind):
    a = MAKERS[kind]()
    for other in (OTHER_PARAMETERS[kind](), MAKERS[kind](seed=1)):
        with pytest.raises(IncompatibleSketchError, match="different parameters"):
            a.merge(other)
        with pytest.raises(IncompatibleSketchError):
            a | other
    wrong_kind = MAKERS["hll" if kind != "hll" else "bloom"]()
    with pytest.raises(IncompatibleSketchError, match="cannot merge"):
        a.merge(wrong_kind)
    assert (a == wrong_kind) is False
    assert a.__or__(1) is NotImplemented


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_wrong_kind_of_bytes_raises(kind):
    data = MAKERS[kind]().to_bytes()
    for other in MAKERS.values():
        cls = type(other())
        if cls is not type(MAKERS[kind]()):
            with pytest.raises(ValueError, match="kind"):
                cls.from_bytes(data)


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_sketches_are_unhashable_and_have_reprs(kind):
    sketch = MAKERS[kind]()
    with pytest.raises(TypeError):
        hash(sketch)
    assert type(sketch).__name__ in repr(sketch)
