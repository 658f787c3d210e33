"""`blkreplay capture`: record a live QEMU over an extra QMP monitor (see :mod:`tracer.capture`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from analyzer.cli import console
from analyzer.text import terminal
from tracer.capture import CaptureSummary, capture, is_transcript_path, wait_until_settled
from tracer.errors import CaptureError


def transcript_path_for(out: Path) -> Path:
    """Where the transcript goes when `out` names a trace: beside it, as OUT.qmp.jsonl."""
    return out.with_name(out.name + ".qmp.jsonl")


def _describe(summary: CaptureSummary) -> str:
    events = ", ".join(f"{n} {terminal(name)}" for name, n in summary.events.items()) or "no events"
    version = f" from QEMU {terminal(summary.qemu_version)}" if summary.qemu_version else ""
    conts = f"; {summary.conts} cont sent" if summary.conts else ""
    return (
        f"captured {summary.lines} lines{version} in {summary.elapsed_s:.1f} s "
        f"({events}{conts}) -> {terminal(summary.out)}"
    )


def register(app: typer.Typer) -> None:
    @app.command("capture")
    def capture_cmd(
        qmp: Annotated[
            str,
            typer.Option(
                "--qmp",
                metavar="unix:PATH|tcp:HOST:PORT",
                help="The QMP monitor to record: an extra one beside management's "
                "(e.g. -qmp unix:/run/vm0-capture.sock,server=on,wait=off).",
            ),
        ],
        out: Annotated[
            Path,
            typer.Option(
                "-o",
                "--out",
                help="Output: a .jsonl transcript; any other path is a trace imported from it "
                "(the transcript is kept beside it as OUT.qmp.jsonl).",
            ),
        ],
        poll: Annotated[
            int,
            typer.Option("--poll", metavar="MS", help="Poll query-status and query-block every MS ms."),
        ] = 500,
        duration: Annotated[
            float | None, typer.Option("--duration", metavar="S", help="Stop after S seconds.")
        ] = None,
        until_shutdown: Annotated[
            bool,
            typer.Option(
                "--until-shutdown/--no-until-shutdown",
                help="Stop when QEMU emits SHUTDOWN (the default).",
            ),
        ] = True,
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
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary.")] = False,
    ) -> None:
        """Record every QMP message of a running QEMU until SHUTDOWN, --duration or Ctrl-C."""
        transcript_only = is_transcript_path(out)
        if transcript_only and qemu_log is not None:
            raise CaptureError("--qemu-log needs -o naming a trace, not a .jsonl transcript")
        if qemu_log is not None and not qemu_log.is_file():
            raise CaptureError(f"{qemu_log}: QEMU log not found")
        transcript = out if transcript_only else transcript_path_for(out)
        with console.progress_bar("capturing", quiet=quiet, unit="lines") as progress:
            summary = capture(
                qmp,
                transcript,
                poll_ms=poll,
                duration_s=duration,
                until_shutdown=until_shutdown,
                auto_cont_ms=auto_cont,
                progress=progress,
                connect_wait_s=wait,
            )
        if summary.ended == "connection-lost":
            console.err.print(f"[yellow]blkreplay: warning:[/] {terminal(summary.message)}")
        else:
            console.note(f"capture ended: {terminal(summary.message)}", quiet=quiet)
        console.note(_describe(summary), quiet=quiet)
        if transcript_only:
            return
        from analyzer.importers import import_traces  # built beside this command

        inputs = [transcript]
        if qemu_log is not None:
            wait_until_settled(qemu_log)  # QEMU writes its last trace lines while it exits
            inputs.append(qemu_log)
        # a line cut off by a lost connection is kept (marked partial) in the transcript; the
        # import skips it and marks the trace truncated instead of refusing the whole capture
        cut = summary.partial_bytes > 0
        with console.progress_bar("importing", quiet=quiet, unit="bytes") as progress:
            result = import_traces(inputs, out, skip_bad=cut, progress=progress)
        console.note(f"imported {result.rows} steps -> {terminal(out)}", quiet=quiet)
