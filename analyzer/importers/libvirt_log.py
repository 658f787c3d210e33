"""A libvirt daemon debug log (``libvirtd.log`` / ``virtqemud.log``) -> rows, one Part per VM.

Line format: ``YYYY-MM-DD HH:MM:SS.mmm+ZZZZ: TID: LEVEL : FUNCTION:LINE : MESSAGE``; a line
that does not start so continues the record before it (libvirt logs monitor messages with
their ``\\r\\n``). The monitor traffic is in the probes of ``src/qemu/qemu_monitor.c`` and
``qemu_monitor_json.c``:

- ``QEMU_MONITOR_SEND_MSG: mon=%p msg=%s fd=%d`` -> ``qmp_command`` (thread ``mgmt``);
- ``QEMU_MONITOR_RECV_EVENT: mon=%p event=%s`` -> ``qmp_event``;
- ``QEMU_MONITOR_RECV_REPLY: mon=%p reply=%s`` -> ``qmp_reply``;
- ``QEMU_MONITOR_IO_PROCESS: mon=%p buf=%s len=%zu`` (older libvirt, or logs without the RECV
  probes): every complete ``\\r\\n``-terminated message in the buffer; an incomplete tail is
  processed again by libvirt, and by us, when it is complete. Ignored when the log has RECV
  probes, which report the same messages.

Every row takes the time of its log line (when libvirt logged it: the moment it sent or
received the message, to the millisecond). Each monitor (``mon=0x...``, from
``QEMU_MONITOR_NEW`` to ``QEMU_MONITOR_CLOSE``) is one VM, named from libvirt's own lines
(``Entering monitor (mon=%p vm=%p name=%s)``, ``vm=%p name=%s``), else ``mon-0x...``. The
greeting (``qemuMonitorJSONIOProcessLine: Line [{"QMP": ...}]``, no ``mon=``) gives the QEMU
version of the monitor opened last.

libvirt's own handling of QEMU's pause / resume events (``qemuProcessHandleIOError`` /
``HandleStop`` / ``HandleResume``: ``Transitioned guest NAME to paused state due to IO
error``, ``... to paused state, reason unknown``, ``... into running state``) becomes a
``mgmt_event`` row named after the handler, ``runstate`` the state libvirt then reports
(``io-error`` for ``paused (I/O error)``): what the cross-layer rules
(`analyzer.rules.cross_layer`) compare with QEMU's events.
"""

from __future__ import annotations

import calendar
import json
import re
import time
from collections.abc import Iterator

import numpy as np

from analyzer.importers import ahead
from analyzer.importers.byte_lines import ByteLines, is_digit, is_utf8
from analyzer.importers.detect import TRACE_PREFIXED
from analyzer.importers.event_rests import EventRests
from analyzer.importers.json_scan import json_error, parse_json
from analyzer.importers.libvirt_times import header_times
from analyzer.importers.lines import PROGRESS_EVERY, InputText, LinePolicy
from analyzer.importers.message_cache import MessageCache
from analyzer.importers.qmp_semantics import QmpState, message_type
from analyzer.importers.qmp_types import check_event_time
from analyzer.importers.rows import ParsedInput, Part, Rows

_HEAD = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d+)([+-])(\d\d)(\d\d): \d+: [A-Za-z]+ : ")
_MON_VM = re.compile(r"\bmon[=:](0x[0-9a-fA-F]+)[ ,]+vm[=:](0x[0-9a-fA-F]+)(?:[ ,]+name[=:]'?([^'\s,)]+))?")
_VM_NAME = re.compile(r"\bvm[=:](0x[0-9a-fA-F]+)[ ,]+name[=:]'?([^'\s,)]+)")
#: libvirt's own handling of QEMU's pause / resume events (``src/qemu/qemu_process.c``): the
#: state it then reports (`mgmt_event` rows named after the handler, `runstate` the state).
_HANDLED = re.compile(
    r"(qemuProcessHandle(?:IOError|Stop|Resume)):\d+ : Transitioned guest (\S+) "
    r"(?:to paused state(?: due to IO error|, reason '?([^,']*))|into running state)"
)
#: Every line the parser reads past its first header holds one of these (RE2, for
#: `ByteLines.contains`) when the log has RECV probes: the message starts with a probe that
#: carries a message or opens or closes a monitor, the greeting, a handler's
#: transition or the host name, or it names a monitor's or a domain's pointer (`naming`).
_RELEVANT = r'QEMU_MONITOR_(?:SEND_MSG|RECV_|NEW|CLOSE)|Line \[\{"QMP"|Transitioned guest |hostname: |vm[=:]0x'
_SEND_FD = re.compile(r"\s+fd=-?\d+\s*$")
_IO_LEN = re.compile(r" ?len=\d+\s*$")


class _Session:
    """One monitor connection: its rows and QMP state."""

    def __init__(self, text: InputText, mon: str, generation: int) -> None:
        self.mon = mon
        self.generation = generation
        self.rows = Rows()
        self.part = Part(source="libvirt-log", path=text.path, rows=self.rows)
        self.qmp = QmpState(self.rows, self.part.hints, self.part.node_map)
        self.vm_ptr: str | None = None
        self.name: str | None = None


class _LibvirtParser:
    def __init__(self, text: InputText, policy: LinePolicy) -> None:
        self.text = text
        self.policy = policy
        self.sessions: list[_Session] = []
        self.current: dict[str, _Session] = {}
        self.generations: dict[str, int] = {}
        self.vm_names: dict[str, str] = {}
        self.host: str | None = None
        self._seconds: dict[tuple[str, str, str, str], int] = {}
        self.use_io_process = not self._has_recv_probes()
        self.seen_head = False
        self.cache = MessageCache()
        #: Events parsed once per text after their timestamp.
        self.rests = EventRests()
        self.pending_io: list[tuple[int, str]] | None = None
        self.pending_io_at: tuple[_Session, int] | None = None
        #: The monitor opened last (QEMU_MONITOR_NEW): the one a greeting line belongs to.
        self.newest: _Session | None = None

    def session(self, mon: str, *, new: bool = False) -> _Session:
        s = self.current.get(mon)
        if s is None or new:
            gen = self.generations.get(mon, 0) + 1
            self.generations[mon] = gen
            s = _Session(self.text, mon, gen)
            self.sessions.append(s)
            self.current[mon] = s
        return s

    def time_ns(self, m: re.Match[str]) -> int:
        """The header's time in ns; ValueError for a date that does not exist (month 13,
        February 30), a UTC offset beyond ±23:59, or a time beyond int64 ns."""
        day_second, fraction, sign, hours, minutes = m.group(1, 2, 3, 4, 5)
        key = (day_second, sign, hours, minutes)
        base = self._seconds.get(key)
        if base is None:
            base = self._seconds[key] = self._second_ns(day_second, sign, hours, minutes)
            if len(self._seconds) > 65536:
                self._seconds.clear()
        ns = base + int(fraction[:9].ljust(9, "0"))
        if not -(1 << 63) <= ns < 1 << 63:
            raise ValueError(f"time {day_second!r} in the line header is out of range (int64 ns: years 1678 to 2262)")
        return ns

    @staticmethod
    def _second_ns(day_second: str, sign: str, hours: str, minutes: str) -> int:
        """A header's second (``YYYY-MM-DD HH:MM:SS`` at UTC offset ``±HHMM``) in ns since the epoch."""
        try:
            epoch = calendar.timegm(time.strptime(day_second, "%Y-%m-%d %H:%M:%S"))
        except (ValueError, OverflowError):
            raise ValueError(f"no such date and time {day_second!r} in the line header") from None
        if int(hours) > 23 or int(minutes) > 59:
            raise ValueError(f"UTC offset {sign}{hours}{minutes} out of range in the line header")
        offset = int(hours) * 3600 + int(minutes) * 60
        return (epoch - offset if sign == "+" else epoch + offset) * 1_000_000_000

    def _has_recv_probes(self) -> bool:
        text = self.text
        if isinstance(text, InputText):  # (a probe never spans blocks: they end at newlines)
            return any(b"QEMU_MONITOR_RECV_" in block for _, block in text.iter_byte_blocks())
        return any("QEMU_MONITOR_RECV_" in line for line in text.lines)

    def lines(self) -> Iterator[tuple[int, str, int | None]]:
        """(number, line, its header's time if read in bulk, else None) of the lines `run`
        must read, in order.

        An old libvirt's ``QEMU_MONITOR_IO_PROCESS`` buffers continue over lines of any kind:
        every line then. Otherwise `run` does nothing with a line that has a header but none of
        the `_RELEVANT` literals, nor with a line without a header once a header was seen,
        unless it is a line of another format (it starts with a digit or ``{``): those lines
        are passed over in bulk (`_relevant`, on threads ahead of the parser), each block's
        first lines read one by one until the first header."""
        text, policy = self.text, self.policy
        if self.use_io_process or not isinstance(text, InputText):
            for number, line in enumerate(text.lines, 1):
                if not number % PROGRESS_EVERY:
                    policy.progress(number)
                yield number, line, None
            return
        for before, block, lines, picked, times in ahead.ordered(text.iter_byte_blocks(), _picked, workers=_BULK_THREADS):
            if lines is None:  # not UTF-8: read where its bad line is reported
                for number, line in enumerate(text.decode_block(block, before), before + 1):
                    yield number, line, None
                continue
            k = 0
            while not self.seen_head and k < len(lines):
                yield before + k + 1, lines.line(k), None
                k += 1
            first = int(np.searchsorted(picked, k))
            ns, timed = times
            rest = picked[first:]
            for i, line, t, ok in zip(rest.tolist(), lines.texts(rest), ns[first:].tolist(), timed[first:].tolist(), strict=True):
                yield before + i + 1, line, t if ok else None
            policy.progress(before + len(lines))

    def run(self) -> ParsedInput:
        policy = self.policy
        head = _HEAD.match
        for number, line, ts in self.lines():
            m = head(line)
            if m is None:
                if self.pending_io is not None:
                    self.pending_io.append((number, line))
                elif line.strip() and (not self.seen_head or self.foreign(line)):
                    policy.bad(number, line, "not a libvirt log line (expected 'YYYY-MM-DD HH:MM:SS.mmm+ZZZZ: TID: LEVEL : ...')")
                continue
            self.seen_head = True
            if self.pending_io is not None:
                self.flush_io()
            text = line[m.end() :]
            _, sep, message = text.partition(" : ")
            if not sep:
                message = text
            if message.startswith("QEMU_MONITOR_"):
                self.monitor(number, line, m, message, ts)
            elif message.startswith('Line [{"QMP"'):
                self.greeting(message)
            elif message.startswith("Transitioned guest ") and "qemuProcessHandle" in text:
                self.handled(number, line, m, text, ts)
            elif message.startswith("hostname: "):
                self.host = self.host or message[len("hostname: ") :].strip() or None
            elif "vm" in message and ("name" in message or "mon" in message):
                self.naming(message)
        if self.pending_io is not None:
            self.flush_io()
        return self.result()

    def foreign(self, line: str) -> bool:
        """A continuation line that is really a line of another format (a mixed file)."""
        if TRACE_PREFIXED.match(line):
            return True
        if line.startswith('{"t"'):
            try:
                obj = parse_json(line.strip())
            except ValueError:
                return False
            return isinstance(obj, dict) and {"t", "dir", "line"} <= obj.keys()
        return False

    def greeting(self, message: str) -> None:
        """``qemuMonitorJSONIOProcessLine``'s ``Line [<greeting>]``: it names no monitor, but a
        greeting is the first thing QEMU sends on a new one, so it is the newest monitor's. Only
        the QEMU version is taken (the trace metadata), no row."""
        if self.newest is None or not message.endswith("]"):
            return
        try:
            greeting = parse_json(message[len("Line [") : -1])
        except ValueError:
            return
        self.newest.qmp.announce(greeting)

    def handled(self, number: int, line: str, m: re.Match[str], text: str, ts: int | None) -> None:
        """``qemuProcessHandle{IOError,Stop,Resume}: Transitioned guest NAME ...``: the state
        libvirt put the domain in on a QEMU event -> a ``mgmt_event`` row (thread ``mgmt``)
        named after the handler, ``runstate`` ``io-error`` (``paused (I/O error)``), ``paused``
        (any other reason: ``unknown``, ``user``, ...) or ``running``, in the part of the
        monitor of that domain (none known: no row)."""
        h = _HANDLED.match(text)
        if h is None:
            return
        handler, guest, reason = h.group(1), h.group(2), h.group(3)
        session = next(
            (s for s in reversed(self.sessions)
             if self.current.get(s.mon) is s
             and (s.name or (self.vm_names.get(s.vm_ptr) if s.vm_ptr else None)) == guest),
            None,
        )
        if session is None:
            return
        try:
            ts = self.time_ns(m) if ts is None else ts
        except ValueError as exc:
            self.policy.bad(number, line, str(exc))
            return
        if handler == "qemuProcessHandleResume":
            state = "running"
        elif handler == "qemuProcessHandleIOError" or (reason or "").strip() == "ioerror":
            state = "io-error"
        else:
            state = "paused"
        payload = {"handler": handler, "text": text.partition(" : ")[2].strip()}
        if reason is not None:
            payload["reason"] = reason.strip()
        session.rows.add(
            "mgmt_event", ts, number, name=handler, thread="mgmt", thread_kind="mgmt",
            payload=json.dumps(payload, sort_keys=True), runstate=state,
        )

    def naming(self, message: str) -> None:
        if "mon=0x" not in message and "mon:0x" not in message:  # (most: a job's vm=, name=)
            if "name=" in message or "name:" in message:
                for m in _VM_NAME.finditer(message):
                    self.vm_names[m.group(1)] = m.group(2)
            return
        for m in _MON_VM.finditer(message):
            s = self.session(m.group(1))
            s.vm_ptr = m.group(2)
            if m.group(3):
                s.name = m.group(3)
                self.vm_names[m.group(2)] = m.group(3)
        for m in _VM_NAME.finditer(message):
            self.vm_names[m.group(1)] = m.group(2)

    def monitor(self, number: int, line: str, head: re.Match[str], message: str, ts: int | None) -> None:
        """A ``QEMU_MONITOR_*`` line (`ts`: its header's time if read in bulk)."""
        probe, _, rest = message.partition(": ")
        if not rest.startswith("mon="):
            return
        mon, _, body = rest[4:].partition(" ")
        if probe == "QEMU_MONITOR_NEW":
            self.newest = self.session(mon, new=True)
            return
        if probe == "QEMU_MONITOR_CLOSE":
            self.current.pop(mon, None)
            return
        field, _, payload = body.partition("=")
        expected = _PROBE_FIELDS.get(probe)
        if expected is None or (probe == "QEMU_MONITOR_IO_PROCESS" and not (self.use_io_process and field == "buf")):
            return  # a probe whose messages another one reports (or none)
        try:
            ts = self.time_ns(head) if ts is None else ts
        except ValueError as exc:
            self.policy.bad(number, line, str(exc))
            return
        if probe == "QEMU_MONITOR_IO_PROCESS":
            self.pending_io = [(number, payload)]
            self.pending_io_at = (self.session(mon), ts)
            return
        if field != expected:
            self.policy.bad(number, line, f"{probe} without {expected}=")
            return
        text = payload.rstrip("\r\n")
        if expected == "msg":
            if "fd=" in text:  # (libvirt appends the fd it passes with a message, if any)
                text = _SEND_FD.sub("", text)
            text = text.rstrip("\r")
            if not text.startswith("{"):  # a human monitor command of an old libvirt: not QMP
                return
        session = self.session(mon)
        try:
            event = self.rests.read(text)
            known = self.cache.lookup(text) if event is None else None
            if event is not None:  # an event whose text after its timestamp was seen before
                meaning, seconds, micros = event
                check_event_time(meaning.name or "", seconds, micros)
                at_ns = seconds * 1_000_000_000 + micros * 1000
                session.qmp.add_event(meaning, (seconds, micros), at_ns, text, ts, number)
                kind = "event"
            elif known is not None:  # a poll (or its reply) seen before but for its id
                kind = "command" if known[0].command else "reply"
                if expected != "msg" or kind == "command":
                    session.qmp.known(known[0], known[1], text, ts, number)
            else:
                msg = self.cache.parse(text)
                kind = message_type(msg)
                if expected != "msg" or kind == "command":  # (a bad line sent keeps no rows)
                    session.qmp.message(msg, text, ts, number)
        except ValueError as exc:
            reason = f"bad JSON ({json_error(exc)})" if isinstance(exc, json.JSONDecodeError) else str(exc)
            self.policy.bad(number, line, f"{probe}: {reason}")
            return
        if expected == "msg" and kind != "command":
            self.policy.bad(number, line, f"{probe}: the message sent is not a QMP command")

    def flush_io(self) -> None:
        """The complete messages of a QEMU_MONITOR_IO_PROCESS buffer."""
        assert self.pending_io is not None and self.pending_io_at is not None
        lines, (session, ts) = self.pending_io, self.pending_io_at
        self.pending_io = self.pending_io_at = None
        buf = _IO_LEN.sub("", "\n".join(text for _, text in lines))
        messages = buf.split("\r\n")[:-1]  # the tail after the last \r\n is incomplete
        first = lines[0][0]
        for k, text in enumerate(messages):
            text = text.strip()
            if not text:
                continue
            number = first + k
            try:
                session.qmp.message(parse_json(text), text, ts, number)
            except ValueError as exc:
                reason = f"bad JSON ({exc.msg})" if isinstance(exc, json.JSONDecodeError) else str(exc)
                self.policy.bad(number, text, f"QEMU_MONITOR_IO_PROCESS: {reason}")

    def result(self) -> ParsedInput:
        parts = []
        unnamed_count: dict[str, int] = {}
        for s in self.sessions:
            if not len(s.rows):
                continue
            name = s.name or (self.vm_names.get(s.vm_ptr) if s.vm_ptr else None)
            if name is None:
                n = unnamed_count.get(s.mon, 0) + 1
                unnamed_count[s.mon] = n
                name = f"mon-{s.mon}" + (f"#{n}" if n > 1 else "")
            s.part.vm = name
            s.part.host = self.host
            s.part.qemu_version = s.qmp.qemu_release
            parts.append(s.part)
        return ParsedInput(
            path=self.text.path, format="libvirt-log", sha256=self.text.sha256,
            lines=len(self.text.lines), skipped=self.policy.skipped,
            truncated=self.policy.truncated, parts=parts,
        )


#: The field each monitor probe that carries a message prints it in.
_PROBE_FIELDS = {
    "QEMU_MONITOR_SEND_MSG": "msg", "QEMU_MONITOR_RECV_EVENT": "event", "QEMU_MONITOR_RECV_REPLY": "reply",
    "QEMU_MONITOR_IO_PROCESS": "buf",
}


#: The punctuation of a header's date (``2026-11-25 10:00:00.``).
_DATE_SHAPE = b"????-??-?? ??:??:??."


#: Threads finding the relevant lines of the next blocks (numpy and RE2 release the GIL)
#: while the parser reads the picked lines of this one.
_BULK_THREADS = 2


def _picked(item: tuple[int, bytes]) -> tuple[int, bytes, ByteLines | None, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """(lines before, block, its lines, the `_relevant` ones, their header times in bulk:
    `header_times`) of a block; no lines when the block is not UTF-8. Pure: it runs ahead on
    threads (`ahead.ordered`)."""
    before, block = item
    none = np.zeros(0, dtype=np.int64)
    if not is_utf8(block):
        return before, block, None, none, (none, none.astype(bool))
    lines = ByteLines(block)
    picked = np.flatnonzero(_relevant(lines))
    return before, block, lines, picked, header_times(lines, picked)


def _relevant(lines: ByteLines) -> np.ndarray:
    """The lines of a block (past its first header) that `_LibvirtParser.run` must read: those
    with a `_RELEVANT` literal, and those without a header's shape that may be a line of
    another format (a digit or ``{`` first, or a non-ASCII character: Python's ``\\d``)."""
    first = lines.first_bytes()
    digit = is_digit(first)
    foreign = ~(digit & lines.shaped(_DATE_SHAPE, ord("?"))) & (digit | (first == ord("{")) | (first >= 0x80))
    return lines.contains(_RELEVANT) | foreign


def parse(text: InputText, policy: LinePolicy) -> ParsedInput:
    """Parse a libvirt daemon debug log into one Part per monitor (VM)."""
    return _LibvirtParser(text, policy).run()
