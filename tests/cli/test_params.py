"""`blkreplay check --param RULE.KEY=VALUE`, the incidents in its output, and `rules explain`
listing a pattern rule's parameters."""

from __future__ import annotations

import json
import re

import pytest

from analyzer.cli import main
from tests.analyzer.pattern_scenarios import trace


def run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def _rules(stdout: str) -> list[str]:
    return [f["rule"] for f in json.loads(stdout)["findings"]]


def test_param_changes_a_threshold_and_the_incident_grouping(capsys):
    path = str(trace("flapping-backend"))
    code, out, _ = run(["check", path, "-f", "json"], capsys)
    assert code == 0 and _rules(out).count("pause-storm") == 2 and len(json.loads(out)["incidents"]) == 1
    code, out, _ = run(["check", path, "-f", "json", "--param", "pause-storm.min_pauses=8",
                        "--param", "incidents.min_vms=3"], capsys)
    assert code == 0 and "pause-storm" not in _rules(out) and json.loads(out)["incidents"] == []


def test_the_text_output_shows_the_incident(capsys):
    code, out, _ = run(["check", str(trace("flapping-backend"))], capsys)
    assert code == 0
    words = " ".join(out.split())  # the terminal wraps long lines
    assert re.search(r"incident 1: 2 VM\(s\)( on 2 host\(s\))?, 2026-05-28T20:27:00\.", words)
    assert "14 io-error pause(s), device(s) drive0, errno 5; paused p50 " in words
    assert out.rstrip().splitlines()[-1].startswith("PASS: 0 error finding(s), 4 warning(s)")


@pytest.mark.parametrize(("param", "message"), [
    ("pause-storm", "blkreplay: error: --param 'pause-storm': expected RULE.KEY=VALUE"),
    ("pause-storm.min_pauses=", "blkreplay: error: --param 'pause-storm.min_pauses=': expected RULE.KEY=VALUE"),
    ("nosuch.key=1", "blkreplay: error: unknown parameter 'nosuch.key': use RULE.KEY, RULE one of "),
    ("pause-storm.nokey=1", "blkreplay: error: unknown parameter 'pause-storm.nokey': pause-storm has window_s, min_pauses"),
    ("pause-storm.min_pauses=many", "blkreplay: error: parameter pause-storm.min_pauses: 'many' is not an integer >= 2"),
    ("incidents.window_s=-1", "blkreplay: error: parameter incidents.window_s: '-1' is not a number >= 0"),
])
def test_a_bad_param_is_one_line_and_exit_2(capsys, param, message):
    code, out, err = run(["check", str(trace("flapping-backend")), "--param", param], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(message) and err.count("\n") == 1


def test_rules_explain_lists_the_parameters_and_their_defaults(capsys):
    code, out, _ = run(["rules", "explain", "resume-before-storage-back"], capsys)
    assert code == 0
    assert out.startswith("resume-before-storage-back (warning, guarantee pattern): ")
    assert out.endswith("parameters (--param resume-before-storage-back.KEY=VALUE), with their defaults:\n"
                        "  within_s = 10.0 (an I/O error this soon after RESUME counts)\n")
