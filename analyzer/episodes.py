"""The episodes table: one row per error action, with the seq and ts of each milestone.

An episode follows one error from the failed request to the VM running again: error action,
io-status set, BLOCK_IO_ERROR, stop request, its consumption (`vm_stop`), STOP, cont, RESUME
and the io-status reset, with the latencies between them. Where a source has error ids, one
episode per (VM, error id), the stop milestones those of the consumption that served it
(`analyzer.state.service`); where it has none (QMP-only imports), one per BLOCK_IO_ERROR,
correlated with the device's last failed request and the STOP / RESUME that follow it.

`analyzer.check` builds the table per batch; the statistics of a report are computed from it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analyzer import identity
from analyzer.state import service
from analyzer.steps import ACT, NULL, Steps

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
    # The VM's host and run (`analyzer.identity`), None where the trace names none: vm0 of two
    # hosts is two VMs.
    "host",
    "run",
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
        return empty_episodes()
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    for col in EPISODE_COLUMNS:
        if col not in _STRING_COLUMNS:
            frame[col] = frame[col].astype("Int64")
    first_seq = frame[[f"seq_{m}" for m in MILESTONES]].min(axis=1)
    frame = frame.assign(_first=first_seq, _run=frame["run"].fillna(""), _host=frame["host"].fillna(""))
    frame = frame.sort_values(["_run", "_host", "vm", "_first", "error_id"], kind="mergesort")
    return frame.drop(columns=["_first", "_run", "_host"]).reset_index(drop=True)[list(EPISODE_COLUMNS)]


def _int_array(values: np.ndarray, valid: np.ndarray) -> pd.arrays.IntegerArray:
    """A nullable Int64 array: `values` where `valid`, NA elsewhere."""
    values = np.asarray(values, dtype=np.int64)
    return pd.arrays.IntegerArray(np.where(valid, values, 0), ~np.asarray(valid, dtype=bool))


_STRING_COLUMNS = ("vm", "host", "run", "device", "op", "policy", "action")


def empty_episodes() -> pd.DataFrame:
    """The episodes table without rows (columns: EPISODE_COLUMNS, with their dtypes)."""
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
        return s.texts(col, detail)

    ints = _int_array

    d = np.maximum(detail, 0)
    who = [identity.split(k) for k in s.vm_names]  # per VM code, not per row
    vm = s.vm[anchor]
    data: dict[str, object] = {
        "vm": [who[int(v)].vm for v in vm],
        "host": [who[int(v)].host for v in vm],
        "run": [who[int(v)].run for v in vm],
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


__all__ = ["EPISODE_COLUMNS", "LATENCIES", "MILESTONES", "empty_episodes", "episodes"]
