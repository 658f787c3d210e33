"""The replayed steps as ``blkreplay replay`` shows them: aligned text lines, or JSON lines.

The input is the frame :func:`analyzer.replay` returns (one row per step, the state after it,
one ``iostatus:DEVICE`` column per device). Text lines are rich markup with every value from
the trace escaped, and steps with findings in red; JSON lines gather the per-device columns
into one ``iostatus`` object and the findings into a list.
"""

from __future__ import annotations

import json

import pandas as pd
from rich.console import Console

from analyzer.text import terminal

#: The formats of `blkreplay replay -f`.
REPLAY_FORMATS: tuple[str, ...] = ("text", "jsonl")


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


def replay_lines(view: pd.DataFrame) -> list[str]:
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


def print_replay(view: pd.DataFrame, out: Console) -> None:
    """The :func:`replay_lines` of `view` on `out`, long lines left unwrapped."""
    for line in replay_lines(view):
        out.print(line, soft_wrap=True)
