"""`blkreplay capture`: record a live QEMU over an extra QMP monitor (wraps
:func:`analyzer.capture.capture_trace`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from analyzer.capture import CaptureSummary, capture_trace
from analyzer.cli import console
from analyzer.text import terminal


def _describe(summary: CaptureSummary) -> str:
    events = ", ".join(f"{n} {terminal(name)}" for name, n in summary.events.items()) or "no events"
    version = f" from QEMU {terminal(summary.qemu_version)}" if summary.qemu_version else ""
    conts = f"; {summary.conts} cont sent" if summary.conts else ""
    return (
        f"captured {summary.lines:,} lines{version} in {summary.elapsed_s:.1f} s "
        f"({events}{conts}) -> {terminal(summary.out)}"
    )


def _report_capture(summary: CaptureSummary, *, quiet: bool) -> None:
    """How the capture ended (a lost connection is a warning) and what it recorded."""
    if summary.ended == "connection-lost":
        console.err.print(f"[yellow]blkreplay: warning:[/] {terminal(summary.message)}")
    else:
        console.note(f"capture ended: {terminal(summary.message)}", quiet=quiet)
    console.note(_describe(summary), quiet=quiet)


def register(app: typer.Typer) -> None:
    @app.command("capture")
    def capture_cmd(
        qmp: Annotated[
            str,
            typer.Option(
                "--qmp",
                metavar="ADDRESS",
                help="The QMP monitor to record, unix:PATH or tcp:HOST:PORT: an extra one beside management's "
                "(e.g. -qmp unix:/run/vm0-capture.sock,server=on,wait=off).",
            ),
        ],
        out: Annotated[
            str,
            typer.Option(
                "-o",
                "--out",
                metavar="PATH",
                help="Output: a .jsonl transcript; any other path is a trace imported from it "
                "(the transcript is kept beside it as OUT.qmp.jsonl). An earlier transcript "
                "is replaced only once the endpoint has spoken QMP.",
            ),
        ],
        poll: Annotated[
            int,
            typer.Option("--poll", metavar="MS", help="Poll query-status and query-block every MS ms."),
        ] = 500,
        duration: Annotated[
            float | None, typer.Option("--duration", metavar="S", help="Stop after S seconds.")
        ] = None,
        no_until_shutdown: Annotated[
            bool,
            typer.Option(
                "--no-until-shutdown",
                help="Keep recording after QEMU emits SHUTDOWN (by default the capture stops there).",
            ),
        ] = False,
        _until_shutdown: Annotated[  # the default, still accepted
            bool, typer.Option("--until-shutdown", hidden=True, help="Stop at SHUTDOWN (the default).")
        ] = False,
        auto_cont: Annotated[
            int | None,
            typer.Option(
                "--auto-cont",
                metavar="MS",
                help="Act as management: send `cont` MS ms after each I/O-error stop (test rigs).",
            ),
        ] = None,
        qemu_log: Annotated[
            Path | None,
            typer.Option(
                "--qemu-log",
                metavar="FILE",
                help="QEMU trace log (log backend, -msg timestamp=on) to merge into the trace.",
            ),
        ] = None,
        wait: Annotated[
            float,
            typer.Option(
                "--wait",
                metavar="S",
                help="Keep retrying the connection for up to S seconds (QEMU still starting).",
            ),
        ] = 0.0,
        force: Annotated[
            bool, typer.Option("--force", help="Replace an existing trace directory as a whole.")
        ] = False,
        parents: Annotated[
            bool, typer.Option("--parents", help="Create missing parent directories of the output.")
        ] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary.")] = False,
    ) -> None:
        """Record every QMP message of a running QEMU until SHUTDOWN, --duration or Ctrl-C."""
        phases = (("capturing", "lines"), ("importing", "bytes"))
        with console.progress_phases(*phases, quiet=quiet) as (capturing, importing):
            done = capture_trace(
                qmp,
                out,
                qemu_log=qemu_log,
                poll_ms=poll,
                duration_s=duration,
                until_shutdown=not no_until_shutdown,
                auto_cont_ms=auto_cont,
                connect_wait_s=wait,
                progress=capturing,
                import_progress=importing,
                on_captured=lambda summary: _report_capture(summary, quiet=quiet),
                parents=parents,
                replace=force,
            )
        if done.imported is not None:
            console.note(f"imported {done.imported.rows:,} steps -> {terminal(out)}", quiet=quiet)
