"""The replay view around every listed finding, computed in one vectorized pass.

A report shows each finding with the steps around it and the reconstructed state (run state,
pending stop request, each device's io-status) — the view of ``blkreplay replay --around``
(:func:`analyzer.replay.steps_around`). Calling that once per finding would re-read the VM for
every window, which a report of a million-step trace with hundreds of listed findings cannot
afford; this module computes the same columns for all windows at once from the steps the
report has already read: the shown values from the report's frame, the state after each shown
step from `analyzer.state` over the same rows as a `Steps` batch (every row, position for
position: :func:`analyzer.report.source.as_steps`). ``tests/analyzer/report/test_context.py``
holds it equal to ``steps_around`` on real simulated traces.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analyzer.replay import IOSTATUS_PREFIX
from analyzer.report.document import ContextWindow
from analyzer.result import Finding
from analyzer.state import devices, iostatus, iostatus_names, pending, run_state, runstate_names
from analyzer.steps import Steps
from analyzer.timefmt import format_ts

#: Steps shown before and after each evidence step of a finding.
CONTEXT_STEPS = 4

#: Step columns the view needs (a report reads these once).
VIEW_COLUMNS: tuple[str, ...] = (
    "vm", "seq", "ts_ns", "thread", "thread_kind", "kind", "name", "device", "op", "errno",
    "action", "error_id", "iostatus", "runstate", "prev_runstate", "cmd_seq",
)


def _obj(values: np.ndarray) -> np.ndarray:
    """Object array with None for missing values."""
    out = np.asarray(values, dtype=object)
    return np.where(pd.isna(out), None, out)


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


def _in_batch(at: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """Positions in the batch of the state after steps `at`: the last batch row at or before
    each (`rows`: the steps' positions of the batch rows; None when the batch holds them all)."""
    return at if rows is None else np.searchsorted(rows, at, side="right") - 1


def replay_view(
    steps: pd.DataFrame, batch: Steps, at: np.ndarray, marks: dict[str, dict[int, str]],
    rows: np.ndarray | None = None,
) -> pd.DataFrame:
    """The replay view of rows `at` (sorted positions) of the (vm, seq)-sorted `steps`, whose
    rows `batch` holds as a `Steps` batch: all of them, or (`rows`, sorted positions in
    `steps`, each VM's first included) those of :func:`analyzer.report.source.state_rows`.
    `marks`: vm -> seq -> comma-separated rule ids of the findings there. One
    ``iostatus:<device>`` column per device of the VMs shown, by name (None in the rows of a
    VM without that device)."""
    col = {c: _at(steps, c, at) for c in VIEW_COLUMNS}
    seq = col["seq"].astype(np.int64)
    vm = _obj(col["vm"]).astype(str)
    shown = at
    at = _in_batch(at, rows)
    pend = pending(batch, at)
    value = np.where(
        pd.notna(col["runstate"]),
        np.where(pd.notna(col["prev_runstate"]),
                 np.char.add(np.char.add(np.asarray(col["prev_runstate"], dtype=str), " -> "),
                             np.asarray(col["runstate"], dtype=str)),
                 col["runstate"]),
        col["iostatus"],
    )
    frame = pd.DataFrame({
        "vm": vm,
        "seq": seq,
        "ts_ns": col["ts_ns"].astype(np.int64),
        **{c: _obj(col[c]) for c in ("thread", "thread_kind", "kind", "name", "device", "op")},
        "errno": pd.array(_obj(col["errno"]), dtype="Int64"),
        "action": _obj(col["action"]),
        "error_id": pd.array(_obj(col["error_id"]), dtype="Int64"),
        "value": _obj(value),
        "runstate": runstate_names(run_state(batch, at)),
        "pending": pd.arrays.IntegerArray(np.where(pend >= 0, pend, 0), pend < 0),
        "findings": [marks.get(v, {}).get(int(q), "") for v, q in zip(vm, seq, strict=True)],
    })

    # Each device's io-status after each row, for the (position, device) pairs of every VM.
    by_vm = devices(batch)
    vm_at = batch.vm[at]
    pos, dev = [], []
    for code in np.unique(vm_at).tolist():
        here = np.flatnonzero(vm_at == code)
        for d in by_vm.get(code, []):
            pos.append(here)
            dev.append(np.full(len(here), d, dtype=np.int64))
    if pos:
        p, d = np.concatenate(pos), np.concatenate(dev)
        values = iostatus_names(iostatus(batch, d, at[p]))
        for code in sorted(set(d.tolist()), key=lambda c: batch.device_names[c]):
            column = np.full(len(shown), None, dtype=object)
            mine = d == code
            column[p[mine]] = values[mine]
            frame[IOSTATUS_PREFIX + batch.device_names[code]] = column
    return frame


def _marks(findings: Sequence[Finding], rule_order: Sequence[str]) -> dict[str, dict[int, str]]:
    """vm -> seq -> rule ids (catalogue order) of the findings whose evidence names the step."""
    rank = {r: i for i, r in enumerate(rule_order)}
    by: dict[str, dict[int, list[str]]] = {}
    for f in findings:
        for q in f.seq:
            ids = by.setdefault(f.vm_label, {}).setdefault(int(q), [])
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


def _window(view: pd.DataFrame, finding: Finding, pos: np.ndarray,
            devices: Sequence[str]) -> ContextWindow:
    """The rows at positions `pos` of a VM, laid out as `blkreplay replay` shows them: step and
    detail condensed, then the state after each step (run state, io-status of each of the VM's
    `devices` columns, the pending stop request) and the rules whose findings name the step."""
    columns = ("seq", "time", "thread", "step", "device", "detail", "runstate",
               *[f"iostatus {c[len(IOSTATUS_PREFIX):]}" for c in devices], "pending", "findings")
    rows = []
    for rec in view.to_dict("records"):
        pending = _text(rec["pending"])
        rows.append((
            str(rec["seq"]), format_ts(int(rec["ts_ns"])), _text(rec["thread"]),
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
    batch: Steps,
    listed: Sequence[Finding],
    all_findings: Sequence[Finding],
    rule_order: Sequence[str],
    context: int = CONTEXT_STEPS,
    rows: np.ndarray | None = None,
) -> list[ContextWindow | None]:
    """A window of `context` steps around each evidence step of every finding in `listed`, with
    the replayed state. `steps`: the VIEW_COLUMNS of the trace sorted by (vm, seq); `batch`:
    the same rows as a `Steps` batch (:func:`analyzer.report.source.as_steps`), or only the
    rows at positions `rows` (:func:`analyzer.report.source.state_rows`)."""
    out: list[ContextWindow | None] = [None] * len(listed)
    if steps.empty or not listed:
        return out
    names = _at(steps, "vm", np.arange(len(steps))) if not isinstance(
        steps["vm"].dtype, pd.CategoricalDtype) else None
    if names is None:
        codes = steps["vm"].cat.codes.to_numpy()
        cats = [str(c) for c in steps["vm"].cat.categories]
    else:
        codes, uniques = pd.factorize(names)
        cats = [str(u) for u in uniques]
    change = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[change[1:], len(codes)]
    blocks = {cats[codes[s]]: (int(s), int(e)) for s, e in zip(change, ends, strict=True)}
    seq_all = steps["seq"].to_numpy(dtype=np.int64)
    by_vm: dict[str, list[int]] = {}
    for i, f in enumerate(listed):
        shown_vm = f.vm_label  # the frame's vm: its identity's label
        if f.seq and shown_vm in blocks:
            by_vm.setdefault(shown_vm, []).append(i)
    # The union of every VM's windows, viewed at once; each window is a selection of it.
    shown: list[np.ndarray] = []
    spans: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    offset = 0
    for vm, idx in sorted(by_vm.items()):
        start, end = blocks[vm]
        vm_seq = seq_all[start:end]
        windows = {}
        for i in idx:
            at = np.searchsorted(vm_seq, np.asarray(sorted(set(listed[i].seq)), dtype=np.int64))
            windows[i] = np.unique(np.concatenate(
                [np.arange(max(a - context, 0), min(a + context + 1, end - start)) for a in at]))
        union = np.unique(np.concatenate(list(windows.values())))
        for i, pos in windows.items():
            spans[i] = (pos, offset + np.searchsorted(union, pos))
        shown.append(union + start)
        offset += len(union)
    if not shown:  # no listed finding names a step (recording-intact, trace-truncated)
        return out
    view = replay_view(steps, batch, np.concatenate(shown), _marks(all_findings, rule_order), rows)
    by_device = devices(batch)
    for i, (pos, at) in spans.items():
        vm_code = batch.vm_names.index(listed[i].vm_label)
        columns = [IOSTATUS_PREFIX + batch.device_names[d] for d in by_device.get(vm_code, [])]
        out[i] = _window(view.iloc[at].reset_index(drop=True), listed[i], pos, columns)
    return out
