"""Audit reports in every format: contents, capping, determinism, escaping, atomic writes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from analyzer.report import (
    assemble_report,
    build_report,
    format_for,
    render,
    rules_hash,
    write_report,
)
from analyzer.report.source import read_steps
from analyzer.result import RuleInfo
from tests.analyzer.report.fixtures import (
    HOSTILE_DEVICE,
    HOSTILE_VM,
    RULES,
    clean_trace,
    failing_trace,
)
from tracer.errors import BlkreplayError, InputError, TraceFormatError

REPO = Path(__file__).resolve().parents[3]


def make_report(result, path, **kw):
    kw.setdefault("command", f"blkreplay report {path} -o out.html --format html")
    return assemble_report(result, read_steps([path]), **kw)


class _Tags(HTMLParser):
    """Every start tag and attribute of an HTML document (to prove nothing from a trace became
    markup)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)


def parse_html(data: bytes) -> _Tags:
    p = _Tags()
    p.feed(data.decode("utf-8"))
    return p


def _without_details(md: str) -> str:
    """Markdown without the report's own <details>/<summary> tags (its collapsed parts)."""
    return re.sub(r"</?(details|summary)>", "", md)


# --- each format, clean and failing ----------------------------------------------------------


def test_html_report_of_a_clean_trace(tmp_path):
    _, result, path = clean_trace(tmp_path)
    html = render(make_report(result, path), "html").decode()
    assert '<span id="verdict" class="verdict pass">PASS</span>' in html
    assert "No findings: every applicable rule holds" in html
    assert "not applicable" in html  # query-matches-events
    assert str(path) in html and result.inputs[0].sha256 in html
    assert rules_hash(RULES) in html
    assert "blkreplay report" in html and "--format html" in html
    assert html.count("<svg ") == 3  # fleet timeline, run-state timeline, latency histograms
    assert 'id="integrity-ok"' in html


def test_html_report_of_a_failing_trace_lists_findings_with_context(tmp_path):
    _, result, path = failing_trace(tmp_path, device="drive0")
    html = render(make_report(result, path), "html").decode()
    assert '<span id="verdict" class="verdict fail">FAIL</span>' in html
    assert "1 error finding and 1 warning" in html
    assert html.count('<article class="finding') == 2
    # The context window shows the evidence steps highlighted, around the BIE.
    bie = next(f for f in result.findings if f.rule == "stop-follows-error").seq[0]
    assert re.search(rf'<tr class="evidence"><td class="mono">{bie}</td>', html)
    assert "A stop request that is consumed without a STOP" in html  # the rule's explanation
    assert "no (truncated)" in html and "no completion manifest" in html


def test_markdown_report_of_clean_and_failing_traces(tmp_path):
    _, clean, cpath = clean_trace(tmp_path)
    md = render(make_report(clean, cpath), "md").decode()
    assert "**Verdict: PASS**" in md
    assert "| query-matches-events | query-block agrees with the events | I1 | error | not applicable |" in md
    assert "No findings" in md and "HTML report" in md
    _, failing, fpath = failing_trace(tmp_path, device="drive0")
    md = render(make_report(failing, fpath), "md").decode()
    assert "**Verdict: FAIL**" in md
    assert "| stop-follows-error | every BLOCK\\_IO\\_ERROR \\(stop\\) is followed by STOP | I4 | error | 1 |" in md
    assert "#### #1 BLOCK\\_IO\\_ERROR" in md
    assert "| ▶ | 21 |" in md  # evidence row of the context window
    _assert_tables_well_formed(md)


def test_json_report_embeds_the_check_document_and_statistics(tmp_path):
    _, result, path = failing_trace(tmp_path)
    doc = json.loads(render(make_report(result, path), "json"))
    assert doc["schema"] == "blkreplay.report/1"
    assert doc["verdict"] == "fail"
    assert doc["check"] == json.loads(json.dumps(result.to_dict()))
    assert doc["provenance"]["rules_sha256"] == rules_hash(RULES)
    assert doc["provenance"]["inputs"][0]["complete"] is False
    assert doc["provenance"]["generated_at"] is None
    rules = {r["id"]: r for r in doc["rules"]}
    assert rules["stop-follows-error"]["findings"] == 1
    assert rules["query-matches-events"]["applicable"] is False
    vm = doc["statistics"]["vms"][0]
    assert (vm["vm"], vm["errors"], vm["io_error_stops"]) == ("vm0", 3, 2)
    assert {row["measure"] for row in doc["statistics"]["latencies"]} == {
        "error → BLOCK_IO_ERROR", "BLOCK_IO_ERROR → STOP"}
    assert doc["integrity"]["truncated_inputs"] == [str(path)]
    _, clean, cpath = clean_trace(tmp_path)
    assert json.loads(render(make_report(clean, cpath), "json"))["verdict"] == "pass"


# --- capping ----------------------------------------------------------------------------------


def test_listings_are_capped_per_rule_and_totals_stay_exact(tmp_path):
    _, result, path = failing_trace(tmp_path, device="drive0", extra_errors=5)
    rep = make_report(result, path, max_findings=2)
    section = next(s for s in rep.rules if s.rule.id == "stop-follows-error")
    assert (section.total, len(section.listed), section.omitted) == (6, 2, 4)
    html = render(rep, "html").decode()
    assert "6 findings; the first 2 are listed, 4 more are left out" in html
    assert '<span class="sev-error">6</span>' in html
    md = render(rep, "md").decode()
    assert "6 findings; the first 2 are listed, 4 more are left out" in md
    doc = json.loads(render(rep, "json"))
    # JSON is capped like the others: 2 of the 6 listed (+ the truncation warning), totals exact
    assert len(doc["check"]["findings"]) == 3 and doc["check"]["summary"]["by_rule"]["stop-follows-error"] == 6
    assert (doc["max_findings"], doc["findings_omitted"]) == (2, 4)


# --- determinism ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["html", "md", "json"])
def test_same_inputs_give_byte_identical_reports(tmp_path, fmt):
    _, result, path = failing_trace(tmp_path)
    first = render(make_report(result, path), fmt)
    second = render(make_report(result, path), fmt)
    assert first == second


_RENDER = """
import sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from tests.analyzer.report.fixtures import failing_trace
from analyzer.report import assemble_report, render
from analyzer.report.source import read_steps
_, result, path = failing_trace(Path(sys.argv[1]))
rep = assemble_report(result, read_steps([path]), command="blkreplay report x")
sys.stdout.buffer.write(render(rep, "html"))
"""


def test_html_is_byte_identical_across_processes(tmp_path):
    """SVG ids, hash seeds and dict orders must not leak into the output."""
    outs = []
    for seed in ("1", "2"):
        d = tmp_path / seed
        d.mkdir()
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run([sys.executable, "-c", _RENDER.format(repo=str(REPO)), str(d)],
                              capture_output=True, env=env, check=True, cwd=tmp_path)
        outs.append(proc.stdout.replace(str(d).encode(), b"DIR"))
    assert outs[0] == outs[1]
    assert b"<svg " in outs[0]


def test_timestamp_only_when_asked(tmp_path):
    _, result, path = clean_trace(tmp_path)
    plain = render(make_report(result, path), "html").decode()
    assert "not recorded (reproducible output" in plain
    stamped = make_report(result, path, generated_at="2026-01-02T03:04:05Z")
    assert "2026-01-02T03:04:05Z" in render(stamped, "html").decode()
    assert json.loads(render(stamped, "json"))["provenance"]["generated_at"] == "2026-01-02T03:04:05Z"


def test_report_of_a_trace_without_errors_or_steps(tmp_path):
    from tests.analyzer.report.fixtures import TraceBuilder
    from tracer.schema import empty_table
    from tracer.tracedir import write_table

    b = TraceBuilder()
    b.start("vm0")
    quiet = b.write(tmp_path / "quiet.parquet")
    write_table(empty_table(), tmp_path / "empty.parquet")
    # A trace of no steps is not audited as a silent PASS: a trace-empty warning says so.
    empty = build_report([tmp_path / "empty.parquet"])
    assert [f.rule for f in empty.result.findings] == ["trace-empty"]
    assert "nothing was checked" in render(empty, "html").decode()
    for path in (quiet, tmp_path / "empty.parquet"):
        rep = build_report([path])
        html = render(rep, "html").decode()
        assert ("No findings" in html) == (path == quiet) and "No error actions in this trace." in html
        assert "No latency histogram" in html
        assert "No error actions in this trace." in render(rep, "md").decode()
        assert json.loads(render(rep, "json"))["statistics"]["errors"] == []


def test_rule_set_hash_ignores_order_and_sees_changes():
    assert rules_hash(RULES) == rules_hash(list(reversed(RULES)))
    changed = [RuleInfo(RULES[0].id, "warning", RULES[0].title, "", ""), *RULES[1:]]
    assert rules_hash(changed) != rules_hash(RULES)


# --- self-contained, escaped -----------------------------------------------------------------


def test_html_is_self_contained(tmp_path):
    _, result, path = failing_trace(tmp_path)
    html = render(make_report(result, path), "html")
    tags = parse_html(html)
    names = {t for t, _ in tags.tags}
    assert not names & {"script", "link", "iframe", "img", "object", "embed"}
    for tag, attrs in tags.tags:
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action"):
                assert value is not None and value.startswith("#"), (tag, name, value)
    assert "default-src 'none'" in html.decode()
    assert not re.search(rb"url\((?!#)", html)


def test_hostile_names_are_text_in_html(tmp_path):
    _, result, path = failing_trace(tmp_path, device=HOSTILE_DEVICE, vm=HOSTILE_VM)
    html = render(make_report(result, path), "html")
    tags = parse_html(html)
    assert not any(t in ("script", "img") for t, _ in tags.tags)
    assert not any(name.startswith("on") for _, attrs in tags.tags for name, _ in attrs)
    text = "".join(tags.text)
    assert HOSTILE_DEVICE in text  # shown literally
    assert "vm-[bold red]x[/]\\x1b[31m|`*_#" in text  # control characters made visible
    assert b"\x1b" not in html


def _assert_tables_well_formed(md: str) -> None:
    """Every row of a GFM table has as many unescaped pipes as its header."""
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if re.fullmatch(r"\|(?:-+:?\|)+", line.replace("---:", "---")):
            width = _pipes(lines[i - 1])
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                assert _pipes(lines[j]) == width, lines[j]
                j += 1


def _pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_hostile_names_are_text_in_markdown(tmp_path):
    _, result, path = failing_trace(tmp_path, device=HOSTILE_DEVICE, vm=HOSTILE_VM)
    md = render(make_report(result, path), "md").decode()
    # no unescaped "<" but the report's own collapsible parts: no HTML can reach a renderer
    assert not re.search(r"(?<!\\)<", _without_details(md))
    assert "\\<script\\>document.title='pwned'" in md
    assert "vm-\\[bold red\\]x\\[/\\]\\\\x1b\\[31m\\|\\`\\*\\_\\#" in md
    assert "\x1b" not in md
    _assert_tables_well_formed(md)


def test_hostile_names_survive_json_intact(tmp_path):
    _, result, path = failing_trace(tmp_path, device=HOSTILE_DEVICE, vm=HOSTILE_VM)
    doc = json.loads(render(make_report(result, path), "json"))
    assert doc["check"]["findings"][1]["device"] == HOSTILE_DEVICE
    assert doc["statistics"]["errors"][0]["vm"] == HOSTILE_VM


def test_markdown_code_fence_cannot_be_closed_by_a_path(tmp_path):
    _, result, path = clean_trace(tmp_path)
    md = render(make_report(result, path, command="blkreplay report 'a```b' -o x.md"), "md").decode()
    assert "````sh\nblkreplay report 'a```b' -o x.md\n````" in md


# --- writing ----------------------------------------------------------------------------------


def test_format_comes_from_the_extension_unless_given():
    assert format_for("r.html") == "html" and format_for("r.MD") == "md"
    assert format_for("r.json") == "json" and format_for("r.txt", "md") == "md"
    with pytest.raises(BlkreplayError, match="--format"):
        format_for("report.txt")
    with pytest.raises(BlkreplayError, match="unknown report format"):
        format_for("r.html", "pdf")


def test_write_is_atomic(tmp_path, monkeypatch):
    _, result, path = clean_trace(tmp_path)
    rep = make_report(result, path)
    out = tmp_path / "audit.md"
    out.write_text("previous report")
    import analyzer.report as report_pkg

    def broken(report, fmt):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(report_pkg, "render", broken)
    with pytest.raises(RuntimeError):
        write_report(rep, out)
    assert out.read_text() == "previous report"
    monkeypatch.undo()
    write_report(rep, out)
    assert out.read_bytes() == render(rep, "md")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_unreadable_input_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_steps([tmp_path / "missing"])
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(TraceFormatError, match=r"bad\.parquet"):
        read_steps([tmp_path / "bad.parquet"])


def test_markdown_renders_as_a_code_host_would(tmp_path):
    """Rendered with raw HTML allowed (as GitHub does for safe tags), the Markdown report gives
    tables of the right shape, no element from the trace, and the hostile names as text."""
    from markdown_it import MarkdownIt

    _, result, path = failing_trace(tmp_path, device=HOSTILE_DEVICE, vm=HOSTILE_VM)
    md = render(make_report(result, path), "md").decode()
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    tags = parse_html(html.encode())
    assert not {t for t, _ in tags.tags} & {"script", "img", "a"}
    text = "".join(tags.text)
    assert HOSTILE_DEVICE in text
    assert "vm-[bold red]x[/]\\x1b[31m|`*_#" in text
    assert html.count("<table>") >= 6
    findings = next(t for t in html.split("<table>") if "Message shape" in t.split("</thead>")[0])
    head = len(re.findall(r"<th[ >]", findings.split("</thead>")[0]))
    rows = findings.split("</table>")[0].split("<tr>")[2:]
    assert head == 10 and len(rows) == 2  # one group per rule and message shape
    assert all(len(re.findall(r"<td[ >]", row)) == head for row in rows)
