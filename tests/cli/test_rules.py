"""`blkreplay rules ...` and `check --rules-file/--only-file`: what a user sees (exit codes,
lines, bytes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analyzer import check
from analyzer.cli import main
from analyzer.lang import builtin_text, lint
from analyzer.lang.listing import explain, show
from analyzer.rules import RULE_IDS

REPO = Path(__file__).resolve().parents[2]
TRACES = REPO / "traces"
EXAMPLES = TRACES / "rules" / "examples.yaml"


def run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_list_shows_every_rule_with_its_source(capsys):
    code, out, _ = run(["rules", "list", "--rules-file", str(EXAMPLES)], capsys)
    assert code == 0
    lines = out.splitlines()
    for rid in RULE_IDS:
        assert any(line.split()[0] == rid for line in lines[1:] if line.strip()), rid
    row = next(line for line in lines if line.split() and line.split()[0] == "vm-stop-thread")
    assert "python:analyzer.rules.vm_stop_thread + builtin.yaml" in row and "error" in row
    row = next(line for line in lines if line.split() and line.split()[0] == "block-job-settles")
    assert f"{EXAMPLES}:" in row


def test_show_builtin_prints_the_default_file_which_check_accepts(capsys, tmp_path):
    code, out, _ = run(["rules", "show", "--builtin"], capsys)
    assert (code, out) == (0, builtin_text())
    path = tmp_path / "b.yaml"
    path.write_text(out, encoding="utf-8")
    code, out, _ = run(["check", str(TRACES / "sync-stop"), "--rules-file", str(path), "--only-file",
                        "-f", "json", "-q"], capsys)
    doc = json.loads(out)
    assert code == 1
    assert sorted(doc["summary"]["by_rule"]) == ["iostatus-before-event", "iostatus-before-stop", "vm-stop-thread"]
    hand = check([str(TRACES / "sync-stop")], rules=list(doc["summary"]["by_rule"]))
    assert doc["findings"] == [f.to_dict() for f in hand.findings]


def test_show_ids_is_a_loadable_rule_file(capsys, tmp_path):
    code, out, _ = run(["rules", "show", "iostatus-before-event", "no-resume-while-failing",
                        "--rules-file", str(EXAMPLES)], capsys)
    assert code == 0 and out == show(["iostatus-before-event", "no-resume-while-failing"], [str(EXAMPLES)])
    path = tmp_path / "shown.yaml"
    path.write_text(out, encoding="utf-8")
    assert lint(path) == []
    assert "  - id: no-resume-while-failing\n" in out and "  bie_stop: {event: BLOCK_IO_ERROR, action: stop}\n" in out


def test_show_a_python_rule_says_why_it_stays_in_python(capsys):
    code, out, _ = run(["rules", "show", "stop-follows-error"], capsys)
    assert code == 0
    assert "# stop-follows-error: decided in Python (python:analyzer.rules.ordering); not expressible" in out


def test_explain(capsys):
    code, out, _ = run(["rules", "explain", "block-job-settles", "--rules-file", str(EXAMPLES)], capsys)
    assert code == 0 and out == explain("block-job-settles", [str(EXAMPLES)])
    assert out.startswith("block-job-settles (error, guarantee user): a failed block job is cancelled or completed within 30 s\n")
    assert f"defined at {EXAMPLES}:18 as responds over scope vm:" in out


def test_explain_unknown_id_is_exit_2(capsys):
    code, out, err = run(["rules", "explain", "nope"], capsys)
    assert (code, out) == (2, "")
    assert err.strip() == "blkreplay: error: unknown rule id nope; blkreplay rules list shows them"


def test_lint_prints_one_line_per_mistake_and_exits_2(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "macros:\n  a: b\n  b: a\nrules:\n  - id: r\n    severity: error\n    title: t\n"
        "    explanation: e\n    count_in_window: {what: {kind: vmstop}, more_than: 3, within: 10}\n",
        encoding="utf-8")
    code, out, _ = run(["rules", "lint", str(path)], capsys)
    assert code == 2
    assert out.splitlines() == [
        f"{path}:3:6: cycle in macros: a -> b -> a",
        f"{path}:5:5: unbound scope: the rule needs 'scope:' (vm | device | error_id)",
        f"{path}:9:36: unknown kind 'vmstop'; kinds: " + ", ".join(__import__("tracer.schema").schema.KINDS),
        f"{path}:9:67: window 10 has no unit: write e.g. 10s (ns, us, ms, s, m, h, d)",
    ]


def test_lint_a_sound_file(capsys):
    code, out, _ = run(["rules", "lint", str(EXAMPLES)], capsys)
    assert (code, out) == (0, "1 rule file(s): no problems\n")


def test_rules_test_runs_the_examples(capsys):
    code, out, _ = run(["rules", "test", str(EXAMPLES)], capsys)
    assert code == 0
    assert out.splitlines()[-1] == "6 passed, 0 failed"


def test_rules_test_failing_example_exits_4_not_the_findings_status(capsys, tmp_path):
    (tmp_path / "t.jsonl").write_text(
        '{"seq": 0, "ts_ns": 0, "vm": "v", "thread": "main", "thread_kind": "main", "kind": "qmp_event", "name": "STOP"}\n',
        encoding="utf-8")
    path = tmp_path / "r.yaml"
    path.write_text("rules:\n  - id: no-stop\n    severity: error\n    title: t\n    explanation: e\n"
                    "    scope: vm\n    absent: {what: {event: STOP}}\ntests:\n  - trace: t.jsonl\n",
                    encoding="utf-8")
    code, out, _ = run(["rules", "test", str(path)], capsys)
    assert code == 4
    assert out.splitlines() == [f"{path}:9:5: FAILED: t.jsonl: no-stop: expected 0, found 1", "0 passed, 1 failed"]


def test_check_with_a_rule_file_beside_the_catalogue(capsys):
    code, out, _ = run(["check", str(TRACES / "no-reset"), "--rules-file", str(EXAMPLES), "-f", "json", "-q"], capsys)
    doc = json.loads(out)
    assert code == 1
    assert set(RULE_IDS) - {"trace-truncated"} <= set(doc["summary"]["by_rule"]) | set(doc["not_applicable"])
    assert doc["summary"]["by_rule"]["no-resume-while-failing"] > 0
    assert "block-job-settles" in doc["not_applicable"]


def test_check_refuses_a_rule_file_redefining_a_built_in(capsys, tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text(builtin_text(), encoding="utf-8")
    code, out, err = run(["check", str(TRACES / "fixed"), "--rules-file", str(path), "-q"], capsys)
    assert (code, out) == (2, "")
    assert err.strip() == (f"blkreplay: error: {path}:13: rule id 'iostatus-before-event' is a built-in "
                           "rule; run the file alone (only_files / --only-file) or rename the rule")


def test_check_with_a_broken_rule_file_names_the_first_mistake(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("rules:\n  - id: r\n    severity: errr\n", encoding="utf-8")
    code, _, err = run(["check", str(TRACES / "fixed"), "--rules-file", str(path), "--only-file"], capsys)
    assert code == 2
    assert err.startswith(f"blkreplay: error: {path}:2:5: ")
    assert err.rstrip().endswith("more: blkreplay rules lint shows all)")
    assert len(err.strip().splitlines()) == 1


def test_only_file_without_a_file_is_exit_2(capsys):
    code, _, err = run(["check", str(TRACES / "fixed"), "--only-file"], capsys)
    assert code == 2 and "only_files needs at least one rule file" in err


def test_rules_selects_among_loaded_rules(capsys):
    code, out, _ = run(["check", str(TRACES / "no-reset"), "--rules-file", str(EXAMPLES), "--only-file",
                        "--rules", "no-resume-while-failing", "-f", "json", "-q"], capsys)
    doc = json.loads(out)
    assert code == 1 and list(doc["summary"]["by_rule"]) == ["no-resume-while-failing"]


def test_explain_lists_the_examples_of_the_rule(capsys):
    code, out, _ = run(["rules", "explain", "no-resume-while-failing", "--rules-file", str(EXAMPLES)], capsys)
    assert code == 0
    assert out.endswith(f"examples (blkreplay rules test {EXAMPLES}):\n"
                        "  examples/clean.jsonl: 0 finding(s)\n  examples/block-job-late.jsonl: 0 finding(s)\n"
                        "  examples/flapping.jsonl: 0 finding(s)\n  examples/no-reset.jsonl: 1 finding(s)\n"
                        "  examples/resume-without-cont.jsonl: 0 finding(s)\n"
                        "  examples/forgotten-pause.jsonl: 0 finding(s)\n")


def test_rules_file_is_repeatable_and_ids_must_be_unique(capsys, tmp_path):
    one = tmp_path / "one.yaml"
    one.write_text("rules:\n  - id: no-stop\n    severity: warning\n    title: t\n    explanation: e\n"
                   "    scope: vm\n    absent: {what: {event: STOP}}\n", encoding="utf-8")
    two = tmp_path / "two.yaml"
    two.write_text(one.read_text(encoding="utf-8").replace("no-stop", "no-resume").replace("STOP", "RESUME"),
                   encoding="utf-8")
    code, out, _ = run(["check", str(TRACES / "fixed"), "--rules-file", str(one), "--rules-file", str(two),
                        "--only-file", "-f", "json", "-q"], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["verdict"] == "pass"
    assert set(doc["summary"]["by_rule"]) == {"no-stop", "no-resume"}
    assert all(n > 0 for n in doc["summary"]["by_rule"].values())
    code, _, err = run(["check", str(TRACES / "fixed"), "--rules-file", str(one), "--rules-file", str(one),
                        "--only-file"], capsys)
    assert code == 2
    assert err.strip() == f"blkreplay: error: {one}:2: rule id 'no-stop' is also defined at {one}:2"


def test_rule_file_text_is_printed_escaped(capsys, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text('rules:\n  - id: r\n    severity: error\n    title: "[red]boom\\e[31m\\u202e"\n'
                    "    explanation: e\n    scope: vm\n    absent: {what: {event: STOP}}\n", encoding="utf-8")
    code, out, _ = run(["rules", "explain", "r", "--rules-file", str(path)], capsys)
    assert code == 0
    assert "\x1b" not in out and "\u202e" not in out
    assert out.startswith("r (error, guarantee user): [red]boom")


def test_output_never_overwrites_a_rule_file(capsys, tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text(builtin_text(), encoding="utf-8")
    code, out, err = run(["check", str(TRACES / "fixed"), "--rules-file", str(path), "--only-file",
                          "-f", "json", "-o", str(path), "-q"], capsys)
    assert (code, out) == (2, "")
    assert len(err.strip().splitlines()) == 1 and str(path) in err
    assert path.read_text(encoding="utf-8") == builtin_text()


def test_report_with_a_rule_file_lists_its_rules_and_findings(capsys, tmp_path):
    out = tmp_path / "r.json"
    code, _, _ = run(["report", str(TRACES / "no-reset"), "--rules-file", str(EXAMPLES), "-f", "json",
                      "-o", str(out), "-q"], capsys)
    assert code == 1
    doc = json.loads(out.read_text())
    text = out.read_text()
    assert "no-resume-while-failing" in text and "--rules-file" in doc["provenance"]["command"]
    only = tmp_path / "only.json"
    code, _, _ = run(["report", str(TRACES / "fixed"), "--rules-file", str(EXAMPLES), "--only-file",
                      "-f", "json", "-o", str(only), "-q"], capsys)
    assert code == 0
    assert "iostatus-before-event" not in only.read_text()
