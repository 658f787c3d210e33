"""`blkreplay replay`: the steps in replay order with the reconstructed state beside each.

Wraps :func:`analyzer.replay` and :func:`analyzer.steps_around`; the output is rendered by
:mod:`analyzer.render.replay`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from analyzer import identity, load, replay, steps_around
from analyzer.cli import console
from analyzer.render import REPLAY_FORMATS, print_replay, render_jsonl
from analyzer.rules.integrity import findings as integrity_findings
from analyzer.text import terminal
from tracer.errors import InputError, check_format


def register(app: typer.Typer) -> None:
    @app.command("replay")
    def replay_command(
        paths: Annotated[list[Path], typer.Argument(help="Trace file(s) or directory.", show_default=False)],
        vm: Annotated[str | None, typer.Option("--vm", help="Only this VM.")] = None,
        host: Annotated[
            str | None, typer.Option("--host", help="The VM of this host (a VM name on several hosts).")
        ] = None,
        run: Annotated[
            str | None, typer.Option("--run", help="The VM of this run (a VM name in several runs).")
        ] = None,
        device: Annotated[
            str | None, typer.Option("--device", help="Only this device's steps (and VM-wide ones).")
        ] = None,
        from_seq: Annotated[int | None, typer.Option("--from-seq", help="First seq shown.")] = None,
        to_seq: Annotated[int | None, typer.Option("--to-seq", help="Last seq shown.")] = None,
        around: Annotated[
            int | None, typer.Option("--around", help="Show the steps around this seq (needs one VM).")
        ] = None,
        context: Annotated[int, typer.Option("--context", min=0, help="Steps before/after --around.")] = 10,
        fmt: Annotated[str, typer.Option("--format", "-f", help="text or jsonl.")] = "text",
    ) -> None:
        """Show the steps in replay order with the state after each.

        Each step comes with the run state, each device's io-status and the
        pending stop request after every step, and findings marked inline: what "info block"
        and "info status" would have answered at any step."""
        check_format(fmt, REPLAY_FORMATS)
        trace = load([str(p) for p in paths])
        # A damaged or interrupted recording is said before its steps are shown, on stderr.
        for f in integrity_findings([*trace.truncated, *trace.recording_problems()]):
            console.err.print(f"blkreplay replay: {f.severity}: {f.rule}: {terminal(f.message)}")
        if around is not None:
            if vm is None:
                if len(trace.vms) != 1:
                    raise InputError(f"--around needs --vm: the trace has {len(trace.vms)} VMs")
                vm, host, run = identity.split(trace.vms[0])
            view = steps_around(trace, vm, around, context=context, host=host, run=run)
            if device is not None:
                view = view[view["device"].isna() | (view["device"] == device)]
                view = view.drop(columns=[c for c in view.columns
                                          if c.startswith("iostatus:") and c != f"iostatus:{device}"])
        else:
            if vm is not None:
                identity.resolve(trace.vms, vm, host, run)  # one line naming the choices if not one
            view = replay(trace, vm=vm, device=device, from_seq=from_seq, to_seq=to_seq, host=host, run=run)
        if fmt == "jsonl":
            console.write(render_jsonl(view), None)
        else:
            print_replay(view, console.out)
