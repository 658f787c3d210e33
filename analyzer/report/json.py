"""The JSON audit report (`blkreplay.report/1`): the `check --format json` document, plus
provenance, the rule table and every statistic, for machines and dashboards.

Like the HTML and Markdown reports it lists at most ``max_findings`` findings per rule (the
first in replay order), so that a trace with millions of findings does not make a report of
gigabytes: ``check.findings`` holds the listed ones, ``check.summary`` stays exact, and
``findings_omitted`` (beside ``max_findings``) says how many were left out. ``check --format
json`` is the document with every finding.

Keys keep a fixed order and floats never appear (times are integer ns), so the file is
byte-identical for the same inputs.
"""

from __future__ import annotations

import copy
import json as _json
from typing import Any

from analyzer.report.document import REPORT_SCHEMA, Report
from analyzer.report.format import records
from analyzer.result import CheckResult


def report_document(report: Report) -> dict[str, Any]:
    prov = report.provenance
    integrity = report.integrity
    return {
        "schema": REPORT_SCHEMA,
        "verdict": report.verdict,
        "provenance": {
            "blkreplay_version": prov.version,
            "schema_versions": list(prov.schema_versions),
            "sources": list(prov.sources),
            "rules_sha256": prov.rules_hash,
            "command": prov.command,
            "generated_at": prov.generated_at,
            "inputs": [
                {"path": i.path, "sha256": i.sha256, "rows": i.rows,
                 "schema_version": i.schema_version, "source": i.source, "complete": i.complete}
                for i in prov.inputs
            ],
        },
        "check": check_document(report),
        "max_findings": report.max_findings,
        "findings_omitted": len(report.result.findings) - report.listed_total,
        "rules": [
            {"id": s.rule.id, "title": s.rule.title, "severity": s.rule.severity,
             "guarantee": s.rule.guarantee, "applicable": s.applicable,
             "findings": s.total if s.applicable else None, "findings_omitted": s.omitted}
            for s in report.rules
        ],
        "statistics": {
            "vms": records(report.stats.vms),
            "errors": records(report.stats.errors),
            "latencies": records(report.stats.latencies),
        },
        "fleet": fleet_document(report),
        "integrity": {
            "truncated_inputs": [i.path for i in integrity.truncated],
            "per_vm": records(integrity.per_vm),
            "seq_gaps_total": integrity.seq_gaps_total,
            "clock_anomalies_total": integrity.clock_anomalies_total,
            "seq_gaps": records(integrity.seq_gaps),
            "clock_anomalies": records(integrity.clock_anomalies),
        },
    }


def fleet_document(report: Report) -> dict[str, Any]:
    """The fleet view (added in blkreplay.report/1, additive): every VM ranked by time paused
    with its host, per-host totals, the incidents, the finding groups and why rules were not
    applicable."""
    fl = report.fleet
    if fl is None:
        return {}
    return {
        "window": None if fl.window is None else {"start_ns": fl.window[0], "end_ns": fl.window[1]},
        "vms_paused": fl.vms_paused,
        "still_paused": fl.still_paused,
        "nothing_exercised": fl.nothing_exercised,
        "vms": records(fl.ranked[["vm", "host", "paused_ns", "io_error_stops", "paused_at_end",
                                  "errors", "findings"]]),
        "hosts": records(fl.hosts),
        "incidents": [i.to_dict() for i in report.result.incidents],
        "finding_groups": [
            {"rule": g.rule.id, "severity": g.rule.severity, "shape": g.shape, "findings": g.count,
             "vms": g.vms, "hosts": g.hosts, "example": g.example.to_dict()}
            for g in fl.groups
        ],
        "not_applicable": dict(fl.reasons),
    }


def check_document(report: Report) -> dict[str, Any]:
    """The `blkreplay.findings/1` document with only the listed findings (summary exact)."""
    result = report.result
    listed = {id(lf.finding) for s in report.rules for lf in s.listed}
    doc = result.to_dict() if len(listed) == len(result.findings) else _without_findings(result)
    doc["findings"] = [f.to_dict() for f in result.findings if id(f) in listed]
    return doc


def _without_findings(result: CheckResult) -> dict[str, Any]:
    """``result.to_dict()`` without turning every finding into a dict first (there may be
    millions: only the listed ones are wanted); same keys, same order."""
    empty = copy.copy(result)
    empty.findings = []
    doc = empty.to_dict()
    doc["verdict"] = result.verdict
    doc["summary"]["findings"] = len(result.findings)
    doc["summary"]["by_rule"] = result.by_rule
    return doc


def render_json(report: Report) -> bytes:
    text = _json.dumps(report_document(report), indent=2, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")
