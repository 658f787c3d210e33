"""Which rows a row group keeps for the rules: `_kept_kinds` (compare with the bulk codes, or
look the kinds up when the dictionary has many bulk entries) and `_keep_valid_of` (rows of
one kind whose column is not null) agree with the plain masks they replace."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.trace.decode import _keep_valid_of, _kept_kinds


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=12), st.integers(0, 500), st.integers(0, 2**32 - 1))
def test_kept_kinds_is_the_lookup_of_each_rows_kind(kept, n, seed) -> None:
    rng = np.random.default_rng(seed)
    lut = np.array(kept, dtype=bool)
    kind = rng.integers(0, len(lut), n).astype(np.int32)
    got = _kept_kinds(kind, lut)
    assert got.dtype == bool and np.array_equal(got, lut[kind])


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.integers(0, 2**32 - 1), st.integers(1, 4))
def test_keep_valid_of_adds_the_rows_of_the_kind_whose_value_is_set(n, seed, chunks) -> None:
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 3, n).astype(np.int32)
    valid = rng.random(n) < 0.2
    cuts = np.sort(rng.integers(0, n + 1, chunks - 1))
    values = pa.array(np.arange(n), mask=~valid)
    col = pa.chunked_array([values.slice(a, b - a) for a, b in zip([0, *cuts], [*cuts, n], strict=True)])
    keep = rng.random(n) < 0.3
    expected = keep | (valid & (kind == 1))
    _keep_valid_of(keep, col, kind, 1)
    assert np.array_equal(keep, expected)
