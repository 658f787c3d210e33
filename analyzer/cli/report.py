"""`blkreplay report`: an audit report (HTML, Markdown or JSON) of one or more traces.

Wraps :func:`analyzer.report.build_report` and :func:`analyzer.report.write_report`.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from analyzer import outputs
from analyzer.cli import console
from analyzer.cli.timeopts import SINCE_HELP, UNTIL_HELP, time_bounds
from analyzer.report import FORMATS, Report, build_report, format_for, write_report
from analyzer.text import terminal
from tracer.errors import check_format


def _command(paths: list[Path], output: str, fmt: str, max_findings: int, timestamp: bool,
             rule_files: list[Path], only_file: bool) -> str:
    """The canonical command line that reproduces this report (printed in it)."""
    args = ["blkreplay", "report", *(str(p) for p in paths), "-o", str(output), "--format", fmt]
    if max_findings != 50:
        args += ["--max-findings", str(max_findings)]
    for f in rule_files:
        args += ["--rules-file", str(f)]
    if only_file:
        args.append("--only-file")
    if timestamp:
        args.append("--timestamp")
    return shlex.join(args)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        paths: Annotated[list[Path], typer.Argument(metavar="TRACE", help="Trace files or directories to audit.")],
        output: Annotated[
            str,
            typer.Option("--output", "-o", metavar="FILE", help="Report file to write (replaced atomically; never "
                         "over an input); - is stdout (needs --format)."),
        ],
        fmt: Annotated[
            str | None,
            typer.Option("--format", "-f", metavar="html|md|json", help="Report format (default: from the output's extension)."),
        ] = None,
        max_findings: Annotated[
            int, typer.Option("--max-findings", min=0, help="Findings listed per rule; totals stay exact.")
        ] = 50,
        timestamp: Annotated[
            bool,
            typer.Option("--timestamp", help="Record the generation time (the report is then not reproducible)."),
        ] = False,
        parents: Annotated[
            bool, typer.Option("--parents", help="Create missing parent directories of --output.")
        ] = False,
        rule_files: Annotated[
            list[Path] | None,
            typer.Option("--rules-file", metavar="FILE", show_default=False,
                         help="A rule file (docs/rules-language.md) to run too; repeatable."),
        ] = None,
        only_file: Annotated[
            bool, typer.Option("--only-file", help="Run only the rules of the --rules-file files.")
        ] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary.")] = False,
        since: Annotated[str | None, typer.Option("--since", metavar="TIME", help=SINCE_HELP)] = None,
        until: Annotated[str | None, typer.Option("--until", metavar="TIME", help=UNTIL_HELP)] = None,
    ) -> None:
        """Write an audit report (HTML, Markdown or JSON).

        Verdict, rules, findings in context, per-VM statistics, charts,
        integrity and provenance. Exit status 0 pass, 1 fail, 2 unusable input."""
        if fmt is not None:
            check_format(fmt, FORMATS)
        kind = format_for(output, fmt)
        lo, hi = time_bounds(since, until, "blkreplay report")
        # refused before the check runs, not after
        files = list(rule_files or [])  # inputs too: -o never writes over a rule file
        outputs.check_output(output, inputs=[*paths, *files], kind="report", parents=parents,
                             allow_stdout=True)
        command = _command(paths, output, kind, max_findings, timestamp, files, only_file)
        for flag, value in (("--since", since), ("--until", until)):
            if value is not None:
                command += " " + shlex.join([flag, value])
        # Every phase has its bar: the check, the statistics (one more read of the steps),
        # then drawing the charts and writing the page.
        phases = (("checking", "steps"), ("statistics", "steps"), ("writing", "parts"))
        with console.progress_phases(*phases, quiet=quiet) as (checking, statistics, writing):
            rep = build_report(paths, max_findings=max_findings, timestamp=timestamp,
                               command=command, progress=checking,
                               statistics_progress=statistics,
                               rule_files=files, only_files=only_file, since=lo, until=hi)
            written = write_report(rep, output, kind, inputs=[*paths, *files], parents=parents,
                                   progress=writing)
        if not quiet:  # on stderr when the report itself is on stdout
            shown = console.out if written is not None else console.err
            shown.print(summary(rep, written, kind))
        raise typer.Exit(1 if rep.verdict == "fail" else 0)


def summary(rep: Report, written: Path | None, kind: str) -> str:
    """The terminal summary: verdict, counts, where the report is; trace names escaped."""
    style = "bold red" if rep.verdict == "fail" else "bold green"
    result = rep.result
    lines = [
        f"[{style}]{rep.verdict.upper()}[/] {rep.errors:,} error finding(s), {rep.warnings:,} warning(s) "
        f"in {result.steps:,} steps of {result.vms:,} VM(s)",
    ]
    for s in rep.rules:
        if s.total:
            lines.append(f"  {terminal(s.rule.id)}: {s.total:,}")
    worst = sorted(rep.findings_per_vm.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    for vm, n in worst:
        lines.append(f"  VM {terminal(vm)}: {n:,} finding(s)")
    if written is None:
        lines.append(f"report ({kind}) written to standard output")
    else:
        size = written.stat().st_size
        lines.append(f"report ({kind}, {_size(size)}) written to {terminal(written)}")
    return "\n".join(lines)
