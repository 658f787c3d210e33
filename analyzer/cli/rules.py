"""`blkreplay rules`: list, show, explain, lint and test rules (built-in and rule files).

Each subcommand wraps one library call of `analyzer.lang` (`listing.entries`, `listing.show`,
`listing.explain`, `lint`, `examples.run_examples`) and prints its result, escaped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from analyzer.cli import console
from analyzer.lang import lint
from analyzer.lang.examples import run_examples
from analyzer.lang.listing import entries, explain, show
from analyzer.text import printable
from tracer.errors import EXIT_TESTS_FAILED

RuleFiles = Annotated[
    list[Path] | None,
    typer.Option("--rules-file", metavar="FILE", help="A rule file to load too (repeatable).", show_default=False),
]


def _files(paths: list[Path] | None) -> list[str]:
    return [str(p) for p in paths or []]


def _print(text: str) -> None:
    """Plain text, line by line, every control character escaped (rule files and traces are
    not trusted)."""
    for line in text.splitlines():
        console.out.out(printable(line), highlight=False)


def register(app: typer.Typer) -> None:
    rules = typer.Typer(help="List, show, explain, lint and test rules.", no_args_is_help=True)
    app.add_typer(rules, name="rules")

    @rules.command("list")
    def list_command(rule_files: RuleFiles = None) -> None:
        """Every rule: built-in (and restated in the default rule file) and loaded."""
        found = entries(_files(rule_files))
        width = max(len(e.id) for e in found)
        _print(f"{'id':<{width}}  {'severity':<8}  source")
        for e in found:
            source = e.source + (" + builtin.yaml" if e.restated else "")
            _print(f"{e.id:<{width}}  {e.severity:<8}  {source}")

    @rules.command("show")
    def show_command(
        ids: Annotated[list[str] | None, typer.Argument(help="Rule ids (default: all).", show_default=False)] = None,
        builtin: Annotated[bool, typer.Option("--builtin", help="Print the default rule file.")] = False,
        rule_files: RuleFiles = None,
    ) -> None:
        """Rules in the rule-file format (--builtin: the default file, usable as --rules-file)."""
        _print(show(ids or [], _files(rule_files), builtin=builtin))

    @rules.command("explain")
    def explain_command(
        rule_id: Annotated[str, typer.Argument(help="A rule id.", show_default=False)],
        rule_files: RuleFiles = None,
    ) -> None:
        """What a rule checks, why, and its definition."""
        _print(explain(rule_id, _files(rule_files)))

    @rules.command("lint")
    def lint_command(
        files: Annotated[list[Path], typer.Argument(help="Rule files.", show_default=False)],
    ) -> None:
        """One line per mistake (file:line:col: what); exit 2 if any."""
        problems = [p for f in files for p in lint(f)]
        for p in problems:
            console.out.out(printable(p), highlight=False)
        if problems:
            raise typer.Exit(2)
        console.out.out(f"{len(files)} rule file(s): no problems", highlight=False)

    @rules.command("test")
    def test_command(
        files: Annotated[list[Path], typer.Argument(help="Rule files with 'tests:'.", show_default=False)],
    ) -> None:
        """Run rule files against the example traces beside them; exit 4 if one fails."""
        failed = 0
        total = 0
        for f in files:
            for r in run_examples(f):
                total += 1
                failed += not r.ok
                console.out.out(printable(r.describe()), highlight=False)
        console.out.out(f"{total - failed} passed, {failed} failed", highlight=False)
        if failed:
            raise typer.Exit(EXIT_TESTS_FAILED)
