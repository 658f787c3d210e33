"""QEMU 9.x/10.x behaviour that is correct and must stay clean: several iothreads per device
(iothread-vq-mapping, 9.0), the `suspended` run state on stop/cont (9.0), and a trace that does
not show events by name. And the violations that stay violations beside them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.analyzer.builders import TraceBuilder, by_rule, check_rows
from tests.analyzer.rules.test_ordering import imported


def _errors(result) -> list[tuple[str, str]]:
    return [(f.rule, f.message) for f in result.findings if f.severity == "error"]


def _multi_iothread(late_thread: bool) -> TraceBuilder:
    """One disk on two iothreads: after one cont the retried requests fail again in each
    queue's own iothread, both requests sharing the single stop-request slot; with
    `late_thread` the second iothread fails only after the main loop has stopped the VM."""
    b = TraceBuilder(iothreads={"drive0": "iothread0"})
    b.start()
    b.error(1)
    b.main_loop()
    if late_thread:
        b.cont(retry=[{"error_id": 2, "thread": "iothread0"}])
        b.main_loop()
        b.error(3, thread="iothread1")
        b.main_loop()  # VM already stopped: no STOP
    else:
        b.cont(retry=[{"error_id": 2, "thread": "iothread0"}, {"error_id": 3, "thread": "iothread1"}])
        b.main_loop()  # one consumption serves both: one STOP
    b.query_block()
    b.query_status()
    b.cont()
    return b


@pytest.mark.parametrize("late_thread", [False, True])
@pytest.mark.parametrize("form", ["ids", "imported", "qmp"])
def test_several_iothreads_of_one_device_after_one_cont_are_no_violation(tmp_path, late_thread, form):
    rows = _multi_iothread(late_thread).rows
    if form == "imported":
        rows = imported(rows)
    elif form == "qmp":
        rows = imported(rows, drop=("io_submit", "io_complete"))
    for qemu in ("10.0.2", "7.2.22", None):
        result = check_rows(rows, tmp_path, f"{form}-{qemu}.parquet", qemu=qemu)
        assert _errors(result) == []
        assert by_rule(result, "stop-pending-at-end") == []


def test_a_lost_stop_among_several_iothreads_is_still_found(tmp_path):
    # the two retried errors' requests are consumed by cont's vm_start while running, and
    # no STOP/RESUME pair is emitted: I4 broken for both
    b = TraceBuilder()
    b.start()
    b.error(1)
    b.main_loop()
    b.cont(retry=[{"error_id": 2, "thread": "iothread0"}, {"error_id": 3, "thread": "iothread1"}])
    cmd = b.step("qmp_command", "mgmt", name="cont")
    b.step("vm_start", "main", error_id=3)
    b.slot = None
    b.step("qmp_reply", "mgmt", name="cont", cmd_seq=cmd)
    found = by_rule(check_rows(b.rows, tmp_path), "stop-follows-error")
    assert {f.error_id for f in found} == {2, 3}


def _suspended_vm() -> TraceBuilder:
    """A guest suspended to RAM (running -> suspended, SUSPEND, no STOP), then `stop`
    (suspended -> paused, STOP; QEMU >= 9.0) and `cont` (paused -> suspended, RESUME)."""
    b = TraceBuilder()
    b.start()
    b.event("SUSPEND")
    b.runstate_row("suspended")
    cmd = b.step("qmp_command", "mgmt", name="stop")
    b.step("vm_stop", "main", runstate="paused")
    b.runstate_row("paused")
    b.event("STOP")
    b.step("qmp_reply", "mgmt", name="stop", cmd_seq=cmd)
    cmd = b.step("qmp_command", "mgmt", name="cont")
    for d in b.enabled:
        b.step("iostatus_reset", "main", device=d, iostatus="ok")
    b.step("vm_start", "main")
    b.event("RESUME")
    b.runstate_row("suspended")
    b.step("qmp_reply", "mgmt", name="cont", cmd_seq=cmd)
    b.event("WAKEUP")
    b.runstate_row("running")
    return b


def test_suspended_to_paused_and_back_are_qemus_own_transitions(tmp_path):
    result = check_rows(_suspended_vm().rows, tmp_path)
    assert "runstate-transition" not in result.not_applicable
    assert _errors(result) == []


def test_a_transition_qemu_does_not_make_from_suspended_is_still_found(tmp_path):
    b = _suspended_vm()
    b.runstate_row("suspended")
    b.runstate_row("io-error")  # suspended -> io-error is not in QEMU's table
    [f] = by_rule(check_rows(b.rows, tmp_path), "runstate-transition")
    assert "suspended -> io-error is not in QEMU's transition table" in f.message


def _stops_without_events(named: bool) -> list[dict]:
    """A trace log's run-state changes; its events only as numbers (`named` False) or by name."""
    b = TraceBuilder()
    b.start()
    b.error(1)
    b.main_loop()
    b.cont()
    rows = [r for r in imported(b.rows, drop=("io_submit", "io_complete")) if r["kind"] != "qmp_reply"]
    runstates = [{**r, "error_id": None} for r in b.rows if r["kind"] == "runstate"]
    rows = sorted(rows + runstates, key=lambda r: r["seq"])
    if not named:
        numbers = {"RESUME": "#4", "STOP": "#3", "BLOCK_IO_ERROR": "#17"}
        rows = [{**r, "name": numbers[r["name"]], "device": None, "action": None}
                if r["kind"] == "qmp_event" else r for r in rows]
    return rows


def test_unnamed_events_are_one_warning_and_no_runstate_finding(tmp_path):
    result = check_rows(_stops_without_events(named=False), tmp_path, "n.parquet")
    assert _errors(result) == []
    [w] = by_rule(result, "event-names-unknown")
    assert w.severity == "warning" and "(QAPIEvent 3, 4, 17)" in w.message
    # the same trace with its events named, the STOP removed: a silent stop is found
    rows = [r for r in _stops_without_events(named=True) if r.get("name") != "STOP"]
    assert "runstate-transition" in {f.rule for f in check_rows(rows, tmp_path, "s.parquet").findings}


def test_a_trace_without_monitor_events_does_not_judge_announcements(tmp_path: Path):
    rows = [r for r in _stops_without_events(named=True) if r["kind"] != "qmp_event"]
    result = check_rows(rows, tmp_path)
    assert by_rule(result, "runstate-transition") == []
