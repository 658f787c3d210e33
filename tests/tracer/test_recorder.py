"""The recorder: thread safety, seq assignment, segments, manifest, crash safety."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tracer import schema, tracedir
from tracer.errors import RecorderError
from tracer.recorder import Recorder


def _read(trace: Path):
    return pq.ParquetDataset([str(p) for p in tracedir.segment_paths(trace)]).read()


def test_n_threads_times_m_steps_give_gap_free_unique_seq_and_keep_per_thread_order(tmp_path):
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # let the GIL change hands often so threads interleave
    try:
        _record_concurrently(tmp_path)
    finally:
        sys.setswitchinterval(old_interval)


def _record_concurrently(tmp_path):
    n_threads, m_steps = 8, 5_000
    rec = Recorder(tmp_path / "t", source="threads", vm="vm0", flush_rows=3_000)
    start = threading.Barrier(n_threads)

    def work(i: int) -> None:
        em = rec.thread(f"vcpu{i}", "vcpu")
        start.wait()
        for j in range(m_steps):
            em.emit("io_submit", device=f"drive{i % 3}", req_id=j, op="write")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    manifest = rec.close()

    table = _read(tmp_path / "t")
    assert table.num_rows == n_threads * m_steps == manifest.rows
    assert schema.validate(table) == []
    df = table.to_pandas()
    assert sorted(df["seq"]) == list(range(n_threads * m_steps))
    for _, group in df.sort_values("seq").groupby("thread", observed=True):
        assert list(group["req_id"]) == list(range(m_steps))  # per-thread order kept
        assert group["ts_ns"].is_monotonic_increasing
    # the threads really interleaved
    by_seq = df.sort_values("seq")["thread"].astype(str).tolist()
    switches = sum(a != b for a, b in itertools.pairwise(by_seq))
    assert switches > n_threads


def test_seq_is_per_vm_and_details_land_in_their_columns(tmp_path):
    with Recorder(tmp_path / "t", source="sim", vm="a", flush_interval=None) as rec:
        rec.emit("error_action", thread="iothread0", thread_kind="iothread", device="d0",
                 req_id=3, op="write", errno=28, policy="enospc", action="stop", error_id=1, ts_ns=100)
        rec.emit("qmp_event", thread="iothread0", thread_kind="iothread", vm="b", name="BLOCK_IO_ERROR",
                 payload='{"x": 1}', ts_ns=101)
        rec.emit("runstate", thread="main", thread_kind="main", prev_runstate="running",
                 runstate="io-error", error_id=1, ts_ns=102)
    rows = _read(tmp_path / "t").to_pylist()
    assert [(r["vm"], r["seq"]) for r in rows] == [("a", 0), ("b", 0), ("a", 1)]
    assert rows[0]["errno"] == 28 and rows[0]["policy"] == "enospc" and rows[0]["error_id"] == 1
    assert rows[1]["name"] == "BLOCK_IO_ERROR" and rows[1]["payload"] == '{"x": 1}'
    assert rows[2]["runstate"] == "io-error" and rows[2]["device"] is None and rows[2]["req_id"] is None


def test_manifest_lists_segments_with_their_sha256(tmp_path):
    rec = Recorder(tmp_path / "t", source="sim", flush_rows=100, flush_interval=None,
                   metadata={"seed": 7})
    em = rec.thread("vcpu0", "vcpu")
    for i in range(1_050):
        em.emit("io_submit", device="d", req_id=i, op="read", ts_ns=i)
    manifest = rec.close()
    assert manifest.rows == 1_050
    assert [s.rows for s in manifest.segments] == [100] * 10 + [50]
    on_disk = tracedir.read_manifest(tmp_path / "t")
    assert on_disk == manifest
    for seg in manifest.segments:
        assert tracedir.sha256_file(tmp_path / "t" / seg.file) == seg.sha256
    meta = schema.read_metadata(pq.read_schema(tmp_path / "t" / manifest.segments[0].file))
    assert meta["source"] == "sim" and meta["seed"] == "7"


def test_row_count_flushing_is_deterministic(tmp_path):
    def record(out: Path) -> list[bytes]:
        with Recorder(out, source="sim", flush_rows=64, flush_interval=None) as rec:
            for i in range(500):
                rec.emit("io_complete", thread=f"iothread{i % 2}", thread_kind="iothread",
                         device=f"d{i % 3}", req_id=i, op="write", ts_ns=i * 10,
                         **({"errno": 5} if i % 50 == 0 else {}))
        return [p.read_bytes() for p in sorted(out.iterdir())]

    assert record(tmp_path / "a") == record(tmp_path / "b")


def test_time_based_flush_writes_a_segment_while_recording(tmp_path):
    rec = Recorder(tmp_path / "t", source="threads", flush_interval=0.05)
    rec.emit("vm_start", thread="main", thread_kind="main")
    deadline = time.monotonic() + 5
    while not tracedir.segment_paths(tmp_path / "t") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(tracedir.segment_paths(tmp_path / "t")) == 1
    assert tracedir.read_manifest(tmp_path / "t") is None  # not complete yet
    rec.close()
    assert tracedir.read_manifest(tmp_path / "t").rows == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "teleport"}, "unknown step kind 'teleport'"),
        ({"kind": "io_submit", "op": "scribble"}, "unknown op 'scribble'"),
        ({"kind": "error_action", "action": "panic"}, "unknown action 'panic'"),
        ({"kind": "error_action", "colour": "red"}, "unknown step column 'colour'"),
    ],
)
def test_bad_steps_are_refused_at_emit(tmp_path, kwargs, message):
    with Recorder(tmp_path / "t", source="sim") as rec, pytest.raises(RecorderError, match=message):
        rec.emit(thread="main", thread_kind="main", **kwargs)


def test_emit_after_close_and_nonempty_output_are_errors(tmp_path):
    rec = Recorder(tmp_path / "t", source="sim")
    em = rec.thread("main", "main")
    rec.close()
    with pytest.raises(RecorderError, match="closed"):
        em.emit("vm_start")
    with pytest.raises(RecorderError, match="not empty"):
        Recorder(tmp_path / "t", source="sim")
    Recorder(tmp_path / "t", source="sim", overwrite=True).close()


_KILLED_RECORDER = textwrap.dedent(
    """
    import sys
    from tracer.recorder import Recorder
    rec = Recorder(sys.argv[1], source="threads", vm="vm0", flush_rows=2_000, flush_interval=0.02)
    em = rec.thread("vcpu0", "vcpu")
    i = 0
    while True:
        em.emit("io_submit", device="drive0", req_id=i, op="write")
        i += 1
        if i == 20_000:
            print("recording", flush=True)
    """
)


def test_sigkill_mid_recording_leaves_readable_segments_and_no_manifest(tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RECORDER, str(out)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert proc.stdout.readline().strip() == "recording"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    assert tracedir.read_manifest(out) is None  # reported incomplete
    segments = tracedir.segment_paths(out)
    assert segments, "segments flushed before the kill must be on disk"
    table = _read(out)
    assert table.num_rows >= 1
    assert schema.validate(table) == []
    assert table.column("seq").to_pylist() == list(range(table.num_rows))  # a clean prefix

    # ... and the analyzer reports it as truncated instead of failing
    from analyzer import check

    result = check([out])
    assert [f.rule for f in result.findings] == ["trace-truncated"]
    assert result.findings[0].severity == "warning"
    assert result.verdict == "pass"
    assert result.steps == table.num_rows


def _wait_for_segment(out: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.is_dir() and tracedir.segment_paths(out):
            return
        if proc.poll() is not None:
            pytest.fail(f"the recorder ended before writing a segment: {proc.communicate()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no segment written in time")


@pytest.mark.parametrize("mode", ["sim", "threads"])
def test_ctrl_c_during_blkreplay_record_marks_the_recording_interrupted(tmp_path, mode):
    """A Ctrl-C'd `blkreplay record` must not write "complete": true (issue #12): its manifest
    says incomplete and interrupted, lists exactly the segments on disk, and a check reports
    the recording as cut short (trace-truncated) without any recording-intact finding."""
    exe = Path(sys.executable).parent / "blkreplay"
    if not exe.exists():
        pytest.skip("the blkreplay console script is not installed")
    out = tmp_path / "rec"
    proc = subprocess.Popen(
        [str(exe), "record", "-o", str(out), "--mode", mode, "--vms", "4", "--duration", "600"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _wait_for_segment(out, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err

    manifest = tracedir.read_manifest(out)
    assert manifest is not None and not manifest.complete and manifest.interrupted
    assert [s.file for s in manifest.segments] == [p.name for p in tracedir.segment_paths(out)]
    assert tracedir.verify_trace_dir(out) == []  # what it holds is intact

    from analyzer import check

    result = check([out])
    rules = {f.rule for f in result.findings}
    assert "trace-truncated" in rules and "recording-intact" not in rules
    truncated = [f for f in result.findings if f.rule == "trace-truncated"]
    assert all("interrupted" in f.message and f.severity == "warning" for f in truncated)
    assert result.steps == manifest.rows


def test_an_exception_in_the_producer_closes_the_recording_as_interrupted(tmp_path):
    out = tmp_path / "t"
    with pytest.raises(KeyboardInterrupt), Recorder(out, source="sim", flush_interval=None) as rec:
        rec.emit("vm_start", thread="main", thread_kind="main", ts_ns=1)
        raise KeyboardInterrupt
    manifest = tracedir.read_manifest(out)
    assert (manifest.complete, manifest.interrupted, manifest.rows) == (False, True, 1)
    # ... and a clean close still writes the manifest bytes it always had
    rec = Recorder(tmp_path / "clean", source="sim", flush_interval=None)
    rec.emit("vm_start", thread="main", thread_kind="main", ts_ns=1)
    rec.close()
    text = (tmp_path / "clean" / tracedir.MANIFEST_NAME).read_text()
    assert '"complete": true' in text and "interrupted" not in text
