"""`blkreplay capture` against hostile QMP peers: one line and exit 2, or a correct capture.

The peer is the fake QEMU monitor of ``tests/tracer/fake_qmp.py``, made to misbehave: a
greeting that is no QMP greeting (``{"QMP": 5}``, an array, 100,000 nested brackets, binary
junk), and after a proper handshake, lines no QEMU sends (100,000 nested brackets, a 17 MiB
line, garbage, a lone surrogate escape). A bad greeting must leave an earlier capture at the
output path untouched; a line beyond 16 MiB ends the capture with one line; a garbage line is
recorded as received, and the trace imported from the transcript is refused naming the
transcript's line (or imported, and accepted by check).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hostile.conftest import Outcome, Unchanged, assert_contract, run_cli
from tests.tracer.fake_qmp import FakeQmp, wait_for

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    return tmp_path / "qmp.sock"


def capture_with(fake: FakeQmp, out: Path, driver: Callable[[FakeQmp], None] | None = None,
                 *extra: str, duration: int = 20) -> Outcome:
    """Run `blkreplay capture -q` on `fake`, `driver(fake)` acting as QEMU once polled."""
    thread = None
    if driver is not None:
        def drive() -> None:
            if wait_for(lambda: "query-status" in fake.sent_names()):
                driver(fake)
        thread = threading.Thread(target=drive, daemon=True)
        thread.start()
    outcome = run_cli(["capture", "--qmp", fake.endpoint, "-o", out, "-q", "--duration", str(duration), *extra])
    if thread is not None:
        thread.join(5)
    return outcome


@pytest.mark.parametrize(
    "greeting",
    [b'{"QMP": 5}', b'{"QMP": [1]}', b"[1, 2, 3]", b'"QMP"', DEEP, b'{"QMP": ' + DEEP + b"}", b"\xff\xfe\x00junk",
     b"220 smtp.example ESMTP", b'{"QMP": {"version": 1e400}}'],
    ids=["QMP-5", "QMP-array", "array", "string", "deep", "deep-QMP", "binary", "smtp", "1e400"],
)
def test_a_bad_greeting_is_one_line_and_leaves_an_earlier_capture(sock: Path, tmp_path: Path, greeting: bytes):
    old = tmp_path / "old.jsonl"
    old.write_text('{"t": 1, "dir": "recv", "line": "{}"}\n')
    with FakeQmp(sock, greeting=greeting) as fake, Unchanged(old):
        outcome = capture_with(fake, old)
    assert outcome.code == 2, outcome.err or outcome.crash
    assert_contract(outcome, names=str(sock))
    assert "not a QMP monitor" in outcome.err


def test_a_bad_greeting_creates_no_transcript(sock: Path, tmp_path: Path):
    out = tmp_path / "new.jsonl"
    with FakeQmp(sock, greeting=b'{"QMP": 5}') as fake:
        outcome = capture_with(fake, out)
    assert outcome.code == 2
    assert not out.exists()


def test_a_line_beyond_16_mib_ends_the_capture_with_one_line(sock: Path, tmp_path: Path):
    out = tmp_path / "t.jsonl"

    def flood(fake: FakeQmp) -> None:
        fake.event("STOP")
        # no reply to a poll in the middle of the line (its \r\n would end the line short of
        # 16 MiB, and the capture would wait for that reply until --duration ends)
        fake.muted = True
        fake.send_raw(b'{"event": "', terminate=False)
        # generous: a loaded CI machine reads slowly, and the capture must see all 17 MiB
        # before its --duration ends (else it ends normally, with a partial last line)
        deadline = time.monotonic() + 100
        pieces = 0
        while pieces < 17 * 4 and time.monotonic() < deadline:  # the fake's socket times out in
            try:                                                 # 0.1 s: a busy reader gets more
                fake.send_raw(b"x" * (1 << 18), terminate=False)
                pieces += 1
            except TimeoutError:
                continue
            except OSError:  # the capture hung up: done
                return

    with FakeQmp(sock) as fake:
        outcome = capture_with(fake, out, flood, duration=120)
    assert outcome.code == 2, outcome.err or outcome.crash
    assert_contract(outcome)
    assert "longer than 16 MiB" in outcome.err
    lines = out.read_text(encoding="ascii").splitlines()  # what came before is kept
    assert any('"STOP"' in json.loads(line)["line"] for line in lines)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [(DEEP, "nested deeper"), (b"garbage {", "bad JSON"), (b'{"event": "\xff\xfe"}', "lone surrogate"),
     (b'{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "ST\\ud800"}', "lone surrogate"),
     (b'{"timestamp": {"seconds": 1e400, "microseconds": 2}, "event": "STOP"}', "out of range"),
     (b'{"event": ["STOP"]}', "expected a string")],
    ids=["deep", "garbage", "not-utf8", "surrogate", "1e400", "event-array"],
)
def test_a_hostile_line_after_the_handshake_is_recorded_then_refused_naming_its_line(
        sock: Path, tmp_path: Path, raw: bytes, fragment: str):
    out = tmp_path / "vm.parquet"

    def misbehave(fake: FakeQmp) -> None:
        fake.send_raw(raw)
        fake.shutdown()

    with FakeQmp(sock) as fake:
        outcome = capture_with(fake, out, misbehave)
    transcript = tmp_path / "vm.parquet.qmp.jsonl"
    assert outcome.code == 2, outcome.err or outcome.crash
    records = transcript.read_text(encoding="ascii").splitlines()
    bad = next(i for i, r in enumerate(records, 1) if json.loads(r)["line"].encode("utf-8", "surrogateescape") == raw)
    assert_contract(outcome, names=transcript, line=bad)
    assert fragment in outcome.err
    assert not out.exists()


def test_hostile_lines_in_a_transcript_only_capture_are_kept(sock: Path, tmp_path: Path):
    out = tmp_path / "t.jsonl"

    def misbehave(fake: FakeQmp) -> None:
        fake.send_raw(DEEP)
        fake.send_raw(b"garbage")
        fake.shutdown()

    with FakeQmp(sock) as fake:
        outcome = capture_with(fake, out, misbehave)
    assert outcome.code == 0, outcome.err or outcome.crash
    lines = [json.loads(line)["line"] for line in out.read_text(encoding="ascii").splitlines()]
    assert "garbage" in lines and DEEP.decode() in lines
