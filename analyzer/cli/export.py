"""`blkreplay export`: a trace's check in another tool's format (Perfetto, Parquet, OpenMetrics).

Wraps :func:`analyzer.export.export`; prints a one-line summary on stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from analyzer import outputs
from analyzer.cli import console
from analyzer.export import FORMATS, ExportSummary, export
from analyzer.text import terminal
from tracer.errors import check_format


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export_command(
        paths: Annotated[list[Path], typer.Argument(metavar="TRACE", help="Trace files, directories or globs.",
                                                    show_default=False)],
        to: Annotated[str, typer.Option("--to", "-t", metavar="FORMAT",
                                        help="perfetto, parquet or openmetrics.", show_default=False)],
        output: Annotated[
            str,
            typer.Option("--output", "-o", metavar="PATH", help="Where to write: a file (perfetto, openmetrics; - is stdout "
                         "for openmetrics) or a new directory (parquet). Atomic; never over an input."),
        ],
        parents: Annotated[
            bool, typer.Option("--parents", help="Create missing parent directories of --output.")
        ] = False,
        force: Annotated[
            bool, typer.Option("--force", help="parquet: replace an existing output directory as a whole.")
        ] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary line.")] = False,
    ) -> None:
        """Export a trace's timeline, tables or metrics for other tools.

        perfetto: a trace for ui.perfetto.dev (hosts as processes, VMs as tracks, pauses
        as slices, BLOCK_IO_ERROR/STOP/RESUME as instants, error -> STOP as flows; needs
        the 'export' extra). parquet: DIR/episodes, incidents, findings and state .parquet
        for DuckDB, Polars or Grafana. openmetrics: text for node-exporter's textfile
        collector. Exit status 0 written, 2 unusable input or output."""
        check_format(to, FORMATS)
        summary = export([str(p) for p in paths], output, to=to, parents=parents, replace=force)
        if not quiet:
            console.err.print(describe(summary))


def describe(summary: ExportSummary) -> str:
    """``perfetto export (3 VMs, 39 pauses, ...) written to OUT``, escaped for the terminal."""
    shown = ", ".join(f"{n:,} {k}" for k, n in summary.counts.items())
    where = "standard output" if summary.path == outputs.STDOUT else terminal(summary.path)
    return f"{summary.format} export ({shown}) written to {where}"
