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


def _transcript(path: Path, major: int, minor: int, records: list[tuple[float, str, dict]]) -> Path:
    """A QMP transcript: the greeting of QEMU major.minor, then `records` (t, dir, message)."""
    import json

    hello = {"QMP": {"version": {"qemu": {"micro": 0, "minor": minor, "major": major}, "package": ""},
                     "capabilities": ["oob"]}}
    lines = [(99.0, "recv", hello), *records]
    path.write_text("".join(json.dumps({"t": t, "dir": d, "line": json.dumps(m)}) + "\n" for t, d, m in lines))
    return path


def _event(name: str, at: float, data: dict | None = None) -> dict:
    sec, usec = int(at), round((at - int(at)) * 1_000_000)
    msg = {"timestamp": {"seconds": sec, "microseconds": usec}, "event": name}
    return {**msg, "data": data} if data else msg


BIE = {"device": "drive0", "node-name": "n0", "qom-path": "/machine/peripheral/vblk0/virtio-backend",
       "nospace": False, "reason": "Input/output error", "operation": "write", "action": "stop"}


def _replaced_stop_event() -> list[tuple[float, str, dict]]:
    """cont 0.2 s after a stop: the retried write fails again (its BLOCK_IO_ERROR held in the
    window the first one opened; STOP follows), then a request in flight fails while the VM is
    stopped: its event replaces the held one and is sent when the window ends, raised after
    the STOP. On the wire the STOP has no BLOCK_IO_ERROR of its own."""
    return [
        (100.0001, "recv", _event("BLOCK_IO_ERROR", 100.0, BIE)),
        (100.0006, "recv", _event("STOP", 100.0005)),
        (100.2, "send", {"execute": "cont", "id": 1}),
        (100.2002, "recv", _event("RESUME", 100.2001)),
        (100.2003, "recv", {"return": {}, "id": 1}),
        (100.2012, "recv", _event("STOP", 100.2011)),
        (101.0001, "recv", _event("BLOCK_IO_ERROR", 100.2013, BIE)),
        (101.3, "send", {"execute": "cont", "id": 2}),
        (101.3002, "recv", _event("RESUME", 101.3001)),
        (101.3003, "recv", {"return": {}, "id": 2}),
    ]


def _audit(path: Path, tmp_path: Path):
    from analyzer import check
    from analyzer.importers import import_traces

    out = tmp_path / f"{path.stem}.parquet"
    import_traces([path], out)
    return check([out])


def test_a_stop_whose_event_the_throttle_replaced_is_no_violation(tmp_path):
    path = _transcript(tmp_path / "q10.jsonl", 10, 0, _replaced_stop_event())
    assert _errors(_audit(path, tmp_path)) == []


def test_the_same_wire_from_qemu_7_2_is_a_stop_before_its_event(tmp_path):
    path = _transcript(tmp_path / "q72.jsonl", 7, 2, _replaced_stop_event())
    assert "event-before-stop" in {f.rule for f in _audit(path, tmp_path).findings}


def test_outside_the_window_a_stop_before_its_event_is_caught_on_qemu_10(tmp_path):
    # the first stop's event is 3 s old when the second STOP comes: no window was open
    records = [(t + (3.0 if i >= 5 else 0.0), d, m) for i, (t, d, m) in enumerate(_replaced_stop_event())]
    records = [(t, d, _event(m["event"], m["timestamp"]["seconds"] + m["timestamp"]["microseconds"] / 1e6
                             + (3.0 if i >= 5 else 0.0), m.get("data")) if "event" in m else m)
               for i, (t, d, m) in enumerate(records)]
    path = _transcript(tmp_path / "late.jsonl", 10, 0, records)
    assert "event-before-stop" in {f.rule for f in _audit(path, tmp_path).findings}
