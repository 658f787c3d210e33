"""``virsh event --all --loop [--timestamp]`` output -> ``mgmt_event`` rows (the
`virsh-events` format).

This is what libvirt *delivered* to a management client, one line per event, as virsh prints
it (``tools/virsh-domain-event.c``)::

    2026-11-25 16:55:41.640+0000: event 'io-error' for domain 'vm-a': /img.img (virtio-disk0) pause
    2026-11-25 16:55:41.640+0000: event 'io-error-reason' for domain 'vm-a': /img.img (virtio-disk0) pause due to enospc
    2026-11-25 16:55:41.640+0000: event 'lifecycle' for domain 'vm-a': Suspended I/O Error

Each event is one ``mgmt_event`` row (thread ``mgmt``): ``name`` is libvirt's event name
(``lifecycle``, ``io-error``, ``io-error-reason``, ``reboot``, ...), ``payload`` the rest as
JSON (``{"text": ...}``, plus ``event`` / ``detail`` of a lifecycle event, ``path``,
``alias``, ``libvirt_action`` and ``reason`` of an I/O error). An I/O error also fills
``device`` (the disk alias: libvirt's name of the qdev id) and ``action`` (libvirt's
``pause`` / ``report`` / ``none`` are its names for QEMU's stop / report / ignore:
``qemuMonitorJSONHandleIOError``). Rows of a domain belong to the VM of that name, so they
merge with the libvirt daemon log and the per-domain log of the same VM. A lifecycle event
also fills ``runstate``: the state libvirt says the VM is in (`lifecycle_runstate`), which the
cross-layer rules (`analyzer.rules.cross_layer`) compare with QEMU's events.

Names are kept as virsh printed them: virsh of libvirt 9.0 prints the reason event as
``io-error-reason`` (an empty reason for QEMU's EIO), that of 11.3 as a second ``io-error``
line ``... pause due to message``; either way the reason is in the payload.

Without ``--timestamp`` a line has no time: its rows take 0 (they keep the file's order).
virsh's own lines (``events received: N``, ``event loop interrupted``) are not events and are
ignored; any other line is a bad line.
"""

from __future__ import annotations

import json
import re

from analyzer.importers.domain_log import header_ns
from analyzer.importers.lines import PROGRESS_EVERY, InputText, LinePolicy
from analyzer.importers.rows import ParsedInput, Part, Rows

_TS = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d+)([+-])(\d\d)(\d\d): "
#: One event line: optional timestamp, event name, domain, the rest.
LINE = re.compile(r"(?:" + _TS + r")?event '([\w-]+)' for domain '(.*?)'(?:: (.*))?$")
_IO_ERROR = re.compile(r"(.*) \(([^()]*)\) (\w+)(?: due to ?(.*))?$")
_VIRSH_OWN = re.compile(r"(?:events received: \d+|event loop interrupted|event loop timed out)\s*$")
#: libvirt's name of QEMU's error action (virDomainEventIOErrorAction).
_ACTIONS = {"pause": "stop", "report": "report", "none": "ignore"}


def lifecycle_runstate(event: str, detail: str) -> str | None:
    """The QEMU run state a lifecycle event says libvirt believes in (`runstate` column):
    ``Suspended I/O Error`` -> ``io-error`` (libvirt's ``paused (I/O error)``), any other
    ``Suspended`` -> ``paused`` (``paused (unknown)``, ``(user)``, ...), ``Resumed`` /
    ``Started`` -> ``running``, ``Stopped`` / ``Shutdown`` -> ``shutdown``; else None. The
    cross-layer rules (`analyzer.rules.cross_layer`) compare it with QEMU's events."""
    event = event.lower()
    if event == "suspended":
        low = detail.strip().lower()
        if low == "i/o error":
            return "io-error"
        return "watchdog" if low == "watchdog" else "paused"
    return {"resumed": "running", "started": "running", "stopped": "shutdown",
            "shutdown": "shutdown"}.get(event)


def parse(text: InputText, policy: LinePolicy) -> ParsedInput:
    """virsh event output -> one Part per domain it names."""
    parts: dict[str, Part] = {}
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
            policy.bad(number, line, "not a virsh event line (expected \"[TIME: ]event 'NAME' for domain 'VM': ...\")")
            continue
        try:
            ts = header_ns(m) if m.group(1) else None
        except ValueError:  # a date that does not exist (month 13)
            policy.bad(number, line, f"not a valid time {m.group(1)!r}")
            continue
        event, domain, rest = m.group(6), m.group(7), m.group(8) or ""
        part = parts.get(domain)
        if part is None:
            part = parts[domain] = Part(source="virsh-events", path=text.path, sha256=text.sha256, rows=Rows())
            part.vm = domain
        data: dict[str, str] = {"text": rest}
        device = action = runstate = None
        if event == "lifecycle":
            kind_, _, detail = rest.partition(" ")
            data.update(event=kind_, detail=detail)
            runstate = lifecycle_runstate(kind_, detail)
        elif event in ("io-error", "io-error-reason"):
            io = _IO_ERROR.match(rest)
            if io is not None:
                data.update(path=io.group(1), alias=io.group(2), libvirt_action=io.group(3))
                if io.group(4) is not None:
                    data["reason"] = io.group(4)
                device = io.group(2) or None
                action = _ACTIONS.get(io.group(3))
        part.rows.add(
            "mgmt_event", ts, number, name=event, thread="mgmt", thread_kind="mgmt",
            payload=json.dumps(data, sort_keys=True), device=device, action=action,
            runstate=runstate,
        )
    for part in parts.values():
        part.rows.fill_missing_ts()
    return ParsedInput(
        path=text.path, format="virsh-events", sha256=text.sha256, lines=len(text.lines),
        skipped=policy.skipped, truncated=policy.truncated, parts=[parts[k] for k in sorted(parts)],
    )
