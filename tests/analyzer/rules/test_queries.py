"""What management was told: query-block / query-status answers against events and state."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.analyzer.builders import TraceBuilder, by_rule, check_rows
from tests.analyzer.rules.test_ordering import imported


def test_query_block_ok_after_an_unreset_error_is_found(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    seqs = b.error(1)
    b.main_loop()
    q = b.query_block({"drive0": "ok", "drive1": "ok"})  # info block lies
    [f] = by_rule(check_rows(b.rows, tmp_path), "query-matches-events")
    assert f.error_id == 1 and f.device == "drive0"
    assert f.seq == (seqs["event"], q["command"], q["drive0"])


def test_query_block_ok_after_cont_is_fine(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    b.error(1)
    b.main_loop()
    b.cont()
    b.query_block()
    assert by_rule(check_rows(b.rows, tmp_path), "query-matches-events") == []


def test_query_matches_events_without_error_ids(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    b.error(1)
    b.main_loop()
    b.query_block({"drive0": "ok", "drive1": "ok"})
    [f] = by_rule(check_rows(imported(b.rows), tmp_path), "query-matches-events")
    assert f.error_id is None and f.device == "drive0"


def test_query_status_io_error_with_every_iostatus_ok_is_found(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    b.error(1, iostatus=False)
    stop = b.main_loop()
    q = b.query_status()
    b.set_iostatus(1, "drive0")
    result = check_rows(b.rows, tmp_path)
    [f] = by_rule(result, "query-matches-runstate")
    assert f.error_id == 1 and f.seq == (stop["runstate"], q["reply"])


def test_query_status_io_error_after_the_iostatus_is_fine(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    b.error(1)
    b.main_loop()
    b.query_status()
    assert by_rule(check_rows(b.rows, tmp_path), "query-matches-runstate") == []


def test_query_matches_runstate_from_queries_alone(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    b.error(1)
    b.main_loop()
    status = b.query_status()
    block = b.query_block({"drive0": "ok", "drive1": "ok"})
    rows = imported(b.rows)
    [f] = by_rule(check_rows(rows, tmp_path), "query-matches-runstate")
    assert f.seq == (status["reply"], block["drive0"]) and f.error_id is None
    # A cont in between explains an ok io-status: no finding.
    b2 = TraceBuilder()
    b2.start()
    b2.error(1)
    b2.main_loop()
    b2.query_status()
    b2.cont()
    b2.query_block()
    assert by_rule(check_rows(imported(b2.rows), tmp_path, "b.parquet"), "query-matches-runstate") == []


def test_a_cont_that_does_not_reset_the_iostatus_is_found(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    b.error(1)
    b.main_loop()
    cont = b.cont(reset=False)
    q = b.query_block()
    assert b.rows[q["drive0"]]["iostatus"] == "failed"
    [f] = by_rule(check_rows(b.rows, tmp_path), "iostatus-reset-on-cont")
    assert f.error_id == 1 and f.device == "drive0" and f.seq == (cont["reply"], q["drive0"])


def test_a_retry_that_fails_again_after_cont_explains_a_failed_iostatus(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    b.error(1)
    b.main_loop()
    b.cont(reply_first=True, retry=[{"error_id": 2}])  # reply before RESUME and the retry's error
    b.main_loop()
    b.query_block()
    result = check_rows(b.rows, tmp_path)
    assert result.findings == []
    # The same from QMP alone: the retry's BLOCK_IO_ERROR follows the cont.
    assert check_rows(imported(b.rows), tmp_path, "b.parquet").findings == []


def test_iostatus_reset_on_cont_without_iostatus_rows(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    b.error(1)
    b.main_loop()
    cont = b.cont(reset=False)
    q = b.query_block()
    [f] = by_rule(check_rows(imported(b.rows), tmp_path, qemu="7.2.22"), "iostatus-reset-on-cont")
    assert f.error_id is None and f.seq == (cont["reply"], q["drive0"])


def _fast_cont(gap_ns: int) -> TraceBuilder:
    """BIE + STOP, a cont `gap_ns` later, and query-block still showing the device failed
    with no BLOCK_IO_ERROR since: the retried write failed again (iostatus set again) and its
    event is held by QEMU >= 9.2's 1-second throttle (or replaced, never sent)."""
    b = TraceBuilder(ts_step=1000)
    b.start()
    b.error(1)
    b.main_loop()
    b.seq += gap_ns // b.ts_step
    b.cont(retry=[{"error_id": 2, "event": False}])
    b.main_loop()
    b.query_block()
    return b


def _qmp(b: TraceBuilder) -> list[dict]:
    """What a QMP transcript shows of `b`: no request completions either."""
    return imported(b.rows, drop=("io_submit", "io_complete"))


@pytest.mark.parametrize("qemu", ["10.0.2", "9.2.0", None])
def test_iostatus_reset_on_cont_allows_a_retry_whose_event_the_throttle_holds(tmp_path, qemu):
    result = check_rows(_qmp(_fast_cont(200_000_000)), tmp_path, qemu=qemu)
    assert [f.rule for f in result.findings if f.severity == "error"] == []


def test_iostatus_reset_on_cont_without_throttle_or_outside_the_window_is_a_violation(tmp_path):
    # QEMU 7.2 does not throttle: the retry's BLOCK_IO_ERROR would have been sent
    old = check_rows(_qmp(_fast_cont(200_000_000)), tmp_path, "a.parquet", qemu="7.2.22")
    assert "iostatus-reset-on-cont" in {f.rule for f in old.findings}
    # QEMU 10.0, but the cont came 3 s after the last event: no window was open
    late = check_rows(_qmp(_fast_cont(3_000_000_000)), tmp_path, "b.parquet", qemu="10.0.2")
    assert "iostatus-reset-on-cont" in {f.rule for f in late.findings}


def test_iostatus_reset_on_cont_allows_a_failed_request_the_trace_log_shows(tmp_path):
    # QEMU 10.0, no event within a window, but a trace log shows the retried request failing
    # (virtio_blk_rw_complete ret -5, no device): its event unseen
    rows = [r for r in _fast_cont(3_000_000_000).rows if r["kind"] != "io_complete" or r.get("errno")]
    rows = [{**r, "device": None} if r["kind"] == "io_complete" else r for r in rows]
    result = check_rows(imported(rows), tmp_path, qemu="10.0.2")
    assert "iostatus-reset-on-cont" not in {f.rule for f in result.findings}
