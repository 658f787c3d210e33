"""`blkreplay check` and `blkreplay replay`: exit status, the three output formats, options."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from analyzer import check
from analyzer.cli.app import main
from analyzer.rules.catalogue import RULE_IDS
from tests.analyzer.builders import TraceBuilder
from tests.analyzer.trace.test_load import broken_trace
from tracer import tracedir


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


@pytest.fixture
def failing(tmp_path: Path) -> Path:
    path = tmp_path / "fail.parquet"
    tracedir.write_table(broken_trace().table(), path)
    return path


@pytest.fixture
def passing(tmp_path: Path) -> Path:
    b = TraceBuilder()
    b.start()
    b.error(1)
    b.main_loop()
    b.cont()
    path = tmp_path / "pass.parquet"
    tracedir.write_table(b.table(), path)
    return path


def test_exit_status_and_text_output(capsys, failing: Path, passing: Path) -> None:
    code, out, _ = run(capsys, "check", str(passing))
    assert code == 0 and "PASS" in out and "iostatus-before-event" in out
    code, out, _ = run(capsys, "check", str(failing))
    assert code == 1 and "FAIL" in out
    assert "iostatus-before-event" in out and "error=1" in out
    code, out, _ = run(capsys, "check", str(failing), "--quiet")
    assert code == 1 and out.strip().startswith("FAIL") and len(out.strip().splitlines()) == 1


def test_json_document(capsys, failing: Path) -> None:
    code, out, _ = run(capsys, "check", str(failing), "--format", "json")
    d = json.loads(out)
    assert code == 1
    assert list(d) == ["schema", "verdict", "inputs", "summary", "findings", "not_applicable",
                       "not_applicable_reasons", "exercised", "incidents"]
    assert d["schema"] == "blkreplay.findings/1" and d["verdict"] == "fail"
    assert d["inputs"][0]["path"] == str(failing) and len(d["inputs"][0]["sha256"]) == 64
    assert set(d["summary"]) == {"steps", "vms", "episodes", "findings", "by_rule"}
    f = d["findings"][0]
    assert set(f) == {"rule", "severity", "vm", "device", "error_id", "seq", "ts_ns", "thread", "message", "src",
                      "time"}
    assert d["summary"]["findings"] == len(d["findings"])
    assert out == json.dumps(check([failing]).to_dict(), indent=2, ensure_ascii=False) + "\n"


def test_junit_has_one_case_per_rule(capsys, failing: Path) -> None:
    code, out, _ = run(capsys, "check", str(failing), "-f", "junit")
    assert code == 1
    suite = ET.fromstring(out).find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases) == list(RULE_IDS)
    assert cases["iostatus-before-event"].find("failure") is not None
    assert cases["seq-unique"].find("failure") is None
    assert int(suite.get("failures")) >= 1


def test_rules_option_output_file_and_usage_errors(capsys, tmp_path: Path, failing: Path) -> None:
    out_file = tmp_path / "out" / "findings.json"
    out_file.parent.mkdir()
    code, out, _ = run(capsys, "check", str(failing), "--rules", "vm-stop-thread,seq-unique",
                       "-f", "json", "-o", str(out_file))
    assert code == 0 and out == ""
    d = json.loads(out_file.read_text())
    assert list(d["summary"]["by_rule"]) == ["vm-stop-thread", "seq-unique"]
    assert [p.name for p in out_file.parent.iterdir()] == ["findings.json"]  # no temp file left
    code, _, err = run(capsys, "check", str(failing), "--rules", "no-such-rule")
    assert code == 2 and "unknown rule id no-such-rule" in err
    code, _, err = run(capsys, "check", str(failing), "--format", "xml")
    assert code == 2 and "unknown format" in err
    code, _, err = run(capsys, "check", str(tmp_path / "missing.parquet"))
    assert code == 2 and "no such file or directory" in err and "Traceback" not in err


def test_text_escapes_what_comes_from_the_trace(capsys, tmp_path: Path) -> None:
    hostile = "[bold red]x[/]\x1b[2J"
    b = TraceBuilder(iothreads={hostile: "iothread0"})
    b.start()
    b.error(1, hostile, iostatus=False)
    b.set_iostatus(1, hostile)
    b.main_loop()
    path = tmp_path / "t.parquet"
    tracedir.write_table(b.table(), path)
    code, out, _ = run(capsys, "check", str(path))
    assert code == 1
    assert "\x1b[2J" not in out and "\\x1b[2J" in out
    assert "[bold red]x[/]" in out  # shown literally, not interpreted as markup


def test_unusable_input_is_one_line_and_exit_2_from_the_console_script(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    proc = subprocess.run([sys.executable, "-m", "analyzer.cli", "check", str(bad)],
                          capture_output=True, text=True)
    if "No module named analyzer.cli.__main__" in proc.stderr:
        proc = subprocess.run([sys.executable, "-c", "from analyzer.cli import main; main()", "check", str(bad)],
                              capture_output=True, text=True)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and str(bad) in proc.stderr


def test_replay_command_text_jsonl_and_around(capsys, failing: Path) -> None:
    code, out, _ = run(capsys, "replay", str(failing), "--around", "7", "--context", "2")
    lines = out.strip().splitlines()
    assert code == 0 and lines[0].split()[:3] == ["seq", "time", "vm"]
    assert [ln.split()[0] for ln in lines[1:]] == ["5", "6", "7", "8", "9"]
    event = next(f.seq[0] for f in check([failing]).findings if f.rule == "iostatus-before-event")
    code, out, _ = run(capsys, "replay", str(failing), "--from-seq", str(event - 2), "--to-seq",
                       str(event + 2), "-f", "jsonl")
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["seq"] for r in rows] == list(range(event - 2, event + 3))
    assert {"runstate", "iostatus", "pending", "findings"} <= set(rows[0])
    assert "iostatus-before-event" in rows[2]["findings"] and rows[2]["name"] == "BLOCK_IO_ERROR"
    code, _, err = run(capsys, "replay", str(failing), "--vm", "nope")
    assert code == 2 and "--vm nope: no such VM in the trace (its VMs: vm0)" in err


def test_findings_of_imported_rows_point_at_the_original_lines(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    event = b.bie(None)
    resume = b.event("RESUME")
    for r in b.rows:
        r["src_file"], r["src_line"] = "events.jsonl", r["seq"] + 1
    path = tmp_path / "t.parquet"
    tracedir.write_table(b.table(), path)
    [f] = [f for f in check([path]).findings if f.rule == "stop-follows-error"]
    assert f.src == (f"events.jsonl:{event + 1}", f"events.jsonl:{resume + 1}")
    assert check([path]).to_dict()["findings"][0]["src"] == list(f.src)


def test_an_empty_trace_is_checked_and_replayed_but_not_a_silent_pass(capsys, tmp_path: Path) -> None:
    # A check of no steps used to PASS silently (issue #12): a trace-empty warning says so.
    path = tmp_path / "empty.parquet"
    tracedir.write_table(TraceBuilder().table(), path)
    result = check([path])
    assert (result.steps, result.vms, result.verdict) == (0, 0, "pass")
    [f] = result.findings
    assert (f.rule, f.severity) == ("trace-empty", "warning") and "empty.parquet" in f.message
    assert len(result.episodes) == 0
    code, out, _ = run(capsys, "replay", str(path), "-f", "jsonl")
    assert code == 0 and out == ""
    code, out, _ = run(capsys, "check", str(path))
    assert code == 0 and "trace-empty" in out
