"""Reading what a real-QEMU capture holds: its QMP transcript (`{"t","dir","line"}` records)
and QEMU's trace log, as the tests judge them. Works on a live rig run and on the captures kept
in `tests/data/real/qemu-10.0/` alike (both are folders of the same files)."""

from __future__ import annotations

import json
import re
from pathlib import Path

_QUEUE = re.compile(r"^(\d+)@[\d.]+:monitor_protocol_event_(queue|emit|handler) event=(\d+) data=(\S+)")


def transcript_records(path: Path) -> list[dict]:
    with path.open(encoding="ascii") as fh:
        return [json.loads(line) for line in fh]


def messages(path: Path) -> list[tuple[float, str, dict]]:
    """(t, dir, parsed message) of every complete transcript line."""
    return [(r["t"], r["dir"], json.loads(r["line"])) for r in transcript_records(path) if not r.get("partial")]


def events(path: Path) -> list[dict]:
    return [m for _, d, m in messages(path) if d == "recv" and "event" in m]


def qmp_ts(event: dict) -> float:
    return event["timestamp"]["seconds"] + event["timestamp"]["microseconds"] / 1e6


def write_events_jsonl(transcript: Path, out: Path) -> Path:
    """The events of `transcript`, each its raw line as received (the `events.jsonl` form)."""
    lines = [
        r["line"] for r in transcript_records(transcript)
        if r["dir"] == "recv" and not r.get("partial") and '"event"' in r["line"]
        and "event" in json.loads(r["line"])
    ]
    out.write_text("".join(line + "\n" for line in lines), encoding="ascii")
    return out


def replies(path: Path, command: str) -> list[tuple[float, object]]:
    """(t, return value) of every reply to `command`, matched by id."""
    names: dict[object, str] = {}
    out = []
    for t, d, m in messages(path):
        if d == "send":
            names[m.get("id")] = m.get("execute", "")
        elif "return" in m and names.get(m.get("id")) == command:
            out.append((t, m["return"]))
    return out


def event_lines(trace_log: Path, numbers: dict[str, int]) -> list[tuple[int, str, str, str]]:
    """(tid, what, event name, data pointer) of every `monitor_protocol_event_queue/emit/handler`
    line naming one of `numbers` (what: queue|emit|handler)."""
    by_number = {n: name for name, n in numbers.items()}
    out = []
    for line in trace_log.read_text(errors="replace").splitlines():
        m = _QUEUE.match(line)
        if m and int(m.group(3)) in by_number:
            out.append((int(m.group(1)), m.group(2), by_number[int(m.group(3))], m.group(4)))
    return out


def queued_on(trace_log: Path, numbers: dict[str, int]) -> dict[str, set[int]]:
    """Host thread ids each QMP event was queued on, from QEMU's trace log."""
    out: dict[str, set[int]] = {}
    for tid, what, name, _ in event_lines(trace_log, numbers):
        if what == "queue":
            out.setdefault(name, set()).add(tid)
    return out


def throttled_events(trace_log: Path, numbers: dict[str, int]) -> int:
    """BLOCK_IO_ERRORs QEMU's rate limit held or replaced: queued, but not emitted at once by
    the thread that queued them (a held one is emitted later by the main loop's timer, a
    replaced one never). Data pointers are reused, so each queue line is paired with the next
    line of its thread and pointer."""
    pending: dict[tuple[int, str], int] = {}
    held_or_replaced = 0
    for tid, what, name, ptr in event_lines(trace_log, numbers):
        if name != "BLOCK_IO_ERROR" or ptr == "(nil)":
            continue
        key = (tid, ptr)
        if what == "queue":
            held_or_replaced += pending.pop(key, 0)
            pending[key] = 1
        elif what == "emit":
            pending.pop(key, None)
    return held_or_replaced + sum(pending.values())


def cont_delays(transcript: Path) -> list[float]:
    """Seconds from each (I/O-error) STOP received to the capture's next cont sent."""
    delays, t_stop = [], None
    for t, d, m in messages(transcript):
        if m.get("event") == "STOP":
            t_stop = t
        elif d == "send" and m.get("execute") == "cont":
            assert t_stop is not None, "cont sent without a STOP before it"
            delays.append(t - t_stop)
            t_stop = None
    return delays
