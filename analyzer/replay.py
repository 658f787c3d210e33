"""Deterministic replay: the state of each VM after every step, and the episodes table.

State, per VM, rebuilt from the steps alone (docs/rules.md §1-2):

* **run state**: the last `runstate` row's new state (before the first one, its
  `prev_runstate`). A VM without `runstate` rows (a QMP-only import) gets ``running`` after
  RESUME and ``stopped`` after STOP - all the events tell.
* **io-status of each device**: replayed from `iostatus_set` (the value after the call) and
  `iostatus_reset` (ok), ok before any. Without such rows, the last value a `query-block`
  reply showed (what "info block" said when it was last asked).
* **pending stop request**: the error id in QEMU's single request slot, from `vmstop_request`
  (fills it) and consumptions (`vm_stop` / `vm_start` with an error id, empty it).

The **episodes** table has one row per error action (per error id; per BLOCK_IO_ERROR where a
source has no error ids, correlated with the device's last failed request) with the seq and
ts of each milestone and the latencies between them. `replay` gives the step-by-step view that
`blkreplay replay` prints; `steps_around` cuts a window of it around one step.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analyzer.rules import columns_for, run
from analyzer.rules.catalogue import RULE_IDS
from analyzer.rules.derived import consumptions, iostatus_rows, service
from analyzer.rules.integrity import findings as integrity_findings
from analyzer.steps import ACT, IOS, NULL, Steps, last_before
from analyzer.trace import PathArg, Trace, UnitData, load, read_unit
from tracer.schema import IOSTATUSES, RUNSTATES

#: Milestones of an episode, in the order they normally happen. Each gives two columns,
#: ``seq_<m>`` and ``ts_<m>`` (nullable Int64).
MILESTONES: tuple[str, ...] = (
    "error_action",
    "iostatus_set",
    "event",
    "vmstop_request",
    "vm_stop",
    "stop",
    "cont",
    "resume",
    "iostatus_reset",
)

#: Latencies (ns) derived from the milestones: error -> BLOCK_IO_ERROR, BLOCK_IO_ERROR -> STOP,
#: STOP -> RESUME (time paused).
LATENCIES: tuple[tuple[str, str, str], ...] = (
    ("error_to_event_ns", "error_action", "event"),
    ("event_to_stop_ns", "event", "stop"),
    ("paused_ns", "stop", "resume"),
)

#: Columns of the episodes table, in order.
EPISODE_COLUMNS: tuple[str, ...] = (
    "vm",
    "error_id",
    "device",
    "op",
    "errno",
    "policy",
    "action",
    "served_by",
    *[f"{p}_{m}" for m in MILESTONES for p in ("seq", "ts")],
    *[name for name, _, _ in LATENCIES],
)

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
# State after every interesting step
# ---------------------------------------------------------------------------------------------


_RUNSTATE_NAMES = np.array([*RUNSTATES, None], dtype=object)


def runstate_after(s: Steps) -> list[str | None]:
    """Per row of `s`: the VM's run state after the row (names; see module doc)."""
    is_rs = s.is_kind("runstate")
    has_rs = s.vm_any(is_rs)
    last = _last_at_or_before(s, is_rs)
    first = s.after(is_rs, np.full(s.n, -1, dtype=np.int64), s.idx)
    code = np.where(last >= 0, s.runstate[np.maximum(last, 0)], s.prev_runstate[np.maximum(first, 0)])
    code = np.where((last < 0) & (first < 0), NULL, code)
    stop, resume = s.event("STOP"), s.event("RESUME")
    last_sr = _last_at_or_before(s, stop | resume)
    derived = np.where(last_sr < 0, NULL, np.where(resume[np.maximum(last_sr, 0)], 1, 0))
    by_rs = _RUNSTATE_NAMES[np.where(code >= 0, code, len(RUNSTATES))]
    by_events = np.array(["stopped", "running", None], dtype=object)[np.where(derived >= 0, derived, 2)]
    return list(np.where(has_rs, by_rs, by_events))


def _last_at_or_before(s: Steps, mask: np.ndarray) -> np.ndarray:
    """Per row: the last `mask` row at or before it in the same VM (-1: none)."""
    j = last_before(mask)[s.idx + 1]
    return np.where(j >= s.vstart, j, NULL)


def iostatus_after(s: Steps, device: int) -> np.ndarray:
    """Per row of `s`: the io-status code of `device` after the row (-1: unknown)."""
    io = iostatus_rows(s)
    has_io = s.vm_any(io)
    dev = np.full(s.n, device, dtype=np.int64)
    at = s.idx + 1
    last_io = s.by_device(io).last_before(s.vm, dev, at)
    replayed = np.where(
        last_io < 0,
        IOS["ok"],
        np.where(s.is_kind("iostatus_reset")[np.maximum(last_io, 0)], IOS["ok"], s.iostatus[np.maximum(last_io, 0)]),
    )
    seen = s.reply("query-block") & (s.iostatus >= 0)
    last_seen = s.by_device(seen).last_before(s.vm, dev, at)
    observed = np.where(last_seen < 0, NULL, s.iostatus[np.maximum(last_seen, 0)])
    return np.where(has_io, replayed, observed)


def pending_after(s: Steps) -> np.ndarray:
    """Per row of `s`: the error id waiting in the stop-request slot after the row (-1: none)."""
    request = s.is_kind("vmstop_request") & s.has_eid
    last = _last_at_or_before(s, request | consumptions(s))
    filled = (last >= 0) & request[np.maximum(last, 0)]
    return np.where(filled, s.eid[np.maximum(last, 0)], NULL)


def devices_of(s: Steps) -> list[int]:
    """Device codes with an io-status in the batch (replayed or observed), by name."""
    codes = set(np.unique(s.device[iostatus_rows(s) & (s.device >= 0)]).tolist())
    codes |= set(np.unique(s.device[s.reply("query-block") & (s.iostatus >= 0) & (s.device >= 0)]).tolist())
    return sorted(codes, key=lambda c: s.device_names[c])


# ---------------------------------------------------------------------------------------------
# Episodes
# ---------------------------------------------------------------------------------------------


def episodes(s: Steps) -> pd.DataFrame:
    """One row per error action of the batch (columns: EPISODE_COLUMNS), sorted by vm then the
    error's first step."""
    ids_vm = s.vm_any(s.has_eid)
    bie = s.event("BLOCK_IO_ERROR")
    err_kinds = s.is_kind("error_action") | s.is_kind("iostatus_set") | bie | s.is_kind("vmstop_request")
    # With error ids: the first row of each (vm, error id).
    cand = np.flatnonzero(err_kinds & s.has_eid)
    key = s.vm[cand].astype(np.int64)
    order = np.lexsort((cand, s.eid[cand], key))
    cand = cand[order]
    first = np.concatenate([[True], (s.vm[cand][1:] != s.vm[cand][:-1]) | (s.eid[cand][1:] != s.eid[cand][:-1])]) if len(cand) else np.zeros(0, bool)
    anchors = cand[first]
    rows_ids = _episodes_by_id(s, anchors)
    # Without: one per BLOCK_IO_ERROR of a VM without ids.
    events = np.flatnonzero(bie & ~ids_vm)
    rows_pos = _episodes_by_position(s, events)
    parts = [f for f in (rows_ids, rows_pos) if len(f)]
    if not parts:
        return _empty_episodes()
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    for col in EPISODE_COLUMNS:
        if col not in _STRING_COLUMNS:
            frame[col] = frame[col].astype("Int64")
    first_seq = frame[[f"seq_{m}" for m in MILESTONES]].min(axis=1)
    frame = frame.assign(_first=first_seq).sort_values(["vm", "_first", "error_id"], kind="mergesort")
    return frame.drop(columns="_first").reset_index(drop=True)[list(EPISODE_COLUMNS)]


def _int_array(values: np.ndarray, valid: np.ndarray) -> pd.arrays.IntegerArray:
    """A nullable Int64 array: `values` where `valid`, NA elsewhere."""
    values = np.asarray(values, dtype=np.int64)
    return pd.arrays.IntegerArray(np.where(valid, values, 0), ~np.asarray(valid, dtype=bool))


_STRING_COLUMNS = ("vm", "device", "op", "policy", "action")


def _empty_episodes() -> pd.DataFrame:
    cols: dict[str, pd.Series] = {}
    for c in EPISODE_COLUMNS:
        if c in _STRING_COLUMNS:
            cols[c] = pd.Series(dtype=object)
        else:
            cols[c] = pd.Series(dtype="Int64")
    return pd.DataFrame(cols)


def _milestone_frame(s: Steps, anchor: np.ndarray, ms: dict[str, np.ndarray], *, error_id: np.ndarray,
                     has_id: np.ndarray, served_by: np.ndarray, has_served: np.ndarray,
                     detail: np.ndarray) -> pd.DataFrame:
    def strings(col: str) -> list[str | None]:
        return [s.text(col, int(r)) if r >= 0 else None for r in detail]

    ints = _int_array

    d = np.maximum(detail, 0)
    data: dict[str, object] = {
        "vm": [s.vm_names[int(v)] for v in s.vm[anchor]],
        "error_id": ints(error_id, has_id),
        "device": strings("device"),
        "op": strings("op"),
        "errno": ints(s.errno[d], (detail >= 0) & (s.errno[d] > 0)),
        "policy": strings("policy"),
        "action": strings("action"),
        "served_by": ints(served_by, has_served),
    }
    for m in MILESTONES:
        r = ms.get(m, np.full(len(anchor), NULL, dtype=np.int64))
        ok = r >= 0
        data[f"seq_{m}"] = ints(s.seq[np.maximum(r, 0)], ok)
        data[f"ts_{m}"] = ints(s.ts[np.maximum(r, 0)], ok)
    frame = pd.DataFrame(data)
    for name, a, b in LATENCIES:
        frame[name] = frame[f"ts_{b}"] - frame[f"ts_{a}"]
    return frame


def _episodes_by_id(s: Steps, anchors: np.ndarray) -> pd.DataFrame:
    vm, eid = s.vm[anchors], s.eid[anchors]
    ms: dict[str, np.ndarray] = {}
    for m, mask in (
        ("error_action", s.is_kind("error_action")),
        ("iostatus_set", s.is_kind("iostatus_set")),
        ("event", s.event("BLOCK_IO_ERROR")),
        ("vmstop_request", s.is_kind("vmstop_request")),
    ):
        ms[m] = s.by_eid(mask).first(vm, eid)
    sv = service(s, anchors)
    consumed = sv.consumer >= 0
    ms["vm_stop"] = np.where(consumed & s.is_kind("vm_stop")[np.maximum(sv.consumer, 0)], sv.consumer, NULL)
    ms["stop"] = s.by_eid(s.event("STOP")).first(vm, sv.served_by, consumed)
    start = np.maximum.reduce([ms["event"], ms["error_action"], anchors])
    _after_stop(s, ms, start, np.where(ms["stop"] >= 0, ms["stop"], np.where(consumed, sv.consumer, start)), anchors)
    detail = np.where(ms["error_action"] >= 0, ms["error_action"], np.where(ms["event"] >= 0, ms["event"], anchors))
    dev = s.device[detail]
    after = np.where(ms["iostatus_set"] >= 0, ms["iostatus_set"], start)
    ms["iostatus_reset"] = s.by_device(s.is_kind("iostatus_reset")).first_after(vm, dev.astype(np.int64), after)
    return _milestone_frame(s, anchors, ms, error_id=eid, has_id=np.ones(len(anchors), bool),
                            served_by=sv.served_by, has_served=consumed, detail=detail)


def _after_stop(s: Steps, ms: dict[str, np.ndarray], event: np.ndarray, anchor: np.ndarray,
                rows: np.ndarray) -> None:
    """RESUME after `anchor` (the STOP, else the consumption, else the event) and the last cont
    command after the event and before that RESUME."""
    resume = s.after(s.event("RESUME"), anchor, rows)
    ms["resume"] = resume
    cont = s.prev(s.command("cont"), np.maximum(resume, 0))
    ms["cont"] = np.where((resume >= 0) & (cont > event), cont, NULL)


def _episodes_by_position(s: Steps, events: np.ndarray) -> pd.DataFrame:
    if not len(events):
        return pd.DataFrame()
    vm, dev = s.vm[events], s.device[events].astype(np.int64)
    failed = s.is_kind("io_complete") & (s.errno > 0)
    ms: dict[str, np.ndarray] = {"event": events}
    ms["error_action"] = s.by_device(failed).last_before(vm, dev, events)
    stop_action = s.action[events] == ACT["stop"]
    next_stop = s.next(s.event("STOP"), events)
    next_resume = s.next(s.event("RESUME"), events)
    own = stop_action & (next_stop >= 0) & ((next_resume < 0) | (next_stop < next_resume))
    ms["stop"] = np.where(own, next_stop, NULL)
    vm_stop = s.next(s.is_kind("vm_stop"), events)
    ms["vm_stop"] = np.where(own & (vm_stop >= 0) & (vm_stop < next_stop), vm_stop, NULL)
    _after_stop(s, ms, events, np.where(own, next_stop, events), events)
    ms["resume"] = np.where(own, ms["resume"], NULL)
    ms["cont"] = np.where(own, ms["cont"], NULL)
    none = np.zeros(len(events), dtype=bool)
    return _milestone_frame(s, events, ms, error_id=np.zeros(len(events), np.int64), has_id=none,
                            served_by=np.zeros(len(events), np.int64), has_served=none, detail=events)


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
) -> pd.DataFrame:
    """The steps in replay order with the reconstructed state beside each.

    Columns: REPLAY_COLUMNS, then one ``iostatus:<device>`` column per device with an io-status
    (only `device` when given). `runstate`, `iostatus:*` and `pending` are the state *after*
    the step (what "info block" / "info status" would have answered then); `value` is the
    step's own io-status or run-state change; `findings` the ids of the rules whose evidence
    includes the step. `device` keeps that device's steps and the VM-wide ones (no device).
    """
    trace = _trace(paths_or_trace)
    vms = [vm] if vm is not None else trace.vms
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
    runstates = runstate_after(s)
    pending = pending_after(s)
    frame = pd.DataFrame({
        "vm": vm,
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
    frame["runstate"] = [runstates[r] if r >= 0 else None for r in at_row]
    pend = np.where(at_row >= 0, pending[np.maximum(at_row, 0)], NULL)
    frame["pending"] = _int_array(pend, pend >= 0)
    shown = devices_of(s.take(rows)) if len(rows) else []
    for code in shown:
        name = s.device_names[code]
        if device is not None and name != device:
            continue
        values = iostatus_after(s, code)
        v = np.where(at_row >= 0, values[np.maximum(at_row, 0)], NULL) if len(values) else np.full(n, NULL)
        frame[IOSTATUS_PREFIX + name] = [IOSTATUSES[c] if c >= 0 else None for c in v]
    frame["findings"] = _marks(s, data, vm, seq)
    return frame


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
    found = run(batch, RULE_IDS) + integrity_findings(f for f in data.integrity if f.vm == vm)
    by_seq: dict[int, list[str]] = {}
    for f in found:
        for q in f.seq:
            by_seq.setdefault(q, [])
            if f.rule not in by_seq[q]:
                by_seq[q].append(f.rule)
    return [",".join(by_seq.get(int(q), [])) for q in seq]


def steps_around(
    paths_or_trace: Trace | PathArg | Sequence[PathArg], vm: str, seq: int, context: int = 10
) -> pd.DataFrame:
    """The replay view of `context` steps before and after step `seq` of `vm` (by position in
    the VM's replay order, so gaps in seq do not shrink the window)."""
    trace = _trace(paths_or_trace)
    seqs = _vm_seqs(trace, vm)
    if not len(seqs):
        return replay(trace, vm=vm, from_seq=seq, to_seq=seq)
    p = int(np.searchsorted(seqs, seq))
    lo = seqs[max(p - context, 0)]
    hi = seqs[min(p + context, len(seqs) - 1)]
    return replay(trace, vm=vm, from_seq=int(lo), to_seq=int(hi))


def _vm_seqs(trace: Trace, vm: str) -> np.ndarray:
    def make() -> np.ndarray:
        t = trace.table(vm=vm, columns=["vm", "seq"])
        return np.unique(t.column("seq").to_numpy())

    return _cached(("seqs", id(trace), vm), make, trace)


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
