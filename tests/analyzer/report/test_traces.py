"""Reports of real traces, end to end: the simulator records, `analyzer.check` judges, the report
renders. Clean (variant fixed) and failing (sync-stop) traces in every format, reproducibility,
and hostile names in a trace the analyzer itself checked."""

from __future__ import annotations

import json
import re

import pytest

import analyzer
from analyzer.cli import main
from analyzer.report import build_report, render
from tests.analyzer.report.fixtures import HOSTILE_DEVICE, TraceBuilder
from tracer.sim import SimConfig, record


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    base = tmp_path_factory.mktemp("sim")
    paths = {}
    for variant in ("fixed", "sync-stop"):
        paths[variant] = base / variant
        record(SimConfig(variant=variant, seed=5, vms=2, duration_s=0.05, error_rate=0.01),
               paths[variant])
    return paths


@pytest.mark.parametrize("fmt", ["html", "md", "json"])
def test_clean_sim_trace(sim, fmt):
    rep = build_report([sim["fixed"]])
    assert rep.verdict == "pass" and len(rep.result.episodes) > 0
    data = render(rep, fmt).decode()
    if fmt == "html":
        assert '<span id="verdict" class="verdict pass">PASS</span>' in data
        assert data.count("<svg ") == 3  # fleet, run-state timeline, latencies
    elif fmt == "md":
        assert "**Verdict: PASS**" in data and "| vm0 |" in data and "| vm1 |" in data
    else:
        doc = json.loads(data)
        assert doc["check"] == json.loads(json.dumps(analyzer.check([sim["fixed"]]).to_dict()))
        assert doc["statistics"]["vms"][0]["io_error_stops"] > 0


@pytest.mark.parametrize("fmt", ["html", "md", "json"])
def test_failing_sim_trace(sim, fmt):
    rep = build_report([sim["sync-stop"]], max_findings=3)
    result = rep.result
    assert rep.verdict == "fail"
    data = render(rep, fmt).decode()
    by_rule = result.by_rule
    failing = [r for r, n in by_rule.items() if n]
    if fmt == "html":
        assert '<span id="verdict" class="verdict fail">FAIL</span>' in data
        for rule in failing:
            assert f'<a href="#rule-{rule}">{rule}</a>' in data
        assert data.count('<article class="finding') == sum(min(n, 3) for n in by_rule.values())
        assert 'class="context"' in data and "iostatus drive0" in data
    elif fmt == "md":
        assert "**Verdict: FAIL**" in data
        for rule in failing:
            if by_rule[rule] > 3:
                assert f"{by_rule[rule]} findings; the first 3 are listed" in data
    else:
        doc = json.loads(data)
        assert doc["verdict"] == "fail"
        listed = sum(min(n, 3) for n in by_rule.values())
        assert len(doc["check"]["findings"]) == listed < len(result.findings)
        assert doc["findings_omitted"] == len(result.findings) - listed
        assert doc["check"]["summary"]["findings"] == len(result.findings)


def test_report_of_the_same_trace_is_byte_identical(sim):
    first, second = build_report([sim["sync-stop"]]), build_report([sim["sync-stop"]])
    for fmt in ("html", "md", "json"):
        assert render(first, fmt) == render(second, fmt)


def test_provenance_names_every_input(sim):
    rep = build_report([sim["fixed"], sim["sync-stop"]])
    html = render(rep, "html").decode()
    for info in rep.result.inputs:
        assert info.sha256 in html and f"{info.rows:,}" in html
    assert rep.provenance.sources == ("sim",)
    assert rep.provenance.command.startswith("blkreplay report ")


def test_hostile_device_in_a_checked_trace(tmp_path):
    b = TraceBuilder()
    b.start("vm0")
    b.error_cycle("vm0", HOSTILE_DEVICE, 1)
    b.error_cycle("vm0", HOSTILE_DEVICE, 2, stop=False)
    b.error_cycle("vm0", HOSTILE_DEVICE, 3)
    path = b.write(tmp_path / "hostile.parquet")
    rep = build_report([path])
    assert rep.verdict == "fail"
    html = render(rep, "html").decode()
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;document.title=&#39;pwned&#39;" in html
    md = render(rep, "md").decode()
    assert not re.search(r"(?<!\\)<", re.sub(r"</?(details|summary)>", "", md))


def test_command_line_on_real_traces(sim, tmp_path, capsys):
    for variant, code in (("fixed", 0), ("sync-stop", 1)):
        out = tmp_path / f"{variant}.html"
        with pytest.raises(SystemExit) as exc:
            main(["report", str(sim[variant]), "-o", str(out)])
        assert exc.value.code == code
        assert out.exists()
    stdout = capsys.readouterr().out
    assert "PASS" in stdout and "FAIL" in stdout
