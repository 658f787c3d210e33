"""`analyzer.capture.capture_trace`: a live capture straight into a trace, against a fake QMP."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from analyzer.capture import capture_trace, transcript_path_for
from tests.tracer.fake_qmp import FakeQmp, wait_for
from tracer.errors import CaptureError


def _capture(sock: Path, out: Path, drive, **kwargs):
    """capture_trace(out) while `drive(fake)` plays QEMU once the capture polls."""
    with FakeQmp(sock) as fake:
        t = threading.Thread(
            target=lambda: (wait_for(lambda: "query-status" in fake.sent_names()), drive(fake)),
            daemon=True,
        )
        t.start()
        done = capture_trace(f"unix:{sock}", out, poll_ms=50, duration_s=10.0, **kwargs)
        t.join(5)
    return done


def _io_error_then_shutdown(fake: FakeQmp) -> None:
    fake.io_error()
    assert wait_for(lambda: fake.status == "running", timeout=3)
    fake.shutdown()


def test_a_trace_output_keeps_the_transcript_beside_it_and_imports_it(tmp_path: Path) -> None:
    out = tmp_path / "vm0.parquet"
    seen: list[str] = []
    done = _capture(tmp_path / "qmp.sock", out, _io_error_then_shutdown, auto_cont_ms=20,
                    on_captured=lambda summary: seen.append(summary.ended))
    assert seen == ["shutdown"]  # told between the capture and the import
    assert done.transcript == transcript_path_for(out) == tmp_path / "vm0.parquet.qmp.jsonl"
    assert done.transcript.is_file() and done.capture.conts == 1
    assert done.imported is not None and done.imported.rows == pq.read_table(out).num_rows > 0
    names = pq.read_table(out).column("name").to_pylist()
    assert {"BLOCK_IO_ERROR", "STOP", "RESUME", "SHUTDOWN"} <= set(names)


def test_a_jsonl_output_is_the_transcript_and_nothing_is_imported(tmp_path: Path) -> None:
    out = tmp_path / "vm0.jsonl"
    done = _capture(tmp_path / "qmp.sock", out, lambda fake: fake.shutdown())
    assert (done.transcript, done.imported, done.capture.ended) == (out, None, "shutdown")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qmp.sock", "vm0.jsonl"]


def test_a_qemu_log_needs_a_trace_output_and_is_checked_before_connecting(tmp_path: Path) -> None:
    log = tmp_path / "trace.log"
    log.write_text("")
    with pytest.raises(CaptureError, match="--qemu-log needs -o naming a trace"):
        capture_trace("unix:/nowhere", tmp_path / "t.jsonl", qemu_log=log)
    with pytest.raises(CaptureError, match="QEMU log not found"):
        capture_trace("unix:/nowhere", tmp_path / "t", qemu_log=tmp_path / "missing.log")
