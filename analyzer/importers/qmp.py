"""QMP traffic -> rows: the message logic shared by every importer, and the `qmp` format.

The `qmp` format is either a raw stream (one QMP message per line, as a client or ``socat``
records it: greeting, events, replies and possibly the commands sent) or the timestamped
transcript the capture client writes (``{"t": epoch seconds, "dir": "send"|"recv", "line":
raw JSON}`` per line). Times: a transcript row takes its line's ``t`` (the moment the client
sent or received it); in a raw stream an event takes its own QMP timestamp and every other
row the last one before it (the first one, for rows before any event).

`QmpState` turns the messages of one monitor conversation into rows; the trace-log and
libvirt importers use it too, so that a message means the same thing whatever carried it:

- event -> ``qmp_event`` (``BLOCK_IO_ERROR``: device, op, action, errno; every event: its
  QMP timestamp in ``event_ts_ns`` (null for QEMU's -1/-1 "no time") and its whole JSON text
  in ``payload``);
- command -> ``qmp_command`` named by ``execute``;
- reply -> ``qmp_reply`` with ``cmd_ref`` on the command of the same id (the oldest
  unanswered one), named like it: ``query-block`` gives one row per device with its
  ``iostatus``, ``query-status`` one row with ``runstate``; replies to ``query-iothreads``
  and ``query-cpus-fast`` teach which thread ids are IOThreads and vCPUs.
"""

from __future__ import annotations

import json
import re
from collections import deque
from decimal import Decimal, InvalidOperation
from typing import Any

from analyzer.importers.lines import PROGRESS_EVERY, InputText, LinePolicy
from analyzer.importers.qapi_events import qemu_version_of, version_of
from analyzer.importers.rows import ParsedInput, Part, Rows
from analyzer.importers.threads import ThreadHints
from tracer.schema import ACTIONS, IOSTATUSES, OPS, RUNSTATES

ENOSPC = 28
EIO = 5
_RUNSTATES = frozenset(RUNSTATES)
_IOSTATUSES = frozenset(IOSTATUSES)
_OPS = frozenset(OPS)
_ACTIONS = frozenset(ACTIONS)
_PERIPHERAL = "/machine/peripheral/"


def event_time_ns(msg: dict) -> int | None:
    """The QMP timestamp of an event message in ns, or None."""
    stamp = msg.get("timestamp")
    if isinstance(stamp, dict):
        sec, usec = stamp.get("seconds"), stamp.get("microseconds")
        if isinstance(sec, int) and isinstance(usec, int) and sec >= 0 and usec >= 0:
            return sec * 1_000_000_000 + usec * 1000
    return None


def qdev_name(qdev: str) -> str:
    """The device id in a qdev path (``/machine/peripheral/<id>/...``), else the path itself."""
    if qdev.startswith(_PERIPHERAL):
        return qdev[len(_PERIPHERAL) :].split("/", 1)[0] or qdev
    return qdev


def bie_errno(data: dict) -> int | None:
    """errno of a BLOCK_IO_ERROR: 28 when ``nospace``, 5 for the EIO text, else unknown.

    ``reason`` is strerror() text and is not otherwise parsed: it is locale- and libc-specific.
    """
    if data.get("nospace") is True:
        return ENOSPC
    return EIO if data.get("reason") == "Input/output error" else None


def _scanner(decoder: json.JSONDecoder):
    """A strict one-document JSON parser without json.loads' per-call Python layers."""
    scan = decoder.scan_once

    def parse(text: str) -> Any:
        try:
            obj, end = scan(text, 0)
        except StopIteration as exc:
            raise json.JSONDecodeError("Expecting value", text, exc.value) from None
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
        return obj

    return parse


#: Parse one JSON document (no surrounding whitespace).
parse_json = _scanner(json.JSONDecoder())
#: The same, keeping numbers with a fraction as their text (exact transcript times).
parse_json_exact = _scanner(json.JSONDecoder(parse_float=str))


class Shape:
    """A command or reply but for its id: what it means, worked out once while management polls.

    `rows` memoizes, per command name the reply answers, the sparse values of each of its rows
    and the node/qdev -> device names it teaches (`_reply_fields`), so that the thousandth
    identical ``query-block`` reply costs no more than its row appends.
    """

    __slots__ = ("command", "failed", "msg", "name", "ret", "rows")
    MAX_NAMES = 8

    def __init__(self, msg: dict, command: bool) -> None:
        #: The first message of this shape (its "id" is that message's; only the rest is read).
        self.msg = msg
        self.command = command
        name = msg.get("execute", msg.get("exec-oob")) if command else None
        self.name: str | None = name if isinstance(name, str) else None
        self.failed = "error" in msg
        self.ret = msg.get("return")
        self.rows: dict[str | None, tuple[list[tuple], list[tuple[str, str]]]] = {}

    def reply_fields(self, name: str | None) -> tuple[list[tuple], list[tuple[str, str]]]:
        fields = self.rows.get(name)
        if fields is None:
            fields = _reply_fields(name, self.ret)
            if len(self.rows) < self.MAX_NAMES:
                self.rows[name] = fields
        return fields


class MessageCache:
    """Parse QMP messages, reusing the `Shape` of a reply or command seen before but for its id.

    Management polls: a capture is mostly the same few commands and replies (``query-block``
    returning the same kilobyte of JSON), differing only in their trailing ``"id"``. QEMU and
    libvirt put the id last, so the text before ``, "id": `` identifies the rest of the message;
    a message whose id is not last, or whose tail is no JSON value, is simply parsed in full.
    (Inside a JSON string every quote is escaped, so ``, "id": `` can only be a key; and a tail
    that is one JSON value right before the last ``}`` means the key is a top-level one.)
    Bounded: messages up to `MAX_TEXT` characters, at most `LIMIT` shapes (then it starts over).
    """

    LIMIT = 4096
    MAX_TEXT = 16384
    _STARTS = ('{"return"', '{"execute"', '{"error"')

    def __init__(self) -> None:
        self._cache: dict[str, Shape] = {}
        #: The same heads as a transcript record escapes them: head as in the record ->
        #: (shape, head as QMP sent it), so that a repeated record skips unescaping too.
        self._escaped: dict[str, tuple[Shape, str]] = {}

    def lookup(self, text: str) -> tuple[Shape, Any] | None:
        """(shape, QMP id) of a command or reply whose shape was seen before, else None."""
        if len(text) > self.MAX_TEXT or not text.startswith(self._STARTS) or text[-1] != "}":
            return None
        cut = text.rfind(', "id": ')
        if cut <= 0:
            return None
        shape = self._cache.get(text[:cut])
        if shape is None:
            return None
        tail = text[cut + 8 : -1]
        if tail.isdigit() and tail.isascii() and (tail[0] != "0" or len(tail) == 1):
            return shape, int(tail)  # the usual counter id, without the JSON scanner
        try:
            return shape, parse_json(tail)
        except ValueError:
            return None

    def lookup_record(self, record: str, start: int) -> tuple[Shape, int, str] | None:
        """(shape, id, message text) of a transcript record whose "line" string opens at `start`,
        when it is a command or reply of a known shape with a counter id, else None.

        The record must end with that string (``...\\"id\\": 12}"}``). A known escaped head is
        a valid string prefix ending between two escapes (`remember_record` took it from a
        record unescaped in full, where ``, \\"`` followed it), so head + id is a valid string.
        """
        if not record.endswith('}"}'):
            return None
        cut = record.rfind(', \\"id\\": ', start)
        if cut < 0:
            return None
        known = self._escaped.get(record[start:cut])
        if known is None:
            return None
        tail = record[cut + 10 : -3]
        if not (tail.isdigit() and tail.isascii() and (tail[0] != "0" or len(tail) == 1)):
            return None
        return known[0], int(tail), f'{known[1]}, "id": {tail}}}'

    def remember_record(self, record: str, start: int, text: str) -> None:
        """After `text` was unescaped from `record` (see `lookup_record`): remember its head."""
        if not record.endswith('}"}') or len(record) > 2 * self.MAX_TEXT:
            return
        cut = record.rfind(', \\"id\\": ', start)
        if cut < 0:
            return
        tail = record[cut + 10 : -3]
        id_text = f', "id": {tail}}}'
        if not (tail.isdigit() and tail.isascii() and text.endswith(id_text)):
            return
        head = text[: len(text) - len(id_text)]
        shape = self._cache.get(head)
        if shape is not None:
            if len(self._escaped) >= self.LIMIT:
                self._escaped.clear()
            self._escaped[record[start:cut]] = (shape, head)

    def parse(self, text: str) -> Any:
        """Parse one message in full, remembering its shape if it is a command or reply."""
        msg = parse_json(text)
        if (
            isinstance(msg, dict)
            and "id" in msg
            and "event" not in msg
            and len(text) <= self.MAX_TEXT
            and text.startswith(self._STARTS)
            and text[-1] == "}"
        ):
            cut = text.rfind(', "id": ')
            reply = "return" in msg or "error" in msg
            if cut > 0 and (reply or "execute" in msg or "exec-oob" in msg):
                if len(self._cache) >= self.LIMIT:
                    self._cache.clear()
                self._cache[text[:cut]] = Shape(msg, command=not reply)
        return msg


def _id_key(msg: dict) -> Any:
    """A hashable identity of the QMP id (None: no id); 5 and "5" differ."""
    return _id_value_key(msg["id"]) if "id" in msg else None


def _id_value_key(value: Any) -> Any:
    if type(value) is str:
        return value
    if type(value) is int:
        return ("int", value)
    return ("json", json.dumps(value, sort_keys=True))


def _guess_command(ret: Any) -> str | None:
    """Name an unanswered reply by its shape (a capture that missed the command)."""
    if isinstance(ret, dict) and "status" in ret and "running" in ret:
        return "query-status"
    if isinstance(ret, list) and ret and all(isinstance(i, dict) and "device" in i and "qdev" in i for i in ret):
        return "query-block"
    return None


#: The rows of a reply that gives one row without sparse values, and teaches no node name.
_ONE_ROW: tuple[list[tuple], list[tuple[str, str]]] = ([()], [])
#: Replies that teach something besides their rows (`QmpState._learn`).
_LEARNING = frozenset({"query-iothreads", "query-cpus-fast", "query-cpus", "query-name", "query-version"})


def _reply_fields(name: str | None, ret: Any) -> tuple[list[tuple], list[tuple[str, str]]]:
    """The rows of a successful reply to `name`: per row its ((sparse column, value), ...),
    and the (node-name or qdev path, device name) pairs it teaches, in order.

    ``query-block`` gives one row per device with its ``iostatus``, ``query-status`` one row
    with ``runstate``, anything else one row.
    """
    if name == "query-block" and isinstance(ret, list) and ret:
        rows: list[tuple] = []
        learnt: list[tuple[str, str]] = []
        for info in ret:
            device, iostatus = _block_info(info, learnt)
            rows.append(tuple((k, v) for k, v in (("device", device), ("iostatus", iostatus)) if v is not None))
        return rows, learnt
    if name == "query-status" and isinstance(ret, dict):
        status = ret.get("status")
        if status in _RUNSTATES:
            return [(("runstate", status),)], []
    return _ONE_ROW


def _block_info(info: Any, learnt: list[tuple[str, str]]) -> tuple[str | None, str | None]:
    """(device name, io-status) of one BlockInfo; appends the node-name/qdev -> device it names."""
    if not isinstance(info, dict):
        return None, None
    device, qdev = info.get("device"), info.get("qdev")
    inserted = info.get("inserted")
    node = inserted.get("node-name") if isinstance(inserted, dict) else None
    if isinstance(device, str) and device:
        name = device
    elif isinstance(qdev, str) and qdev:
        name = qdev_name(qdev)
    else:
        name = node if isinstance(node, str) and node else None
    if name is not None:
        if isinstance(node, str) and node:
            learnt.append((node, name))
        if isinstance(qdev, str) and qdev:
            learnt.append((qdev, name))
    status = info.get("io-status")
    return name, status if status in _IOSTATUSES else None


class QmpState:
    """The rows of one QMP conversation (one monitor), with what its replies teach."""

    def __init__(self, rows: Rows, hints: ThreadHints, node_map: dict[str, str]) -> None:
        self.rows = rows
        self.hints = hints
        self.node_map = node_map
        self.version: str | None = None
        #: The full QEMU release ("7.2.22"), for the trace metadata.
        self.qemu_version: str | None = None
        self.vm_name: str | None = None
        self._pending: dict[str | None, deque[int]] = {}
        self._cmd_name: dict[int, str | None] = {}
        self._occ: dict[tuple, int] = {}
        self._sparse = rows.sparse
        self._keys, self._cmd_refs = rows.sparse["key"], rows.sparse["cmd_ref"]
        self._threads, self._thread_kinds = rows.sparse["thread"], rows.sparse["thread_kind"]

    def _occurrence(self, base: tuple) -> int:
        n = self._occ.get(base, 0)
        self._occ[base] = n + 1
        return n

    def message(
        self,
        msg: Any,
        text: str,
        ts: int | None,
        line: int,
        *,
        tid: int | None = None,
        preset_threads: bool = True,
    ) -> str:
        """Add the rows of one message; returns its type. ValueError if it is no QMP message.

        `preset_threads`: QMP-only rows get the conventional thread names (events "qemu",
        commands "mgmt", replies "main"); a trace log leaves them to its TIDs.
        """
        if not isinstance(msg, dict):
            raise ValueError("not a JSON object")
        if "event" in msg:
            self.event(msg, text, ts, line, tid=tid, preset=preset_threads)
            return "event"
        if "return" in msg or "error" in msg:
            self.reply(msg, text, ts, line, tid=tid, preset=preset_threads)
            return "reply"
        if "execute" in msg or "exec-oob" in msg:
            self.command(msg, text, ts, line, tid=tid, preset=preset_threads)
            return "command"
        if "QMP" in msg:
            self.greeting(msg, text, ts, line, tid=tid, preset=preset_threads)
            return "greeting"
        raise ValueError("not a QMP message (no event, return, error, execute or QMP key)")

    def command(self, msg: dict, text: str, ts: int | None, line: int, *, tid: int | None = None, preset: bool = True) -> int:
        name = msg.get("execute", msg.get("exec-oob"))
        return self._command(name if isinstance(name, str) else None, _id_key(msg), text, ts, line, tid, preset)

    def reply(self, msg: dict, text: str, ts: int | None, line: int, *, tid: int | None = None, preset: bool = True) -> None:
        self._reply(_id_key(msg), "error" in msg, msg.get("return"), msg, None, text, ts, line, tid, preset)

    def known(self, shape: Shape, msg_id: Any, text: str, ts: int | None, line: int) -> None:
        """Add the rows of a command or reply of a known `shape` (see `MessageCache`) with id `msg_id`."""
        if shape.command:
            self._command(shape.name, _id_value_key(msg_id), text, ts, line, None, True)
        else:
            self._reply(_id_value_key(msg_id), shape.failed, shape.ret, shape.msg, shape, text, ts, line, None, True)

    def _command(self, name: str | None, idk: Any, text: str, ts: int | None, line: int, tid: int | None, preset: bool) -> int:
        base = ("cmd", idk, name)
        occ = self._occ.get(base, 0)
        self._occ[base] = occ + 1
        rows = self.rows
        i = len(rows.kind)
        rows.kind.append("qmp_command")  # Rows.append, inlined: the hot path of a transcript
        rows.ts.append(ts)
        rows.tid.append(tid)
        rows.name.append(name)
        rows.payload.append(text)
        rows.line.append(line)
        self._keys[i] = (*base, occ)
        if preset:
            self._threads[i] = "mgmt"
            self._thread_kinds[i] = "mgmt"
        queue = self._pending.get(idk)
        if queue is None:
            queue = self._pending[idk] = deque()
        queue.append(i)
        self._cmd_name[i] = name
        return i

    def _reply(
        self, idk: Any, failed: bool, ret: Any, msg: dict, shape: Shape | None,
        text: str, ts: int | None, line: int, tid: int | None, preset: bool,
    ) -> None:
        """The rows of one reply; `shape` (if known) memoizes what its `ret` means."""
        queue = self._pending.get(idk)
        cmd_row = None
        if queue:
            cmd_row = queue.popleft()
            if not queue:
                del self._pending[idk]  # the usual unique id: keep the table of waiting ids small
        name = self._cmd_name.pop(cmd_row, None) if cmd_row is not None else None
        if name is None and not failed:
            name = _guess_command(ret)
        base = ("reply", idk, name)
        occ = self._occ.get(base, 0)
        self._occ[base] = occ + 1
        if failed:
            row_fields, learnt = _ONE_ROW
        elif shape is not None:
            row_fields, learnt = shape.reply_fields(name)
        else:
            row_fields, learnt = _reply_fields(name, ret)
        if learnt:
            self.node_map.update(learnt)
        sparse = self._sparse
        rows = self.rows
        for j, fields in enumerate(row_fields):
            i = len(rows.kind)
            rows.kind.append("qmp_reply")  # Rows.append, inlined as in `_command`
            rows.ts.append(ts)
            rows.tid.append(tid)
            rows.name.append(name)
            rows.payload.append(text)
            rows.line.append(line)
            self._keys[i] = (*base, occ, j)
            if cmd_row is not None:
                self._cmd_refs[i] = cmd_row
            if preset:
                self._threads[i] = "main"
                self._thread_kinds[i] = "main"
            for col, value in fields:
                sparse[col][i] = value
        if name in _LEARNING and not failed:
            self._learn(name, ret, msg)

    def _learn(self, name: str | None, ret: Any, msg: dict) -> None:
        """What a successful reply teaches about the VM besides its rows."""
        if name == "query-iothreads":
            self.hints.add_iothreads(ret)
        elif name in ("query-cpus-fast", "query-cpus"):
            self.hints.add_vcpus(ret)
        elif name == "query-name" and isinstance(ret, dict) and isinstance(ret.get("name"), str):
            self.vm_name = ret["name"] or None
        elif name == "query-version":
            self.version = version_of(msg) or self.version
            self.qemu_version = qemu_version_of(msg) or self.qemu_version

    def event(self, msg: dict, text: str, ts: int | None, line: int, *, tid: int | None = None, preset: bool = True) -> int:
        name = msg.get("event")
        name = name if isinstance(name, str) else None
        stamp = msg.get("timestamp")
        key = None
        if isinstance(stamp, dict):
            key = ("event", name, stamp.get("seconds"), stamp.get("microseconds"))
        fields: dict[str, Any] = {}
        data = msg.get("data")
        if name == "BLOCK_IO_ERROR" and isinstance(data, dict):
            device = data.get("device")
            if isinstance(device, str) and device:
                fields["device"] = device
            else:
                node, qom = data.get("node-name"), data.get("qom-path")
                fields["node"] = node if isinstance(node, str) and node else None
                fields["qom"] = qom if isinstance(qom, str) and qom else None
            op, action = data.get("operation"), data.get("action")
            fields["op"] = op if op in _OPS else None
            fields["action"] = action if action in _ACTIONS else None
            fields["errno"] = bie_errno(data)
        thread = ("qemu", "unknown") if preset else (None, None)
        return self.rows.add(
            "qmp_event", ts, line, tid=tid, name=name, payload=text,
            thread=thread[0], thread_kind=thread[1], key=key, event_ts=event_time_ns(msg), **fields,
        )

    def greeting(self, msg: dict, text: str, ts: int | None, line: int, *, tid: int | None = None, preset: bool = True) -> None:
        self.version = version_of(msg) or self.version
        self.qemu_version = qemu_version_of(msg) or self.qemu_version
        thread = ("qemu", "unknown") if preset else (None, None)
        self.rows.add(
            "trace_event", ts, line, tid=tid, name="qmp_greeting", payload=text,
            thread=thread[0], thread_kind=thread[1], key=("greeting", self._occurrence(("greeting",))),
        )


_POWERS = [10**k for k in range(10)]


def seconds_to_ns(value: Any) -> int:
    """Epoch seconds (JSON number text or int) -> ns, exactly (no float rounding)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value * 1_000_000_000
    if not isinstance(value, str):
        raise ValueError("time is not a number")
    dot = value.find(".")
    digits = value[:dot] + value[dot + 1 :] if dot >= 0 else value
    places = len(value) - dot - 1 if dot >= 0 else 0
    if places <= 9 and digits.isdigit():
        return int(digits) * _POWERS[9 - places]
    try:
        return int(Decimal(value) * 1_000_000_000)
    except InvalidOperation:
        raise ValueError(f"bad time {value!r}") from None


#: A transcript record as the capture client writes it, up to the opening quote of "line".
_RECORD = re.compile(r'\{"t": (\d+)(?:\.(\d{1,9}))?, "dir": "(?:send|recv)", "line": "')


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
    scanstring = json.decoder.scanstring  # type: ignore[attr-defined]
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
            policy.bad(number, line, f"not JSON ({exc.msg} at column {exc.colno})")
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
    part.qemu_version = state.qemu_version
    return ParsedInput(
        path=text.path, format="qmp", sha256=text.sha256, lines=len(text.lines),
        skipped=policy.skipped, truncated=policy.truncated, parts=[part],
    )
