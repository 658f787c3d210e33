"""libvirt daemon logs kept by the systemd journal (``journalctl -o json|export|short-precise``).

Under systemd, libvirtd / virtqemud log to the journal (``log_outputs="1:journald"``, or their
stderr captured by it), not to a file. Three of journalctl's renderings are read, each into
the lines a ``libvirtd.log`` would hold, parsed by `libvirt_log` (`carried`): the same rows,
each naming the journal's own line (``src_line``), and the host its record names.

- ``-o json`` (format ``journal-json``): one JSON object per record
  (``__REALTIME_TIMESTAMP``, ``_HOSTNAME``, ``MESSAGE``, ...; a field that is not printable
  text, such as a message with the ``\\r\\n`` libvirt logs with a QMP command, is an array of
  byte values). journalctl leaves fields over 4 KiB out (``null``) unless ``--all``: such a
  libvirt message is a bad line (export with ``journalctl -a``).
- ``-o export`` (``journal-export``, systemd's JOURNAL_EXPORT_FORMATS): ``KEY=value`` lines,
  records separated by a blank line; a value with a newline or binary data is ``KEY\\n``, its
  length as a 64-bit little-endian integer, the bytes, ``\\n``. Read as bytes; a length that
  runs past the file or is not followed by the newline is a bad record, named by its line
  (the newlines before it, binary fields included: what ``sed -n Np`` shows).
- ``-o short-precise`` / ``-o short-iso-precise`` (``journal-short``):
  ``Dec 02 19:40:43.123456 host virtqemud[1234]: MESSAGE``, continuation lines indented.
  short-precise prints local time without a year or zone: both are found by comparing the
  printed time of the first QMP event (``QEMU_MONITOR_RECV_EVENT``, whose QMP timestamp is UTC,
  logged within milliseconds) or of a carried libvirt line with its own; without either, the
  ``-- Logs begin at ... UTC`` header, else a bad first line (use short-iso-precise). A
  message journalctl shows as ``[N blob data]`` (not printable: run with ``-a``) is a bad line.

Records of libvirt's daemons (``SYSLOG_IDENTIFIER`` / ``_COMM`` libvirtd or virtqemud, or a
``LIBVIRT_SOURCE`` field) are read; the rest of the journal is not a libvirt log and is left.
A ``MESSAGE`` that is a whole libvirt log line (the daemon's stderr, ``_TRANSPORT=stdout``: one
record per line, so the next records without a head are its continuation) is kept as it is; a bare
message (libvirt's journald output: ``MESSAGE``, ``PRIORITY``, ``CODE_FUNC``, ``CODE_LINE``)
gets the head libvirt would have written, timed by the record (``_SOURCE_REALTIME_TIMESTAMP``,
else ``__REALTIME_TIMESTAMP``: microseconds, UTC). The ``host`` is the records' ``_HOSTNAME``
(the short format's host field); a journal mixing the libvirt records of several hosts is
refused at the first record of the second (``journalctl _HOSTNAME=...``, one host at a time:
monitor pointers of two daemons could collide).
"""

from __future__ import annotations

import calendar
import json
import re
import time
from collections.abc import Iterator

from analyzer.importers import libvirt_log
from analyzer.importers.carried import LEVELS, CarriedText, libvirt_head
from analyzer.importers.detect import LIBVIRT_HEAD
from analyzer.importers.json_scan import json_error
from analyzer.importers.json_scan import parse_json as _loads
from analyzer.importers.lines import MAX_LINE_BYTES, PROGRESS_EVERY, InputText, LinePolicy
from analyzer.importers.rows import ParsedInput
from tracer.errors import InputError

#: The daemons whose journal records are libvirt log messages.
DAEMONS = frozenset({"libvirtd", "virtqemud"})
#: The fields a record is read for (the rest of a record is skipped).
_FIELDS = frozenset({
    "MESSAGE", "__REALTIME_TIMESTAMP", "_SOURCE_REALTIME_TIMESTAMP", "_HOSTNAME",
    "SYSLOG_IDENTIFIER", "_COMM", "PRIORITY", "CODE_FUNC", "CODE_LINE", "_PID", "TID", "LIBVIRT_SOURCE", "_TRANSPORT",
})
_FIELD_NAME = re.compile(rb"[A-Z0-9_]+")
_MONTHS = {m: k for k, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
#: ``-o short-precise``: local time, no year.
SHORT = re.compile(
    r"([A-Z][a-z]{2}) ([ \d]\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))? (\S+) ([^\s\[\]]+?)(?:\[(\d+)\])?: ?(.*)"
)
#: ``-o short-iso-precise``: ISO 8601 time with its UTC offset.
SHORT_ISO = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?(Z|[+-]\d\d:?\d\d) (\S+) ([^\s\[\]]+?)(?:\[(\d+)\])?: ?(.*)"
)
#: journalctl's own lines in a short rendering.
JOURNAL_NOTE = re.compile(r"-- (?:Logs begin at|Journal begins at|No entries|Boot |Reboot)")
_HEADER_YEAR = re.compile(r"-- (?:Logs begin at|Journal begins at) \w+ (\d{4})-\d\d-\d\d \d\d:\d\d:\d\d (\S+?),")
_BLOB = re.compile(r"\[[\d.]+[KMGT]?B? blob data\]$")
_QMP_STAMP = re.compile(r'"timestamp": ?\{"seconds": ?(\d{1,12}), ?"microseconds": ?(\d{1,6})\}')
_LIBVIRT_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\.(\d+)([+-])(\d\d)(\d\d): ")


def is_libvirt(ident: str) -> bool:
    """Whether a journal identifier (``SYSLOG_IDENTIFIER`` / ``_COMM``) is a libvirt daemon's
    (a worker thread's name, ``rpc-virtqemud``, counts)."""
    return ident in DAEMONS or ident.endswith(("-libvirtd", "-virtqemud"))


class _Journal:
    """Carries the libvirt records of a journal into a libvirt log, checking the host."""

    def __init__(self, text: InputText, policy: LinePolicy, fmt: str) -> None:
        self.text, self.policy, self.fmt = text, policy, fmt
        self.carried = CarriedText()
        self.host: str | None = None

    def same_host(self, number: int, line: str, host: str | None) -> bool:
        if not host:
            return True
        if self.host is None:
            self.host = host
        elif host != self.host:
            self.policy.bad(
                number, line, f"libvirt records of host {host[:64]!r} in a journal of host {self.host[:64]!r} "
                "(import one host at a time: journalctl _HOSTNAME=...)",
            )
            return False
        return True

    def record(self, number: int, line: str, fields: dict[str, str], msg_line: int) -> None:
        """One journal record (its text fields), MESSAGE at original line `msg_line`."""
        ident = fields.get("SYSLOG_IDENTIFIER") or fields.get("_COMM") or ""
        if not is_libvirt(ident) and "LIBVIRT_SOURCE" not in fields:
            return
        message = fields.get("MESSAGE")
        if message is None:
            return
        if not self.same_host(number, line, fields.get("_HOSTNAME")):
            return
        if LIBVIRT_HEAD.match(message):  # the daemon's stderr: a whole libvirt log line
            self.carried.add(message.rstrip("\n"), msg_line)
            return
        if fields.get("_TRANSPORT") == "stdout":  # the next line of that stderr: a continuation
            self.carried.add(message.rstrip("\n"), msg_line)
            return
        stamp = fields.get("_SOURCE_REALTIME_TIMESTAMP") or fields.get("__REALTIME_TIMESTAMP") or ""
        if not stamp.isdigit() or len(stamp) > 19:
            self.policy.bad(number, line, f"journal record without a valid __REALTIME_TIMESTAMP ({stamp[:30]!r})")
            return
        tid = fields.get("TID") or fields.get("_PID") or "0"
        func, code_line = fields.get("CODE_FUNC"), fields.get("CODE_LINE") or ""
        pos = f"{func}:{code_line}" if func and code_line.isdigit() and " " not in func else "-:0"
        try:
            head = libvirt_head(int(stamp), tid if tid.isdigit() else "0", LEVELS.get(fields.get("PRIORITY", ""), "info"))
        except ValueError as exc:
            self.policy.bad(number, line, str(exc))
            return
        self.carried.add(head + pos + " : " + message.rstrip("\n"), msg_line)

    def result(self) -> ParsedInput:
        parsed = self.carried.parse(self.text, self.policy, libvirt_log.parse, "libvirt-log", self.fmt)
        for part in parsed.parts:
            part.host = self.host or part.host
        return parsed


# -- -o json ---------------------------------------------------------------------------------


def _json_value(key: str, value: object) -> str:
    """A journal JSON field as text: a string, or an array of byte values (not printable);
    ValueError for anything else (null: left out by journalctl, over 4 KiB without --all)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256 for b in value):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"journal field {key} is not UTF-8 text") from None
    if value is None:
        raise ValueError(f"journal field {key} is null: journalctl leaves out fields over 4 KiB unless --all (-a)")
    raise ValueError(f"journal field {key} is {type(value).__name__}, expected a string or an array of bytes")


def parse_json(text: InputText, policy: LinePolicy) -> ParsedInput:
    """``journalctl -o json`` -> the libvirt daemon's rows."""
    journal = _Journal(text, policy, "journal-json")
    loads = _loads
    for number, line in enumerate(text.lines, 1):
        if not number % PROGRESS_EVERY:
            policy.progress(number)
        s = line.strip()
        if not s:
            continue
        try:
            obj = loads(s)
        except ValueError as exc:
            reason = f"not JSON ({json_error(exc)})" if isinstance(exc, json.JSONDecodeError) else str(exc)
            policy.bad(number, line, f"not a journal JSON record: {reason}")
            continue
        if not isinstance(obj, dict) or "__REALTIME_TIMESTAMP" not in obj:
            policy.bad(number, line, "not a journal JSON record (no __REALTIME_TIMESTAMP)")
            continue
        try:
            ident = obj.get("SYSLOG_IDENTIFIER") or obj.get("_COMM") or ""
            if not (isinstance(ident, str) and is_libvirt(ident)) and "LIBVIRT_SOURCE" not in obj:
                continue
            fields = {k: _json_value(k, v) for k, v in obj.items() if k in _FIELDS}
        except ValueError as exc:
            policy.bad(number, line, str(exc))
            continue
        journal.record(number, line, fields, number)
    return journal.result()



# -- -o export -------------------------------------------------------------------------------


class _Bytes:
    """The input's bytes with the number of the line being read (binary fields count their
    newlines), lines bounded by `MAX_LINE_BYTES`."""

    def __init__(self, text: InputText) -> None:
        self._chunks = text.iter_bytes()
        self._source = text.source
        self._buf = b""
        self._pos = 0
        #: Number of the line the next byte is on.
        self.line = 1

    def _more(self) -> bool:
        chunk = next(self._chunks, b"")
        if not chunk:
            return False
        self._buf = self._buf[self._pos :] + chunk
        self._pos = 0
        return True

    def readline(self) -> bytes | None:
        """The next line without its newline; None at the end."""
        while True:
            nl = self._buf.find(b"\n", self._pos)
            if nl >= 0:
                out = self._buf[self._pos : nl]
                self._pos = nl + 1
                self.line += 1
                return out
            if len(self._buf) - self._pos > MAX_LINE_BYTES:
                raise InputError(f"line longer than {MAX_LINE_BYTES >> 20} MiB: not a journal export line",
                                 path=self._source, line=self.line)
            if not self._more():
                if self._pos < len(self._buf):
                    out = self._buf[self._pos :]
                    self._pos = len(self._buf)
                    return out
                return None

    def read(self, n: int) -> bytes:
        """The next `n` bytes (fewer at the end)."""
        while len(self._buf) - self._pos < n and self._more():
            pass
        out = self._buf[self._pos : self._pos + n]
        self._pos += len(out)
        self.line += out.count(b"\n")
        return out


def _export_records(text: InputText, policy: LinePolicy) -> Iterator[tuple[int, dict[str, tuple[bytes, int]]]]:
    """(first line, {field: (value, line)}) of each record of a journal export; a record that
    cannot be read is a bad line (and, skipped, is dropped up to its blank line)."""
    data = _Bytes(text)
    fields: dict[str, tuple[bytes, int]] = {}
    start = 0
    broken = False
    while True:
        number = data.line
        raw = data.readline()
        if raw is None or not raw:
            if fields and not broken:
                yield start, fields
            fields, broken = {}, False
            if raw is None:
                return
            continue
        if broken:
            continue
        if not fields:
            start = number
        if not number % PROGRESS_EVERY:
            policy.progress(number)
        eq = raw.find(b"=")
        key = raw[:eq] if eq >= 0 else raw
        if not _FIELD_NAME.fullmatch(key):
            policy.bad(number, _show(raw), "not a journal export field (expected KEY=value, or KEY and binary data)")
            broken = True
            continue
        name = key.decode("ascii")
        if eq >= 0:
            value = raw[eq + 1 :]
        else:
            size = data.read(8)
            length = int.from_bytes(size, "little") if len(size) == 8 else -1
            if length < 0 or length > MAX_LINE_BYTES:
                what = "its 64-bit length is cut" if length < 0 else f"a length of {length} bytes (over {MAX_LINE_BYTES >> 20} MiB)"
                policy.bad(number, _show(raw), f"binary journal field {name}: {what}")
                broken = True
                continue
            value = data.read(length)
            end = data.read(1)
            if len(value) < length or end != b"\n":
                where = "runs past the end of the file" if len(value) < length or not end else "is not followed by a newline"
                policy.bad(number, _show(raw), f"binary journal field {name}: its length of {length} bytes {where} (bad length)")
                broken = True
                continue
        if name in _FIELDS:
            fields[name] = (value, number)


def _show(raw: bytes) -> str:
    return raw[:200].decode("utf-8", "replace")


def parse_export(text: InputText, policy: LinePolicy) -> ParsedInput:
    """``journalctl -o export`` -> the libvirt daemon's rows."""
    journal = _Journal(text, policy, "journal-export")
    for _start, raw in _export_records(text, policy):
        message = raw.get("MESSAGE")
        if message is None:
            continue
        fields: dict[str, str] = {}
        bad = None
        for key, (value, line) in raw.items():
            try:
                fields[key] = value.decode("utf-8")
            except UnicodeDecodeError:
                bad = (line, f"journal field {key} is not UTF-8 text")
                break
        if bad is not None:
            ident = raw.get("SYSLOG_IDENTIFIER", raw.get("_COMM", (b"", 0)))[0].decode("utf-8", "replace")
            if is_libvirt(ident) or "LIBVIRT_SOURCE" in raw:
                policy.bad(bad[0], "", bad[1])
            continue
        journal.record(message[1], fields["MESSAGE"][:200], fields, message[1])
    return journal.result()


# -- -o short-precise / short-iso-precise ----------------------------------------------------


def _local_epoch(year: int, month: int, day: int, h: str, m: str, s: str) -> int:
    return calendar.timegm((year, month, day, int(h), int(m), int(s), 0, 0, 0))


def _clock(text: InputText) -> tuple[int, int] | None:
    """(year of the first line, UTC offset in seconds) of a short-precise rendering, from the
    first libvirt line whose true UTC time is known (a QMP event's timestamp, or a carried
    libvirt line's head), else from journalctl's ``-- Logs begin at ... UTC`` header."""
    header_year = None
    first_month = None
    for line in text.lines:
        m = SHORT.match(line)
        if m is None:
            if SHORT_ISO.match(line):  # short-iso-precise: every line says its time
                return None
            h = _HEADER_YEAR.match(line)
            if h and h.group(2) == "UTC" and header_year is None:
                header_year = int(h.group(1))
            continue
        month = _MONTHS.get(m.group(1))
        if month is None:
            continue
        if first_month is None:
            first_month = month
        if not is_libvirt(m.group(8)):
            continue
        msg = m.group(10)
        utc = None
        inner = _LIBVIRT_TIME.match(msg)
        if inner is not None:
            y, mo, d, hh, mm, ss, _, sign, oh, om = inner.groups()
            utc = _local_epoch(int(y), int(mo), int(d), hh, mm, ss) - (1 if sign == "+" else -1) * (int(oh) * 3600 + int(om) * 60)
        elif "QEMU_MONITOR_RECV_EVENT" in msg:
            stamp = _QMP_STAMP.search(msg)
            utc = int(stamp.group(1)) if stamp else None
        if utc is None or not 0 < utc < 253402300800:
            continue
        utc_year = int(_year_of(utc))
        best = None
        for year in (utc_year - 1, utc_year, utc_year + 1):
            try:
                delta = _local_epoch(year, month, int(m.group(2)), m.group(3), m.group(4), m.group(5)) - utc
            except (ValueError, OverflowError):
                continue
            if best is None or abs(delta) < abs(best[1]):
                best = (year, delta)
        if best is None or abs(best[1]) > 14 * 3600 + 60:
            continue
        offset = round(best[1] / 900) * 900
        year = best[0] if first_month is None or month >= first_month else best[0] - 1
        return year, offset
    if header_year is not None:
        return header_year, 0
    return None


def _year_of(epoch: int) -> str:
    return time.strftime("%Y", time.gmtime(epoch))


def parse_short(text: InputText, policy: LinePolicy) -> ParsedInput:
    """``journalctl -o short-precise`` or ``short-iso-precise`` -> the libvirt daemon's rows."""
    journal = _Journal(text, policy, "journal-short")
    # a pass of its own, before the lines are read (one stream of the input at a time)
    clock = _clock(text)
    year, offset = clock or (0, 0)
    last_month = 0
    carrying = False  # the record being continued is a libvirt one
    prefix = 0
    for number, line in enumerate(text.lines, 1):
        if not number % PROGRESS_EVERY:
            policy.progress(number)
        if not line.strip():
            continue
        if line[0] in " \t":  # a continuation line of a multi-line message
            if carrying:
                k = len(line) - len(line.lstrip(" "))
                journal.carried.add(line[min(k, prefix) :], number)
            continue
        carrying = False
        iso = SHORT_ISO.match(line)
        m = iso or SHORT.match(line)
        if m is None:
            if JOURNAL_NOTE.match(line):
                continue
            policy.bad(number, line, "not a journalctl short-precise line (expected 'MMM DD HH:MM:SS.micros host ident[pid]: message')")
            continue
        if iso is not None:
            host, ident, pid, msg = iso.group(9, 10, 11, 12)
        else:
            host, ident, pid, msg = m.group(7, 8, 9, 10)
        if not is_libvirt(ident):
            continue
        if not journal.same_host(number, line, host):
            continue
        prefix = len(line) - len(msg)
        if _BLOB.match(msg):
            policy.bad(number, line, "journalctl shows this message as blob data (not printable): export with --all (-a)")
            continue
        carrying = True
        if LIBVIRT_HEAD.match(msg):
            journal.carried.add(msg, number)
            continue
        frac = iso.group(7) if iso is not None else m.group(6)
        us_frac = int((frac or "0").ljust(6, "0")[:6])
        try:
            if iso is not None:
                y, mo, d, hh, mm, ss = iso.group(1, 2, 3, 4, 5, 6)
                tz = iso.group(8)
                off = 0 if tz == "Z" else (1 if tz[0] == "+" else -1) * (int(tz[1:3]) * 3600 + int(tz[-2:]) * 60)
                epoch = _local_epoch(int(y), int(mo), int(d), hh, mm, ss) - off
            else:
                if clock is None:
                    policy.bad(number, line, "journalctl short-precise prints no year and no time zone, and no QMP "
                               "event tells them: export with -o short-iso-precise (or json, export)")
                    carrying = False
                    continue
                month = _MONTHS.get(m.group(1), 0)
                if month < last_month:  # December -> January
                    year += 1
                last_month = month
                epoch = _local_epoch(year, month, int(m.group(2)), m.group(3), m.group(4), m.group(5)) - offset
            head = libvirt_head(epoch * 1_000_000 + us_frac, pid or "0", "info")
        except (ValueError, OverflowError) as exc:
            policy.bad(number, line, f"not a valid time ({exc})")
            carrying = False
            continue
        journal.carried.add(head + "-:0 : " + msg, number)
    return journal.result()


__all__ = ["DAEMONS", "JOURNAL_NOTE", "SHORT", "SHORT_ISO", "is_libvirt", "parse_export", "parse_json", "parse_short"]
