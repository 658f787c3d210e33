"""`blkreplay replay`: the steps in replay order with the reconstructed state beside each.

Wraps :func:`analyzer.replay.replay_chunks` and the windows of :mod:`analyzer.replay`
(``--around``, ``--episode``, ``--event``/``--nth``); the output is rendered by
:mod:`analyzer.render.replay`, chunk by chunk, so the first lines of a big trace show at once.
Every option is checked against the trace before a step is shown: a seq, episode, event or
device the trace does not have is one line naming what it has, exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from analyzer import identity, load
from analyzer.cli import console
from analyzer.cli.timeopts import SINCE_HELP, UNTIL_HELP, time_bounds
from analyzer.render.replay import REPLAY_FORMATS, jsonl_lines, print_replay
from analyzer.replay import (
    Window,
    around_window,
    episode_window,
    event_window,
    replay_chunks,
    start_ns,
    vm_devices,
    vm_keys,
)
from analyzer.rules.integrity import findings as integrity_findings
from analyzer.text import terminal
from tracer.errors import InputError, UsageError, check_format

COMMAND = "blkreplay replay"


def _usage(message: str) -> UsageError:
    return UsageError(message, command=COMMAND)


def register(app: typer.Typer) -> None:
    @app.command("replay")
    def replay_command(
        paths: Annotated[list[Path], typer.Argument(metavar="TRACE", help="Trace file(s) or directory.",
                                                    show_default=False)],
        vm: Annotated[str | None, typer.Option("--vm", metavar="NAME", help="Only this VM.")] = None,
        host: Annotated[
            str | None, typer.Option("--host", metavar="HOST", help="The VM(s) of this host (a VM name on several hosts).")
        ] = None,
        run: Annotated[
            str | None, typer.Option("--run", metavar="RUN", help="The VM(s) of this run (a VM name in several runs).")
        ] = None,
        device: Annotated[
            str | None, typer.Option("--device", metavar="NAME", help="Only this device's steps (and VM-wide ones).")
        ] = None,
        from_seq: Annotated[int | None, typer.Option("--from-seq", metavar="SEQ", help="First seq shown.")] = None,
        to_seq: Annotated[int | None, typer.Option("--to-seq", metavar="SEQ", help="Last seq shown.")] = None,
        since: Annotated[str | None, typer.Option("--since", metavar="TIME", help=SINCE_HELP)] = None,
        until: Annotated[str | None, typer.Option("--until", metavar="TIME", help=UNTIL_HELP)] = None,
        around: Annotated[
            int | None, typer.Option("--around", metavar="SEQ", help="Show the steps around this seq.")
        ] = None,
        episode: Annotated[
            int | None, typer.Option("--episode", metavar="N", min=1,
                                     help="Show the Nth error episode of the VM (1 = first), with context.")
        ] = None,
        event: Annotated[
            str | None, typer.Option("--event", metavar="NAME",
                                     help="Show the steps around a QMP event (e.g. STOP); see --nth.")
        ] = None,
        nth: Annotated[
            int | None, typer.Option("--nth", metavar="K", min=1, help="With --event: its Kth occurrence "
                                     "(default 1).")
        ] = None,
        context: Annotated[
            int, typer.Option("--context", metavar="N", min=0, help="Steps shown before and after a window.")
        ] = 10,
        fmt: Annotated[str, typer.Option("--format", "-f", metavar="text|jsonl", help="Output format.")] = "text",
    ) -> None:
        """Show the steps in replay order with the state after each.

        Per step: the run state, each device's io-status and the pending stop request after it,
        findings marked inline. A recording holds that state; for an import it is inferred from
        the events (marked ~), and beside it is what QEMU last answered to query-status and
        query-block (column observed, @seq of the reply). Times are ISO-8601 UTC, and +time counts
        from the VM's first step (or the episode's start)."""
        check_format(fmt, REPLAY_FORMATS)
        lo_ns, hi_ns = time_bounds(since, until, COMMAND)
        windows = [name for name, v in (("--around", around), ("--episode", episode), ("--event", event))
                   if v is not None]
        if len(windows) > 1:
            raise _usage(f"{windows[0]} and {windows[1]} cannot be combined: choose one window")
        if nth is not None and event is None:
            raise _usage("--nth needs --event (the event whose Kth occurrence to show)")
        if windows and (from_seq is not None or to_seq is not None):
            raise _usage(f"{windows[0]} cannot be combined with --from-seq / --to-seq")
        if from_seq is not None and to_seq is not None and from_seq > to_seq:
            raise _usage(f"--from-seq {from_seq} is after --to-seq {to_seq}")
        trace = load([str(p) for p in paths])
        if vm is not None and all(identity.split(k).vm != vm for k in trace.vms):
            raise InputError(f"--vm {vm}: no such VM in the trace (its VMs: {_names(trace.vms)})")
        shown = vm_keys(trace, vm, host, run)  # one line naming the choices when ambiguous
        if windows and vm is None and len(shown) != 1:
            raise _usage(f"{windows[0]} needs --vm: the trace has {len(shown)} VMs ({_names(shown)})")
        if vm is not None or windows:
            vm, host, run = identity.split(shown[0])
            host, run = host or "", run or ""
        key = shown[0] if shown else None
        if device is not None:
            known = sorted({d for v in shown for d in vm_devices(trace, v)})
            if device not in known:
                where = f"{identity.label(key)}'s" if vm is not None and key else "the trace's"
                raise InputError(f"--device {device}: no such device ({where} devices: {_names(known)})")
        window: Window | None = None
        if around is not None:
            window = around_window(trace, key, around, context)
        elif episode is not None:
            window = episode_window(trace, key, episode, context)
        elif event is not None:
            window = event_window(trace, key, event, nth or 1, context)
        # A damaged or interrupted recording is said before its steps are shown, on stderr.
        for f in integrity_findings([*trace.truncated, *trace.recording_problems()]):
            console.err.print(f"blkreplay replay: {f.severity}: {f.rule}: {terminal(f.message)}")
        if window is not None:
            from_seq, to_seq = window.first, window.last
        shown_rows = [0]

        def counted():
            for chunk in replay_chunks(trace, vm=vm, device=device, from_seq=from_seq, to_seq=to_seq,
                                       since=lo_ns, until=hi_ns, host=host, run=run):
                shown_rows[0] += len(chunk)
                yield chunk
            if not shown_rows[0]:  # said on stderr: stdout stays what a script parses
                console.err.print("blkreplay replay: no step in the selected range")

        chunks = counted()
        if fmt == "jsonl":
            for chunk in chunks:  # a chunk at a time: `| head` gets its lines at once
                console.out.file.write("".join(jsonl_lines([chunk])))
                console.out.file.flush()
            return
        origin = {identity.label(v): start_ns(trace, v) for v in shown}
        if window is not None and window.origin_ns is not None:
            origin[identity.label(window.vm)] = window.origin_ns
        print_replay(chunks, console.out, origin_ns={k: v for k, v in origin.items() if v is not None})


def _names(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(identity.label(n) for n in names[:limit]) or "none"
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
