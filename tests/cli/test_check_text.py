"""What `blkreplay check` says beyond counts: when a finding happened (ISO-8601 UTC and its
place in an episode), why a rule did not apply, a PASS that exercised nothing, a compact
table on a narrow terminal, and --since / --until."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from analyzer import check
from analyzer.cli.app import main
from analyzer.render.text import print_text
from analyzer.timefmt import iso_utc
from tests.analyzer.builders import TraceBuilder
from tests.analyzer.trace.test_load import broken_trace
from tracer import tracedir

WALL = 1_796_188_106_000_000_000  # 2026-12-02T05:08:26Z: a wall-clock trace, like an import


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def _write(b: TraceBuilder, path: Path, *, offset: int = 0) -> Path:
    for r in b.rows:
        r["ts_ns"] += offset
    tracedir.write_table(b.table(), path)
    return path


@pytest.fixture
def failing_wall(tmp_path: Path) -> Path:
    return _write(broken_trace(), tmp_path / "fail.parquet", offset=WALL)


@pytest.fixture
def idle(tmp_path: Path) -> Path:
    """A VM that runs and does I/O, and never meets an error: no ordering rule can apply."""
    b = TraceBuilder()
    b.start()
    b.io(n=3)
    return _write(b, tmp_path / "idle.parquet")


def _text(result, width: int = 120) -> str:
    buf = io.StringIO()
    print_text(result, Console(file=buf, width=width, no_color=True, highlight=False, soft_wrap=True))
    return buf.getvalue()


def test_findings_say_when_in_iso_utc_and_where_in_their_episode(failing_wall: Path) -> None:
    result = check([failing_wall])
    f = result.findings[0]
    text = _text(result)
    assert f"at {iso_utc(f.ts_ns)}" in text
    assert "s into episode 1" in text
    assert result.to_dict()["findings"][0]["time"] == iso_utc(f.ts_ns)


def test_a_pass_that_exercised_nothing_says_so(capsys, idle: Path) -> None:
    result = check([idle])
    assert result.verdict == "pass" and not result.exercised
    code, out, _ = run(capsys, "check", str(idle))
    assert code == 0
    assert out.splitlines()[-1].startswith("PASS — but nothing was exercised: no ordering rule applied")
    code, out, _ = run(capsys, "check", str(idle), "-f", "json")
    doc = json.loads(out)
    assert doc["verdict"] == "pass" and doc["exercised"] is False


def test_an_exercised_pass_is_a_plain_pass(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    b.error(1)
    b.main_loop()
    b.cont()
    result = check([_write(b, tmp_path / "pass.parquet")])
    assert result.exercised and _text(result).splitlines()[-1].startswith("PASS: 0 error finding(s)")


def test_the_reason_a_rule_is_not_applicable_is_shown(capsys, idle: Path) -> None:
    result = check([idle])
    assert result.not_applicable_reasons["event-before-stop"] == "the trace has no STOP event"
    assert set(result.not_applicable_reasons) == set(result.not_applicable)
    text = _text(result)
    assert "n/a event-before-stop" in text and "the trace has no STOP event" in text
    _, out, _ = run(capsys, "check", str(idle), "-f", "json")
    assert json.loads(out)["not_applicable_reasons"]["vm-stop-thread"] == "the trace has no vm_stop rows"


def test_a_narrow_terminal_gets_a_compact_rule_table(failing_wall: Path) -> None:
    result = check([failing_wall])
    wide, narrow = _text(result, 120), _text(result, 80)
    assert "checks" in wide and "checks" not in narrow
    assert max(len(line) for line in narrow.splitlines() if "│" in line) <= 80
    assert "iostatus-before-event" in narrow


def test_since_until_keep_the_findings_of_the_window(capsys, failing_wall: Path) -> None:
    full = check([failing_wall])
    first, last = full.findings[0].ts_ns, max(f.ts_ns for f in full.findings)
    assert first != last
    later = check([failing_wall], since=first + 1)
    assert [f for f in full.findings if f.ts_ns > first] == later.findings
    assert len(later.findings) < len(full.findings)
    none = check([failing_wall], until=iso_utc(WALL - 1_000))  # ISO-8601 text; before every step
    assert none.findings == [] and len(none.episodes) == 0 and none.verdict == "pass"
    # The command line: epoch seconds or ISO-8601; a window with no error finding passes.
    code, out, _ = run(capsys, "check", str(failing_wall), "-q", "--until", f"{(first - 1000) / 1e9:.6f}")
    assert code == 0 and out.startswith("PASS")
    code, out, _ = run(capsys, "check", str(failing_wall), "-q", "--since", iso_utc(first))
    assert code == 1
