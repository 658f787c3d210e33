"""The vectorized forms agree with a plain step-by-step reading of docs/rules-language.md §3 on
generated traces: random events A/B/C/D, on two devices or none, with tied and spread
timestamps, over vm and device scope. The reference below is deliberately naive (loops over
rows); it is the definition, the engine is the fast way to compute it."""

from __future__ import annotations

import os

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from analyzer import check
from tracer import tracedir
from tracer.schema import from_pylist

MS = 1_000_000

step = st.tuples(st.sampled_from("ABCD"), st.sampled_from(["d0", "d1", None]),
                 st.sampled_from([0, 0, 1, 3, 10]))


def build(steps) -> list[dict]:
    rows, ts = [], 0
    for i, (name, dev, gap) in enumerate(steps):
        ts += gap * MS
        rows.append({"seq": i, "ts_ns": ts, "vm": "vm0", "thread": "main", "thread_kind": "main",
                     "kind": "qmp_event", "name": name, "device": dev})
    return rows


def in_scope(scope: str, row: dict, key) -> bool:
    return scope == "vm" or row["device"] == key or row["device"] is None


def ref_precedes(rows, scope, require_since):
    out = []
    for i, r in enumerate(rows):
        if r["name"] != "B" or (scope == "device" and r["device"] is None):
            continue
        key = r["device"]
        la = max((j for j in range(i) if rows[j]["name"] == "A" and in_scope(scope, rows[j], key)), default=-1)
        lc = max((j for j in range(i) if rows[j]["name"] == "C" and in_scope(scope, rows[j], key)), default=-1)
        if require_since and lc < 0:
            continue
        if la < 0 or la < lc:
            later = next((j for j in range(i + 1, len(rows)) if rows[j]["name"] == "A"
                          and in_scope(scope, rows[j], key)), -1)
            out.append(("error", tuple(sorted({i, later} - {-1}))))
    return out


def ref_responds(rows, scope, within):
    out = []
    end_ts = rows[-1]["ts_ns"]
    for i, r in enumerate(rows):
        if r["name"] != "A" or (scope == "device" and r["device"] is None):
            continue
        key = r["device"]
        after = [j for j in range(i + 1, len(rows)) if in_scope(scope, rows[j], key)]
        nb = next((j for j in after if rows[j]["name"] == "B"), -1)
        nc = next((j for j in after if rows[j]["name"] == "C"), -1)
        deadline = r["ts_ns"] + within
        if nc >= 0 and (nb < 0 or nc < nb):
            out.append(("error", (i, nc)))
        elif nb >= 0 and rows[nb]["ts_ns"] > deadline:
            out.append(("error", (i, nb)))
        elif nb < 0 and nc < 0:
            out.append(("error" if end_ts > deadline else "warning", (i,)))
    return out


def ref_absent(rows, scope):
    out = []
    for i, r in enumerate(rows):
        if r["name"] != "A":
            continue
        if scope == "vm":
            keys = [None]
        elif r["device"] is not None:
            keys = [r["device"]]
        else:
            keys = sorted({x["device"] for x in rows if x["name"] == "B" and x["device"] is not None})
        for key in keys:
            last = None
            for j in range(i):
                if rows[j]["name"] in ("B", "C") and in_scope(scope, rows[j], key):
                    last = (rows[j]["name"], j)
            if last is not None and last[0] == "B":
                out.append(("error", tuple(sorted({i, last[1]}))))
    return out


def ref_count(rows, scope, more_than, within):
    out = []
    keys = [None] if scope == "vm" else sorted({r["device"] for r in rows if r["device"] is not None})
    for key in keys:
        idx = [i for i, r in enumerate(rows) if r["name"] == "A" and (scope == "vm" or r["device"] == key)]
        viol = [j >= more_than and rows[idx[j]]["ts_ns"] - rows[idx[j - more_than]]["ts_ns"] <= within
                for j in range(len(idx))]
        for j, v in enumerate(viol):
            if v and not (j > 0 and viol[j - 1]):
                out.append(("warning", tuple(idx[j - more_than: j + 1])))
    return out


RULES = {
    "precedes": "precedes: {first: {event: A}, then: {event: B}, since: {event: C}%s}",
    "responds": "responds: {trigger: {event: A}, response: {event: B}, before: {event: C}, within: 5ms}",
    "absent": "absent: {what: {event: A}, after: {event: B}, until: {event: C}}",
    "count": "count_in_window: {what: {event: A}, more_than: 2, within: 4ms}",
}


def run(tmp_path, rows, scope, form, require_since=False):
    body = RULES[form] % (", require_since: true" if require_since else "") if form == "precedes" else RULES[form]
    severity = "warning" if form == "count" else "error"
    path = tmp_path / "r.yaml"
    path.write_text(f"rules:\n  - id: r\n    severity: {severity}\n    title: t\n    explanation: e\n"
                    f"    scope: {scope}\n    {body}\n", encoding="utf-8")
    trace = tmp_path / "t.parquet"
    tracedir.write_table(from_pylist(rows, "sim"), trace)
    result = check([str(trace)], rule_files=[str(path)], only_files=True)
    return sorted((f.severity, f.seq) for f in result.findings)


@settings(max_examples=int(os.environ.get("BLKREPLAY_EXAMPLES", "40")),
          derandomize=os.environ.get("CI") == "true", deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=30), scope=st.sampled_from(["vm", "device"]),
       require_since=st.booleans())
def test_forms_agree_with_the_reference(tmp_path, steps, scope, require_since):
    rows = build(steps)
    assert run(tmp_path, rows, scope, "precedes", require_since) == sorted(ref_precedes(rows, scope, require_since))
    assert run(tmp_path, rows, scope, "responds") == sorted(ref_responds(rows, scope, 5 * MS))
    assert run(tmp_path, rows, scope, "absent") == sorted(ref_absent(rows, scope))
    assert run(tmp_path, rows, scope, "count") == sorted(ref_count(rows, scope, 2, 4 * MS))
