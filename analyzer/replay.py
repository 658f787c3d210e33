"""The replay view: each step in replay order with the VM's state after it.

What `blkreplay replay` prints and a notebook asks with `replay(trace, vm=...)`: every step of
a VM (or a seq range of it), the run state, each device's io-status and the pending stop
request *after* the step (what "info status" / "info block" would have answered then, as
`analyzer.state` replays it), the step's own state change, and the rules whose findings name
it. `steps_around` cuts a window of it around one step.

The state is replayed over the rows the rules read (`analyzer.trace.read_unit`); every shown
step takes the state after the last of them at or before its seq (the others change nothing).
The episodes table (`analyzer.episodes`) is re-exported here, where it was first published.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analyzer import identity
from analyzer.episodes import EPISODE_COLUMNS, LATENCIES, MILESTONES, episodes
from analyzer.rules import columns_for
from analyzer.rules import run as run_rules
from analyzer.rules.catalogue import RULE_IDS
from analyzer.rules.integrity import findings as integrity_findings
from analyzer.state import devices, iostatus, iostatus_names, pending, run_state, runstate_names
from analyzer.steps import NULL, Steps
from analyzer.trace import PathArg, Trace, UnitData, load, read_unit
from analyzer.trace.files import read_row_group, row_keys

#: Columns of the replay view before the per-device io-status columns ``iostatus:<device>``.
REPLAY_COLUMNS: tuple[str, ...] = (
    "vm", "seq", "ts_ns", "thread", "thread_kind", "kind", "name", "device", "op", "errno",
    "action", "error_id", "value", "runstate", "pending", "findings",
)
#: Prefix of the per-device replayed io-status columns of the replay view.
IOSTATUS_PREFIX = "iostatus:"

_VIEW_READ = ("seq", "ts_ns", "vm", "thread", "thread_kind", "kind", "device", "op", "errno",
              "policy", "action", "iostatus", "runstate", "prev_runstate", "name", "error_id",
              "cmd_seq")

# ---------------------------------------------------------------------------------------------
# The replay view
# ---------------------------------------------------------------------------------------------

_CACHE: OrderedDict[tuple, object] = OrderedDict()
_CACHE_SIZE = 8


def _cached(key: tuple, make, owner: object = None):
    """A small LRU of loaded traces and read units. `owner` (kept alive with the entry) makes
    keys built from id(owner) safe."""
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is owner:
        _CACHE.move_to_end(key)
        return hit[1]
    value = make()
    _CACHE[key] = (owner, value)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def _paths_key(paths: Sequence[PathArg]) -> tuple:
    out = []
    for p in paths:
        text = os.fspath(p)
        try:
            st = os.stat(text)
            out.append((text, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((text, None, None))
    return tuple(out)


def _trace(paths_or_trace: Trace | PathArg | Sequence[PathArg]) -> Trace:
    if isinstance(paths_or_trace, Trace):
        return paths_or_trace
    paths = [paths_or_trace] if isinstance(paths_or_trace, str | os.PathLike) else list(paths_or_trace)
    return _cached(("trace", _paths_key(paths)), lambda: load(paths))


def _unit_data(trace: Trace, vm: str) -> UnitData:
    unit = trace.unit_of(vm)
    return _cached(("unit", id(trace), vm), lambda: read_unit(trace, unit, columns_for(RULE_IDS), vms=[vm]), trace)


def replay(
    paths_or_trace: Trace | PathArg | Sequence[PathArg],
    *,
    vm: str | None = None,
    device: str | None = None,
    from_seq: int | None = None,
    to_seq: int | None = None,
    host: str | None = None,
    run: str | None = None,
) -> pd.DataFrame:
    """The steps in replay order with the reconstructed state beside each.

    Columns: REPLAY_COLUMNS, then one ``iostatus:<device>`` column per device with an io-status
    (only `device` when given). `runstate`, `iostatus:*` and `pending` are the state *after*
    the step (what "info block" / "info status" would have answered then); `value` is the
    step's own io-status or run-state change; `findings` the ids of the rules whose evidence
    includes the step. `device` keeps that device's steps and the VM-wide ones (no device).
    `host` / `run` choose among VMs of the name `vm` on several hosts or in several runs
    (`analyzer.identity`; an `InputError` lists them when `vm` alone is ambiguous); the `vm`
    column then names the host and run beside the VM (``vm0 (host h1)``).
    """
    trace = _trace(paths_or_trace)
    if vm is not None:
        vms = [identity.resolve(trace.vms, vm, host, run)]
    elif host is not None or run is not None:
        vms = [k for k in trace.vms if (host is None or identity.split(k).host == host)
               and (run is None or identity.split(k).run == run)]
    else:
        vms = trace.vms
    parts = [_replay_vm(trace, v, device, from_seq, to_seq) for v in vms]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in REPLAY_COLUMNS})
    frame = pd.concat(parts, ignore_index=True)
    cols = list(REPLAY_COLUMNS) + sorted(c for c in frame.columns if c.startswith(IOSTATUS_PREFIX))
    return frame[cols]


def _replay_vm(trace: Trace, vm: str, device: str | None, from_seq: int | None,
               to_seq: int | None) -> pd.DataFrame:
    data = _unit_data(trace, vm)
    s = data.steps
    vm_code = s.vm_names.index(vm)
    rows = np.flatnonzero(s.vm == vm_code)
    table = _vm_table(trace, vm, from_seq, to_seq)
    if device is not None:
        dev = table.column("device").cast(pa.string())
        table = table.filter(pc.or_kleene(pc.is_null(dev), pc.equal(dev, device)))
    n = table.num_rows
    seq = table.column("seq").to_numpy()
    # State after each shown step = state after the last interesting step at or before it.
    at = np.searchsorted(s.seq[rows], seq, side="right") - 1 if len(rows) else np.full(n, -1)
    at_row = np.where(at >= 0, rows[np.maximum(at, 0)] if len(rows) else 0, -1)
    known = at_row >= 0
    after = at_row[known]
    frame = pd.DataFrame({
        "vm": identity.label(vm),
        "seq": seq,
        "ts_ns": table.column("ts_ns").to_numpy(),
        "thread": _strs(table, "thread"),
        "thread_kind": _strs(table, "thread_kind"),
        "kind": _strs(table, "kind"),
        "name": _strs(table, "name"),
        "device": _strs(table, "device"),
        "op": _strs(table, "op"),
        "errno": pd.array(table.column("errno").to_pylist(), dtype="Int64"),
        "action": _strs(table, "action"),
        "error_id": pd.array(table.column("error_id").to_pylist(), dtype="Int64"),
        "value": _values(table),
    })
    frame["runstate"] = _fill(known, runstate_names(run_state(s, after)), None)
    pend = _fill(known, pending(s, after), NULL)
    frame["pending"] = pd.arrays.IntegerArray(np.where(pend >= 0, pend, 0), pend < 0)
    for code in devices(s).get(vm_code, []):
        name = s.device_names[code]
        if device is not None and name != device:
            continue
        frame[IOSTATUS_PREFIX + name] = iostatus_names(_fill(known, iostatus(s, code, after), NULL))
    frame["findings"] = _marks(s, data, vm, seq)
    return frame


def _fill(known: np.ndarray, values: np.ndarray, default: object) -> np.ndarray:
    """`values` at the `known` positions, `default` elsewhere."""
    out = np.full(len(known), default, dtype=values.dtype)
    out[known] = values
    return out


def _vm_table(trace: Trace, vm: str, from_seq: int | None, to_seq: int | None) -> pa.Table:
    return trace.table(vm=vm, columns=_VIEW_READ, from_seq=from_seq, to_seq=to_seq)


def _strs(table: pa.Table, col: str) -> list[str | None]:
    if col not in table.column_names:
        return [None] * table.num_rows
    return table.column(col).cast(pa.string()).to_pylist()


def _values(table: pa.Table) -> list[str | None]:
    """The step's own state value: io-status set/read, or a run-state change."""
    ios = _strs(table, "iostatus")
    rs = _strs(table, "runstate")
    prev = _strs(table, "prev_runstate")
    out = []
    for i, p, r in zip(ios, prev, rs, strict=True):
        if r is not None:
            out.append(f"{p} -> {r}" if p is not None else r)
        else:
            out.append(i)
    return out


def _marks(s: Steps, data: UnitData, vm: str, seq: np.ndarray) -> list[str]:
    """Per shown step: the rule ids whose findings name it (comma-separated)."""
    vm_code = s.vm_names.index(vm)
    batch = s.take(np.flatnonzero(s.vm == vm_code))
    found = run_rules(batch, RULE_IDS) + integrity_findings(f for f in data.integrity if f.vm == vm)
    by_seq: dict[int, list[str]] = {}
    for f in found:
        for q in f.seq:
            by_seq.setdefault(q, [])
            if f.rule not in by_seq[q]:
                by_seq[q].append(f.rule)
    return [",".join(by_seq.get(int(q), [])) for q in seq]


def steps_around(
    paths_or_trace: Trace | PathArg | Sequence[PathArg], vm: str, seq: int, context: int = 10,
    *, host: str | None = None, run: str | None = None,
) -> pd.DataFrame:
    """The replay view of `context` steps before and after step `seq` of `vm` (by position in
    the VM's replay order, so gaps in seq do not shrink the window); `host` / `run` as for
    `replay`."""
    trace = _trace(paths_or_trace)
    key = identity.resolve(trace.vms, vm, host, run)
    bounds = _cached(("window", id(trace), key, seq, context), lambda: _window(trace, key, seq, context), trace)
    ident = identity.split(key)
    if bounds is None:
        return replay(trace, vm=ident.vm, host=ident.host or "", run=ident.run or "", from_seq=seq, to_seq=seq)
    return replay(trace, vm=ident.vm, host=ident.host or "", run=ident.run or "", from_seq=bounds[0],
                  to_seq=bounds[1])


def _extreme(values: np.ndarray, k: int, *, largest: bool) -> np.ndarray:
    """The `k` largest (or smallest) distinct `values`, sorted: a partition, then a unique of
    the few left (a unique of a million seqs per row group costs seconds)."""
    n = len(values)
    if n > k:
        part = np.partition(values, n - k)[n - k:] if largest else np.partition(values, k - 1)[:k]
        out = np.unique(part)
        if len(out) < k:  # repeated seqs among them: decide over all values
            out = np.unique(values)
    else:
        out = np.unique(values)
    return out[-k:] if largest else out[:k]


def _window(trace: Trace, vm: str, seq: int, context: int) -> tuple[int, int] | None:
    """(first, last) seq of the window of `context` steps either side of `seq` in `vm`'s replay
    order, or None when the VM has no steps.

    Streams the VM's `seq` column row group by row group, keeping only the `context` largest
    seqs below `seq` and the `context` + 1 smallest from `seq` on: memory is one row group's
    seqs, never the VM's (20 M steps would otherwise be materialized to show 21)."""
    unit = trace.unit_of(vm)
    below = np.zeros(0, dtype=np.int64)
    above = np.zeros(0, dtype=np.int64)
    for rg in unit.row_groups:
        if vm not in rg.vms:
            continue
        shared = len(rg.vms) > 1
        t = read_row_group(trace.files[rg.file], rg.index, ["seq", "vm", "host", "run"] if shared else ["seq"],
                           rg.count)
        s = np.asarray(t.column("seq").to_numpy(), dtype=np.int64)
        if shared:
            idx, keys = row_keys(t, trace.files[rg.file].run)
            s = s[idx == (keys.index(vm) if vm in keys else -1)]
        del t
        if context:
            below = _extreme(np.concatenate([below, s[s < seq]]), context, largest=True)
        above = _extreme(np.concatenate([above, s[s >= seq]]), context + 1, largest=False)
    if not len(below) and not len(above):
        return None
    lo = int(below[0]) if len(below) else int(above[0])
    hi = int(above[-1]) if len(above) else int(below[-1])
    return lo, hi


__all__ = [
    "EPISODE_COLUMNS",
    "IOSTATUS_PREFIX",
    "LATENCIES",
    "MILESTONES",
    "REPLAY_COLUMNS",
    "episodes",
    "replay",
    "steps_around",
]

