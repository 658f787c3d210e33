"""``virsh qemu-monitor-event --loop [--timestamp]`` output -> ``qmp_event`` rows, per domain.

libvirt relays every QMP event QEMU sends it to clients that asked for them
(``virConnectDomainQemuMonitorEventRegister``); virsh prints each on one line
(``virshEventQemuPrint``, ``tools/virsh-domain.c``)::

    event BLOCK_IO_ERROR at 1795625380.545036 for domain 'vm-a': {"device":"",...}
    2026-11-25 16:55:40.545+0000: event BLOCK_IO_ERROR for domain 'vm-a': {"device":"",...}

Without ``--timestamp`` the line carries the event's own QMP timestamp (seconds and
microseconds); with it, virsh prints the time it received the event instead (UTC, to the
millisecond) and the QMP timestamp is lost. The details are the event's ``data`` as JSON
(``<null>`` for none). Each line becomes the ``qmp_event`` row the `qmp` importer makes of the
same event (`qmp_semantics`: BLOCK_IO_ERROR's device, node, operation, action, errno), in the
VM of the domain it names. With the QMP timestamp the row is timed by it and has the identity
(`rows`' ``key``) that merges it with the same event seen in a QMP capture or a libvirt log;
with ``--timestamp`` it is timed by virsh and merges with none (the same event in another
input stays a second row: import it alone, or print without ``--timestamp``).

virsh before libvirt 6.x printed the domain name bare (``for domain vm-a: {...}``); both
forms are read. ``--pretty`` (the data spread over several lines) is not read: each line must hold its event.
virsh's own lines (``events received: N``, ``event loop interrupted``) are left.
"""

from __future__ import annotations

import json
import re

from analyzer.importers.domain_log import header_ns
from analyzer.importers.json_scan import json_error, parse_json
from analyzer.importers.lines import PROGRESS_EVERY, InputText, LinePolicy
from analyzer.importers.qmp_semantics import QmpState
from analyzer.importers.rows import ParsedInput, Part, Rows

LINE = re.compile(
    r"(?:(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d+)([+-])(\d\d)(\d\d): )?"
    r"event ([A-Z][A-Z0-9_]*) (?:at (\d{1,12})\.(\d{6}) )?for domain (?:'(.*?)'|(.+?)): (.*)$"
)
_VIRSH_OWN = re.compile(r"(?:events received: \d+|event loop interrupted|event loop timed out)\s*$")


def parse(text: InputText, policy: LinePolicy) -> ParsedInput:
    """virsh qemu-monitor-event output -> one Part per domain it names."""
    parts: dict[str, tuple[Part, QmpState]] = {}
    crlf = text.crlf
    for number, line in enumerate(text.lines, 1):
        if not number % PROGRESS_EVERY:
            policy.progress(number)
        if crlf and line[-1:] == "\r":
            line = line[:-1]
        if not line.strip() or _VIRSH_OWN.match(line):
            continue
        m = LINE.match(line)
        if m is None:
            policy.bad(number, line, "not a virsh qemu-monitor-event line "
                       "(expected \"[TIME: ]event NAME [at SECONDS.MICROS ]for domain 'VM': DATA\")")
            continue
        name, seconds, micros, quoted, bare, details = m.group(6, 7, 8, 9, 10, 11)
        domain = quoted if quoted is not None else bare
        msg: dict = {}
        if seconds is not None:
            msg["timestamp"] = {"seconds": int(seconds), "microseconds": int(micros)}
        msg["event"] = name
        try:
            ts = header_ns(m) if m.group(1) else None
            if details.strip() != "<null>":
                msg["data"] = parse_json(details.strip())
        except json.JSONDecodeError as exc:
            policy.bad(number, line, f"bad JSON in the event data ({json_error(exc)})")
            continue
        except ValueError as exc:  # a date that does not exist, JSON beyond bounds
            policy.bad(number, line, str(exc) if m.group(1) is None else f"not a valid time or event data ({exc})")
            continue
        entry = parts.get(domain)
        if entry is None:
            rows = Rows()
            part = Part(source="qemu-monitor-event", path=text.path, rows=rows)
            part.vm = domain
            entry = parts[domain] = (part, QmpState(rows, part.hints, part.node_map))
        part, state = entry
        raw = json.dumps(msg, separators=(", ", ": "))
        try:
            state.event(msg, raw, ts if ts is not None else _event_ns(msg), number)
        except ValueError as exc:
            policy.bad(number, line, str(exc))
    for part, _ in parts.values():
        part.rows.fill_missing_ts()
    return ParsedInput(
        path=text.path, format="qemu-monitor-event", sha256=text.sha256, lines=len(text.lines),
        skipped=policy.skipped, truncated=policy.truncated, parts=[parts[k][0] for k in sorted(parts)],
    )


def _event_ns(msg: dict) -> int | None:
    stamp = msg.get("timestamp")
    return stamp["seconds"] * 1_000_000_000 + stamp["microseconds"] * 1000 if stamp else None


__all__ = ["LINE", "parse"]
