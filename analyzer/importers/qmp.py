"""The `qmp` format: a raw QMP stream or a capture client's transcript -> one Part.

The `qmp` format is either a raw stream (one QMP message per line, as a client or ``socat``
records it: greeting, events, replies and possibly the commands sent) or the timestamped
transcript the capture client writes (``{"t": epoch seconds, "dir": "send"|"recv", "line":
raw JSON}`` per line). Times: a transcript row takes its line's ``t`` (the moment the client
sent or received it); in a raw stream an event takes its own QMP timestamp and every other
row the last one before it (the first one, for rows before any event).

This module only takes the lines apart (the record, its time, the message text); what each
message means is `analyzer.importers.qmp_semantics`, shared with the trace-log and libvirt
importers. A transcript is mostly management polling the same queries, so the loop first
tries the capture client's own record layout and `MessageCache` (a poll seen before costs
neither unescaping nor JSON parsing), and falls back to parsing each record in full.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from analyzer.importers.json_scan import parse_json_exact, scan_string
from analyzer.importers.lines import PROGRESS_EVERY, InputText, LinePolicy
from analyzer.importers.message_cache import MessageCache
from analyzer.importers.qmp_semantics import QmpState, event_time_ns
from analyzer.importers.qmp_types import INT64_MAX, INT64_MIN
from analyzer.importers.rows import ParsedInput, Part, Rows

_POWERS = [10**k for k in range(10)]


def seconds_to_ns(value: Any) -> int:
    """Epoch seconds (JSON number text or int) -> ns, exactly (no float rounding); ValueError
    for anything else, and for a time whose ns do not fit in int64 (the ``ts_ns`` column)."""
    if isinstance(value, int) and not isinstance(value, bool):
        ns = value * 1_000_000_000
    elif not isinstance(value, str):
        raise ValueError(f"transcript time t is {_kind(value)}, expected a number")
    else:
        ns = _text_to_ns(value)
    if not INT64_MIN <= ns <= INT64_MAX:
        raise ValueError(f"transcript time t out of range: {str(value)[:40]} (seconds must fit in int64 ns)")
    return ns


def _text_to_ns(value: str) -> int:
    dot = value.find(".")
    digits = value[:dot] + value[dot + 1 :] if dot >= 0 else value
    places = len(value) - dot - 1 if dot >= 0 else 0
    if places <= 9 and digits.isdigit() and len(digits) <= 30:
        return int(digits) * _POWERS[9 - places]
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"bad transcript time t {value[:40]!r}") from None
    if not number.is_finite() or number.adjusted() > 30:
        raise ValueError(f"transcript time t out of range: {value[:40]} (seconds must fit in int64 ns)")
    return int(number.scaleb(9))


def _kind(value: Any) -> str:
    return "an object" if isinstance(value, dict) else "an array" if isinstance(value, list) else (
        "a boolean" if isinstance(value, bool) else "null" if value is None else "a string")


#: A transcript record as the capture client writes it, up to the opening quote of "line".
_RECORD = re.compile(r'\{"t": (\d{1,10})(?:\.(\d{1,9}))?, "dir": "(?:send|recv)", "line": "')


def _reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"bad JSON in the QMP message ({exc.msg} at column {exc.colno})"
    return str(exc)


def parse(text: InputText, policy: LinePolicy) -> ParsedInput:
    """Parse a QMP raw stream or transcript into one Part."""
    rows = Rows()
    part = Part(source="qmp", path=text.path, sha256=text.sha256, rows=rows)
    state = QmpState(rows, part.hints, part.node_map)
    transcript: bool | None = None
    cache = MessageCache()
    loads, lookup, loads_exact = cache.parse, cache.lookup, parse_json_exact
    lookup_record, remember_record = cache.lookup_record, cache.remember_record
    record = _RECORD.match
    scanstring = scan_string
    for number, line in enumerate(text.lines, 1):
        if not number % PROGRESS_EVERY:
            policy.progress(number)
        s = line.strip()
        if not s:
            continue
        m = record(s) if transcript is not False else None
        if m is not None:  # the capture client's own layout: no need to build the record
            try:
                # seconds_to_ns on the matched digits, without its checks and string joins
                sec, frac = m.group(1, 2)
                ts = int(sec) * 1_000_000_000 + (int(frac) * _POWERS[9 - len(frac)] if frac else 0)
                start = m.end()
                known = lookup_record(s, start)
                if known is not None:  # a poll seen before: no unescaping, no parsing
                    transcript = True
                    state.known(known[0], known[1], known[2], ts, number)
                    continue
                raw, end = scanstring(s, start)
                if s[end:] != "}":
                    raise ValueError("extra data after the transcript record")
                transcript = True
                known = lookup(raw)
                if known is not None:
                    state.known(known[0], known[1], raw, ts, number)
                else:
                    state.message(loads(raw.strip()), raw, ts, number)
                remember_record(s, start, raw)
            except ValueError as exc:
                policy.bad(number, line, _reason(exc))
            continue
        try:
            obj = loads_exact(s)
        except ValueError as exc:
            reason = f"not JSON ({exc.msg} at column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else str(exc)
            policy.bad(number, line, reason)
            continue
        if not isinstance(obj, dict):
            policy.bad(number, line, "not a JSON object")
            continue
        is_record = "t" in obj and "dir" in obj and "line" in obj
        if transcript is None:
            transcript = is_record
        if is_record != transcript:
            what = "a transcript record in a raw QMP stream" if is_record else "a raw QMP message in a transcript"
            policy.bad(number, line, what)
            continue
        try:
            if transcript:
                raw = obj["line"]
                if not isinstance(raw, str) or obj["dir"] not in ("send", "recv"):
                    raise ValueError("transcript record needs dir send|recv and line text")
                ts = seconds_to_ns(obj["t"])
                msg = loads(raw.strip())
            else:
                raw, msg = s, obj
                ts = event_time_ns(msg) if isinstance(msg, dict) and "event" in msg else None
            state.message(msg, raw, ts, number)
        except ValueError as exc:
            policy.bad(number, line, _reason(exc))
            continue
    rows.fill_missing_ts()
    part.vm = state.vm_name
    part.qemu_version = state.qemu_release
    return ParsedInput(
        path=text.path, format="qmp", sha256=text.sha256, lines=len(text.lines),
        skipped=policy.skipped, truncated=policy.truncated, parts=[part],
    )
