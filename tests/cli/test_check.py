"""`blkreplay check` prints what the renderers of `analyzer.render` make of the library's result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analyzer import check
from analyzer.cli import main
from analyzer.render import render_check

TRACES = Path(__file__).resolve().parents[2] / "traces"


def run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


@pytest.mark.parametrize("fmt", ["json", "junit", "text"])
def test_the_file_written_is_the_library_rendering(fmt, tmp_path, capsys):
    trace = TRACES / "sync-stop"
    out = tmp_path / f"findings.{fmt}"
    code, stdout, _ = run(["check", str(trace), "-f", fmt, "-o", str(out), "-q"], capsys)
    assert (code, stdout) == (1, "")
    assert out.read_text(encoding="utf-8") == render_check(check([str(trace)]), fmt, quiet=True)


def test_json_on_stdout_is_the_findings_document(capsys):
    code, stdout, _ = run(["check", str(TRACES / "fixed"), "-f", "json"], capsys)
    assert code == 0
    assert stdout == render_check(check([str(TRACES / "fixed")]), "json")
    assert json.loads(stdout)["verdict"] == "pass"


def test_quiet_text_is_only_the_verdict_line(capsys):
    code, stdout, _ = run(["check", str(TRACES / "sync-stop"), "-q"], capsys)
    assert code == 1
    assert len(stdout.splitlines()) == 1 and stdout.startswith("FAIL: ")


def test_text_to_a_file_has_the_table_the_findings_and_the_verdict(tmp_path, capsys):
    out = tmp_path / "check.txt"
    run(["check", str(TRACES / "sync-stop"), "-o", str(out)], capsys)
    text = out.read_text(encoding="utf-8")
    assert "\x1b[" not in text  # no colour in a file
    assert "event-before-stop" in text and "error   " in text
    assert text.splitlines()[-1].startswith("FAIL: ")
