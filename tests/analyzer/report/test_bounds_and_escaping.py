"""What the report writers promise beyond their contents: every name from the trace escaped in
HTML (context-table headers too), and JSON reports bounded by ``max_findings`` like the others."""

from __future__ import annotations

import json

from analyzer.report import assemble_report, render
from analyzer.report.source import read_steps
from tests.analyzer.report.fixtures import failing_trace

#: ESC (an ANSI sequence), BEL, U+009B (the one-byte CSI) and U+202E (right-to-left override).
CONTROL_DEVICE = "disk\x1b[31m\x07\x9b\u202eevil"


def _report(tmp_path, **kw):
    _, result, path = failing_trace(tmp_path, **kw)
    return assemble_report(result, read_steps([path]), max_findings=kw.pop("max_findings", 50),
                           command="blkreplay report t.parquet -o r.html")


def test_control_characters_of_a_device_name_are_escaped_in_every_part_of_the_html(tmp_path):
    html = render(_report(tmp_path, device=CONTROL_DEVICE), "html")
    for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert raw.encode() not in html, f"{raw!r} reaches the HTML raw"
    shown = r"disk\x1b[31m\x07\x9b\u202eevil"
    assert f"<th>iostatus {shown}</th>".encode() in html  # the context table's column header
    assert f'<dd class="mono wrap">{shown}</dd>'.encode() in html  # the finding's device


def test_control_characters_are_escaped_in_markdown_too(tmp_path):
    md = render(_report(tmp_path, device=CONTROL_DEVICE), "md")
    for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert raw.encode() not in md


def test_json_report_lists_at_most_max_findings_per_rule_and_counts_the_rest(tmp_path):
    _, result, path = failing_trace(tmp_path, device="drive0", extra_errors=9)
    steps = read_steps([path])
    capped = json.loads(render(assemble_report(result, steps, max_findings=3, command="c"), "json"))
    full = json.loads(render(assemble_report(result, steps, max_findings=50, command="c"), "json"))
    by_rule = result.by_rule
    assert by_rule["stop-follows-error"] == 10
    # listed: the first 3 of stop-follows-error (replay order) + the truncation warning
    listed = capped["check"]["findings"]
    assert [f["rule"] for f in listed].count("stop-follows-error") == 3
    assert len(listed) == 4
    every = full["check"]["findings"]
    first_three = [f for f in every if f["rule"] == "stop-follows-error"][:3]
    assert listed == [f for f in every if f["rule"] != "stop-follows-error" or f in first_three]
    assert (capped["max_findings"], capped["findings_omitted"]) == (3, 7)
    assert {r["id"]: r["findings_omitted"] for r in capped["rules"]}["stop-follows-error"] == 7
    # everything but the listing is the same document, summary exact
    assert {k: v for k, v in capped["check"].items() if k != "findings"} == \
        {k: v for k, v in full["check"].items() if k != "findings"}
    assert capped["check"]["summary"]["findings"] == len(result.findings) == 11
    assert (full["max_findings"], full["findings_omitted"]) == (50, 0)
    assert full["check"] == json.loads(json.dumps(result.to_dict()))


def test_max_findings_zero_lists_none(tmp_path):
    _, result, path = failing_trace(tmp_path, device="drive0", extra_errors=2)
    doc = json.loads(render(assemble_report(result, read_steps([path]), max_findings=0, command="c"),
                            "json"))
    assert doc["check"]["findings"] == [] and doc["findings_omitted"] == len(result.findings)
    assert doc["check"]["verdict"] == "fail"  # the verdict still counts every finding


def test_rule_texts_are_escaped_too(tmp_path):
    """A rule's texts may one day come from a rule file: shown as text, controls visible."""
    import dataclasses

    _, result, path = failing_trace(tmp_path, device="drive0")
    rules = [dataclasses.replace(r, title=r.title + "\x1b[31m", explanation=r.explanation + "\u202e")
             for r in result.rules]
    result = dataclasses.replace(result, rules=rules)
    html = render(assemble_report(result, read_steps([path]), command="c"), "html")
    assert b"\x1b" not in html and "\u202e".encode() not in html
    assert b"is followed by STOP\\x1b[31m</h3>" in html
