"""`blkreplay check`: run the rules over traces; exit 0 pass, 1 error findings, 2 bad input.

Wraps :func:`analyzer.check`; the output is one of the renderers of
:mod:`analyzer.render`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from analyzer import check, outputs
from analyzer.cli import console
from analyzer.cli.timeopts import SINCE_HELP, UNTIL_HELP, time_bounds
from analyzer.params import parse_assignment
from analyzer.render import CHECK_FORMATS, print_text, render_check
from tracer.errors import check_format


def register(app: typer.Typer) -> None:
    @app.command("check")
    def check_command(
        paths: Annotated[list[Path], typer.Argument(metavar="TRACE", help="Trace files, directories or globs.", show_default=False)],
        rules: Annotated[
            str | None, typer.Option("--rules", metavar="IDS", help="Comma-separated rule ids (default: all).")
        ] = None,
        fmt: Annotated[str, typer.Option("--format", "-f", metavar="text|json|junit", help="Output format.")] = "text",
        output: Annotated[
            str | None,
            typer.Option("--output", "-o", metavar="FILE", help="Write here (atomically; never over an input) "
                         "instead of stdout; - is stdout."),
        ] = None,
        parents: Annotated[
            bool, typer.Option("--parents", help="Create missing parent directories of --output.")
        ] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar; text: only the verdict.")] = False,
        engine: Annotated[
            str | None, typer.Option("--engine", metavar="local|dask", help="Where the per-VM work runs (default: local).", show_default=False)
        ] = None,
        workers: Annotated[
            int | None, typer.Option("--workers", min=1, help="Worker processes (local engine) or threads (Dask without --scheduler).")
        ] = None,
        scheduler: Annotated[
            str | None,
            typer.Option("--scheduler", metavar="ADDRESS", show_default=False,
                         help="Run on a Dask cluster: a scheduler address (tcp://host:8786; inputs on a "
                              "filesystem shared by the workers) or local:N to start N worker processes "
                              "here. Implies --engine dask; needs the distributed package (dask extra)."),
        ] = None,
        rule_files: Annotated[
            list[Path] | None,
            typer.Option("--rules-file", metavar="FILE", help="A rule file (docs/rules-language.md) to run too; repeatable.",
                         show_default=False),
        ] = None,
        only_file: Annotated[
            bool, typer.Option("--only-file", help="Run only the rules of the --rules-file files.")
        ] = False,
        since: Annotated[str | None, typer.Option("--since", metavar="TIME", help=SINCE_HELP)] = None,
        until: Annotated[str | None, typer.Option("--until", metavar="TIME", help=UNTIL_HELP)] = None,
        param: Annotated[
            list[str] | None,
            typer.Option("--param", metavar="RULE.KEY=VALUE", show_default=False,
                         help="Set a rule's threshold (blkreplay rules explain RULE lists them; "
                              "incidents.window_s / incidents.min_vms group incidents); repeatable."),
        ] = None,
    ) -> None:
        """Check the ordering guarantees of QEMU's block I/O error path in traces.

        Exit status: 0 no error finding, 1 error findings, 2 unusable input or usage."""
        check_format(fmt, CHECK_FORMATS)
        lo, hi = time_bounds(since, until, "blkreplay check")
        files = list(rule_files or [])  # inputs too: -o never writes over a rule file
        if output is not None:  # refused before the check runs, not after
            outputs.check_output(output, inputs=[*paths, *files], kind="findings", parents=parents,
                                 allow_stdout=True)
        rule_ids = rules.split(",") if rules is not None else None
        params = dict(parse_assignment(p) for p in param or [])
        with console.progress_bar("checking", quiet=quiet) as progress:
            result = check([str(p) for p in paths], rules=rule_ids, engine=engine, workers=workers,
                           scheduler=scheduler, progress=progress,
                           rule_files=[str(p) for p in files], only_files=only_file,
                           since=lo, until=hi, params=params)
        if fmt == "text" and output in (None, outputs.STDOUT):
            print_text(result, console.out, quiet=quiet)
        else:
            console.write(render_check(result, fmt, quiet=quiet), output, kind="findings", parents=parents,
                          inputs=[*paths, *files, *(i.path for i in result.inputs)])
        raise typer.Exit(1 if result.verdict == "fail" else 0)
