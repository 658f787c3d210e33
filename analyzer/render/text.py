"""The terminal view of a check: a summary table, the findings, and the verdict line.

The same lines go to a terminal (with colour, at its width) and to a file written with ``-o``
(no colour, 120 columns wide). Every name from the trace passes through
:func:`analyzer.text.terminal`, so a device called ``[red]`` or holding an escape sequence is
shown, never obeyed.
"""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from analyzer.outage import Incident
from analyzer.result import CheckResult, Finding
from analyzer.text import terminal
from analyzer.timefmt import format_ts, seconds

#: Width of the text written to a file (a terminal uses its own).
FILE_WIDTH = 120


def _finding_line(f: Finding) -> str:
    style = "red" if f.severity == "error" else "yellow"
    where = [f"{label}={terminal(value)}" for label, value in f.where()]
    src = f" [dim]({terminal(', '.join(f.src))})[/]" if f.src else ""
    return (f"[{style}]{f.severity:7}[/] [bold]{terminal(f.rule)}[/] {' '.join(where)}\n"
            f"        {terminal(f.message)}{src}")


def _summary_table(result: CheckResult) -> Table:
    """One row per rule: its id, severity, findings count (or n/a) and title."""
    table = Table(title=f"{result.steps:,} steps, {result.vms} VM(s), "
                        f"{len(result.episodes):,} error episode(s)")
    table.add_column("rule")
    table.add_column("severity")
    table.add_column("findings", justify="right")
    table.add_column("checks")
    counts = result.by_rule
    for r in result.rules:
        if r.id in result.not_applicable:
            cell, style = "n/a", "dim"
        else:
            n = counts.get(r.id, 0)
            cell = f"{n:,}"
            style = ("red" if r.severity == "error" else "yellow") if n else "green"
        table.add_row(f"[{style}]{r.id}[/]", r.severity, f"[{style}]{cell}[/]", terminal(r.title))
    return table


def _verdict_line(result: CheckResult) -> str:
    errors = sum(1 for f in result.findings if f.severity == "error")
    warnings = len(result.findings) - errors
    style = "bold red" if result.verdict == "fail" else "bold green"
    na = f", {len(result.not_applicable)} rule(s) not applicable" if result.not_applicable else ""
    return (f"[{style}]{result.verdict.upper()}[/]: {errors} error finding(s), "
            f"{warnings} warning(s){na}")


def print_text(result: CheckResult, out: Console, *, quiet: bool = False) -> None:
    """Summary table (rule, severity, findings or n/a), the findings, the verdict line.

    `quiet` prints only the verdict line."""
    if not quiet:
        out.print(_summary_table(result))
        for i in result.inputs:
            if not i.complete:
                out.print(f"[yellow]incomplete input:[/] {terminal(i.path)}")
        if result.findings:
            out.print()
            for f in result.findings:
                out.print(_finding_line(f))
            out.print()
        _print_incidents(result.incidents, out)
    out.print(_verdict_line(result))


#: Incidents shown in full; the rest are counted (the JSON document has them all).
SHOWN_INCIDENTS = 10


def _incident_line(i: Incident) -> str:
    """``incident 1: 200 VM(s) on 10 host(s), <start> .. <end> (12.5 s)`` and an indented line
    with its pauses, devices, errnos and time paused (p50, p95, max)."""
    hosts = f" on {len(i.hosts)} host(s)" if i.hosts else ""
    devices = f", device(s) {terminal(', '.join(i.devices))}" if 0 < len(i.devices) <= 4 else ""
    errnos = f", errno {', '.join(str(e) for e in i.errnos)}" if i.errnos else ""
    if i.paused_max_ns is not None:
        paused = (f"paused p50 {seconds(i.paused_p50_ns or 0)}, p95 {seconds(i.paused_p95_ns or 0)}, "
                  f"max {seconds(i.paused_max_ns)}")
    else:
        paused = "none resumed"
    still = f", {i.still_paused} still paused at the end" if i.still_paused else ""
    return (f"[bold magenta]incident {i.id}[/]: {len(i.vms)} VM(s){hosts}, {format_ts(i.start_ns)} .. "
            f"{format_ts(i.end_ns)} ({seconds(i.end_ns - i.start_ns)})\n"
            f"        {i.episodes} io-error pause(s){devices}{errnos}; {paused}{still}")


def _print_incidents(incidents: list[Incident], out: Console) -> None:
    """A line per incident (correlated io-error pauses across VMs), none when there are none."""
    for i in incidents[:SHOWN_INCIDENTS]:
        out.print(_incident_line(i))
    if len(incidents) > SHOWN_INCIDENTS:
        out.print(f"... and {len(incidents) - SHOWN_INCIDENTS} more incident(s) (--format json lists them)")
    if incidents:
        out.print()


def render_text(result: CheckResult, *, quiet: bool = False) -> str:
    """What :func:`print_text` shows, as plain text (no colour, :data:`FILE_WIDTH` wide)."""
    buf = io.StringIO()
    print_text(result, Console(file=buf, width=FILE_WIDTH, no_color=True, highlight=False,
                               soft_wrap=True), quiet=quiet)
    return buf.getvalue()
