"""vm-stop-thread, action-matches-policy and runstate-transition on hand-written traces."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.analyzer.builders import TraceBuilder, by_rule, check_rows


def sync_stop(b: TraceBuilder, eid: int, thread: str, thread_kind: str | None = None) -> dict:
    """The pre-2014 error path: event, vm_stop on the failing thread, iostatus last."""
    seqs = b.error(eid, iostatus=False, request=False)
    seqs["vm_stop"] = b.step("vm_stop", thread, thread_kind, runstate="io-error", error_id=eid)
    b.runstate_row("io-error", error_id=eid)
    b.event("STOP", error_id=eid)
    b.set_iostatus(eid, "drive0")
    return seqs


def test_vm_stop_on_an_iothread_is_found(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    seqs = sync_stop(b, 1, "iothread0")
    result = check_rows(b.rows, tmp_path)
    [f] = by_rule(result, "vm-stop-thread")
    assert f.seq == (seqs["vm_stop"],) and f.thread == "iothread0" and f.error_id == 1
    # The same run breaks I1 and I2 too (QEMU before 2bd3bce8).
    assert by_rule(result, "iostatus-before-event") and by_rule(result, "iostatus-before-stop")


@pytest.mark.parametrize(("thread", "kind", "found"), [
    ("main", "main", False), ("vcpu0", "vcpu", False), ("worker3", "worker", True),
    ("mgmt", "mgmt", True), ("tid-4242", "unknown", False),
])
def test_vm_stop_thread_kinds(tmp_path: Path, thread: str, kind: str, found: bool) -> None:
    b = TraceBuilder()
    b.start()
    sync_stop(b, 1, thread, kind)
    assert bool(by_rule(check_rows(b.rows, tmp_path), "vm-stop-thread")) is found


@pytest.mark.parametrize(("policy", "errno", "op", "action", "found"), [
    ("stop", 5, "write", "stop", False),
    ("stop", 5, "write", "report", True),
    ("report", 5, "read", "report", False),
    ("ignore", 5, "write", "ignore", False),
    ("enospc", 28, "write", "stop", False),
    ("enospc", 5, "write", "report", False),
    ("enospc", 5, "write", "stop", True),
    ("enospc", 28, "read", "stop", True),  # rerror=enospc is rejected by QEMU
    ("auto", 5, "write", "report", False),  # inherited: not checked
])
def test_action_matches_policy(tmp_path: Path, policy, errno, op, action, found) -> None:
    b = TraceBuilder()
    b.start()
    seqs = b.error(1, policy=policy, errno=errno, op=op, action=action)
    b.main_loop()
    b.cont()
    got = by_rule(check_rows(b.rows, tmp_path), "action-matches-policy")
    assert [(f.error_id, f.seq) for f in got] == ([(1, (seqs["error_action"],))] if found else [])


def test_iostatus_failed_for_enospc_is_found(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    seqs = b.error(1, errno=28, policy="enospc", iostatus=False)
    wrong = b.step("iostatus_set", "iothread0", device="drive0", iostatus="failed", error_id=1)
    b.main_loop()
    [f] = by_rule(check_rows(b.rows, tmp_path), "action-matches-policy")
    assert f.seq == (wrong,) and "nospace" in f.message
    assert seqs["error_action"] < wrong


def test_a_sticky_iostatus_set_is_not_judged_again(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    b.error(1, errno=5)
    b.error(2, errno=28, policy="enospc")  # stays failed (sticky): not a wrong value
    b.main_loop()
    assert by_rule(check_rows(b.rows, tmp_path), "action-matches-policy") == []


def test_illegal_and_unannounced_transitions(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    bad = b.runstate_row("paused", prev="io-error")  # io-error -> paused is not in the table...
    mismatch = bad  # ...and the replay says running
    silent = b.runstate_row("running")  # paused -> running with no RESUME
    same = b.runstate_row("running")  # same-state sets are allowed
    b.event("STOP")
    quiet_stop = b.runstate_row("paused")  # running -> paused, but the STOP came before it
    result = check_rows(b.rows, tmp_path)
    found = {f.seq[0]: f.message for f in by_rule(result, "runstate-transition")}
    assert set(found) == {bad, silent, quiet_stop}
    assert "transition table" in found[bad] and "replayed state was running" in found[mismatch]
    assert "RESUME" in found[silent] and "STOP" in found[quiet_stop]
    assert same not in found


def test_first_runstate_row_of_a_capture_started_mid_run(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.runstate = "running"
    b.runstate_row("paused")  # the capture starts with the VM running: no replayed state yet
    b.event("STOP")
    assert by_rule(check_rows(b.rows, tmp_path), "runstate-transition") == []
