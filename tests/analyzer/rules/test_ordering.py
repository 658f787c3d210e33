"""The ordering rules (I1-I4, I6) on hand-written traces: each rule's findings and its edges."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analyzer.rules import RULES
from tests.analyzer.builders import TraceBuilder, by_rule, check_rows


def fixed_cycle(b: TraceBuilder, eid: int = 1, **error) -> dict:
    """A correct error episode: error, main loop stop, queries, cont."""
    seqs = b.error(eid, **error)
    seqs.update(b.main_loop())
    b.query_status()
    b.query_block()
    seqs["cont"] = b.cont()
    return seqs


def test_a_correct_trace_has_no_findings_and_every_rule_applies(tmp_path: Path) -> None:
    b = TraceBuilder(iothreads={"drive0": "iothread0", "drive1": None})
    b.start()
    b.io(n=3)
    fixed_cycle(b, 1)
    fixed_cycle(b, 2, device="drive1")
    b.cont()  # a cont while running with nothing pending: no events at all
    b.query_block()
    b.query_status()
    result = check_rows(b.rows, tmp_path)
    assert result.findings == []
    assert result.verdict == "pass"
    # every rule but the cross-layer ones, which need a libvirt view no simulated trace has
    assert [r for r in result.not_applicable if RULES[r].guarantee != "libvirt"] == []
    assert len(result.episodes) == 2


def test_event_before_iostatus_is_found_with_both_steps(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    seqs = b.error(1, iostatus=False)
    late = b.set_iostatus(1, "drive0")
    b.main_loop()
    [f] = by_rule(check_rows(b.rows, tmp_path), "iostatus-before-event")
    assert (f.vm, f.device, f.error_id, f.severity) == ("vm0", "drive0", 1, "error")
    assert f.seq == (seqs["event"], late)
    assert f.thread == "iothread0"


def test_an_error_whose_iostatus_is_never_set_is_found(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    fixed_cycle(b, 1)  # gives the trace iostatus_set rows: the rule applies
    seqs = b.error(2, iostatus=False)
    b.main_loop()
    found = by_rule(check_rows(b.rows, tmp_path), "iostatus-before-event")
    assert [(f.error_id, f.seq) for f in found] == [(2, (seqs["event"],))]


def test_iostatus_rules_are_not_applicable_without_iostatus_set_rows(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    b.error(1, iostatus=False)
    b.main_loop()
    result = check_rows(b.rows, tmp_path)
    assert {"iostatus-before-event", "iostatus-before-stop"} <= set(result.not_applicable)
    assert by_rule(result, "iostatus-before-event") == []
    assert "iostatus-before-event" not in result.to_dict()["summary"]["by_rule"]


def test_stop_before_iostatus_breaks_iostatus_before_stop(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    seqs = b.error(1, iostatus=False)
    stop = b.main_loop()
    late = b.set_iostatus(1, "drive0")
    [f] = by_rule(check_rows(b.rows, tmp_path), "iostatus-before-stop")
    assert f.error_id == 1 and f.device == "drive0"
    assert f.seq == (stop["runstate"], late)
    assert seqs["event"] < stop["runstate"]


def test_stop_before_its_event_is_found_with_error_ids(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    seqs = b.error(1, event=False)  # request without the event...
    stop = b.main_loop()
    late = b.bie(1)  # ...which comes after the STOP
    [f] = by_rule(check_rows(b.rows, tmp_path), "event-before-stop")
    assert f.error_id == 1 and f.seq == (stop["stop"], late)
    assert "vmstop_request" in seqs


def test_stop_before_its_event_is_found_without_error_ids(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    stop = b.event("STOP")
    late = b.bie(None)
    [f] = by_rule(check_rows(b.rows, tmp_path), "event-before-stop")
    assert f.error_id is None and f.seq == (stop, late) and f.device == "drive0"


def test_a_user_stop_before_an_error_is_not_an_inverted_stop(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    b.step("qmp_command", "mgmt", name="stop")
    b.event("STOP")
    b.bie(None)
    assert by_rule(check_rows(b.rows, tmp_path), "event-before-stop") == []


def test_a_raced_cont_gives_a_stop_resume_pair_and_no_finding(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    b.error(1)
    seqs = b.cont()  # management's cont reaches vm_start before the main loop
    assert "stop" in seqs and "resume" in seqs
    result = check_rows(b.rows, tmp_path)
    assert result.findings == []
    [ep] = result.episodes.to_dict("records")
    assert ep["seq_stop"] == seqs["stop"] and ep["seq_resume"] == seqs["resume"]
    assert ep["paused_ns"] == 1000


def test_a_cont_that_drops_the_pending_request_breaks_stop_follows_error(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    seqs = b.error(1)
    # lost-stop: vm_start consumes the request while running but emits no STOP/RESUME
    cmd = b.step("qmp_command", "mgmt", name="cont")
    b.step("iostatus_reset", "main", device="drive0", iostatus="ok")
    start = b.step("vm_start", "main", error_id=1)
    b.step("qmp_reply", "mgmt", name="cont", cmd_seq=cmd)
    b.slot = None
    b.io(n=2)
    [f] = by_rule(check_rows(b.rows, tmp_path), "stop-follows-error")
    assert f.error_id == 1 and f.seq == (seqs["event"], start)


def test_a_request_pending_at_the_end_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    seqs = b.error(1)
    result = check_rows(b.rows, tmp_path)
    [f] = by_rule(result, "stop-pending-at-end")
    assert f.severity == "warning" and f.seq == (seqs["event"],)
    assert result.verdict == "pass"


def test_a_second_error_while_stopped_needs_no_stop(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    b.error(1)
    b.main_loop()
    second = b.error(2)  # an in-flight request fails while the VM is paused
    consumed = b.main_loop()  # vm_stop of 2, the VM already stopped: no STOP
    assert "stop" not in consumed
    b.cont()
    result = check_rows(b.rows, tmp_path)
    assert result.findings == []
    eps = result.episodes.set_index("error_id")
    assert eps.loc[2, "seq_vm_stop"] == consumed["vm_stop"]
    assert eps.loc[2, "seq_event"] == second["event"]
    assert eps.loc[2, "seq_stop"] is pd.NA


def test_two_devices_failing_at_once_share_one_stop(tmp_path: Path) -> None:
    b = TraceBuilder(iothreads={"drive0": "iothread0", "drive1": "iothread1"})
    b.start()
    b.error(1, "drive0")
    b.error(2, "drive1")  # overwrites the single request slot
    stop = b.main_loop()
    b.query_block()
    b.cont()
    result = check_rows(b.rows, tmp_path)
    assert result.findings == []
    eps = result.episodes.set_index("error_id")
    assert list(eps["served_by"]) == [2, 2]
    assert list(eps["seq_stop"]) == [stop["stop"], stop["stop"]]


def test_an_error_on_a_device_without_iothread_is_handled_on_main(tmp_path: Path) -> None:
    b = TraceBuilder(iothreads={"drive0": None})
    b.start()
    seqs = fixed_cycle(b, 1)
    result = check_rows(b.rows, tmp_path)
    assert result.findings == []
    [ep] = result.episodes.to_dict("records")
    assert ep["seq_iostatus_set"] == seqs["iostatus_set"]
    assert b.rows[seqs["event"]]["thread"] == "main"


def test_retried_error_before_resume_breaks_resume_before_retry_error(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    b.error(1)
    b.main_loop()
    seqs = b.cont(retry=[{"error_id": 2}], resume_after_retry=True)  # QEMU 2.1-2.12
    stop = b.main_loop()
    [f] = by_rule(check_rows(b.rows, tmp_path), "resume-before-retry-error")
    retry_event = next(r["seq"] for r in b.rows if r["kind"] == "qmp_event" and r.get("error_id") == 2
                       and r["name"] == "BLOCK_IO_ERROR")
    assert f.error_id == 2 and f.seq == (retry_event, seqs["resume"], stop["stop"])


def test_retried_error_after_resume_is_fine(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    b.error(1)
    b.main_loop()
    b.cont(retry=[{"error_id": 2}])
    b.main_loop()
    assert check_rows(b.rows, tmp_path).findings == []


def imported(rows: list[dict], drop: tuple[str, ...] = ()) -> list[dict]:
    """A QMP-only view of `rows`: no error ids, none of QEMU's internal steps."""
    internal = {"error_action", "iostatus_set", "iostatus_reset", "vmstop_prepare",
                "vmstop_request", "vm_start", "vm_stop", "runstate", *drop}
    return [{**r, "error_id": None} for r in rows if r["kind"] not in internal]


def test_resume_before_retry_error_without_error_ids(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    b.error(1)
    b.main_loop()
    b.cont(retry=[{"error_id": 2}], resume_after_retry=True)
    b.main_loop()
    result = check_rows(imported(b.rows), tmp_path, qemu="2.12.0")
    [f] = by_rule(result, "resume-before-retry-error")
    assert f.error_id is None and len(f.seq) == 3
    assert {"iostatus-before-event", "iostatus-before-stop", "vm-stop-thread",
            "action-matches-policy", "runstate-transition"} <= set(result.not_applicable)
    assert "resume-before-retry-error" not in result.not_applicable


def test_qmp_only_import_of_a_correct_run_passes(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    for eid in (1, 3):
        b.error(eid)
        b.main_loop()
        b.query_block()
        b.cont(reply_first=eid == 3, retry=[{"error_id": eid + 1}])
        b.main_loop()
        b.query_block()
        b.cont()
    result = check_rows(imported(b.rows), tmp_path)
    assert result.findings == []
    assert len(result.episodes) == 4


def test_no_stop_before_the_next_resume_without_error_ids(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    event = b.bie(None)
    resume = b.event("RESUME")
    [f] = by_rule(check_rows(b.rows, tmp_path), "stop-follows-error")
    assert f.seq == (event, resume) and f.error_id is None


def test_resume_late_seen_without_error_ids_is_one_finding_not_two(tmp_path):
    """QEMU 2.1-2.12 (resume-late), seen as a real capture with a trace log would show it (no
    error ids, no internal steps): BLOCK_IO_ERROR, RESUME, STOP is resume-before-retry-error;
    the BLOCK_IO_ERROR *is* followed by its STOP, so stop-follows-error must stay quiet."""
    import pyarrow.parquet as pq

    from analyzer import check
    from tests.analyzer.rules.test_reference_agreement import as_import
    from tracer import tracedir
    from tracer.schema import from_pylist

    trace = Path(__file__).resolve().parents[3] / "traces" / "resume-late"
    rows = pq.ParquetDataset([str(p) for p in tracedir.segment_paths(trace)]).read().to_pylist()
    imported = as_import(rows, qmp_only=False)
    out = tmp_path / "imported.parquet"
    # the behaviour of QEMU 2.1-2.12, which do not throttle BLOCK_IO_ERROR
    tracedir.write_table(from_pylist(imported, "qemu-log", {"qemu_version": "2.12.0"}), out)
    rules = {f.rule for f in check([out]).findings if f.severity == "error"}
    assert rules == {"resume-before-retry-error"}
