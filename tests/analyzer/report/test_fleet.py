"""The fleet view of a report (issue #15): readable at thousands of VMs, hosts shown, findings
grouped, incidents tabulated, provenance last, time in UTC, and the reasons a rule did not
apply."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from analyzer.outage import Incident
from analyzer.report import build_report, render
from analyzer.report.fleet import MORE_ROWS, TOP_VMS, message_shape, natural_sorted
from analyzer.result import Finding
from analyzer.text import markdown_cell
from tests.analyzer.report.fixtures import HOSTILE_VM, WALL_T0, clean_trace, fleet_trace


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    return fleet_trace(tmp_path_factory.mktemp("fleet"), 2_000, 40)


@pytest.fixture(scope="module")
def big_report(big):
    return build_report([big], max_findings=20)


def test_vm_names_sort_naturally():
    assert natural_sorted(["vm10", "vm2", "vm1", "web-b", "vm02"]) == ["vm1", "vm02", "vm2", "vm10", "web-b"]


def test_messages_of_one_shape_differ_only_in_names_and_numbers():
    a = Finding("r", "error", "vm1", "drive0", 1, (5,), 1, "t", "BLOCK_IO_ERROR (stop) on drive0 was consumed at seq 5")
    b = Finding("r", "error", "vm22", "disk-b", 9, (77,), 1, "t", "BLOCK_IO_ERROR (stop) on disk-b was consumed at seq 77")
    assert message_shape(a) == message_shape(b) == "BLOCK_IO_ERROR (stop) on <device> was consumed at seq N"


def test_a_fleet_report_stays_small_and_starts_with_the_fleet(big_report):
    rep = big_report
    html = render(rep, "html").decode()
    assert len(html) < 1_500_000  # 2,000 VMs: bounded tables, not one row per VM each
    # the top of the page: verdict, the window in UTC, the counts, then the fleet chart
    assert html.index('id="verdict"') < html.index('id="window"') < html.index('id="fleet-timeline"')
    assert re.search(r'id="window">VMs paused by I/O errors during <span class="mono">2025-12-02T10:00:\d\d\.\d{6}Z', html)
    assert html.index('id="fleet-timeline"') < html.index('id="vm-table"') < html.index('id="findings-table"')
    assert html.index('id="findings-table"') < html.index('id="provenance"')  # provenance last ...
    assert '<details id="provenance-details">' in html  # ... and collapsed
    vm_table = html.split('id="vm-table"')[1].split("</table>")[0]
    assert vm_table.count("<tr>") == TOP_VMS + 1  # header + the top N
    more = html.split('id="vms-more"')[1].split("</details>")[0]
    assert more.count("<tr>") == MORE_ROWS + 1 and "the JSON report has every VM" in more
    assert len(re.findall(r">host\d\d<", vm_table)) == TOP_VMS  # the host beside each VM
    assert html.count('<tr><td class="mono wrapcell">host') >= 40  # the per-host table
    # 228 stop-follows-error findings of one shape: one group, one worked example
    groups = html.split('id="findings-table"')[1].split("</table>")[0]
    assert groups.count("<tr>") == 1 + len(rep.fleet.groups) and len(rep.fleet.groups) <= 3
    sfe = next(g for g in rep.fleet.groups if g.rule.id == "stop-follows-error")
    assert sfe.count == rep.result.by_rule["stop-follows-error"] == sfe.vms > 200
    # the fleet chart: a bounded legend (8 hosts + the others), a UTC axis
    chart = html.split('data-chart="fleet"')[1].split("</svg>")[0]
    assert "other hosts" in chart and "UTC, 2025-12-02" in chart
    assert len(re.findall(r">host\d\d<", chart)) <= 8 or chart.count("host") <= 12


def test_the_markdown_and_json_fleet_views(big_report):
    md = render(big_report, "md").decode()
    assert len(md) < 1_000_000
    assert md.index("VMs paused by I/O errors during 2025-12-02T10:00:") < md.index("## VMs by time paused")
    assert md.index("## Findings") < md.index("## Provenance")
    assert md.rstrip().endswith("</details>")
    doc = json.loads(render(big_report, "json"))
    assert len(doc["fleet"]["vms"]) == 2_000 and doc["fleet"]["vms"][0]["host"].startswith("host")
    assert doc["fleet"]["finding_groups"][0]["findings"] >= 1
    assert doc["fleet"]["window"]["start_ns"] >= WALL_T0


def _incidents():
    common = dict(devices=("drive0",), errnos=(5,), episodes=3, paused_p50_ns=2_000_000_000,
                  paused_p95_ns=3_000_000_000, paused_max_ns=3_100_000_000, still_paused=1)
    return [
        Incident(1, WALL_T0, WALL_T0 + 3_500_000_000, (("host01", "vm2"), ("host01", "vm10"), ("host02", "vm1")),
                 ("host01", "host02"), **common),
        Incident(2, WALL_T0 + 600 * 10**9, WALL_T0 + 601 * 10**9, ((None, HOSTILE_VM),), (), **common),
    ]


def test_incidents_are_tabulated_in_utc(tmp_path):
    rep = build_report([fleet_trace(tmp_path, 12, 3)])
    rep.result.incidents = _incidents()
    html = render(rep, "html").decode()
    table = html.split('id="incidents-table"')[1].split("</table>")[0]
    assert "2025-12-02T10:00:00.000000Z – 10:00:03.500000Z" in table
    assert "vm1, vm2, vm10" in table  # natural order
    assert "host01, host02" in table and "EIO (5)" in table and "2.000 s" in table and "3.100 s" in table
    assert "vm-[bold red]x[/]\\x1b[31m|`*_#" in table  # a hostile name, escaped
    top = html.split('id="incident-windows"')[1].split("</ul>")[0]
    assert "Incident 1</a>: <span class=\"mono\">2025-12-02T10:00:00.000000Z – 10:00:03.500000Z" in top
    assert "3 VMs on 2 hosts" in top
    md = render(rep, "md").decode()
    assert "- Incident 1: 2025-12-02T10:00:00.000000Z – 10:00:03.500000Z (3.500 s), 3 VMs on 2 hosts" in md
    assert "## Incidents" in md and "2025-12-02T10:00:00.000000Z – 10:00:03.500000Z" in md
    doc = json.loads(render(rep, "json"))
    assert doc["fleet"]["incidents"][0]["vms"][0] == {"host": "host01", "vm": "vm2"}


def test_no_incidents_table_without_incidents(tmp_path):
    rep = build_report([clean_trace(tmp_path)[2]])
    assert rep.result.incidents == []
    assert 'id="incidents-table"' not in render(rep, "html").decode()


def test_the_incidents_check_finds_are_tabled(tmp_path):
    # six VMs on two hosts pausing together: `check` groups them into incidents itself
    rep = build_report([fleet_trace(tmp_path, 6, 2)])
    assert rep.result.incidents
    assert 'id="incidents-table"' in render(rep, "html").decode()


def test_not_applicable_rules_say_why(tmp_path):
    path = clean_trace(tmp_path)[2]
    rep = build_report([path])
    na = [s for s in rep.rules if not s.applicable]
    assert na
    html, md = render(rep, "html").decode(), render(rep, "md").decode()
    for s in na:
        reason = rep.fleet.reasons[s.rule.id]
        assert f"not applicable: {reason}" in html
        assert markdown_cell(f"{s.rule.id} is not applicable: {reason}") in md


def test_a_pass_with_nothing_exercised_says_so(tmp_path):
    path = clean_trace(tmp_path)[2]
    rep = build_report([path])
    ordering = [r.id for r in rep.result.rules if r.guarantee != "integrity"]
    rep.result.not_applicable = list(dict.fromkeys([*rep.result.not_applicable, *ordering]))
    from analyzer.report import fleet
    rep.fleet = replace(rep.fleet, nothing_exercised=fleet.nothing_exercised(rep.result))
    assert rep.verdict == "pass" and rep.fleet.nothing_exercised
    assert "nothing was exercised" in render(rep, "html").decode()
    assert "nothing was exercised" in render(rep, "md").decode()
    assert json.loads(render(rep, "json"))["fleet"]["nothing_exercised"] is True


def test_hostile_host_names_are_text_everywhere(tmp_path):
    from markdown_it import MarkdownIt

    from tests.analyzer.report.fixtures import HOSTILE_DEVICE, TraceBuilder

    b = TraceBuilder()
    for vm in ("vm1", "vm2"):
        b.start(vm)
        b.error_cycle(vm, "drive0", 1, stop=vm == "vm1")
    for row in b.rows:
        row["host"] = HOSTILE_DEVICE if row["vm"] == "vm1" else "h\x1b[31m|`*_#"
    rep = build_report([b.write(tmp_path / "hostile.parquet")])
    html = render(rep, "html").decode()
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html  # shown, as text (tables and the fleet chart's legend)
    md = render(rep, "md").decode()
    rendered = MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    assert "<script" not in rendered and "<img" not in rendered
    assert "\\x1b" in md and "\x1b" not in md and "\x1b" not in html
