"""`tracer.capture` and `blkreplay capture` against a fake QMP monitor on a unix socket."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import analyzer.capture
from analyzer.cli import main
from tests.tracer.fake_qmp import FakeQmp, wait_for
from tracer.capture import CaptureSummary, capture, parse_endpoint, wait_until_settled
from tracer.errors import CaptureError

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "samples" / "qemu-7.2"


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    return tmp_path / "qmp.sock"


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="ascii").splitlines()]


def sent(records: list[dict]) -> list[dict]:
    return [json.loads(r["line"]) for r in records if r["dir"] == "send"]


def recv_events(records: list[dict]) -> list[str]:
    names = []
    for r in records:
        if r["dir"] == "recv" and not r.get("partial"):
            obj = json.loads(r["line"])
            if "event" in obj:
                names.append(obj["event"])
    return names


def run_with(fake: FakeQmp, driver, **kwargs) -> CaptureSummary:
    """Run capture() here while `driver(fake)` acts as QEMU once the handshake is done."""
    errors: list[BaseException] = []
    # a failing driver stops the capture instead of leaving it waiting for SHUTDOWN
    stop = kwargs.setdefault("stop_event", threading.Event())
    kwargs.setdefault("duration_s", 10.0)

    def drive() -> None:
        try:
            assert wait_for(lambda: "query-status" in fake.sent_names())
            driver(fake)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            stop.set()

    t = threading.Thread(target=drive, daemon=True)
    t.start()
    summary = capture(fake.endpoint, kwargs.pop("out"), **kwargs)
    t.join(timeout=10)
    if errors:
        raise errors[0]
    return summary


# -- transcript format ---------------------------------------------------------------------------


def test_transcript_keeps_every_received_line_byte_for_byte(sock: Path, tmp_path: Path) -> None:
    odd = [
        b'{"event":"X_CUSTOM","data":{"note":"caf\xc3\xa9 \xe2\x9c\x93"},"timestamp":{"seconds":1,"microseconds":2}}',
        b'{"event": "X_BAD_UTF8", "data": {"raw": "\xff\xfe"}, "timestamp": {"seconds": 1, "microseconds": 3}}',
        b'  {"event": "X_SPACES" , "timestamp": {"seconds": 1, "microseconds": 4}}  ',
        b"not json at all",
    ]
    out = tmp_path / "t.jsonl"

    def drive(fake: FakeQmp) -> None:
        for raw in odd:
            fake.send_raw(raw)

    with FakeQmp(sock) as fake:
        summary = run_with(fake, drive, out=out, duration_s=0.5, poll_ms=100)

    records = read_records(out)
    received = [r["line"].encode("utf-8", "surrogateescape") for r in records if r["dir"] == "recv"]
    for raw in odd:
        assert raw in received
    assert received[0] == FakeQmp(tmp_path / "unused.sock").greeting
    assert summary.lines == len(records)
    assert summary.events.get("X_CUSTOM") == 1


def test_transcript_lines_have_the_real_samples_format(sock: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    with FakeQmp(sock) as fake:
        run_with(fake, lambda f: f.io_error(), out=out, duration_s=0.4, poll_ms=100)

    text = out.read_text(encoding="ascii")
    assert text.endswith("\n")
    previous_t = 0.0
    for line in text.splitlines():
        record = json.loads(line)
        # same keys, order and separators as the real capture (json.dumps defaults)
        assert list(record) == ["t", "dir", "line"]
        assert json.dumps(record) == line
        assert record["dir"] in ("send", "recv")
        assert round(record["t"], 6) == record["t"]
        assert record["t"] >= previous_t
        previous_t = record["t"]
    commands = sent(read_records(out))
    assert [c["execute"] for c in commands[:6]] == [
        "qmp_capabilities", "query-version", "query-iothreads", "query-cpus-fast",
        "query-status", "query-block",
    ]
    assert [c["id"] for c in commands] == list(range(1, len(commands) + 1))
    assert all(list(c) == ["execute", "id"] for c in commands)


def test_command_lines_match_the_real_sample(sock: Path, tmp_path: Path) -> None:
    sample = SAMPLES / "a-stop-eio-dataplane" / "qmp-transcript.jsonl"
    if not sample.exists():
        pytest.skip(f"real QEMU sample not found at {sample}")
    sample_sends = [r["line"] for r in read_records(sample) if r["dir"] == "send"][:6]
    out = tmp_path / "t.jsonl"
    with FakeQmp(sock) as fake:
        run_with(fake, lambda f: None, out=out, duration_s=0.2, poll_ms=1000)
    ours = [r["line"] for r in read_records(out) if r["dir"] == "send"][:6]
    assert ours == sample_sends


# -- polling and auto-cont -----------------------------------------------------------------------


def test_polls_status_and_block_every_interval(sock: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    with FakeQmp(sock) as fake:
        summary = run_with(fake, lambda f: None, out=out, duration_s=1.0, poll_ms=100)
    names = [c["execute"] for c in sent(read_records(out))]
    # one poll at start, then one every 100 ms for 1 s
    assert 7 <= names.count("query-status") <= 12
    assert names.count("query-block") == names.count("query-status")
    assert names.count("query-version") == 1 and names.count("query-iothreads") == 1
    assert summary.iothreads == {"iothread0": 4242}
    assert summary.vcpus == {0: 4243}
    assert summary.qemu_version is not None and summary.qemu_version.startswith("7.2.22")


def test_auto_cont_resumes_an_io_error_stop_after_the_delay(sock: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"

    def drive(fake: FakeQmp) -> None:
        fake.io_error()
        assert wait_for(lambda: fake.status == "running", timeout=3)
        fake.shutdown()

    with FakeQmp(sock) as fake:
        summary = run_with(fake, drive, out=out, poll_ms=500, auto_cont_ms=200)

    records = read_records(out)
    stop_t = next(r["t"] for r in records if r["dir"] == "recv" and '"STOP"' in r["line"])
    cont = [r for r in records if r["dir"] == "send" and '"cont"' in r["line"]]
    assert len(cont) == 1
    assert 0.199 <= cont[0]["t"] - stop_t < 0.6  # t is rounded to 1 us
    assert recv_events(records) == ["BLOCK_IO_ERROR", "STOP", "RESUME", "SHUTDOWN"]
    # the state was polled right after the events, and the iostatus seen before cont
    after_stop = [json.loads(r["line"])["execute"] for r in records if r["dir"] == "send" and r["t"] > stop_t]
    assert after_stop[:2] == ["query-status", "query-block"]
    assert after_stop[after_stop.index("cont") - 1] == "query-block"
    assert summary.conts == 1


def test_no_cont_for_a_stop_that_is_not_an_io_error(sock: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    with FakeQmp(sock) as fake:
        summary = run_with(fake, lambda f: f.user_stop(), out=out, duration_s=0.6, poll_ms=100, auto_cont_ms=50)
        assert fake.status == "paused"
    assert "cont" not in [c["execute"] for c in sent(read_records(out))]
    assert summary.conts == 0


def test_without_auto_cont_an_io_error_stop_stays_stopped(sock: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    with FakeQmp(sock) as fake:
        run_with(fake, lambda f: f.io_error(), out=out, duration_s=0.5, poll_ms=100)
        assert fake.status == "io-error"
    assert "cont" not in [c["execute"] for c in sent(read_records(out))]


def test_repeated_io_errors_get_one_cont_each(sock: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"

    def drive(fake: FakeQmp) -> None:
        for _ in range(3):
            fake.io_error()
            assert wait_for(lambda: fake.status == "running", timeout=3)
        fake.shutdown()

    with FakeQmp(sock) as fake:
        summary = run_with(fake, drive, out=out, poll_ms=1000, auto_cont_ms=50)
    assert recv_events(read_records(out)) == ["BLOCK_IO_ERROR", "STOP", "RESUME"] * 3 + ["SHUTDOWN"]
    assert summary.conts == 3


# -- how a capture ends --------------------------------------------------------------------------


def test_shutdown_ends_the_capture(sock: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"

    def drive(fake: FakeQmp) -> None:
        time.sleep(0.2)
        fake.shutdown()

    with FakeQmp(sock) as fake:
        summary = run_with(fake, drive, out=out, poll_ms=100)
    assert summary.ended == "shutdown"
    assert summary.elapsed_s < 2
    records = read_records(out)
    assert recv_events(records)[-1] == "SHUTDOWN"
    assert summary.events == {"SHUTDOWN": 1}


def test_duration_ends_the_capture(sock: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    with FakeQmp(sock) as fake:
        summary = run_with(fake, lambda f: None, out=out, duration_s=0.3, poll_ms=100)
    assert summary.ended == "duration"
    assert 0.3 <= summary.elapsed_s < 1.0


def test_stop_event_ends_the_capture(sock: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    stop = threading.Event()
    with FakeQmp(sock) as fake:
        summary = run_with(fake, lambda f: stop.set(), out=out, poll_ms=100, stop_event=stop)
    assert summary.ended == "stopped"


def test_ctrl_c_ends_the_capture_keeping_the_transcript(sock: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"

    def interrupt_after_polls(lines: int, total: int | None) -> None:
        if lines >= 14:
            raise KeyboardInterrupt

    with FakeQmp(sock) as fake:
        summary = run_with(fake, lambda f: None, out=out, poll_ms=20, progress=interrupt_after_polls)
    assert summary.ended == "interrupted"
    assert len(read_records(out)) == summary.lines >= 14


def test_lost_connection_ends_cleanly_keeping_everything_received(sock: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"

    def drive(fake: FakeQmp) -> None:
        fake.io_error()
        time.sleep(0.1)
        fake.muted = True
        fake.send_raw(b'{"timestamp": {"seconds": 1, "microseconds": 5}, "event": "RES', terminate=False)
        time.sleep(0.05)
        fake.drop()

    with FakeQmp(sock) as fake:
        summary = run_with(fake, drive, out=out, poll_ms=1000)
    assert summary.ended == "connection-lost"
    assert "connection lost" in summary.message and "keeps everything received" in summary.message
    records = read_records(out)
    assert recv_events(records) == ["BLOCK_IO_ERROR", "STOP"]
    assert records[-1] == {
        "t": records[-1]["t"],
        "dir": "recv",
        "line": '{"timestamp": {"seconds": 1, "microseconds": 5}, "event": "RES',
        "partial": True,
    }
    assert summary.partial_bytes == len(records[-1]["line"])


def test_transcript_is_on_disk_while_the_capture_runs(sock: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"

    def drive(fake: FakeQmp) -> None:
        fake.io_error()
        # flushed line by line: a kill now would lose nothing received
        assert wait_for(lambda: out.exists() and "STOP" in recv_events(read_records(out)), 2)
        fake.shutdown()

    with FakeQmp(sock) as fake:
        run_with(fake, drive, out=out, poll_ms=1000)


# -- connecting ----------------------------------------------------------------------------------


def test_capture_over_tcp(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    with FakeQmp(None) as fake:
        summary = run_with(fake, lambda f: f.shutdown(), out=out, poll_ms=100)
    assert summary.endpoint.startswith("tcp:127.0.0.1:")
    assert summary.ended == "shutdown"
    assert recv_events(read_records(out)) == ["SHUTDOWN"]


def test_wait_until_settled_returns_once_the_file_stops_growing(tmp_path: Path) -> None:
    log = tmp_path / "trace.log"
    log.write_text("")

    def grow() -> None:
        for i in range(5):
            with log.open("a") as fh:
                fh.write(f"line {i}\n")
            time.sleep(0.05)

    t = threading.Thread(target=grow)
    start = time.monotonic()
    t.start()
    wait_until_settled(log, quiet_s=0.2, limit_s=5)
    t.join()
    assert log.read_text().count("\n") == 5
    assert time.monotonic() - start < 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unix:/run/qmp.sock", ("unix", "/run/qmp.sock", None, None)),
        ("unix:/run/qmp.sock,server=on,wait=off", ("unix", "/run/qmp.sock", None, None)),
        ("tcp:localhost:4444", ("tcp", None, "localhost", 4444)),
        ("tcp:[::1]:4444", ("tcp", None, "::1", 4444)),
    ],
)
def test_parse_endpoint(text: str, expected: tuple) -> None:
    ep = parse_endpoint(text)
    assert (ep.kind, ep.path, ep.host, ep.port) == expected


@pytest.mark.parametrize("text", ["qmp.sock", "unix:", "tcp:host", "tcp:host:0", "tcp:host:http", "tcp::44"])
def test_bad_endpoints_are_capture_errors(text: str) -> None:
    with pytest.raises(CaptureError, match="bad QMP endpoint"):
        parse_endpoint(text)


def test_missing_socket_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="no such socket"):
        capture(f"unix:{tmp_path / 'none.sock'}", tmp_path / "t.jsonl")


def test_a_socket_that_is_not_qmp_is_refused(sock: Path, tmp_path: Path) -> None:
    with FakeQmp(sock, greeting=b"220 smtp.example ESMTP") as fake, pytest.raises(CaptureError, match="not a QMP monitor"):
        capture(f"unix:{fake.path}", tmp_path / "t.jsonl")


def test_silent_socket_times_out_with_a_hint(sock: Path, tmp_path: Path, monkeypatch) -> None:
    import socket as socket_mod

    monkeypatch.setattr("tracer.capture.HANDSHAKE_TIMEOUT_S", 0.3)
    server = socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_STREAM)
    server.bind(str(sock))
    server.listen(1)  # never accepts: like a QMP socket busy with another client
    try:
        with pytest.raises(CaptureError, match=r"no QMP greeting .* another client"):
            capture(f"unix:{sock}", tmp_path / "t.jsonl")
    finally:
        server.close()


def test_wait_retries_until_the_socket_appears(sock: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    fakes: list[FakeQmp] = []

    def start_later() -> None:
        time.sleep(0.3)
        fake = FakeQmp(sock).__enter__()
        fakes.append(fake)
        assert wait_for(lambda: "query-status" in fake.sent_names())
        fake.shutdown()

    t = threading.Thread(target=start_later, daemon=True)
    t.start()
    try:
        summary = capture(f"unix:{sock}", out, connect_wait_s=5)
    finally:
        t.join(5)
        for fake in fakes:
            fake.__exit__(None, None, None)
    assert summary.ended == "shutdown"


# -- the command ---------------------------------------------------------------------------------


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("endpoint", ["qmp.sock", "tcp:localhost:99999"])
def test_cli_bad_endpoint_exits_2_with_one_line(endpoint: str, tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(["capture", "--qmp", endpoint, "-o", str(tmp_path / "t.jsonl")], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "bad QMP endpoint" in err and "Traceback" not in err


def test_cli_unreachable_socket_exits_2_with_one_line(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(["capture", "--qmp", f"unix:{tmp_path}/x.sock", "-o", str(tmp_path / "t.jsonl")], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "cannot connect" in err


def test_cli_records_a_transcript_and_says_what_it_saw(sock: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "t.jsonl"

    def drive(fake: FakeQmp) -> None:
        fake.io_error()
        assert wait_for(lambda: fake.status == "running", timeout=3)
        fake.shutdown()

    with FakeQmp(sock) as fake:
        t = threading.Thread(
            target=lambda: (wait_for(lambda: "query-status" in fake.sent_names()), drive(fake)),
            daemon=True,
        )
        t.start()
        code, _, err = run_cli(["capture", "--qmp", f"unix:{sock}", "-o", str(out), "--auto-cont", "50", "--poll", "100"], capsys)
        t.join(5)
    assert code == 0
    assert "QEMU shut down" in err
    assert "1 BLOCK_IO_ERROR" in err and "1 cont sent" in err
    assert recv_events(read_records(out)) == ["BLOCK_IO_ERROR", "STOP", "RESUME", "SHUTDOWN"]


def test_cli_lost_connection_warns_and_exits_0(sock: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "t.jsonl"
    with FakeQmp(sock) as fake:
        t = threading.Thread(
            target=lambda: (wait_for(lambda: "query-status" in fake.sent_names()), fake.drop()),
            daemon=True,
        )
        t.start()
        code, _, err = run_cli(["capture", "--qmp", f"unix:{sock}", "-o", str(out)], capsys)
        t.join(5)
    assert code == 0
    assert "warning" in err and "connection lost" in err
    assert out.exists()


def test_cli_qemu_log_needs_a_trace_output(tmp_path: Path, capsys) -> None:
    log = tmp_path / "trace.log"
    log.write_text("")
    code, _, err = run_cli(
        ["capture", "--qmp", "unix:/nowhere", "-o", str(tmp_path / "t.jsonl"), "--qemu-log", str(log)], capsys
    )
    assert code == 2 and "--qemu-log needs -o naming a trace" in err


def test_cli_trace_output_keeps_the_transcript_beside_it_and_imports_both(
    sock: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    calls: list[tuple[list[Path], Path, bool]] = []
    def fake_import(paths, out, *, skip_bad=False, progress=None, **_output_options):
        calls.append((list(paths), Path(out), skip_bad))
        return SimpleNamespace(rows=42)

    monkeypatch.setattr(analyzer.capture, "import_traces", fake_import)
    log = tmp_path / "trace.log"
    log.write_text("1@1.0:runstate_set current_run_state 9 (running) new_state 3 (io-error)\n")
    out = tmp_path / "trace"
    with FakeQmp(sock) as fake:
        t = threading.Thread(
            target=lambda: (wait_for(lambda: "query-status" in fake.sent_names()), fake.shutdown()),
            daemon=True,
        )
        t.start()
        code, _, err = run_cli(
            ["capture", "--qmp", f"unix:{sock}", "-o", str(out), "--qemu-log", str(log)], capsys
        )
        t.join(5)
    assert code == 0, err
    transcript = tmp_path / "trace.qmp.jsonl"
    assert recv_events(read_records(transcript)) == ["SHUTDOWN"]
    assert calls == [([transcript, log], out, False)]
    assert "imported 42 steps" in err


def test_cli_imports_a_cut_off_capture_as_a_truncated_trace(sock: Path, tmp_path: Path, capsys) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "trace"

    def drive(fake: FakeQmp) -> None:
        fake.io_error()
        assert wait_for(lambda: fake.status == "running", timeout=3)
        time.sleep(0.1)
        fake.muted = True
        fake.send_raw(b'{"timestamp": {"seconds": 1, "micro', terminate=False)
        time.sleep(0.05)
        fake.drop()

    with FakeQmp(sock) as fake:
        t = threading.Thread(
            target=lambda: (wait_for(lambda: "query-status" in fake.sent_names()), drive(fake)),
            daemon=True,
        )
        t.start()
        code, _, err = run_cli(["capture", "--qmp", f"unix:{sock}", "-o", str(out), "--auto-cont", "50"], capsys)
        t.join(5)
    assert code == 0, err
    assert "connection lost" in err
    (part,) = sorted(out.rglob("*.parquet"))
    table = pq.read_table(part)
    meta = table.schema.metadata or {}
    # the cut-off line was left out of the trace, and the trace says so
    assert meta.get(b"blkreplay.truncated") == b"true" or meta.get(b"blkreplay.skipped_lines") == b"1"
    names = table.column("name").to_pylist()
    assert [n for n, k in zip(names, table.column("kind").to_pylist(), strict=True) if k == "qmp_event"] == [
        "BLOCK_IO_ERROR", "STOP", "RESUME",
    ]
