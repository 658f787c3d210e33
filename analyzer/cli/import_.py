"""`blkreplay import`: real QEMU / libvirt output -> trace schema v1.

Wraps :func:`analyzer.importers.import_traces`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from analyzer.cli import console
from analyzer.importers import FORMATS, ImportSummary, import_traces
from analyzer.importers.pipeline import expand_inputs
from analyzer.text import terminal
from tracer.errors import check_format

#: What --format accepts: a format name, or auto (recognised from each input's content).
CHOICES = ("auto", *FORMATS)


def _describe(summary: ImportSummary) -> list[str]:
    lines = []
    for i in summary.inputs:
        extra = f", {i.skipped:,} skipped" if i.skipped else ""
        extra += ", truncated" if i.truncated else ""
        extra += f", {i.unknown_lines} in no known trace format" if i.unknown_lines else ""
        vms = f" -> {', '.join(terminal(v) for v in i.vms)}" if i.vms else ""
        vms += f" on {terminal(i.host)}" if i.host is not None and len(summary.hosts) > 1 else ""
        lines.append(
            f"{terminal(i.path)}: {i.format} ({i.lines:,} lines, {i.rows:,} rows{extra}){vms}"
        )
    vms = len(summary.host_vm_rows or summary.vm_rows)
    hosts = len(summary.hosts)
    on = f" on {hosts} hosts" if hosts > 1 else ""
    lines.append(
        f"wrote {summary.rows:,} rows ({vms} VM{'s' if vms != 1 else ''}{on}) -> {terminal(summary.out)}"
    )
    return lines


def register(app: typer.Typer) -> None:
    @app.command("import")
    def import_cmd(
        inputs: Annotated[
            list[Path],
            typer.Argument(
                metavar="INPUT",
                help="QMP transcript or stream, QEMU trace log (log backend or qemu-trace-stap), "
                "libvirt debug log (a file, journalctl -o json|export|short-precise, a KubeVirt "
                "pod log), libvirt per-domain QEMU log or QEMU command line, virsh event or "
                "qemu-monitor-event output; gzip, bzip2, xz "
                "or zstd compressed; - for standard input; globs are expanded. Several inputs "
                "of one VM merge into one trace.",
            ),
        ],
        out: Annotated[
            str,
            typer.Option(
                "-o",
                "--out",
                metavar="PATH",
                help="A .parquet file (replaced atomically), or a new directory (one "
                "[host=H/]vm=NAME/part-0.parquet per VM, renamed into place when complete).",
            ),
        ],
        format: Annotated[
            str,
            typer.Option(
                "--format",
                metavar="FORMAT",
                help=f"Input format: {', '.join(CHOICES[1:])}, or auto (recognise each input from its content).",
            ),
        ] = "auto",
        vm: Annotated[
            str | None,
            typer.Option(
                "--vm",
                metavar="NAME",
                help="VM name of QMP / trace-log inputs (default: from query-name, else vm0); "
                "selects one VM of a libvirt log.",
            ),
        ] = None,
        host: Annotated[
            str | None,
            typer.Option(
                "--host", metavar="NAME|PATTERN",
                help="Host of every row; or a pattern giving each input's host from its path: "
                "{dir} (its directory's name), {dir2} (the one above), {file}, or re:REGEX "
                "(its first group). Default: a libvirt log's hostname line, taken by the "
                "files beside it. Inputs are grouped by host: a directory output is "
                "host=H/vm=V/part-0.parquet.",
            ),
        ] = None,
        skip_bad: Annotated[
            bool,
            typer.Option(
                "--skip-bad",
                help="Skip malformed lines (counted in the trace's metadata) instead of failing.",
            ),
        ] = False,
        force: Annotated[
            bool,
            typer.Option("--force", help="Replace an existing output directory as a whole "
                         "(never mixing its old vm=* parts with the new)."),
        ] = False,
        parents: Annotated[
            bool, typer.Option("--parents", help="Create missing parent directories of the output.")
        ] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, no summary.")] = False,
        stdin_name: Annotated[
            str | None,
            typer.Option("--stdin-name", metavar="NAME",
                         help="Name of standard input (-) in src_file and the metadata "
                         "(default <stdin>)."),
        ] = None,
        workers: Annotated[
            int,
            typer.Option("--workers", metavar="N", min=1,
                         help="Parse up to N input files at once, each in its own process "
                         "(the output is the same whatever N)."),
        ] = 1,
    ) -> None:
        """Import what a real QEMU and its management wrote, as a trace `check` can audit."""
        check_format(format, CHOICES)
        with console.progress_phases(("importing", "bytes"), ("writing", "rows"), quiet=quiet) as (progress, writing):
            summary = import_traces(
                expand_inputs(inputs), out, format=format, vm=vm, host=host,
                skip_bad=skip_bad, progress=progress, parents=parents, replace=force,
                stdin_name=stdin_name, workers=workers, write_progress=writing,
            )
        if not quiet:
            for line in _describe(summary):
                console.out.print(line, soft_wrap=True)
