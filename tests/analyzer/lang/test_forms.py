"""The semantics of each form (docs/rules-language.md §3), on small hand-written traces:
finite-trace ends, ties, scopes, evidence and messages as a user sees them."""

from __future__ import annotations

import textwrap

import pytest

from analyzer import check
from tracer import tracedir
from tracer.schema import from_pylist

S = 1_000_000_000


def rows(*steps: tuple) -> list[dict]:
    """(ts_s, kind, name_or_None, extra-dict) -> trace rows of vm0, seq in order."""
    out = []
    for i, (ts, kind, name, *extra) in enumerate(steps):
        r = {"seq": i, "ts_ns": int(ts * S), "vm": "vm0", "thread": "main", "thread_kind": "main",
             "kind": kind}
        if name:
            r["name"] = name
        for e in extra:
            r.update(e)
        out.append(r)
    return out


def run(rule: str, trace: list[dict], tmp_path, *, vm_rows: list[dict] | None = None):
    path = tmp_path / "rules.yaml"
    body = textwrap.indent(textwrap.dedent(rule).strip("\n"), "    ")
    path.write_text("version: 1\nrules:\n  - id: r\n    severity: error\n    title: t\n"
                    "    explanation: e\n" + body + "\n", encoding="utf-8")
    table = from_pylist(trace + (vm_rows or []), "sim")
    out = tmp_path / "t.parquet"
    tracedir.write_table(table, out)
    return check([str(out)], rule_files=[str(path)], only_files=True)


def ev(ts, name, **cols):
    return (ts, "qmp_event", name, cols)


# ---------------------------------------------------------------------------------- precedes

PRECEDES = """
scope: vm
precedes:
  first: {command: cont}
  then: {event: RESUME}
  since: {event: STOP}
message: "{row.describe}{if since} since {since.describe}{end}{if later}, later {later.describe}{end}"
"""


def test_precedes_since_the_last_reset(tmp_path):
    trace = rows((0, "qmp_command", "cont"), ev(1, "RESUME"), ev(2, "STOP"), ev(3, "RESUME"),
                 (4, "qmp_command", "cont"), ev(5, "STOP"), (6, "qmp_command", "cont"), ev(7, "RESUME"))
    r = run(PRECEDES, trace, tmp_path)
    assert [(f.seq, f.message) for f in r.findings] == [
        ((3, 4), "RESUME (seq 3) since STOP (seq 2), later qmp_command cont (seq 4)")]


def test_precedes_from_the_start_unless_require_since(tmp_path):
    trace = rows(ev(0, "RESUME"), ev(1, "STOP"), (2, "qmp_command", "cont"), ev(3, "RESUME"))
    assert [f.seq for f in run(PRECEDES, trace, tmp_path).findings] == [(0, 2)]
    strict = PRECEDES.replace("  since: {event: STOP}", "  since: {event: STOP}\n  require_since: true")
    assert run(strict, trace, tmp_path).findings == []


def test_precedes_in_error_id_scope_ignores_rows_without_an_id(tmp_path):
    rule = "scope: error_id\nprecedes:\n  first: {kind: iostatus_set}\n  then: {event: BLOCK_IO_ERROR}\n"
    trace = rows((0, "iostatus_set", None, {"error_id": 1, "device": "d0", "iostatus": "failed"}),
                 ev(1, "BLOCK_IO_ERROR", error_id=1, device="d0"),
                 ev(2, "BLOCK_IO_ERROR", error_id=2, device="d0"),
                 (3, "iostatus_set", None, {"error_id": 2, "device": "d0", "iostatus": "failed"}),
                 ev(4, "BLOCK_IO_ERROR", device="d0"))
    r = run(rule, trace, tmp_path)
    assert [(f.seq, f.error_id, f.device) for f in r.findings] == [((2, 3), 2, "d0")]


# ---------------------------------------------------------------------------------- responds

RESPONDS = """
scope: vm
responds:
  trigger: {event: BLOCK_JOB_ERROR}
  response: {event: [BLOCK_JOB_CANCELLED, BLOCK_JOB_COMPLETED]}
  within: 30s
"""


def test_responds_within_a_window_inclusive(tmp_path):
    trace = rows(ev(0, "BLOCK_JOB_ERROR"), ev(30, "BLOCK_JOB_COMPLETED"),
                 ev(40, "BLOCK_JOB_ERROR"), ev(70.5, "BLOCK_JOB_CANCELLED"), ev(200, "STOP"))
    r = run(RESPONDS, trace, tmp_path)
    assert [(f.seq, f.severity) for f in r.findings] == [((2, 3), "error")]
    assert r.findings[0].message == ("BLOCK_JOB_ERROR (seq 2) got no response in time: it came "
                                     "only at BLOCK_JOB_CANCELLED (seq 3)")


def test_responds_trace_end_before_the_window_is_a_warning(tmp_path):
    trace = rows(ev(0, "BLOCK_JOB_ERROR"), ev(10, "STOP"))
    r = run(RESPONDS, trace, tmp_path)
    assert [(f.seq, f.severity) for f in r.findings] == [((0,), "warning")]
    assert r.verdict == "pass"
    assert r.findings[0].message == "BLOCK_JOB_ERROR (seq 0) was still waiting for its response when the trace ended"
    # The trace goes on past the window: then it is known that no response came in time.
    r = run(RESPONDS, rows(ev(0, "BLOCK_JOB_ERROR"), ev(31, "STOP")), tmp_path)
    assert [(f.seq, f.severity) for f in r.findings] == [((0,), "error")]


def test_responds_before_a_cutoff(tmp_path):
    rule = "scope: vm\nresponds:\n  trigger: {event: BLOCK_IO_ERROR}\n  response: {event: STOP}\n  before: {event: RESUME}\n"
    trace = rows(ev(0, "BLOCK_IO_ERROR"), ev(1, "STOP"), ev(2, "BLOCK_IO_ERROR"), ev(3, "RESUME"),
                 ev(4, "STOP"), ev(5, "BLOCK_IO_ERROR"))
    r = run(rule, trace, tmp_path)
    assert [(f.seq, f.severity) for f in r.findings] == [((2, 3), "error"), ((5,), "warning")]


# ---------------------------------------------------------------------------------- absent

ABSENT = """
scope: device
absent:
  what: {event: RESUME}
  after: {kind: iostatus_set, iostatus: [failed, nospace]}
  until: {kind: iostatus_reset}
message: "{row.describe} while {after.device} is {after.iostatus}"
"""


def test_absent_vm_wide_rows_count_in_every_device_scope(tmp_path):
    trace = rows((0, "iostatus_set", None, {"device": "d0", "iostatus": "failed"}),
                 (1, "iostatus_set", None, {"device": "d1", "iostatus": "nospace"}),
                 (2, "iostatus_reset", None, {"device": "d0", "iostatus": "ok"}),
                 ev(3, "RESUME"),
                 (4, "iostatus_reset", None, {"device": "d1", "iostatus": "ok"}),
                 ev(5, "RESUME"))
    r = run(ABSENT, trace, tmp_path)
    assert [(f.seq, f.device, f.message) for f in r.findings] == [
        ((1, 3), "d1", "RESUME (seq 3) while d1 is nospace")]


def test_absent_without_an_interval_forbids_every_row(tmp_path):
    rule = "scope: vm\nabsent:\n  what: {kind: vm_stop, thread_kind: iothread}\n"
    trace = rows((0, "vm_stop", None), (1, "vm_stop", None, {"thread": "io0", "thread_kind": "iothread"}),
                 (2, "vm_stop", None, {"thread": "io0", "thread_kind": "iothread"}))
    assert [f.seq for f in run(rule, trace, tmp_path).findings] == [(1,), (2,)]


def test_absent_a_row_both_opening_and_closing_closes(tmp_path):
    rule = "scope: vm\nabsent:\n  what: {event: X}\n  after: {event: [A, B]}\n  until: {event: B}\n"
    trace = rows(ev(0, "A"), ev(1, "B"), ev(2, "X"), ev(3, "A"), ev(4, "X"))
    assert [f.seq for f in run(rule, trace, tmp_path).findings] == [(3, 4)]


# ---------------------------------------------------------------------------------- count

COUNT = """
scope: vm
count_in_window:
  what: {event: STOP}
  more_than: 2
  within: 10s
"""


def test_count_one_finding_per_burst_with_the_first_window(tmp_path):
    trace = rows(*(ev(t, "STOP") for t in (0, 5, 10, 11, 12, 100, 105, 111)))
    r = run(COUNT, trace, tmp_path)
    assert [f.seq for f in r.findings] == [(0, 1, 2)]
    assert r.findings[0].message == "3 steps within 10s, from STOP (seq 0) to STOP (seq 2): more than 2"


def test_count_is_per_scope(tmp_path):
    rule = COUNT.replace("scope: vm", "scope: device").replace("{event: STOP}", "{event: BLOCK_IO_ERROR}")
    trace = rows(*(ev(t, "BLOCK_IO_ERROR", device=d) for t, d in
                   ((0, "a"), (1, "b"), (2, "a"), (3, "b"), (4, "c"), (5, "a"))))
    r = run(rule, trace, tmp_path)
    assert [(f.seq, f.device) for f in r.findings] == [((0, 2, 5), "a")]


# ---------------------------------------------------------------------------------- predicates

#: seq 0 runstate running, 1 BIE(errno 5) while running, 2 iostatus_set d0 failed,
#: 3 runstate io-error, 4 STOP, 5 BIE(errno 28) while io-error with d0 failed.
STATE_TRACE = (
    (0, "runstate", None, {"runstate": "running", "prev_runstate": "prelaunch"}),
    ev(1, "BLOCK_IO_ERROR", device="d0", errno=5, action="stop"),
    (1.5, "iostatus_set", None, {"device": "d0", "iostatus": "failed"}),
    (2, "runstate", None, {"runstate": "io-error", "prev_runstate": "running"}),
    ev(3, "STOP"),
    ev(4, "BLOCK_IO_ERROR", device="d0", errno=28, action="stop"),
)


@pytest.mark.parametrize("pred, expected", [
    ("{event: BLOCK_IO_ERROR, state: {run: running}}", [(1,)]),
    ("{event: BLOCK_IO_ERROR, state: {run: {not: running}}}", [(5,)]),
    ("{event: BLOCK_IO_ERROR, state: {run: io-error}}", [(5,)]),
    ("{event: BLOCK_IO_ERROR, state: {iostatus: not-ok}}", [(5,)]),
    ("{event: BLOCK_IO_ERROR, state: {iostatus: ok}}", [(1,)]),
    ("{event: BLOCK_IO_ERROR, errno: {not: 5}}", [(5,)]),
    ("{any: [{event: STOP}, {kind: runstate, runstate: io-error}]}", [(3,), (4,)]),
    ("{not: {kind: [runstate, qmp_event, iostatus_set]}}", []),
    ("{event: BLOCK_IO_ERROR, device: null}", []),
    ("{kind: iostatus_set, device: {not: [d1, d2]}}", [(2,)]),
])
def test_predicates_over_columns_and_replayed_state(tmp_path, pred, expected):
    r = run(f"scope: vm\nabsent:\n  what: {pred}\n", rows(*STATE_TRACE), tmp_path)
    assert [f.seq for f in r.findings] == expected


def test_a_stop_request_pending_before_the_step(tmp_path):
    trace = rows((0, "vmstop_request", None, {"error_id": 1}), ev(1, "BLOCK_IO_ERROR", error_id=2),
                 (2, "vm_stop", None, {"error_id": 1}), ev(3, "BLOCK_IO_ERROR", error_id=3))
    r = run("scope: vm\nabsent:\n  what: {event: BLOCK_IO_ERROR, state: {stop_pending: true}}\n", trace, tmp_path)
    assert [f.seq for f in r.findings] == [(1,)]


def test_needs_make_a_rule_not_applicable(tmp_path):
    r = run("needs: [qmp_event:BLOCK_JOB_ERROR]\n" + RESPONDS, rows(ev(0, "STOP")), tmp_path)
    assert r.not_applicable == ["r"] and r.findings == []


def test_emission_order_reorders_throttled_events(tmp_path):
    """QEMU >= 9.2 delivers a throttled BLOCK_IO_ERROR late, keeping its timestamp: in emission
    order it comes before the STOP that arrived first."""
    rule = "scope: vm\norder: {order}\nprecedes:\n  first: {event: BLOCK_IO_ERROR}\n  then: {event: STOP}\n"
    trace = rows(ev(1, "STOP", event_ts_ns=2 * S), ev(2, "BLOCK_IO_ERROR", event_ts_ns=1 * S))
    extra = {"qemu_version": "10.0.0"}
    table_rows = trace
    path = tmp_path / "rules.yaml"
    out = tmp_path / "t.parquet"
    tracedir.write_table(from_pylist(table_rows, "qmp", extra), out)
    found = {}
    for order in ("arrival", "emission"):
        path.write_text("version: 1\nrules:\n  - id: r\n    severity: error\n    title: t\n    explanation: e\n"
                        + textwrap.indent(rule.replace("{order}", order), "    "), encoding="utf-8")
        found[order] = [f.seq for f in check([str(out)], rule_files=[str(path)], only_files=True).findings]
    assert found == {"arrival": [(0, 1)], "emission": []}


def test_count_more_than_zero_flags_every_row(tmp_path):
    rule = COUNT.replace("more_than: 2", "more_than: 0")
    trace = rows(*(ev(t, "STOP") for t in (0, 1, 2)))
    assert [f.seq for f in run(rule, trace, tmp_path).findings] == [(0,), (1,), (2,)]
