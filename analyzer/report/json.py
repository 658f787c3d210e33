"""The JSON audit report (`blkreplay.report/1`): the `check --format json` document as is,
plus provenance, the rule table and every statistic, for machines and dashboards.

Keys keep a fixed order and floats never appear (times are integer ns), so the file is
byte-identical for the same inputs.
"""

from __future__ import annotations

import json as _json
from typing import Any

from analyzer.report.document import REPORT_SCHEMA, Report
from analyzer.report.format import records


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
        "check": report.result.to_dict(),
        "rules": [
            {"id": s.rule.id, "title": s.rule.title, "severity": s.rule.severity,
             "guarantee": s.rule.guarantee, "applicable": s.applicable,
             "findings": s.total if s.applicable else None}
            for s in report.rules
        ],
        "statistics": {
            "vms": records(report.stats.vms),
            "errors": records(report.stats.errors),
            "latencies": records(report.stats.latencies),
        },
        "integrity": {
            "truncated_inputs": [i.path for i in integrity.truncated],
            "per_vm": records(integrity.per_vm),
            "seq_gaps_total": integrity.seq_gaps_total,
            "clock_anomalies_total": integrity.clock_anomalies_total,
            "seq_gaps": records(integrity.seq_gaps),
            "clock_anomalies": records(integrity.clock_anomalies),
        },
    }


def render_json(report: Report) -> bytes:
    text = _json.dumps(report_document(report), indent=2, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")
