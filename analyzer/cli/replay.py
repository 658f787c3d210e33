"""`blkreplay replay`: the steps in replay order with the reconstructed state beside each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from analyzer.cli import console
from analyzer.text import terminal
from tracer.errors import InputError

FORMATS = ("text", "jsonl")


def _cell(value: object) -> object:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def render_jsonl(view: pd.DataFrame) -> str:
    """One JSON object per step; the per-device io-status columns as an `iostatus` object."""
    dev_cols = [c for c in view.columns if c.startswith("iostatus:")]
    base = [c for c in view.columns if c not in dev_cols]
    lines = []
    for rec in view.to_dict("records"):
        row = {c: _cell(rec[c]) for c in base}
        row["iostatus"] = {c.split(":", 1)[1]: _cell(rec[c]) for c in dev_cols}
        row["findings"] = [r for r in (row.get("findings") or "").split(",") if r]
        lines.append(json.dumps(row, ensure_ascii=False))
    return "\n".join(lines) + ("\n" if lines else "")


def _step(rec: dict) -> str:
    kind, name = rec["kind"], _cell(rec["name"])
    return f"{name}" if kind in ("qmp_event",) and name else (f"{kind} {name}" if name else str(kind))


def _detail(rec: dict) -> str:
    parts = []
    for key in ("op", "errno", "action", "value"):
        v = _cell(rec.get(key))
        if v is not None:
            parts.append(f"{key}={v}" if key != "value" else str(v))
    eid = _cell(rec.get("error_id"))
    if eid is not None:
        parts.append(f"E{eid}")
    return " ".join(parts)


def render_text(view: pd.DataFrame) -> list[str]:
    """Aligned lines (rich markup, every trace value escaped); findings marked in red."""
    dev_cols = [c for c in view.columns if c.startswith("iostatus:")]
    header = ["seq", "ts_ns", "vm", "thread", "step", "device", "detail", "runstate",
              *[c.split(":", 1)[1] for c in dev_cols], "pending", "findings"]
    rows = []
    for rec in view.to_dict("records"):
        pend = _cell(rec["pending"])
        rows.append([
            str(rec["seq"]), str(rec["ts_ns"]), str(rec["vm"]), str(_cell(rec["thread"]) or ""),
            _step(rec), str(_cell(rec["device"]) or ""), _detail(rec),
            str(_cell(rec["runstate"]) or "?"),
            *[str(_cell(rec[c]) or "-") for c in dev_cols],
            f"E{pend}" if pend is not None else "-", str(_cell(rec["findings"]) or ""),
        ])
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    lines = ["[bold]" + terminal("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()) + "[/]"]
    for r in rows:
        text = terminal("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        lines.append(f"[red]{text}[/]" if r[-1] else text)
    return lines


def register(app: typer.Typer) -> None:
    @app.command("replay")
    def replay_command(
        paths: Annotated[list[Path], typer.Argument(help="Trace file(s) or directory.", show_default=False)],
        vm: Annotated[str | None, typer.Option("--vm", help="Only this VM.")] = None,
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
        from analyzer.replay import replay, steps_around
        from analyzer.trace import load

        if fmt not in FORMATS:
            raise InputError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
        trace = load([str(p) for p in paths])
        if around is not None:
            if vm is None:
                if len(trace.vms) != 1:
                    raise InputError(f"--around needs --vm: the trace has {len(trace.vms)} VMs")
                vm = trace.vms[0]
            view = steps_around(trace, vm, around, context=context)
            if device is not None:
                view = view[view["device"].isna() | (view["device"] == device)]
                view = view.drop(columns=[c for c in view.columns
                                          if c.startswith("iostatus:") and c != f"iostatus:{device}"])
        else:
            if vm is not None and vm not in trace.vms:
                raise InputError(f"no VM named {vm!r} in the trace")
            view = replay(trace, vm=vm, device=device, from_seq=from_seq, to_seq=to_seq)
        if fmt == "jsonl":
            console.out.file.write(render_jsonl(view))
            console.out.file.flush()
            return
        for line in render_text(view):
            console.out.print(line, soft_wrap=True)
