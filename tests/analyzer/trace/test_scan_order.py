"""The row order of an interleaved row group: `_by_vm` is the (vm, seq) order when each VM's
rows come in seq order, whatever the number of VMs (the sort's key width follows it)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.trace.scan import _by_vm


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 70_000), st.integers(0, 400), st.integers(0, 2**32 - 1), st.booleans())
def test_by_vm_is_the_vm_seq_order_when_each_vm_is_in_seq_order(vms, n, seed, shuffle) -> None:
    rng = np.random.default_rng(seed)
    vm = rng.integers(0, vms, n).astype(np.int32)
    seq = rng.permutation(n).astype(np.int64) if shuffle else np.arange(n, dtype=np.int64)
    order = np.lexsort((seq, vm))
    in_seq_order = all(np.all(np.diff(seq[vm == v]) > 0) for v in np.unique(vm))
    got = _by_vm(vm, seq)
    if not in_seq_order:
        assert got is None
        return
    assert got is not None
    pos, s, v = got
    assert np.array_equal(pos, order)
    assert np.array_equal(s, seq[order]) and np.array_equal(v, vm[order])
    assert v.dtype == vm.dtype
