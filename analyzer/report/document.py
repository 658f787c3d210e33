"""The data of an audit report: everything a renderer shows, computed once by `build_report`.

A :class:`Report` holds the check result, the provenance needed to reproduce it, the rule table
with the listed findings (capped per rule, totals exact) and their context windows, per-VM
statistics, integrity facts and the tables the charts are drawn from. Renderers only format it;
they compute nothing that could differ between formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from analyzer.result import CheckResult, Finding, InputInfo, RuleInfo

if TYPE_CHECKING:
    from analyzer.report.fleet import Fleet

REPORT_SCHEMA = "blkreplay.report/1"
FORMATS = ("html", "md", "json")


@dataclass(frozen=True)
class Provenance:
    """Where a report comes from and how to make it again."""

    inputs: tuple[InputInfo, ...]
    version: str
    #: sha256 of the rule catalogue that ran (sorted ids, severities, titles).
    rules_hash: str
    #: The command that reproduces the report.
    command: str
    #: ISO-8601 UTC generation time, only with `--timestamp` (otherwise None: reproducible).
    generated_at: str | None = None

    @property
    def schema_versions(self) -> tuple[str, ...]:
        return tuple(sorted({i.schema_version for i in self.inputs}))

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(sorted({i.source for i in self.inputs}))


@dataclass(frozen=True)
class ContextWindow:
    """The steps around a finding, as the replay view shows them (state reconstructed)."""

    columns: tuple[str, ...]
    #: Cells as text (None for an empty cell), in replay order.
    rows: tuple[tuple[str | None, ...], ...]
    #: Per row: is it one of the finding's evidence steps?
    evidence: tuple[bool, ...]
    #: Per row: are steps left out between the previous row and this one?
    gap_before: tuple[bool, ...]


@dataclass(frozen=True)
class ListedFinding:
    finding: Finding
    context: ContextWindow | None


@dataclass(frozen=True)
class RuleSection:
    """One rule of the catalogue as the report shows it."""

    rule: RuleInfo
    applicable: bool
    #: Exact number of findings (not capped).
    total: int
    #: The first findings in replay order, at most `max_findings`.
    listed: tuple[ListedFinding, ...] = ()

    @property
    def omitted(self) -> int:
        return self.total - len(self.listed)


@dataclass
class Statistics:
    """Per-VM statistics (tidy frames of :mod:`analyzer.report.stats`)."""

    vms: pd.DataFrame
    errors: pd.DataFrame
    latencies: pd.DataFrame
    #: Every latency value, for the histograms.
    latency_values: pd.DataFrame


@dataclass
class Integrity:
    """Facts about the trace itself: is it whole, numbered without holes, and clocked sanely."""

    truncated: tuple[InputInfo, ...]
    per_vm: pd.DataFrame
    #: The first seq gaps / clock anomalies (capped); totals are in `per_vm`.
    seq_gaps: pd.DataFrame
    clock_anomalies: pd.DataFrame
    seq_gaps_total: int
    clock_anomalies_total: int

    @property
    def clean(self) -> bool:
        return not self.truncated and not self.seq_gaps_total and not self.clock_anomalies_total


@dataclass
class Timeline:
    """What the run-state timeline chart draws, for the selected VMs."""

    vms: list[str]
    #: How many VMs the trace has (the chart shows `vms`, the most affected ones).
    total_vms: int
    intervals: pd.DataFrame
    markers: pd.DataFrame


@dataclass
class Report:
    result: CheckResult
    provenance: Provenance
    rules: list[RuleSection]
    stats: Statistics
    integrity: Integrity
    timeline: Timeline
    max_findings: int
    #: Findings per VM (exact), for summaries.
    findings_per_vm: dict[str, int] = field(default_factory=dict)
    #: The fleet view (:mod:`analyzer.report.fleet`): rankings, hosts, pauses, finding groups.
    fleet: Fleet | None = None

    @property
    def verdict(self) -> str:
        return self.result.verdict

    @property
    def errors(self) -> int:
        return sum(1 for f in self.result.findings if f.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.result.findings if f.severity == "warning")

    @property
    def listed_total(self) -> int:
        return sum(len(s.listed) for s in self.rules)

    @property
    def omitted_total(self) -> int:
        return sum(s.omitted for s in self.rules)
