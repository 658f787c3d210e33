"""The replay view around every listed finding, computed in one vectorized pass per VM.

A report shows each finding with the steps around it and the reconstructed state (run state,
pending stop request, each device's io-status) — the view of ``blkreplay replay --around``
(:func:`analyzer.replay.steps_around`). Calling that once per finding would re-read the VM for
every window, which a report of a million-step trace with hundreds of listed findings cannot
afford; this module computes the same columns for all windows of a VM at once from the steps
the report has already read, with binary searches over the positions of the few state-changing
rows. ``tests/analyzer/test_report_context.py`` holds it equal to ``steps_around`` on real
simulated traces.

The state rules mirror :mod:`analyzer.replay` (docs/rules.md §2): run state after the last
`runstate` row (before the first, that row's prev_runstate; with no `runstate` rows at all,
"running"/"stopped" from the last RESUME/STOP); the pending request is the error id of the last
`vmstop_request` unless a consumption (`vm_stop`/`vm_start` with an error id) came after it; a
device's io-status is replayed from `iostatus_set`/`iostatus_reset` rows (ok before any), or,
in traces without them, the last value a `query-block` reply showed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analyzer.report.model import ContextWindow
from analyzer.result import Finding

#: Steps shown before and after each evidence step of a finding.
CONTEXT_STEPS = 4

#: Step columns the view needs (a report reads these once).
VIEW_COLUMNS: tuple[str, ...] = (
    "vm", "seq", "ts_ns", "thread", "thread_kind", "kind", "name", "device", "op", "errno",
    "action", "error_id", "iostatus", "runstate", "prev_runstate", "cmd_seq",
)

#: Columns of the view, as in analyzer.replay.REPLAY_COLUMNS, then ``iostatus:<device>``.
REPLAY_COLUMNS: tuple[str, ...] = (
    "vm", "seq", "ts_ns", "thread", "thread_kind", "kind", "name", "device", "op", "errno",
    "action", "error_id", "value", "runstate", "pending", "findings",
)
IOSTATUS_PREFIX = "iostatus:"



def _obj(values: np.ndarray) -> np.ndarray:
    """Object array with None for missing values."""
    out = np.asarray(values, dtype=object)
    return np.where(pd.isna(out), None, out)


class _Masks:
    """Row positions (into the whole sorted steps frame) of the rows that change state."""

    def __init__(self, steps: pd.DataFrame) -> None:
        kind = steps["kind"]
        name = steps["name"]
        eid = steps["error_id"].notna().to_numpy()
        self.vm_codes, self.vm_names = pd.factorize(steps["vm"], sort=False)
        self.runstate = np.flatnonzero((kind == "runstate").to_numpy())
        event = (kind == "qmp_event").to_numpy()
        self.stop_resume = np.flatnonzero(event & name.isin(["STOP", "RESUME"]).to_numpy())
        request = (kind == "vmstop_request").to_numpy() & eid
        consumption = kind.isin(["vm_stop", "vm_start"]).to_numpy() & eid
        self.slot = np.flatnonzero(request | consumption)
        self.is_request = request
        self.iostatus = np.flatnonzero(kind.isin(["iostatus_set", "iostatus_reset"]).to_numpy())
        self.reply_block = np.flatnonzero(
            ((kind == "qmp_reply").to_numpy() & _reply_names(steps).eq("query-block").to_numpy())
            & steps["iostatus"].notna().to_numpy()
        )


def _reply_names(steps: pd.DataFrame) -> pd.Series:
    """`name` of every row, a qmp_reply without one taking its command's (by cmd_seq, same VM)."""
    name = steps["name"].astype(object)
    fill = (steps["kind"] == "qmp_reply") & steps["name"].isna() & steps["cmd_seq"].notna()
    if not fill.any():
        return name
    cmds = steps.loc[steps["kind"] == "qmp_command", ["vm", "seq", "name"]].astype({"vm": object})
    want = steps.loc[fill, ["vm", "cmd_seq"]].astype({"vm": object, "cmd_seq": "int64"})
    got = want.merge(cmds.rename(columns={"seq": "cmd_seq"}), on=["vm", "cmd_seq"], how="left")
    name = name.copy()
    name[fill.to_numpy()] = got["name"].to_numpy()
    return name


def _last(positions: np.ndarray, at: np.ndarray, start: int) -> np.ndarray:
    """Per query position in `at`: the last of `positions` at or before it and not before
    `start` (the VM's first row), else -1."""
    i = np.searchsorted(positions, at, side="right") - 1
    found = np.where(i >= 0, positions[np.maximum(i, 0)] if len(positions) else -1, -1)
    return np.where(found >= start, found, -1)


def _at(steps: pd.DataFrame, column: str, rows: np.ndarray) -> np.ndarray:
    """Values of `column` at positions `rows`, strings as objects with None for null; reads
    only those rows (a categorical is indexed through its codes)."""
    if column not in steps:
        return np.full(len(rows), None, dtype=object)
    series = steps[column]
    if isinstance(series.dtype, pd.CategoricalDtype):
        cats = np.asarray(series.cat.categories, dtype=object)
        codes = series.cat.codes.to_numpy()[rows]
        return np.where(codes >= 0, cats[np.maximum(codes, 0)] if len(cats) else None, None)
    return _obj(series.iloc[rows].to_numpy()) if len(rows) else np.empty(0, dtype=object)


def _any_in(positions: np.ndarray, start: int, end: int) -> bool:
    return bool(np.searchsorted(positions, end) > np.searchsorted(positions, start))


def replay_view(
    steps: pd.DataFrame, at: np.ndarray, start: int, end: int, marks: dict[int, str],
    masks: _Masks | None = None,
) -> pd.DataFrame:
    """The replay view of rows `at` (sorted positions inside one VM's block [start, end) of the
    (vm, seq)-sorted `steps`). `marks`: seq -> comma-separated rule ids of findings there."""
    m = masks or _Masks(steps)
    col = {c: _at(steps, c, at) for c in VIEW_COLUMNS}
    seq = col["seq"].astype(np.int64)

    # Run state after each row.
    if _any_in(m.runstate, start, end):
        last = _last(m.runstate, at, start)
        first = m.runstate[np.searchsorted(m.runstate, start)]
        before = _at(steps, "prev_runstate", np.array([first]))[0]
        state = np.where(last >= 0, _at(steps, "runstate", np.maximum(last, 0)), before)
    else:
        last = _last(m.stop_resume, at, start)
        resumed = _at(steps, "name", np.maximum(last, 0)) == "RESUME"
        state = np.where(last < 0, None, np.where(resumed, "running", "stopped"))

    # The stop request waiting in the single slot.
    last = _last(m.slot, at, start)
    waiting = (last >= 0) & m.is_request[np.maximum(last, 0)]
    eid = _at(steps, "error_id", np.maximum(last, 0))
    pending = pd.array(np.where(waiting, eid, None), dtype="Int64")

    value = np.where(
        pd.notna(col["runstate"]),
        np.where(pd.notna(col["prev_runstate"]),
                 np.char.add(np.char.add(np.asarray(col["prev_runstate"], dtype=str), " -> "),
                             np.asarray(col["runstate"], dtype=str)),
                 col["runstate"]),
        col["iostatus"],
    )
    frame = pd.DataFrame({
        "vm": _obj(col["vm"]).astype(str),
        "seq": seq,
        "ts_ns": col["ts_ns"].astype(np.int64),
        **{c: _obj(col[c]) for c in ("thread", "thread_kind", "kind", "name", "device", "op")},
        "errno": pd.array(_obj(col["errno"]), dtype="Int64"),
        "action": _obj(col["action"]),
        "error_id": pd.array(_obj(col["error_id"]), dtype="Int64"),
        "value": _obj(value),
        "runstate": _obj(state),
        "pending": pending,
        "findings": [marks.get(int(q), "") for q in seq],
    })

    # Each device's io-status after each row.
    io_rows = m.iostatus[(m.iostatus >= start) & (m.iostatus < end)]
    seen_rows = m.reply_block[(m.reply_block >= start) & (m.reply_block < end)]
    replayed = len(io_rows) > 0
    io_dev = _at(steps, "device", io_rows)
    seen_dev = _at(steps, "device", seen_rows)
    names = {d for d in io_dev if d is not None} | {d for d in seen_dev if d is not None}
    for dev in sorted(names):
        if replayed:
            last = _last(io_rows[io_dev == dev], at, start)
            reset = _at(steps, "kind", np.maximum(last, 0)) == "iostatus_reset"
            values = np.where((last < 0) | reset, "ok", _at(steps, "iostatus", np.maximum(last, 0)))
        else:
            last = _last(seen_rows[seen_dev == dev], at, start)
            values = np.where(last < 0, None, _at(steps, "iostatus", np.maximum(last, 0)))
        frame[IOSTATUS_PREFIX + str(dev)] = _obj(values)
    return frame


def _marks(findings: Sequence[Finding], rule_order: Sequence[str]) -> dict[str, dict[int, str]]:
    """vm -> seq -> rule ids (catalogue order) of the findings whose evidence names the step."""
    rank = {r: i for i, r in enumerate(rule_order)}
    by: dict[str, dict[int, list[str]]] = {}
    for f in findings:
        for q in f.seq:
            ids = by.setdefault(f.vm, {}).setdefault(int(q), [])
            if f.rule not in ids:
                ids.append(f.rule)
    return {vm: {q: ",".join(sorted(ids, key=lambda r: rank.get(r, len(rank)))) for q, ids in seqs.items()}
            for vm, seqs in by.items()}


def _text(value: object) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    return str(value.item() if hasattr(value, "item") else value)


def _step(kind: str | None, name: str | None) -> str:
    if kind == "qmp_event" and name:
        return name
    return f"{kind} {name}" if name else str(kind)


def _detail(rec: dict) -> str | None:
    parts = [f"{k}={v}" for k in ("op", "errno", "action") if (v := _text(rec[k])) is not None]
    if (v := _text(rec["value"])) is not None:
        parts.append(v)
    if (eid := _text(rec["error_id"])) is not None:
        parts.append(f"E{eid}")
    return " ".join(parts) or None


def _window(view: pd.DataFrame, finding: Finding, pos: np.ndarray) -> ContextWindow:
    """The rows at positions `pos` of a VM, laid out as `blkreplay replay` shows them: step and
    detail condensed, then the state after each step (run state, io-status per device, the
    pending stop request) and the rules whose findings name the step."""
    devices = [c for c in view.columns if c.startswith(IOSTATUS_PREFIX)]
    columns = ("seq", "ts_ns", "thread", "step", "device", "detail", "runstate",
               *[f"iostatus {c[len(IOSTATUS_PREFIX):]}" for c in devices], "pending", "findings")
    rows = []
    for rec in view.to_dict("records"):
        pending = _text(rec["pending"])
        rows.append((
            str(rec["seq"]), str(rec["ts_ns"]), _text(rec["thread"]),
            _step(_text(rec["kind"]), _text(rec["name"])), _text(rec["device"]), _detail(rec),
            _text(rec["runstate"]) or "?", *[_text(rec[c]) for c in devices],
            f"E{pending}" if pending is not None else None, _text(rec["findings"]) or None,
        ))
    seqs = view["seq"].to_numpy(dtype=np.int64)
    evidence = np.isin(seqs, np.asarray(finding.seq, dtype=np.int64))
    gap = np.r_[False, np.diff(pos) > 1] if len(pos) else np.zeros(0, dtype=bool)
    return ContextWindow(columns, tuple(rows), tuple(bool(b) for b in evidence),
                         tuple(bool(b) for b in gap))


def context_windows(
    steps: pd.DataFrame,
    listed: Sequence[Finding],
    all_findings: Sequence[Finding],
    rule_order: Sequence[str],
    context: int = CONTEXT_STEPS,
) -> list[ContextWindow | None]:
    """A window of `context` steps around each evidence step of every finding in `listed`, with
    the replayed state. `steps`: the VIEW_COLUMNS of the trace sorted by (vm, seq)."""
    out: list[ContextWindow | None] = [None] * len(listed)
    if steps.empty or not listed:
        return out
    masks = _Masks(steps)
    codes = masks.vm_codes
    change = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[change[1:], len(codes)]
    blocks = {str(masks.vm_names[codes[s]]): (int(s), int(e)) for s, e in zip(change, ends, strict=True)}
    marks = _marks(all_findings, rule_order)
    seq_all = steps["seq"].to_numpy(dtype=np.int64)
    by_vm: dict[str, list[int]] = {}
    for i, f in enumerate(listed):
        if f.seq and f.vm in blocks:
            by_vm.setdefault(f.vm, []).append(i)
    for vm, idx in sorted(by_vm.items()):
        start, end = blocks[vm]
        vm_seq = seq_all[start:end]
        spans = {}
        for i in idx:
            at = np.searchsorted(vm_seq, np.asarray(sorted(set(listed[i].seq)), dtype=np.int64))
            pos = np.unique(np.concatenate(
                [np.arange(max(a - context, 0), min(a + context + 1, end - start)) for a in at]))
            spans[i] = pos
        union = np.unique(np.concatenate(list(spans.values())))
        view = replay_view(steps, union + start, start, end, marks.get(vm, {}), masks)
        for i, pos in spans.items():
            rows = np.searchsorted(union, pos)
            out[i] = _window(view.iloc[rows].reset_index(drop=True), listed[i], pos)
    return out
