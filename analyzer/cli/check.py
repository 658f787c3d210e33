"""`blkreplay check`: run the rules over traces; exit 0 pass, 1 error findings, 2 bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from analyzer.cli import console
from analyzer.result import CheckResult, Finding
from analyzer.text import terminal
from tracer.errors import InputError
from tracer.tracedir import atomic_write_text

FORMATS = ("text", "json", "junit")


def render_json(result: CheckResult) -> str:
    """The `blkreplay.findings/1` document, stable key order, two-space indent."""
    return json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"


def _finding_line(f: Finding) -> str:
    style = "red" if f.severity == "error" else "yellow"
    where = [f"{label}={terminal(value)}" for label, value in f.where()]
    src = f" [dim]({terminal(', '.join(f.src))})[/]" if f.src else ""
    return f"[{style}]{f.severity:7}[/] [bold]{terminal(f.rule)}[/] {' '.join(where)}\n        {terminal(f.message)}{src}"


def render_text(result: CheckResult, out: Console, *, quiet: bool = False) -> None:
    """Summary table (rule, severity, findings or n/a), the findings, the verdict line."""
    if not quiet:
        table = Table(title=f"{result.steps:,} steps, {result.vms} VM(s), {len(result.episodes):,} error episode(s)")
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
        out.print(table)
        for i in result.inputs:
            if not i.complete:
                out.print(f"[yellow]incomplete input:[/] {terminal(i.path)}")
        if result.findings:
            out.print()
            for f in result.findings:
                out.print(_finding_line(f))
            out.print()
    errors = sum(1 for f in result.findings if f.severity == "error")
    warnings = len(result.findings) - errors
    style = "bold red" if result.verdict == "fail" else "bold green"
    na = f", {len(result.not_applicable)} rule(s) not applicable" if result.not_applicable else ""
    out.print(f"[{style}]{result.verdict.upper()}[/]: {errors} error finding(s), {warnings} warning(s){na}")


def _write(text: str, output: Path | None) -> None:
    if output is None:
        console.out.file.write(text)
        console.out.file.flush()
    else:
        atomic_write_text(output, text)


def register(app: typer.Typer) -> None:
    @app.command("check")
    def check_command(
        paths: Annotated[list[Path], typer.Argument(help="Trace files, directories or globs.", show_default=False)],
        rules: Annotated[
            str | None, typer.Option("--rules", help="Comma-separated rule ids (default: all).")
        ] = None,
        fmt: Annotated[str, typer.Option("--format", "-f", help="text, json or junit.")] = "text",
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="Write here (atomically) instead of stdout.")
        ] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar; text: only the verdict.")] = False,
        engine: Annotated[
            str | None, typer.Option("--engine", help="local (default) or dask.", show_default=False)
        ] = None,
        workers: Annotated[
            int | None, typer.Option("--workers", min=1, help="Threads (local engine, or Dask without --scheduler).")
        ] = None,
        scheduler: Annotated[
            str | None,
            typer.Option("--scheduler", metavar="ADDRESS", show_default=False,
                         help="Run on a Dask cluster: a scheduler address (tcp://host:8786; inputs on a "
                              "filesystem shared by the workers) or local:N to start N worker processes "
                              "here. Implies --engine dask; needs the distributed package (dask extra)."),
        ] = None,
    ) -> None:
        """Check the ordering guarantees of QEMU's block I/O error path in traces.

        Exit status: 0 no error finding, 1 error findings, 2 unusable input or usage."""
        from analyzer.check import check

        if fmt not in FORMATS:
            raise InputError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
        rule_ids = [r for r in rules.split(",")] if rules is not None else None
        with console.progress_bar("checking", quiet=quiet) as progress:
            result = check([str(p) for p in paths], rules=rule_ids, engine=engine, workers=workers,
                           scheduler=scheduler, progress=progress)
        if fmt == "json":
            _write(render_json(result), output)
        elif fmt == "junit":
            from analyzer.junit import to_junit

            _write(to_junit(result), output)
        elif output is None:
            render_text(result, console.out, quiet=quiet)
        else:
            buf = io.StringIO()
            render_text(result, Console(file=buf, width=120, no_color=True, highlight=False,
                                        soft_wrap=True), quiet=quiet)
            _write(buf.getvalue(), output)
        raise typer.Exit(1 if result.verdict == "fail" else 0)
