"""Production-host renderings of the real captures, for the importer tests (derived, not captured).

None of these files was recorded on a host: each is *derived* from a real capture in
``shared/samples`` by re-printing it the way the host-side tool prints it, following that
tool's source:

- `journal_json` / `journal_export` / `journal_short`: libvirt 9.0's ``a-stop-eio/libvirtd.log``
  as the systemd journal would hold it with ``log_outputs="1:journald"`` (libvirt's
  ``virLogOutputToJournald``: ``MESSAGE`` is the bare message, with ``PRIORITY``,
  ``CODE_FUNC``, ``CODE_LINE``, ``LIBVIRT_SOURCE``), rendered as ``journalctl -a -o json``,
  ``-o export`` (systemd's JOURNAL_EXPORT_FORMATS: a message holding ``\\r`` or a newline is a
  binary field) and ``-a -o short-precise`` (UTC) / ``short-iso-precise``; records of other
  programs are interleaved, as in a real journal;
- `journal_json_stderr`: the same log as the journal holds the daemon's stderr (one record
  per line, ``_TRANSPORT=stdout``), as ``journalctl -a -o json``;
- `kubevirt`: the same log as a virt-launcher pod prints it (KubeVirt's
  ``LogLibvirtLogLine``: split at ``": "``, debug shown as info, each line trimmed);
- `stap`: QEMU 7.2's ``a-stop-eio-dataplane/trace.log`` as ``qemu-trace-stap run`` prints it
  (tracetool's ``log_stap.py``: ``PID@NANOSECONDS name args``, the pid for every thread);
- `monitor_events`: QEMU 7.2's ``a-stop-eio-dataplane/events.jsonl`` as ``virsh
  qemu-monitor-event --loop [--timestamp]`` prints it (``event NAME at SEC.USEC for domain
  'VM': DATA``, or virsh's time first).

Each function returns the text (bytes for the export format) and, where lines move, the map
from each line of the original to the line of the rendering that carries it. Run as a script
to write them all into a directory: ``python -m tests.analyzer.importers.hostlog_inputs DIR``.
"""

from __future__ import annotations

import calendar
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_HEAD = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d+)\+0000: (\d+): (\w+) : (.*)$", re.DOTALL)
_POS = re.compile(r"(\S+:\d+) : (.*)$", re.DOTALL)
_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass
class Record:
    """One libvirt log record: its first line's number, time (us, UTC), thread, level, the
    function:line (None when libvirt logged none) and the message (continuation lines joined
    with newlines, ``\\r`` kept)."""

    line: int
    us: int
    tid: str
    level: str
    pos: str | None
    message: str
    lines: int


def libvirt_records(path: Path) -> list[Record]:
    records: list[Record] = []
    lines = path.read_text().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, 1):
        m = _HEAD.match(line)
        if m is None:
            if records:
                records[-1].message += "\n" + line
                records[-1].lines += 1
            continue
        day, frac, tid, level, rest = m.groups()
        us = calendar.timegm(time.strptime(day, "%Y-%m-%d %H:%M:%S")) * 1_000_000 + int(frac.ljust(6, "0")[:6])
        p = _POS.match(rest)
        pos, message = (p.group(1), p.group(2)) if p else (None, rest)
        records.append(Record(number, us, tid, level, pos, message, 1))
    return records


def _printable(text: str) -> bool:
    return not any(ord(c) < 32 and c not in "\n\t" for c in text)


def _fields(r: Record, host: str, k: int) -> list[tuple[str, str]]:
    func, _, code_line = (r.pos or "virLogVMessage:0").rpartition(":")
    return [
        ("__CURSOR", f"s=0123456789abcdef;i={k:x}"),
        ("__REALTIME_TIMESTAMP", str(r.us)),
        ("__MONOTONIC_TIMESTAMP", str(1_000_000 + k)),
        ("_BOOT_ID", "5d1e1ca3c54b4b7f9b4a2c1d00000000"),
        ("PRIORITY", str(_PRIORITY.get(r.level, 6))),
        ("SYSLOG_FACILITY", "3"),
        ("LIBVIRT_SOURCE", "file"),
        ("CODE_FILE", "../src/qemu/qemu_monitor.c"),
        ("CODE_LINE", code_line),
        ("CODE_FUNC", func),
        ("MESSAGE", r.message),
        ("_PID", "13346"),
        ("_COMM", "libvirtd"),
        ("_HOSTNAME", host),
        ("_TRANSPORT", "journal"),
    ]


def _other(us: int, host: str, k: int) -> list[tuple[str, str]]:
    """A record of another program (the journal holds everything)."""
    return [
        ("__CURSOR", f"s=0123456789abcdef;i={k:x}"), ("__REALTIME_TIMESTAMP", str(us)),
        ("PRIORITY", "6"), ("SYSLOG_IDENTIFIER", "systemd"), ("MESSAGE", "Started session-4.scope."),
        ("_PID", "1"), ("_COMM", "systemd"), ("_HOSTNAME", host),
    ]


def _journal(path: Path, host: str) -> list[tuple[Record | None, list[tuple[str, str]]]]:
    out: list[tuple[Record | None, list[tuple[str, str]]]] = []
    for k, r in enumerate(libvirt_records(path)):
        if k % 500 == 7:
            out.append((None, _other(r.us, host, 2 * k + 1)))
        out.append((r, _fields(r, host, 2 * k)))
    return out


def journal_json(path: Path, host: str = "host-a") -> tuple[str, dict[int, int]]:
    """``journalctl -a -o json``: one record per line (MESSAGE an array of bytes when it holds
    a control character, as journalctl prints it)."""
    lines, where = [], {}
    for r, fields in _journal(path, host):
        obj = {}
        for key, value in fields:
            obj[key] = value if key != "MESSAGE" or _printable(value) else list(value.encode())
        lines.append(json.dumps(obj, separators=(",", ":")))
        if r is not None:
            for k in range(r.lines):
                where[r.line + k] = len(lines)
    return "\n".join(lines) + "\n", where


def journal_json_stderr(path: Path, host: str = "host-a") -> str:
    """``journalctl -a -o json`` of a daemon whose stderr the journal captured
    (``log_outputs="1:stderr"`` under systemd): one record per line of the log, as it is,
    ``_TRANSPORT=stdout``; line k of the log is line k of the rendering."""
    out = []
    for k, line in enumerate(path.read_text().split("\n")[:-1]):
        message = line if _printable(line) else list(line.encode())
        out.append(json.dumps({"__CURSOR": f"s=1;i={k:x}", "__REALTIME_TIMESTAMP": str(1795625738065000 + k),
                               "PRIORITY": "6", "SYSLOG_IDENTIFIER": "libvirtd", "MESSAGE": message,
                               "_PID": "13346", "_COMM": "libvirtd", "_HOSTNAME": host, "_TRANSPORT": "stdout"},
                              separators=(",", ":")))
    return "\n".join(out) + "\n"


def journal_export(path: Path, host: str = "host-a") -> tuple[bytes, dict[int, int]]:
    """``journalctl -o export``: KEY=value lines, a blank line after each record, a value with
    a newline or control character as KEY, 64-bit LE length, data."""
    out = bytearray()
    line = 1
    where = {}
    for r, fields in _journal(path, host):
        for key, value in fields:
            data = value.encode()
            if key == "MESSAGE" and r is not None:
                for k in range(r.lines):
                    where[r.line + k] = line
            if _printable(value) and "\n" not in value:
                out += key.encode() + b"=" + data + b"\n"
                line += 1
            else:
                chunk = key.encode() + b"\n" + len(data).to_bytes(8, "little") + data + b"\n"
                out += chunk
                line += chunk.count(b"\n")
        out += b"\n"
        line += 1
    return bytes(out), where


def _short_time(us: int, iso: bool, offset_min: int) -> str:
    sec, frac = divmod(us, 1_000_000)
    t = time.gmtime(sec + offset_min * 60)
    if iso:
        sign = "+" if offset_min >= 0 else "-"
        zone = f"{sign}{abs(offset_min) // 60:02d}{abs(offset_min) % 60:02d}"
        return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{frac:06d}{zone}"
    return f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:02d} " + time.strftime("%H:%M:%S", t) + f".{frac:06d}"


def journal_short(path: Path, host: str = "host-a", *, iso: bool = False, offset_min: int = 0) -> tuple[str, dict[int, int]]:
    """``journalctl -a -o short-precise`` (local time `offset_min` east of UTC) or
    ``short-iso-precise``: continuation lines indented under the message."""
    lines = ["-- Journal begins at Wed 2026-11-25 16:55:38 UTC, ends at Wed 2026-11-25 16:57:00 UTC. --"]
    where = {}
    for r, fields in _journal(path, host):
        f = dict(fields)
        ident = f.get("SYSLOG_IDENTIFIER") or f["_COMM"]
        prefix = f"{_short_time(int(f['__REALTIME_TIMESTAMP']), iso, offset_min)} {host} {ident}[{f['_PID']}]: "
        first, *rest = f["MESSAGE"].split("\n")
        lines.append(prefix + first)
        if r is not None:
            where[r.line] = len(lines)
        for k, cont in enumerate(rest, 1):
            lines.append(" " * len(prefix) + cont)
            if r is not None:
                where[r.line + k] = len(lines)
    return "\n".join(lines) + "\n", where


def kubevirt(path: Path) -> str:
    """The virt-launcher pod log of the same daemon: one JSON record per libvirt line, as
    ``LogLibvirtLogLine`` prints it (its own records interleaved; line k of the log is line k
    + the records before it)."""
    out = [json.dumps({"component": "virt-launcher", "level": "info", "msg": "Connecting to libvirt daemon: qemu:///system",
                       "pos": "libvirt.go:545", "timestamp": "2026-11-25T16:55:38.000000Z"}, separators=(",", ":"))]
    for line in path.read_text().split("\n")[:-1]:
        fragments = line.split(": ", 4)
        if len(fragments) < 4:
            out.append(json.dumps({"component": "virt-launcher", "level": "info", "msg": line.rstrip("\r"),
                                   "subcomponent": "libvirt", "timestamp": "2026-11-25T16:55:59.000000Z"},
                                  separators=(",", ":")))
            continue
        stamp, thread, level = fragments[0], fragments[1].strip(), fragments[2].strip().lower()
        level = "info" if level == "debug" else level
        t = time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", t) + "." + stamp[20:23] + "000Z"
        pos = fragments[3].strip()
        rec = {"component": "virt-launcher", "level": level}
        split = pos.split(":")
        if len(split) == 2 and split[1].isdigit() and len(fragments) == 5:
            rec.update(msg=fragments[4].strip(), pos=pos)
        else:
            rec["msg"] = (fragments[3] + (": " + fragments[4] if len(fragments) == 5 else "")).strip()
        rec.update(subcomponent="libvirt", thread=thread, timestamp=ts)
        out.append(json.dumps(rec, separators=(",", ":")))
    return "\n".join(out) + "\n"


def stap(path: Path) -> tuple[str, dict[int, int]]:
    """``qemu-trace-stap run``: ``PID@NANOSECONDS name args`` for each trace line (the pid, the
    main loop's TID, for every thread); QEMU's stderr lines are not in a stap capture."""
    lines = path.read_text().split("\n")[:-1]
    pid = lines[0].partition("@")[0]
    out, where = [], {}
    for number, line in enumerate(lines, 1):
        m = re.match(r"(\d+)@(\d+)\.(\d{6}):(\S+)(?: (.*))?$", line)
        if m is None:
            continue
        _, sec, usec, name, args = m.groups()
        out.append(f"{pid}@{int(sec) * 1_000_000_000 + int(usec) * 1000} {name}" + ("" if args is None else " " + args))
        where[number] = len(out)
    return "\n".join(out) + "\n", where


def monitor_events(path: Path, domain: str, *, timestamp: bool = False) -> str:
    """``virsh qemu-monitor-event --loop [--timestamp]`` for the events of a QMP stream."""
    out = []
    for line in path.read_text().split("\n"):
        if not line.strip():
            continue
        msg = json.loads(line)
        stamp = msg["timestamp"]
        data = json.dumps(msg["data"], separators=(",", ":")) if "data" in msg else "<null>"
        if timestamp:
            t = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stamp["seconds"]))
            out.append(f"{t}.{stamp['microseconds'] // 1000:03d}+0000: event {msg['event']} for domain '{domain}': {data}")
        else:
            out.append(f"event {msg['event']} at {stamp['seconds']}.{stamp['microseconds']:06d} for domain '{domain}': {data}")
    out.append(f"events received: {len(out)}")
    return "\n".join(out) + "\n"


def main(directory: str) -> None:
    samples = Path(__file__).resolve().parents[3].parent / "shared" / "samples"
    libvirtd = samples / "libvirt-9.0" / "a-stop-eio" / "libvirtd.log"
    qemu = samples / "qemu-7.2" / "a-stop-eio-dataplane"
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / "journal.json").write_text(journal_json(libvirtd)[0])
    (out / "journal.export").write_bytes(journal_export(libvirtd)[0])
    (out / "journal-short.txt").write_text(journal_short(libvirtd)[0])
    (out / "virt-launcher.log").write_text(kubevirt(libvirtd))
    (out / "trace-stap.txt").write_text(stap(qemu / "trace.log")[0])
    (out / "qemu-monitor-event.txt").write_text(monitor_events(qemu / "events.jsonl", "vm0"))


if __name__ == "__main__":
    main(sys.argv[1])
