"""Assembling a :class:`~analyzer.report.document.Report` from a check result and the trace.

`build_report` does the I/O: it loads the trace once, checks it and reads the step columns the
report needs from that same loaded trace; `assemble_report` is the pure part (statistics,
context windows, timeline), so that renderers can be tested on results built by hand.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import shlex
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from analyzer.check import check
from analyzer.progress import ProgressCallback
from analyzer.report import context, source, stats
from analyzer.report.document import (
    ContextWindow,
    Integrity,
    ListedFinding,
    Provenance,
    Report,
    RuleSection,
    Statistics,
    Timeline,
)
from analyzer.result import CheckResult, Finding, RuleInfo
from analyzer.trace import load
from tracer import __version__

ContextFn = Callable[[Sequence[Finding]], list[ContextWindow | None]]

#: VMs drawn in the run-state timeline when a trace has many.
TIMELINE_VMS = 8


def rules_hash(rules: Sequence[RuleInfo]) -> str:
    """sha256 of the rule catalogue: sorted (id, severity, title), one per line."""
    lines = sorted(f"{r.id}\t{r.severity}\t{r.title}" for r in rules)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def default_command(paths: Sequence[str | Path], max_findings: int) -> str:
    args = ["blkreplay", "report", *(str(p) for p in paths)]
    if max_findings != 50:
        args += ["--max-findings", str(max_findings)]
    return shlex.join(args)


def _sections(result: CheckResult, max_findings: int) -> tuple[list[RuleSection], list[Finding]]:
    """Rule sections in catalogue order, with the first `max_findings` of each rule listed."""
    by_rule: dict[str, list[Finding]] = {}
    for f in result.findings:
        by_rule.setdefault(f.rule, []).append(f)
    sections = []
    listed: list[Finding] = []
    known = {r.id for r in result.rules}
    rules = list(result.rules) + [
        RuleInfo(rid, by_rule[rid][0].severity, rid, "", "")  # findings of an unlisted rule
        for rid in sorted(set(by_rule) - known)
    ]
    for rule in rules:
        fs = sorted(by_rule.get(rule.id, []), key=Finding.sort_key)
        head = fs[: max(max_findings, 0)]
        listed.extend(head)
        sections.append(
            RuleSection(rule, rule.id not in result.not_applicable, len(fs),
                        tuple(ListedFinding(f, None) for f in head))
        )
    return sections, listed


def _attach_contexts(sections: list[RuleSection], contexts: dict[int, ContextWindow | None]) -> list[RuleSection]:
    out = []
    for s in sections:
        listed = tuple(ListedFinding(lf.finding, contexts.get(id(lf.finding))) for lf in s.listed)
        out.append(RuleSection(s.rule, s.applicable, s.total, listed))
    return out


def assemble_report(
    result: CheckResult,
    steps: pd.DataFrame,
    *,
    max_findings: int = 50,
    command: str,
    generated_at: str | None = None,
    contexts: ContextFn | None = None,
) -> Report:
    """Everything the renderers show, from a check result and the trace's steps (the columns of
    :func:`analyzer.report.source.read_steps`, sorted by vm and seq). `contexts` replaces the
    replay-view windows (tests)."""
    episodes = result.episodes
    batch = source.as_steps(steps)
    sections, listed = _sections(result, max_findings)
    order = [r.id for r in result.rules]
    context_fn = contexts or (
        lambda fs: context.context_windows(steps, batch, fs, result.findings, order))
    windows = context_fn(listed) if listed else []
    sections = _attach_contexts(sections, {id(f): w for f, w in zip(listed, windows, strict=True)})

    summary = stats.vm_summary(episodes, steps)
    findings_per_vm = dict(sorted(Counter(f.vm for f in result.findings).items()))
    statistics = Statistics(
        vms=summary,
        errors=stats.errors_by_kind(episodes),
        latencies=stats.latency_summary(episodes),
        latency_values=stats.latency_values(episodes),
    )
    gaps = stats.seq_gaps(steps)
    clock = stats.clock_anomalies(steps)
    cap = max(max_findings, 0)
    integrity = Integrity(
        truncated=tuple(i for i in result.inputs if not i.complete),
        per_vm=stats.integrity_summary(steps, gaps, clock),
        seq_gaps=gaps.head(cap),
        clock_anomalies=clock.head(cap),
        seq_gaps_total=len(gaps),
        clock_anomalies_total=len(clock),
    )
    chosen = stats.most_affected(summary, findings_per_vm, TIMELINE_VMS)
    chosen_steps = steps[steps["vm"].isin(chosen).to_numpy()] if len(steps) else steps
    chosen_eps = episodes[episodes["vm"].astype(str).isin(chosen)] if len(episodes) else episodes
    timeline = Timeline(
        vms=chosen,
        total_vms=len(summary),
        intervals=stats.runstate_intervals(batch, chosen_eps, vms=chosen),
        markers=stats.timeline_markers(chosen_steps),
    )
    provenance = Provenance(
        inputs=tuple(result.inputs),
        version=__version__,
        rules_hash=rules_hash(result.rules),
        command=command,
        generated_at=generated_at,
    )
    return Report(result, provenance, sections, statistics, integrity, timeline,
                  max_findings, findings_per_vm)


def build_report(
    paths: Sequence[str | Path],
    *,
    max_findings: int = 50,
    timestamp: bool = False,
    command: str | None = None,
    progress: ProgressCallback | None = None,
) -> Report:
    """Check `paths` and gather everything an audit report shows.

    `command` is the command line printed as the way to reproduce the report (default: the
    equivalent `blkreplay report` call). No wall-clock time is recorded unless `timestamp`.
    Raises :class:`tracer.errors.InputError` for unusable input.
    """
    paths = [str(p) for p in paths]
    trace = load(paths)
    result = check(trace, progress=progress)
    steps = source.read_steps(trace)
    generated_at = (
        _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        if timestamp else None
    )
    return assemble_report(
        result,
        steps,
        max_findings=max_findings,
        command=command or default_command(paths, max_findings),
        generated_at=generated_at,
    )
