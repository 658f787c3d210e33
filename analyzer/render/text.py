"""The terminal view of a check: a summary table, the findings, and the verdict line.

The same lines go to a terminal (with colour, at its width) and to a file written with ``-o``
(no colour, 120 columns wide). Every name from the trace passes through
:func:`analyzer.text.terminal`, so a device called ``[red]`` or holding an escape sequence is
shown, never obeyed.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from analyzer.outage import Incident
from analyzer.result import CheckResult, Finding
from analyzer.text import terminal
from analyzer.timefmt import format_ts, relative, seconds

#: Width of the text written to a file (a terminal uses its own).
FILE_WIDTH = 120
#: Below this width the rule table is compact: rule, severity, findings (no title).
COMPACT_WIDTH = 100
_SHORT = {"error": "err", "warning": "warn"}


class _EpisodeStarts:
    """Per VM, the episodes' seq spans and start times, to place a finding in its episode
    (numbered as ``blkreplay replay --episode N`` numbers them)."""

    def __init__(self, episodes: pd.DataFrame) -> None:
        self._by_vm: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        if not len(episodes):
            return
        none = np.iinfo(np.int64).max
        seqs = [c for c in episodes.columns if c.startswith("seq_")]
        tss = [c for c in episodes.columns if c.startswith("ts_")]

        def stack(cols: list[str], fill: int) -> np.ndarray:
            return np.column_stack([pd.array(episodes[c], dtype="Int64").to_numpy(dtype=np.int64, na_value=fill)
                                    for c in cols])

        lo = stack(seqs, none).min(axis=1)
        hi = stack(seqs, -1).max(axis=1)
        start = stack(tss, none).min(axis=1)
        vms = episodes["vm"].astype(str).to_numpy()
        for vm in np.unique(vms):
            mine = np.flatnonzero(vms == vm)  # table order = episode number order
            self._by_vm[str(vm)] = (lo[mine], hi[mine], start[mine])

    def locate(self, vm: str, seq: int) -> tuple[int, int] | None:
        """(episode number from 1, its start ts) of the last episode of `vm` starting at or
        before `seq` and reaching it, or None."""
        found = self._by_vm.get(vm)
        if found is None:
            return None
        lo, hi, start = found
        hits = np.flatnonzero((lo <= seq) & (hi >= seq) & (start != np.iinfo(np.int64).max))
        if not len(hits):
            return None
        i = int(hits[-1])
        return i + 1, int(start[i])


def _when(f: Finding, starts: _EpisodeStarts) -> str:
    """``at 2026-12-02T05:08:31.006409Z, +0.000737 s into episode 2`` (time of the first
    offending step; the episode as ``replay --episode`` numbers them), or ''."""
    if f.ts_ns is None:
        return ""
    text = f"at {format_ts(f.ts_ns)}"
    placed = starts.locate(f.vm, f.seq[0]) if f.seq else None
    if placed is not None:
        text += f", {relative(f.ts_ns, placed[1])} into episode {placed[0]}"
    return text


def _finding_line(f: Finding, starts: _EpisodeStarts | None = None) -> str:
    style = "red" if f.severity == "error" else "yellow"
    where = [f"{label}={terminal(value)}" for label, value in f.where()]
    src = f" [dim]({terminal(', '.join(f.src))})[/]" if f.src else ""
    when = _when(f, starts) if starts is not None else ""
    when = f"\n        [dim]{terminal(when)}[/]" if when else ""
    return (f"[{style}]{f.severity:7}[/] [bold]{terminal(f.rule)}[/] {' '.join(where)}\n"
            f"        {terminal(f.message)}{src}{when}")


def _summary_table(result: CheckResult, width: int = FILE_WIDTH) -> Table:
    """One row per rule: its id, severity, findings count (or n/a) and title; below
    :data:`COMPACT_WIDTH` without the title."""
    compact = width < COMPACT_WIDTH
    table = Table(title=f"{result.steps:,} steps, {result.vms:,} VM(s), "
                        f"{len(result.episodes):,} error episode(s)")
    table.add_column("rule")
    table.add_column("sev" if compact else "severity")
    table.add_column("findings", justify="right")
    if not compact:
        table.add_column("checks")
    counts = result.by_rule
    for r in result.rules:
        if r.id in result.not_applicable:
            cell, style = "n/a", "dim"
        else:
            n = counts.get(r.id, 0)
            cell = f"{n:,}"
            style = ("red" if r.severity == "error" else "yellow") if n else "green"
        cells = [f"[{style}]{terminal(r.id)}[/]", _SHORT.get(r.severity, r.severity) if compact else r.severity,
                 f"[{style}]{cell}[/]"]
        table.add_row(*cells, *([] if compact else [terminal(r.title)]))
    return table


def _not_applicable_lines(result: CheckResult) -> list[str]:
    """Why each rule was not applicable, one line per reason (rules sharing it together)."""
    by_reason: dict[str, list[str]] = {}
    for rid in result.not_applicable:
        text = result.not_applicable_reasons.get(rid) or "the trace lacks the steps it judges"
        by_reason.setdefault(text, []).append(rid)
    return [f"[dim]n/a[/] {terminal(', '.join(ids))}: [dim]{terminal(text)}[/]"
            for text, ids in by_reason.items()]


def _verdict_line(result: CheckResult) -> str:
    errors = sum(1 for f in result.findings if f.severity == "error")
    warnings = len(result.findings) - errors
    style = "bold red" if result.verdict == "fail" else "bold green"
    na = f", {len(result.not_applicable):,} rule(s) not applicable" if result.not_applicable else ""
    verdict = result.verdict.upper()
    if result.verdict == "pass" and not result.exercised:
        verdict = "PASS — but nothing was exercised: no ordering rule applied"
        style = "bold yellow"
    return (f"[{style}]{verdict}[/]: {errors:,} error finding(s), "
            f"{warnings:,} warning(s){na}")


def print_text(result: CheckResult, out: Console, *, quiet: bool = False) -> None:
    """Summary table (rule, severity, findings or n/a), the findings, the verdict line.

    `quiet` prints only the verdict line."""
    if not quiet:
        out.print(_summary_table(result, out.width))
        for line in _not_applicable_lines(result):
            out.print(line, soft_wrap=True)
        for i in result.inputs:
            if not i.complete:
                out.print(f"[yellow]incomplete input:[/] {terminal(i.path)}")
        if result.findings:
            out.print()
            starts = _EpisodeStarts(result.episodes)
            for f in result.findings:
                out.print(_finding_line(f, starts))
            out.print()
        _print_incidents(result.incidents, out)
    out.print(_verdict_line(result), soft_wrap=True)  # one line, whatever the width (grep, CI logs)


#: Incidents shown in full; the rest are counted (the JSON document has them all).
SHOWN_INCIDENTS = 10


def _incident_line(i: Incident) -> str:
    """``incident 1: 200 VM(s) on 10 host(s), <start> .. <end> (12.5 s)`` and an indented line
    with its pauses, devices, errnos and time paused (p50, p95, max)."""
    hosts = f" on {len(i.hosts):,} host(s)" if i.hosts else ""
    devices = f", device(s) {terminal(', '.join(i.devices))}" if 0 < len(i.devices) <= 4 else ""
    errnos = f", errno {', '.join(str(e) for e in i.errnos)}" if i.errnos else ""
    if i.paused_max_ns is not None:
        paused = (f"paused p50 {seconds(i.paused_p50_ns or 0)}, p95 {seconds(i.paused_p95_ns or 0)}, "
                  f"max {seconds(i.paused_max_ns)}")
    else:
        paused = "none resumed"
    still = f", {i.still_paused:,} still paused at the end" if i.still_paused else ""
    return (f"[bold magenta]incident {i.id}[/]: {len(i.vms):,} VM(s){hosts}, {format_ts(i.start_ns)} .. "
            f"{format_ts(i.end_ns)} ({seconds(i.end_ns - i.start_ns)})\n"
            f"        {i.episodes:,} io-error pause(s){devices}{errnos}; {paused}{still}")


def _print_incidents(incidents: list[Incident], out: Console) -> None:
    """A line per incident (correlated io-error pauses across VMs), none when there are none."""
    for i in incidents[:SHOWN_INCIDENTS]:
        out.print(_incident_line(i))
    if len(incidents) > SHOWN_INCIDENTS:
        out.print(f"... and {len(incidents) - SHOWN_INCIDENTS:,} more incident(s) (--format json lists them)")
    if incidents:
        out.print()


def render_text(result: CheckResult, *, quiet: bool = False) -> str:
    """What :func:`print_text` shows, as plain text (no colour, :data:`FILE_WIDTH` wide)."""
    buf = io.StringIO()
    print_text(result, Console(file=buf, width=FILE_WIDTH, no_color=True, highlight=False,
                               soft_wrap=True), quiet=quiet)
    return buf.getvalue()
