"""QEMU's ``log`` trace backend text -> rows (the `qemu-log` format).

Lines are ``name args`` or, with ``-msg timestamp=on``, ``TID@SECONDS.MICROS:name args``
(TID the Linux thread id). The input is read a block at a time: the plain lines of events
that become ``trace_event`` rows as they are go through `trace_block` in bulk, on threads
ahead of the rest (`prepare`); every other line costs a couple of ``str.partition`` calls,
and only lines that carry JSON are parsed as JSON (a poll's command or reply once per shape,
`message_cache`). What matters becomes a typed row, every other event a ``trace_event`` row
with its arguments in ``payload`` (``{"args": "..."}``):

- ``runstate_set`` -> ``runstate`` (prev_runstate -> runstate; names printed by QEMU, numbers
  mapped with ``tracer.schema.RUNSTATES`` when only numbers are printed);
- ``vm_stop_flush_all`` -> ``vm_stop`` on the thread that traced it;
- ``virtio_blk_rw_complete ... ret -N`` -> a failed ``io_complete`` (errno N, req_id = the
  request pointer, op from the ``virtio_blk_handle_read/write`` of that request);
- ``monitor_qmp_respond`` -> the QMP event (`qmp_semantics.QmpState`) or reply
  (`qmp_messages.MessageTable`, paired with its command once every line is read; a poll seen
  in an earlier block found in bulk, `TraceBlock.messages`) it sends; an event takes the TID and time of the ``monitor_protocol_event_queue`` that queued it (linked
  through the data pointer of ``monitor_protocol_event_emit``), so a ``BLOCK_IO_ERROR`` raised
  on an IOThread is attributed to it even when the main loop sends it later (throttled events);
- ``handle_qmp_command`` -> ``qmp_command`` (the same table; or, when the log never traces
  it, ``qmp_enter_<cmd>``);
- ``monitor_protocol_event_queue`` lines whose event was never sent as JSON (the respond
  event not enabled): ``qmp_event`` rows named with `qapi_events.EventNumbers`; without a
  table for the version (unknown, or older than the tables) numbers that cannot be named are
  ``qmp_event`` rows named ``#N`` (`qapi_events.unnamed`), never guessed; with a table, numbers
  beyond it (events no rule reads) stay ``trace_event`` rows;
- QEMU's own messages on the same stderr (``qemu-system-x86_64: ...``) -> ``trace_event``
  ``qemu_message``.

A line of one of these events whose arguments match none of its known formats
(``monitor_protocol_event_queue`` without ``event=N data=P``, a failed
``virtio_blk_rw_complete`` without ``req P ret -N``, ...) is not kept as an event: it is
counted (``ParsedInput.unknown_lines``: the import summary and the trace's metadata) and
marked once per input (`UNKNOWN_LINES_MARKER`) for the rule ``trace-lines-unknown``.

Without timestamps a row takes the QMP timestamp of the last event before it (the first one
for rows before any event).
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable, Iterable
from itertools import compress
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from sys import intern
from typing import Any

import numpy as np
import pyarrow as pa

from analyzer.importers import ahead
from analyzer.importers.byte_lines import ByteLines, is_utf8
from analyzer.importers.detect import QEMU_MESSAGE
from analyzer.importers.event_rests import EventRests
from analyzer.importers.json_scan import parse_json
from analyzer.importers.lines import PROGRESS_EVERY, InputText, LinePolicy
from analyzer.importers.message_cache import MessageCache, Shape
from analyzer.importers.qapi_events import EventNumbers, unnamed
from analyzer.importers.qmp_messages import MessageTable
from analyzer.importers.qmp_semantics import (
    QmpState,
    event_time_ns,
    id_key,
    message_id_key,
    message_type,
    readable_whatever_answered,
)
from analyzer.importers.qmp_types import INT64_MAX as _INT64_MAX
from analyzer.importers.qmp_types import INT64_MIN as _INT64_MIN
from analyzer.importers.qmp_types import check_command, check_event, check_event_time
from analyzer.importers.rows import ParsedInput, Part, Rows, Segment
from analyzer.importers.trace_block import PollMessages, TraceBlock
from tracer.schema import RUNSTATES

# Numbers are at most 20 digits (int64 and beyond, never the 4,300 digits int() refuses).
_RUNSTATE = re.compile(r"current_run_state (\d{1,20}) \(([^)]*)\) new_state (\d{1,20}) \(([^)]*)\)")
_RUNSTATE_OLD = re.compile(r"new state (\d{1,20})\b")
_RW_COMPLETE = re.compile(r"req (0x[0-9a-fA-F]{1,40}|\(nil\)) ret (-?\d{1,20})")
_EVENT_PTR = re.compile(r"event=(\d{1,20}) data=(0x[0-9a-fA-F]+|\(nil\))")
_RATE = re.compile(r"\brate=(\d{1,20})")
#: QEMU 2.x ``monitor_protocol_event`` carried the event name.
_EVENT_NAMED = re.compile(r'event=(\d{1,20}) name "([^"]*)"')
#: QEMU 2.x ``handle_qmp_command`` carried only the command name.
_CMD_NAMED = re.compile(r'cmd_name "([^"]*)"')

#: QMP commands whose names use underscores (``qmp_enter_<c_name>`` cannot tell).
_UNDERSCORE_COMMANDS = frozenset(
    {
        "qmp_capabilities", "device_add", "device_del", "netdev_add", "netdev_del",
        "block_resize", "block_passwd", "block_set_io_throttle", "migrate_cancel",
        "migrate_set_downtime", "migrate_set_speed", "migrate_set_cache_size",
        "client_migrate_info", "set_link", "set_password", "expire_password",
        "system_reset", "system_powerdown", "system_wakeup",
    }
)
_RUNSTATE_NAMES = frozenset(RUNSTATES)
#: Threads that read blocks in bulk ahead of the line-by-line reading.
_BULK_THREADS = 2
_INT32_MIN = -(1 << 31)
_PROGRESS_MASK = PROGRESS_EVERY - 1
#: Name of the row marking an input's lines of a trace event blkreplay reads whose arguments
#: match none of that event's formats, followed by their count (``...:17``): a ``qmp_event``
#: row at the first such line (the rule ``trace-lines-unknown``); no QAPI event is named so.
UNKNOWN_LINES_MARKER = "blkreplay:trace-lines-unknown:"
#: Dispatch markers: a line kept as a plain trace_event; a name that is no trace event.
_BULK = object()
_NOT_AN_EVENT = object()


def args_payload(args: str) -> str:
    """``{"args": "<the event's argument text>"}`` for a kept trace event."""
    return '{"args": ' + encode_basestring(args) + "}"


def command_name(c_name: str) -> str:
    """The QMP command of a ``qmp_enter_<c_name>`` event."""
    return c_name if c_name in _UNDERSCORE_COMMANDS else c_name.replace("_", "-")


def _runstate(number: str, name: str | None) -> str | None:
    if name in _RUNSTATE_NAMES:
        return name
    n = int(number)
    return RUNSTATES[n] if 0 <= n < len(RUNSTATES) else None


class _Queued:
    """A ``monitor_protocol_event_queue`` line waiting for the JSON of its event."""

    __slots__ = ("args", "line", "number", "tid", "ts")

    def __init__(self, tid: int | None, ts: int | None, line: int, number: int, args: str) -> None:
        self.tid, self.ts, self.line, self.number, self.args = tid, ts, line, number, args


class _Prepared:
    """A block of lines as `_TraceLogParser.prepare` left it for `consume`."""

    __slots__ = ("before", "block", "heads", "lines", "polls", "requests", "rest", "segment")

    def __init__(self, before: int, block: bytes) -> None:
        self.before, self.block = before, block
        #: None: the block is not UTF-8 and is read one line at a time.
        self.lines: ByteLines | None = None
        self.rest = np.zeros(0, dtype=np.int64)
        self.requests: tuple | None = None
        self.segment: Segment | None = None
        #: What `TraceBlock.heads` found of the `rest` lines (None: read them all one by one).
        self.heads: tuple | None = None
        #: The plain ``handle_qmp_command`` and ``monitor_qmp_respond`` lines in a poll's shape:
        #: (whether commands, their lines in the block, TIDs, times, `PollMessages`).
        self.polls: list[tuple[bool, np.ndarray, np.ndarray, np.ndarray, PollMessages]] = []


class _Requests:
    """The op (read or write) of each request pointer the ``virtio_blk_handle_read/write`` lines
    name, as of any line: what a failed completion's row says (`rw_complete`), the last
    request line before it with its pointer deciding.

    A block's requests read in bulk stay columns (their pointers one Arrow array): most are
    never asked about, as most completions succeed. A failed completion of the block finds the
    last one before its line among them (an index of the block's pointers, made at the first
    question), or among the block's requests read one by one (`set`); at the block's end the
    last op of each pointer the block named goes to a dict (`fold`, from the same index): a
    Python step per distinct pointer, not per request."""

    def __init__(self) -> None:
        self._ops: dict[str, str] = {}
        #: The block's bulk requests: line numbers (ascending), pointers, whether writes.
        self._block: tuple[np.ndarray, pa.Array, np.ndarray] | None = None
        #: Per pointer of `_block`, the lines of its requests there (ascending) and whether
        #: each is a write, made when first asked.
        self._rows: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
        #: The block's requests read one by one: pointer -> (line, op) of its last.
        self._set: dict[str, tuple[int, str]] = {}

    def add(self, lines: np.ndarray, reqs: pa.Array, found: np.ndarray, writes: np.ndarray) -> None:
        """A block's requests read in bulk (`found`: those that name a pointer)."""
        keep = np.flatnonzero(found)
        self._block = (lines[keep], reqs.filter(pa.array(found)), writes[keep])
        self._rows = None

    def set(self, line: int, req: str, op: str) -> None:
        """A request read one by one, at `line` (after every line asked about before)."""
        self._set[req] = (line, op)

    def op(self, req: str, line: int) -> str | None:
        """The op of the last request of pointer `req` before `line`."""
        latest = self._set.get(req)
        if self._block is not None:
            found = self._pointer_rows().get(req)
            if found is not None:
                lines, writes = found
                k = int(np.searchsorted(lines, line)) - 1
                if k >= 0 and (latest is None or lines[k] > latest[0]):
                    return "write" if writes[k] else "read"
        if latest is not None:
            return latest[1]
        return self._ops.get(req)

    def _pointer_rows(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if self._rows is None:
            assert self._block is not None
            lines, reqs, writes = self._block
            encoded = reqs.dictionary_encode()
            codes = encoded.indices.to_numpy()
            order = np.argsort(codes, kind="stable")  # (by pointer, each pointer's rows ascending)
            bounds = np.searchsorted(codes[order], np.arange(len(encoded.dictionary) + 1)).tolist()
            lines, writes = lines[order], writes[order]
            self._rows = {key: (lines[a:b], writes[a:b])
                          for key, a, b in zip(encoded.dictionary.to_pylist(), bounds[:-1], bounds[1:], strict=True)}
        return self._rows

    def fold(self) -> None:
        """The block is read: keep the last op of each pointer it named."""
        last: list[tuple[int, str, str]] = [(line, req, op) for req, (line, op) in self._set.items()]
        if self._block is not None:
            last += [(int(lines[-1]), req, "write" if writes[-1] else "read")
                     for req, (lines, writes) in self._pointer_rows().items()]
        for _, req, op in sorted(last):
            self._ops[req] = op
        self._block, self._rows, self._set = None, None, {}


class _TraceLogParser:
    def __init__(self, text: InputText, policy: LinePolicy) -> None:
        self.text = text
        self.policy = policy
        self.rows = Rows()
        self.part = Part(source="qemu-log", path=text.path, rows=self.rows)
        self.hints = self.part.hints
        self.qmp = QmpState(self.rows, self.hints, self.part.node_map)
        #: The commands and replies (events and greetings are `qmp`'s), paired at the end,
        #: with the versions announced on the way (greetings, ``qmp_exit_query_version``).
        self.table = MessageTable(preset_threads=False, tids=True, spill=policy.spill)
        self.announced: list[tuple[int, Any]] = []
        #: Per reply shape (its index in `table`): whether a copy of it can be a bad line.
        self.unsure: dict[int, bool] = {}
        self.numbers = EventNumbers()
        #: Per event number: the largest ``rate=`` its queue lines showed.
        self.rates: dict[int, int] = {}
        self.queued: dict[str, _Queued] = {}
        self.emitting: dict[int | None, _Queued] = {}
        self.orphans: list[_Queued] = []
        self.requests = _Requests()
        #: Commands and replies parsed once per shape (management polls repeat them).
        self.cache = MessageCache()
        #: Events parsed once per text after their timestamp.
        self.rests = EventRests()
        self.enter_rows: list[tuple[int, str]] = []
        self.saw_handle = False
        self.events_from_json = False
        self.seen_events: set[tuple] = set()
        #: Lines of an interpreted event in no format it knows: (count, first line, its tid, ts).
        self.unknown_lines = 0
        self.first_unknown: tuple[int, int | None, int | None] | None = None
        #: How each event name's lines are read (`classify`, once per name).
        self.dispatch: dict[str, object] = {}
        self.tids: dict[int | None, int | None] = {}
        self.handlers = {
            "runstate_set": self.runstate_set,
            "vm_stop_flush_all": self.vm_stop_flush_all,
            "virtio_blk_rw_complete": self.rw_complete,
            "virtio_blk_handle_write": self.handle_rw,
            "virtio_blk_handle_read": self.handle_rw,
            "monitor_protocol_event_queue": self.event_queue,
            "monitor_protocol_event_emit": self.event_emit,
            "monitor_protocol_event": self.event_named,
            "monitor_qmp_respond": self.respond,
            "handle_qmp_command": self.handle_command,
            "qmp_exit_query_iothreads": self.exit_query,
            "qmp_exit_query_cpus_fast": self.exit_query,
            "qmp_exit_query_version": self.exit_query,
        }

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> ParsedInput:
        text = self.text
        if isinstance(text, InputText):
            for prepared in ahead.ordered(text.iter_byte_blocks(), self.prepare, workers=_BULK_THREADS):
                self.consume(prepared)
        else:  # a text that is only lines (a domain log's trace lines)
            self.lines(enumerate(text.lines, 1))
        self.pair_messages()
        self.hints.first_tid = self.rows.first_tid()
        self.finish()
        policy = self.policy
        return ParsedInput(
            path=text.path, format="qemu-log", sha256=text.sha256,
            lines=len(text.lines), skipped=policy.skipped, truncated=policy.truncated,
            parts=[self.part], unknown_lines=self.unknown_lines,
        )

    def prepare(self, numbered_block: tuple[int, bytes]) -> _Prepared:
        """What the block of lines before+1.. holds, read in bulk (`trace_block`): which plain
        lines become ``trace_event`` rows as they are -- events no handler reads, requests
        (whose ops a failed completion of a later line asks for, `_Requests`), successful
        completions, QMP command entries -- as a `Segment`, and which lines are left to be read
        one by one. It changes no parser state but the per-name `dispatch` table (the same
        entry whoever fills it), so it runs on threads ahead of `consume` (`ahead.ordered`)."""
        before, block = numbered_block
        prepared = _Prepared(before, block)
        if not is_utf8(block):  # read where its bad line is reported
            return prepared
        lines = prepared.lines = ByteLines(block)
        plain = TraceBlock(lines, b"\r" in block)  # (CRs of this block's lines: `lines`)
        how = [self.dispatch.setdefault(name, self.classify(name)) for name in plain.names]
        code_is = {
            what: np.array([h == what for h in how] + [False], dtype=bool)[plain.codes]
            for what in (_BULK, self.handle_rw, self.rw_complete, self.qmp_enter, self.handle_command, self.respond)
        }
        for handler, marker in ((self.handle_command, " req: "), (self.respond, " resp: ")):
            pick = np.flatnonzero(code_is[handler])
            if len(pick):
                found = plain.messages(pick, marker, MessageCache.MAX_TEXT)
                at = pick[found.taken]
                prepared.polls.append((handler == self.handle_command, plain.plain[at], plain.tid[at], plain.ts[at], found))
        bulk = code_is[_BULK] | code_is[self.handle_rw] | code_is[self.qmp_enter]
        completes = np.flatnonzero(code_is[self.rw_complete])
        if len(completes):  # a failed one (" ret -N") is an io_complete row, read one by one
            bulk[completes[~plain.contains(completes, " ret -")]] = True
        bulk = np.flatnonzero(bulk)
        requests = np.flatnonzero(code_is[self.handle_rw])
        if len(requests):
            writes = np.array([name[-1:] == "e" for name in plain.names] + [False], dtype=bool)[plain.codes[requests]]
            reqs, found = plain.requests(requests)
            prepared.requests = (plain.line_numbers(requests) + before, reqs, found, writes)
        rest = np.ones(len(lines), dtype=bool)
        rest[plain.plain[bulk]] = False
        prepared.rest = np.flatnonzero(rest)
        if block.isascii():  # (its byte offsets are its text's: `heads` gives text offsets)
            at = np.full(len(lines), -1, dtype=np.int64)
            at[plain.plain] = np.arange(len(plain.plain))
            prepared.heads = plain.heads(at[prepared.rest])
        if len(bulk):
            prepared.segment = Segment(
                ts=plain.ts[bulk], tid=plain.tid[bulk], line=plain.line_numbers(bulk) + before,
                name=pa.DictionaryArray.from_arrays(pa.array(plain.codes[bulk].astype(np.int32)), pa.array(plain.names, pa.string())),
                payload=plain.payloads(bulk), commands=code_is[self.qmp_enter][bulk],
            )
        return prepared

    def consume(self, prepared: _Prepared) -> None:
        """Read a prepared block: its other lines one by one, then its segment."""
        before, lines = prepared.before, prepared.lines
        crlf = b"\r" in prepared.block
        if lines is None:
            self.lines(enumerate(self.text.decode_block(prepared.block, before), before + 1), crlf)
            self.requests.fold()
            return
        if prepared.requests is not None:
            self.requests.add(*prepared.requests)
        polls = self.polls_in_bulk(prepared.polls)
        rest, heads = prepared.rest, prepared.heads
        if len(polls[0]):
            keep = ~np.isin(rest, polls[0])
            rest = rest[keep]
            if heads is not None:
                kept = keep.tolist()
                heads = tuple(list(compress(h, kept)) for h in heads)
        numbers, texts = (rest + (before + 1)).tolist(), lines.texts(rest)
        if heads is None:
            self.lines(zip(numbers, texts, strict=True), crlf)
        else:
            self.headed_lines(numbers, texts, heads, crlf)
        self.requests.fold()
        if prepared.segment is not None:
            if self.policy.spill is not None:  # (its payloads wait on disk until written: `spill`)
                prepared.segment.payload = self.policy.spill.keep(prepared.segment.payload)
            self.rows.segments.append(prepared.segment)
        at, ts, shape, ids, texts_, tids = polls
        self.table.add_chunk(at + (before + 1), ts, shape, ids, texts_, tids)  # (with those read one by one)
        self.policy.progress(before + len(lines))

    def polls_in_bulk(self, polls: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, pa.Array, np.ndarray]:
        """Of a block's poll lines (`_Prepared.polls`), those of a shape seen before that is read
        the same way whatever its id (`poll_shape`): their lines in the block, times, shapes
        (indices in `table`), ids, texts and TIDs. Any other is read one by one."""
        parts = []
        for command, at, tid, ts, found in polls:
            shape_of = np.array([self.poll_shape(head, command) for head in found.heads] + [-1], dtype=np.int64)
            index = shape_of[found.head] if len(found.head) else np.zeros(0, np.int64)
            ok = index >= 0
            if not ok.any():
                continue
            if command:
                self.saw_handle = True
                self.hints.monitor_tids.update(np.unique(tid[ok]).tolist())
            parts.append((at[ok], ts[ok], index[ok], found.id[ok], found.texts.filter(pa.array(ok)), tid[ok]))
        if not parts:
            empty = np.zeros(0, np.int64)
            return empty, empty, empty, empty, pa.array([], pa.string()), empty
        return (*(np.concatenate([p[k] for p in parts]) for k in range(4)),
                pa.concat_arrays([p[4] for p in parts]), np.concatenate([p[5] for p in parts]))

    def poll_shape(self, head: str, command: bool) -> int:
        """The `table` index of the shape of the commands (or replies) with this head, if every
        one of them is read as that shape's (what `handle_command` and `respond` do with a
        shape they know): a command with a name that `check_command` accepts, a reply that
        no command makes a bad line. Else -1."""
        shape = self.cache.shape_of_head(head)
        if shape is None or shape.command != command:
            return -1
        if command:
            try:
                check_command(shape.msg)
            except ValueError:
                return -1
            if shape.name is None:
                return -1
        elif not shape.failed and self.may_be_bad(shape):
            return -1
        return self.table.shape_index(shape)

    def lines(self, numbered: Iterable[tuple[int, str]], crlf: bool | None = None) -> None:
        """Read these (number, line) one by one; `crlf`: whether they may end in a CR (None:
        whether the input has CRs). A block's own answer keeps `consume` from waiting for the
        input's scan."""
        rows = self.rows
        kind_append, ts_append, tid_append = rows.kind.append, rows.ts.append, rows.tid.append
        name_append, payload_append, line_append = rows.name.append, rows.payload.append, rows.line.append
        dispatch = self.dispatch
        classify = self.classify
        policy = self.policy
        encode = encode_basestring
        if crlf is None:
            crlf = self.text.crlf
        tids = self.tids
        for number, line in numbered:
            if not number & _PROGRESS_MASK:
                policy.progress(number)
            if crlf and line[-1:] == "\r":
                line = line[:-1]
            if not line:
                continue
            if "0" <= line[0] <= "9":
                # TID@SECONDS.MICROS:name args
                at = line.find("@")
                colon = line.find(":", at) if at > 0 else -1
                dot = line.find(".", at, colon) if colon > 0 else -1
                try:
                    if dot < 0:
                        raise ValueError
                    tid = int(line[:at])
                    frac = line[dot + 1 : colon]
                    ts = int(line[at + 1 : dot]) * 1_000_000_000 + (
                        int(frac) * 1000 if len(frac) == 6 else int((frac + "00000000")[:9])
                    )
                except ValueError:
                    self.other_line(number, line, None, None)
                    continue
                if tid > _INT64_MAX or not _INT64_MIN <= ts <= _INT64_MAX:
                    policy.bad(number, line, "TID or time out of range (they must fit in int64, the time in ns)")
                    continue
                space = line.find(" ", colon)
                if space < 0:
                    name, args = line[colon + 1 :], ""
                else:
                    name, args = line[colon + 1 : space], line[space + 1 :]
            else:
                tid = ts = None
                name, _, args = line.partition(" ")
            handler = dispatch.get(name)
            if handler is None:
                handler = dispatch[name] = classify(name)
            if handler is _BULK:
                kind_append("trace_event")
                ts_append(ts)
                tid_append(tids.setdefault(tid, tid))  # one object per thread and per name:
                name_append(intern(name))  # a million rows keep no million copies of them
                payload_append('{"args": ' + encode(args) + "}")
                line_append(number)
            elif handler is _NOT_AN_EVENT:
                self.other_line(number, line, tid, ts)
            else:
                handler(number, line, tid, ts, name, args)  # type: ignore[operator]

    def headed_lines(self, numbers: list[int], texts: list[str], heads: tuple, crlf: bool) -> None:
        """Read these lines one by one, those whose TID, time and name `TraceBlock` already
        read (`heads`) straight to their handler; any other through `lines`."""
        dispatch = self.dispatch
        for number, line, known, tid, ts, name, args_at in zip(numbers, texts, *heads, strict=True):
            handler = dispatch.get(name) if known else None
            if handler is None or handler is _BULK or handler is _NOT_AN_EVENT:
                self.lines(((number, line),), crlf)
                continue
            if crlf and line[-1:] == "\r":
                line = line[:-1]
            handler(number, line, tid, ts, name, line[args_at:])  # type: ignore[operator]

    def classify(self, name: str) -> object:
        """How lines of event `name` are read (decided once per name)."""
        if not name.isidentifier():
            return _NOT_AN_EVENT
        if name in self.handlers:
            return self.handlers[name]
        if name.startswith("qmp_enter_"):
            return self.qmp_enter
        return _BULK

    def qmp_enter(self, number: int, line: str, tid: int | None, ts: int | None, name: str, args: str) -> None:
        i = self.keep(number, tid, ts, name, args)
        self.enter_rows.append((i, name[len("qmp_enter_") :]))

    def other_line(self, number: int, line: str, tid: int | None, ts: int | None) -> None:
        """A line that is no trace event: QEMU's own stderr message, or a bad line."""
        if line.isspace():
            return
        if QEMU_MESSAGE.match(line):
            self.rows.add(
                "trace_event", ts, number, tid=tid, name="qemu_message",
                payload='{"text": ' + encode_basestring(line) + "}",
            )
        else:
            self.policy.bad(number, line, "not a QEMU trace line (expected [TID@SECONDS.MICROS:]name args)")

    def unknown(self, number: int, tid: int | None, ts: int | None) -> None:
        """A line of an interpreted event in none of its known formats: counted, not kept."""
        self.unknown_lines += 1
        if self.first_unknown is None:
            self.first_unknown = (number, tid, ts)

    def keep(self, number: int, tid: int | None, ts: int | None, name: str, args: str) -> int:
        """A trace_event row for a line that a handler did not map."""
        rows = self.rows
        rows.kind.append("trace_event")
        rows.ts.append(ts)
        rows.tid.append(tid)
        rows.name.append(name)
        rows.payload.append('{"args": ' + encode_basestring(args) + "}")
        rows.line.append(number)
        return len(rows.kind) - 1

    # -- mapped events ---------------------------------------------------------------------

    def runstate_set(self, number: int, line: str, tid: int | None, ts: int | None, name: str, args: str) -> None:
        m = _RUNSTATE.search(args)
        if m:
            prev, new = _runstate(m.group(1), m.group(2)), _runstate(m.group(3), m.group(4))
        else:
            old = _RUNSTATE_OLD.search(args)
            if not old:
                self.policy.bad(number, line, "runstate_set without its run states")
                return
            prev, new = None, _runstate(old.group(1), None)
        if self.hints.main_tid is None and tid is not None:
            self.hints.main_tid = tid
        self.rows.add(
            "runstate", ts, number, tid=tid, name=name, payload=args_payload(args),
            runstate=new, prev_runstate=prev,
        )

    def vm_stop_flush_all(self, number: int, line: str, tid: int | None, ts: int | None, name: str, args: str) -> None:
        self.rows.add("vm_stop", ts, number, tid=tid, name=name, payload=args_payload(args))

    def handle_rw(self, number: int, line: str, tid: int | None, ts: int | None, name: str, args: str) -> None:
        _, sep, rest = args.partition("req ")
        if sep:
            self.requests.set(number, rest.partition(" ")[0], "write" if name[-1] == "e" else "read")
        self.keep(number, tid, ts, name, args)

    def rw_complete(self, number: int, line: str, tid: int | None, ts: int | None, name: str, args: str) -> None:
        _, sep, ret_text = args.rpartition(" ret ")
        if not sep or ret_text[:1] != "-":  # success (or a form we do not know): kept as is
            self.keep(number, tid, ts, name, args)
            return
        m = _RW_COMPLETE.search(args)
        if m is None:
            self.unknown(number, tid, ts)
            return
        ret = int(m.group(2))
        req = m.group(1)
        if ret >= 0:  # "ret -0" is success, not errno 0 (which check refuses)
            self.keep(number, tid, ts, name, args)
            return
        req_id = int(req, 16) if req.startswith("0x") else None
        if ret <= _INT32_MIN or (req_id is not None and req_id >> 64):
            self.policy.bad(number, line, "virtio_blk_rw_complete ret or req out of range (ret is an int32, req a 64-bit pointer)")
            return
        if req_id is not None and req_id > _INT64_MAX:  # a pointer with the top bit set: as int64
            req_id -= 1 << 64
        self.rows.add(
            "io_complete", ts, number, tid=tid, name=name, payload=args_payload(args),
            errno=-ret, req_id=req_id,
            op=self.requests.op(req, number) if req else None,
        )

    def event_queue(self, number: int, line: str, tid: int | None, ts: int | None, name: str, args: str) -> None:
        m = _EVENT_PTR.search(args)
        if not m:
            self.unknown(number, tid, ts)
            return
        entry = _Queued(tid, ts, number, int(m.group(1)), args)
        rate = _RATE.search(args)
        if rate:
            self.rates[entry.number] = max(self.rates.get(entry.number, 0), int(rate.group(1)))
        old = self.queued.pop(m.group(2), None)
        if old is not None:  # never emitted (throttled and replaced), its pointer reused
            self.orphans.append(old)
        self.queued[m.group(2)] = entry

    def event_emit(self, number: int, line: str, tid: int | None, ts: int | None, name: str, args: str) -> None:
        m = _EVENT_PTR.search(args)
        entry = self.queued.pop(m.group(2), None) if m else None
        if entry is not None:
            old = self.emitting.pop(tid, None)
            if old is not None:
                self.orphans.append(old)
            self.emitting[tid] = entry
        self.keep(number, tid, ts, name, args)

    def event_named(self, number: int, line: str, tid: int | None, ts: int | None, name: str, args: str) -> None:
        m = _EVENT_NAMED.search(args)
        if not m:
            self.unknown(number, tid, ts)
            return
        self.events_from_json = True
        self.numbers.learn(int(m.group(1)), m.group(2))
        self.rows.add("qmp_event", ts, number, tid=tid, name=m.group(2), payload=args_payload(args))

    def respond(self, number: int, line: str, tid: int | None, ts: int | None, name: str, args: str) -> None:
        _, sep, text = args.partition(" resp: ")
        text = text.strip()
        event = self.rests.read(text) if sep else None
        if event is not None:  # an event whose text after its timestamp was seen before
            meaning, seconds, micros = event
            try:
                check_event_time(meaning.name or "", seconds, micros)
            except ValueError as exc:
                self.policy.bad(number, line, f"monitor_qmp_respond: {exc}")
                return
            at_ns = seconds * 1_000_000_000 + micros * 1000
            self.sent_event(
                number, tid, ts, name, args, meaning.name, f'{{"microseconds": {micros}, "seconds": {seconds}}}', at_ns,
                lambda ts, tid: self.qmp.add_event(meaning, (seconds, micros), at_ns, text, ts, number, tid=tid, preset=False),
            )
            return
        known = self.cache.lookup(text) if sep else None
        if known is not None and not known[0].command:  # a poll's reply seen before
            shape = known[0]
            unsure = None if shape.failed or not self.may_be_bad(shape) else (tid, ts, name, args)
            self.table.add(number, ts, shape, id_key(known[1]), text, unsure, tid)
            return
        try:
            if not sep:
                raise ValueError("monitor_qmp_respond without resp: JSON")
            msg = self.cache.parse(text)
            if not isinstance(msg, dict):
                raise ValueError("monitor_qmp_respond JSON is not an object")
        except ValueError as exc:
            reason = f"bad JSON in monitor_qmp_respond ({exc.msg})" if isinstance(exc, json.JSONDecodeError) else str(exc)
            self.policy.bad(number, line, reason)
            return
        if "event" in msg:
            try:
                check_event(msg)  # before its name and time are used as a key
            except ValueError as exc:
                self.policy.bad(number, line, f"monitor_qmp_respond: {exc}")
                return
            self.sent_event(
                number, tid, ts, name, args, msg["event"], json.dumps(msg.get("timestamp"), sort_keys=True),
                event_time_ns(msg), lambda ts, tid: self.qmp.event(msg, text, ts, number, tid=tid, preset=False),
            )
            return
        try:
            kind = message_type(msg)
            if kind == "greeting":
                self.qmp.greeting(msg, text, ts, number, tid=tid, preset=False)
                self.announced.append((number, msg))
                return
            if kind == "command":
                check_command(msg)
            unsure = None if kind == "command" or "error" in msg else (tid, ts, name, args)
            self.table.add(number, ts, Shape(msg, command=kind == "command"), message_id_key(msg), text, unsure, tid)
        except ValueError:
            self.keep(number, tid, ts, name, args)

    def may_be_bad(self, shape: Shape) -> bool:
        """Whether a copy of this (successful) reply shape can be a bad line: when one of the
        commands it may answer makes it one (`readable_whatever_answered`); judged once a shape."""
        index = self.table.shape_index(shape)
        found = self.unsure.get(index)
        if found is None:
            found = self.unsure[index] = not readable_whatever_answered(shape.ret)
        return found

    def pair_messages(self) -> None:
        """The rows of the commands and replies, paired; a reply that its command makes a bad
        line is kept as the plain trace event it is (as a command that is none)."""
        before = sum(len(seg) for seg in self.rows.segments)
        segments, errors = self.table.segments(self.qmp, self.announced, rows_before=before)
        self.rows.segments.extend(segments)
        for number, (tid, ts, name, args), _ in errors:
            self.keep(number, tid, ts, name, args)

    def sent_event(
        self, number: int, tid: int | None, ts: int | None, name: str, args: str,
        event: str | None, stamp: str, event_ns: int | None, add: Callable[[int | None, int | None], object],
    ) -> None:
        """A QMP event a monitor sent (`add` makes its rows at a time and TID): kept as a
        plain trace event if another monitor was sent the same (same name and `stamp`);
        else at the time and TID of the queue line that raised it, if known."""
        key = (event, stamp)
        if key in self.seen_events:  # the same event sent to another monitor
            self.keep(number, tid, ts, name, args)
            return
        self.seen_events.add(key)
        self.events_from_json = True
        queued = self.emitting.pop(tid, None)
        if queued is not None and isinstance(event, str):
            self.numbers.learn(queued.number, event)
            tid, ts = queued.tid, queued.ts if queued.ts is not None else ts
        add(event_ns if ts is None else ts, tid)

    def handle_command(self, number: int, line: str, tid: int | None, ts: int | None, name: str, args: str) -> None:
        self.saw_handle = True
        if tid is not None:
            self.hints.monitor_tids.add(tid)
        _, sep, text = args.partition(" req: ")
        text = text.strip()
        msg = None
        try:
            if sep:
                known = self.cache.lookup(text)
                if known is not None and known[0].command and known[0].name is not None:  # a poll
                    check_command(known[0].msg)  # (a shape is cached before it is judged: judge each copy)
                    self.table.add(number, ts, known[0], id_key(known[1]), text, None, tid)
                    return
                msg = self.cache.parse(text)
            else:
                m = _CMD_NAMED.search(args)
                if m:
                    msg, text = {"execute": m.group(1)}, args_payload(args)
            if isinstance(msg, dict) and isinstance(msg.get("execute", msg.get("exec-oob")), str):
                check_command(msg)
                self.table.add(number, ts, Shape(msg, command=True), message_id_key(msg), text, None, tid)
                return
        except ValueError:
            pass
        # QEMU traces the request as received: it may be no valid command
        self.keep(number, tid, ts, name, args)

    def exit_query(self, number: int, line: str, tid: int | None, ts: int | None, name: str, args: str) -> None:
        text = args.rpartition(" ")[0].strip()
        try:
            ret = parse_json(text)
        except ValueError:
            ret = None
        if name == "qmp_exit_query_iothreads":
            self.hints.add_iothreads(ret)
        elif name == "qmp_exit_query_cpus_fast":
            self.hints.add_vcpus(ret)
        else:
            self.qmp.announce(ret)
            self.announced.append((number, ret))
        self.keep(number, tid, ts, name, args)

    # -- after the last line ---------------------------------------------------------------

    def finish(self) -> None:
        rows = self.rows
        self.numbers.version = self.qmp.version.series if self.qmp.version is not None else None
        leftovers = self.orphans + list(self.queued.values()) + list(self.emitting.values())
        # Numbers only (no event JSON): each queued event is a raised event, at its queue line
        # (the raising order). Named from the version's table; with no table (version unknown
        # or too old) it stays a number, an event named `qapi_events.unnamed` that rules read
        # as "some event, not known which" (and `event-names-unknown` reports once per VM).
        unknown = not self.events_from_json and not self.numbers.has_table
        stops = self._stop_actions(leftovers) if not self.events_from_json else set()
        for q in sorted(leftovers, key=lambda q: q.line):
            event = self.numbers.name(q.number)
            if not self.events_from_json and (event is not None or unknown):
                rows.add("qmp_event", q.ts, q.line, tid=q.tid, name=event or unnamed(q.number),
                         payload=args_payload(q.args), action="stop" if q.line in stops else None)
            else:
                payload = '{"args": ' + encode_basestring(q.args) + ', "event": ' + json.dumps(event) + "}"
                rows.add("trace_event", q.ts, q.line, tid=q.tid, name="monitor_protocol_event_queue", payload=payload)
        if not self.saw_handle:
            for i, c_name in self.enter_rows:
                rows.kind[i] = "qmp_command"
                rows.name[i] = command_name(c_name)
            for seg in rows.segments:
                seg.as_commands(lambda name: command_name(name[len("qmp_enter_") :]))
        if self.first_unknown is not None:
            number, tid, ts = self.first_unknown
            rows.add("qmp_event", ts, number, tid=tid, name=f"{UNKNOWN_LINES_MARKER}{self.unknown_lines}",
                     payload=json.dumps({"unknown_lines": self.unknown_lines}),
                     key=("marker", UNKNOWN_LINES_MARKER))
        rows.fill_missing_ts()
        self.part.vm = self.qmp.vm_name
        self.part.qemu_version = self.qmp.qemu_release
        self.part.throttles = any(
            rate > 0 and self.numbers.name(number) == "BLOCK_IO_ERROR" for number, rate in self.rates.items()
        )


    def _stop_actions(self, queued: list[_Queued]) -> set[int]:
        """Queue lines of BLOCK_IO_ERRORs (numbers only: no action known) that were action
        stop: the VM's next run-state change after it enters io-error, with no RESUME queued
        in between (QEMU raises the event, then requests the stop; the main loop sets io-error
        and raises STOP). A BLOCK_IO_ERROR raised while the VM is already stopped, or whose
        request cont consumed while running (STOP/RESUME pair, no run-state change), keeps
        an unknown action, which no rule takes for stop."""
        rows = self.rows
        runstate = rows.sparse["runstate"]
        changes = sorted((rows.line[i], runstate.get(i)) for i, k in enumerate(rows.kind) if k == "runstate")
        resumes = sorted(q.line for q in queued if self.numbers.name(q.number) == "RESUME")
        lines = [line for line, _ in changes]
        out = set()
        for q in queued:
            if self.numbers.name(q.number) != "BLOCK_IO_ERROR":
                continue
            k = bisect.bisect_right(lines, q.line)
            if k == len(lines) or changes[k][1] != "io-error":
                continue
            r = bisect.bisect_right(resumes, q.line)
            if r == len(resumes) or resumes[r] > lines[k]:
                out.add(q.line)
        return out


def parse(text: InputText, policy: LinePolicy) -> ParsedInput:
    """Parse a QEMU trace log (log backend) into one Part."""
    return _TraceLogParser(text, policy).run()
