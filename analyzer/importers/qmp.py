"""The `qmp` format: a raw QMP stream or a capture client's transcript -> one Part.

The `qmp` format is either a raw stream (one QMP message per line, as a client or ``socat``
records it: greeting, events, replies and possibly the commands sent) or the timestamped
transcript the capture client writes (``{"t": epoch seconds, "dir": "send"|"recv", "line":
raw JSON}`` per line). Times: a transcript row takes its line's ``t`` (the moment the client
sent or received it); in a raw stream an event takes its own QMP timestamp and every other
row the last one before it (the first one, for rows before any event).

This module only takes the lines apart (the record, its time, the message text); what each
message means is `analyzer.importers.qmp_semantics`, shared with the trace-log and libvirt
importers. A transcript is mostly management polling the same queries, so:

- its records of the capture client's own layout whose message is a command or reply of a
  shape seen before (`MessageCache`) are taken apart in bulk, a block at a time on threads
  ahead of the reader (`transcript_block`), and their rows made for all of them at once once
  every line is read (`qmp_messages`): no Python object per message;
- every other line is read one by one: a record of a known shape without unescaping or JSON
  parsing, any other parsed in full. Its command or reply joins the bulk ones (a reply may
  answer a command of either); its event or greeting becomes rows right away (`QmpState`).

Bad lines are reported in line order once every line is read (a reply's rows, or its being
a bad one, depend on the command it answers). A raw stream, or a text that is only lines (a
KubeVirt pod log's), is read one line at a time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pyarrow as pa

from analyzer.importers import ahead
from analyzer.importers.byte_lines import ByteLines, is_utf8
from analyzer.importers.json_scan import json_error, parse_json, parse_json_exact, scan_string
from analyzer.importers.lines import PROGRESS_EVERY, InputText, LinePolicy
from analyzer.importers.message_cache import MessageCache, Shape
from analyzer.importers.qmp_messages import MessageTable
from analyzer.importers.qmp_semantics import (
    EventMeaning,
    QmpState,
    event_time_ns,
    id_key,
    message_id_key,
    message_type,
    readable_whatever_answered,
)
from analyzer.importers.qmp_types import (
    INT64_MAX,
    INT64_MIN,
    check_command,
    check_event,
    check_event_time,
)
from analyzer.importers.rows import ParsedInput, Part, Rows
from analyzer.importers.transcript_block import TranscriptBlock
from tracer.errors import InputError

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
        return f"bad JSON in the QMP message ({json_error(exc)})"
    return str(exc)


def parse(text: InputText, policy: LinePolicy) -> ParsedInput:
    """Parse a QMP raw stream or transcript into one Part."""
    if isinstance(text, InputText) and _is_transcript(text):
        return _Transcript(text, policy).run()
    return _parse_lines(text, policy)


def _parse_lines(text: InputText, policy: LinePolicy) -> ParsedInput:
    """Parse a QMP raw stream or transcript into one Part, one line at a time."""
    rows = Rows()
    part = Part(source="qmp", path=text.path, rows=rows)
    state = QmpState(rows, part.hints, part.node_map)
    transcript: bool | None = None
    cache = MessageCache()
    loads, loads_exact = cache.parse, parse_json_exact
    record = _RECORD.match
    for number, line in enumerate(text.lines, 1):
        if not number % PROGRESS_EVERY:
            policy.progress(number)
        s = line.strip()
        if not s:
            continue
        m = record(s) if transcript is not False else None
        if m is not None:
            try:
                ts, raw, known = _record(s, m, cache)
                transcript = True
                if known is not None:
                    state.known(known[0], known[1], raw, ts, number)
                else:
                    state.message(loads(raw.strip()), raw, ts, number)
                cache.remember_record(s, m.end(), raw)
            except ValueError as exc:
                policy.bad(number, line, _reason(exc))
            continue
        try:
            obj = loads_exact(s)
        except ValueError as exc:
            policy.bad(number, line, _not_json(exc))
            continue
        if not isinstance(obj, dict):
            policy.bad(number, line, "not a JSON object")
            continue
        is_record = _is_record(obj)
        if transcript is None:
            transcript = is_record
        if is_record != transcript:
            what = "a transcript record in a raw QMP stream" if is_record else "a raw QMP message in a transcript"
            policy.bad(number, line, what)
            continue
        try:
            if transcript:
                ts, raw = _record_of(obj)
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


def _record(s: str, m: re.Match[str], cache: MessageCache) -> tuple[int, str, tuple[Shape, Any] | None]:
    """A record of the capture client's own layout (`m`: its `_RECORD` match; no need to build
    the record): (time, message text, (shape, id) when `cache` has seen the message's shape
    -- a poll seen before: no unescaping, no parsing -- else None). ValueError for a bad one."""
    sec, frac = m.group(1, 2)  # (`seconds_to_ns` on the matched digits, without its checks)
    ts = int(sec) * 1_000_000_000 + (int(frac) * _POWERS[9 - len(frac)] if frac else 0)
    start = m.end()
    known = cache.lookup_record(s, start)
    if known is not None:
        return ts, known[2], (known[0], known[1])
    raw, end = scan_string(s, start)
    if s[end:] != "}":
        raise ValueError("extra data after the transcript record")
    return ts, raw, cache.lookup(raw)


def _record_of(obj: dict) -> tuple[int, str]:
    """(time, message text) of a transcript record parsed in full."""
    raw = obj["line"]
    if not isinstance(raw, str) or obj["dir"] not in ("send", "recv"):
        raise ValueError("transcript record needs dir send|recv and line text")
    return seconds_to_ns(obj["t"]), raw


def _is_record(obj: dict) -> bool:
    return "t" in obj and "dir" in obj and "line" in obj


def _not_json(exc: ValueError) -> str:
    return f"not JSON ({json_error(exc)})" if isinstance(exc, json.JSONDecodeError) else str(exc)


def _decides(line: str) -> bool | None:
    """Whether this line makes `_parse_lines` read its input as a transcript (True) or a raw
    stream (False); None: a line that decides nothing (empty, or bad)."""
    s = line.strip()
    if not s:
        return None
    m = _RECORD.match(s)
    if m is not None:
        try:
            _, end = scan_string(s, m.end())
        except ValueError:
            return None
        return True if s[end:] == "}" else None
    try:
        obj = parse_json_exact(s)
    except ValueError:
        return None
    return _is_record(obj) if isinstance(obj, dict) else None


def _is_transcript(text: InputText) -> bool:
    """Whether the line that decides (`_decides`) says transcript; without decoding errors
    (a line that is not UTF-8 decides nothing: the reader reports it)."""
    for _, block in text.iter_byte_blocks():
        for raw in block.split(b"\n"):
            try:
                decided = _decides(raw.decode("utf-8"))
            except UnicodeDecodeError:
                continue
            if decided is not None:
                return decided
    return False


def _first_of(codes: np.ndarray, distinct: int) -> np.ndarray:
    """Per code 0..distinct-1, the index of its first row in `codes` (the lines a head or an
    event's rest is judged on)."""
    first = np.full(distinct, -1, dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
    return first


def _remember(known: dict[str, Any], key: str, value: Any) -> None:
    """Keep what a head or an event's rest was found to be, for at most `MessageCache.LIMIT`
    of them (then start over: a transcript of messages that never repeat keeps no copy of
    each)."""
    if len(known) >= MessageCache.LIMIT:
        known.clear()
    known[key] = value


def _stamp(seconds: int, micros: int) -> str:
    """How an event's message starts, with its timestamp."""
    return f'{{"timestamp": {{"seconds": {seconds}, "microseconds": {micros}}}, '


def _prepare(item: tuple[int, bytes]) -> tuple[int, bytes, ByteLines | None, TranscriptBlock | None]:
    """(lines before, block, its lines, its records read in bulk); no lines when the block is
    not UTF-8. Pure: it runs ahead on threads (`ahead.ordered`)."""
    before, block = item
    if not is_utf8(block):
        return before, block, None, None
    lines = ByteLines(block)
    return before, block, lines, TranscriptBlock(lines)


class _Transcript:
    """A capture client's transcript, read in bulk where it can be (see the module doc)."""

    def __init__(self, text: InputText, policy: LinePolicy) -> None:
        self.text, self.policy = text, policy
        self.rows = Rows()
        self.part = Part(source="qmp", path=text.path, rows=self.rows)
        self.state = QmpState(self.rows, self.part.hints, self.part.node_map)
        self.table = MessageTable(spill=policy.spill)
        self.cache = MessageCache()
        #: Escaped head -> (shape index in `table`, head as QMP sent it), or None: not read
        #: in bulk.
        self.heads: dict[str, tuple[int, str] | None] = {}
        #: What follows an event's timestamp, escaped -> (event, as QEMU sent it), or None:
        #: not read in bulk.
        self.rests: dict[str, tuple[EventMeaning, str] | None] = {}
        self._rests: list[tuple[EventMeaning, str] | None] = []
        self.errors: list[tuple[int, str, str]] = []
        self.announced: list[tuple[int, Any]] = []

    def bad(self, number: int, line: str, reason: str) -> None:
        self.errors.append((number, line, reason))

    def report(self) -> None:
        """The bad lines, in line order (`LinePolicy.bad`: the first raises without
        ``--skip-bad``)."""
        errors, self.errors = sorted(self.errors, key=lambda e: e[0]), []
        for number, line, reason in errors:
            self.policy.bad(number, line, reason)

    def run(self) -> ParsedInput:
        text, policy = self.text, self.policy
        on_bad, text.on_bad = text.on_bad, self.bad
        try:
            for before, block, lines, bulk in ahead.ordered(text.iter_byte_blocks(), _prepare, workers=2):
                if lines is None or bulk is None:  # not UTF-8: read where its bad line is reported
                    for number, line in enumerate(text.decode_block(block, before), before + 1):
                        self.line(number, line)
                    continue
                self.block(before, lines, bulk)
                policy.progress(before + len(lines))
        except InputError:
            self.report()
            raise
        finally:
            text.on_bad = on_bad
        segments, reply_errors = self.table.segments(self.state, self.announced)
        self.rows.segments.extend(segments)
        self.errors.extend(reply_errors)
        self.report()
        self.rows.fill_missing_ts()
        self.part.vm = self.state.vm_name
        self.part.qemu_version = self.state.qemu_release
        return ParsedInput(
            path=text.path, format="qmp", sha256=text.sha256, lines=len(text.lines),
            skipped=policy.skipped, truncated=policy.truncated, parts=[self.part],
        )

    def block(self, before: int, lines: ByteLines, bulk: TranscriptBlock) -> None:
        """One block: its records of known heads in bulk, every other line one by one."""
        first = _first_of(bulk.head, len(bulk.heads))
        known = [self.head(h, lines.line(int(bulk.taken[f]))) for h, f in zip(bulk.heads, first.tolist(), strict=True)]
        shape_of = np.array([k[0] if k is not None and k[1] == sent else -1  # (as the payloads have it)
                             for k, sent in zip(known, bulk.sent_heads, strict=True)] or [-1], dtype=np.int64)
        taken = shape_of[bulk.head] >= 0 if len(bulk.head) else np.zeros(0, dtype=bool)
        rest = np.ones(len(lines), dtype=bool)
        rest[bulk.taken[taken]] = False
        events = self.bulk_events(lines, bulk)
        rest[bulk.event_taken[events]] = False
        # one by one and bulk events in line order: events are list rows, in reading order
        at = np.concatenate((np.flatnonzero(rest), bulk.event_taken[events]))
        which = np.concatenate((np.full(int(rest.sum()), -1), np.flatnonzero(events)))
        order = np.argsort(at, kind="stable")
        # (each event's values as Python ints once per block, not a numpy scalar per event)
        values = zip(bulk.event_rest.tolist(), bulk.event_seconds.tolist(), bulk.event_micros.tolist(),
                     bulk.event_ts.tolist(), strict=True)
        known = [v if k else None for v, k in zip(values, events.tolist(), strict=True)]
        for i, e in zip(at[order].tolist(), which[order].tolist(), strict=True):
            if e < 0:
                self.line(before + i + 1, lines.line(i))
            else:
                self.event(before + i + 1, known[e], lambda e=e: lines.line(int(bulk.event_taken[e])))
        payloads = bulk.payloads if taken.all() else bulk.payloads.filter(pa.array(taken))
        self.table.add_chunk(before + bulk.taken[taken] + 1, bulk.ts[taken], shape_of[bulk.head[taken]], bulk.id[taken], payloads)

    def bulk_events(self, lines: ByteLines, bulk: TranscriptBlock) -> np.ndarray:
        """Which of the block's event records to read from their rest's one parse
        (`event_rest`): those whose rest `rest` accepts (`QmpState.event` judges each one's
        timestamp)."""
        first = _first_of(bulk.event_rest, len(bulk.rests))
        self._rests = [self.rest(r, lines.line(int(bulk.event_taken[f])), int(bulk.event_seconds[f]), int(bulk.event_micros[f]))
                       for r, f in zip(bulk.rests, first.tolist(), strict=True)]
        known = np.array([r is not None for r in self._rests] + [False], dtype=bool)
        return known[bulk.event_rest] if len(bulk.event_rest) else np.zeros(0, dtype=bool)

    def rest(self, escaped: str, line: str, seconds: int, micros: int) -> tuple[EventMeaning, str] | None:
        """(what the event means, what follows its timestamp as QEMU sent it) of the event
        records whose message is ``{"timestamp": ..., `` then `escaped`, from `line`, the first
        of them: an event `QmpState.event` takes whatever its timestamp (no other timestamp
        member)."""
        found = self.rests.get(escaped, False)
        if found is not False:
            return found
        result = None
        m = _RECORD.match(line)
        prefix = _stamp(seconds, micros)
        try:
            if m is not None:
                raw, end = scan_string(line, m.end())
                msg = parse_json(raw.strip()) if line[end:] == "}" and raw.startswith(prefix) else None
                if (message_type(msg) == "event" and msg.get("timestamp") == {"seconds": seconds, "microseconds": micros}
                        and len(msg["timestamp"]) == 2):
                    check_event(msg)
                    result = (EventMeaning.of(msg), raw[len(prefix) :])
        except ValueError:
            result = None
        _remember(self.rests, escaped, result)
        return result

    def event(self, number: int, values: tuple[int, int, int, int], line: Callable[[], str]) -> None:
        """An event record of the block read from its rest's meaning (`rest`), its values
        (rest, seconds, microseconds, record time): as `QmpState.event` would read it, its
        timestamp judged (`line`: its text, for a bad line)."""
        rest_index, seconds, micros, ts = values
        meaning, rest = self._rests[rest_index]  # type: ignore[misc]
        try:
            check_event_time(meaning.name or "", seconds, micros)
            self.state.add_event(meaning, (seconds, micros), seconds * 1_000_000_000 + micros * 1000,
                                 f'{{"timestamp": {{"seconds": {seconds}, "microseconds": {micros}}}, {rest}', ts, number)
        except ValueError as exc:
            self.bad(number, line(), _reason(exc))

    def head(self, escaped: str, line: str) -> tuple[int, str] | None:
        """(shape index, head as sent) of the records with this escaped head, if they can be
        read in bulk: the head of a command or reply `MessageCache` keeps (as the line-by-line
        reading of `line`, its first record, would keep it), whose every copy means the same
        rows whatever command it answers (no copy can be a bad line)."""
        if escaped in self.heads:
            return self.heads[escaped]
        found = None
        probe = MessageCache()  # (what the line-by-line reading would remember, kept apart)
        m = _RECORD.match(line)
        try:
            if m is not None:
                raw, end = scan_string(line, m.end())
                if line[end:] == "}":
                    probe.parse(raw.strip())
                    probe.remember_record(line, m.end(), raw)
                    found = probe.known_head(escaped)
            if found is not None:
                shape = found[0]
                if shape.command:
                    check_command(shape.msg)
                elif not shape.failed and not readable_whatever_answered(shape.ret):
                    found = None
        except ValueError:
            found = None
        result = None if found is None else (self.table.shape_index(found[0]), found[1])
        _remember(self.heads, escaped, result)
        return result

    def line(self, number: int, line: str) -> None:
        """One line read one by one (the reading of `_parse_lines` for a transcript)."""
        s = line.strip()
        if not s:
            return
        m = _RECORD.match(s)
        if m is not None:
            try:
                ts, raw, known = _record(s, m, self.cache)
                if known is not None:
                    self.known(known[0], known[1], raw, ts, number, line)
                else:
                    self.message(self.cache.parse(raw.strip()), raw, ts, number, line)
                self.cache.remember_record(s, m.end(), raw)
            except ValueError as exc:
                self.bad(number, line, _reason(exc))
            return
        try:
            obj = parse_json_exact(s)
        except ValueError as exc:
            self.bad(number, line, _not_json(exc))
            return
        if not isinstance(obj, dict):
            self.bad(number, line, "not a JSON object")
            return
        if not _is_record(obj):
            self.bad(number, line, "a raw QMP message in a transcript")
            return
        try:
            ts, raw = _record_of(obj)
            self.message(self.cache.parse(raw.strip()), raw, ts, number, line)
        except ValueError as exc:
            self.bad(number, line, _reason(exc))

    def known(self, shape: Shape, msg_id: Any, text: str, ts: int, number: int, line: str) -> None:
        if shape.command:
            check_command(shape.msg)  # (as `QmpState.known`: each copy is judged)
        self.table.add(number, ts, shape, id_key(msg_id), text, line)

    def message(self, msg: Any, text: str, ts: int, number: int, line: str) -> None:
        kind = message_type(msg)
        if kind == "event":
            self.state.event(msg, text, ts, number)
        elif kind == "greeting":
            self.state.greeting(msg, text, ts, number)
            self.announced.append((number, msg))
        else:
            if kind == "command":
                check_command(msg)
            self.table.add(number, ts, Shape(msg, command=kind == "command"), message_id_key(msg), text, line)
