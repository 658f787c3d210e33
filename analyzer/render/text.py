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

from analyzer.result import CheckResult, Finding
from analyzer.text import terminal

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
    out.print(_verdict_line(result))


def render_text(result: CheckResult, *, quiet: bool = False) -> str:
    """What :func:`print_text` shows, as plain text (no colour, :data:`FILE_WIDTH` wide)."""
    buf = io.StringIO()
    print_text(result, Console(file=buf, width=FILE_WIDTH, no_color=True, highlight=False,
                               soft_wrap=True), quiet=quiet)
    return buf.getvalue()
