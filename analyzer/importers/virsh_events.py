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
ignored.

Every virsh in production must read, so the parser follows what each prints:

- virsh before libvirt 6.x printed the domain name bare (``for domain vm-a: Suspended I/O
  Error``, ``event 'reboot' for domain vm-a``); later ones quote it. Both are read.
- ``disk-change`` and ``tray-change`` name the disk after the domain (``for domain 'vm-a'
  disk hdc: opened``): kept as ``disk`` in the payload (and as ``device``).
- Some events span several lines: ``tunable`` and ``job-completed`` (``\tFIELD: VALUE``
  lines), ``graphics`` (``\tTYPE=NAME`` identities), ``memory-failure``,
  ``memory-device-size-change`` and ``nic-mac-change`` (``alias: ...`` lines after a header
  ending in ``:``). Their continuation lines belong to the event above them: kept in order in
  the payload's ``lines``, the event one row.

Any other line is a bad line.
"""

from __future__ import annotations

import json
import re

from analyzer.importers.domain_log import header_ns
from analyzer.importers.lines import PROGRESS_EVERY, InputText, LinePolicy
from analyzer.importers.rows import ParsedInput, Part, Rows

_TS = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d+)([+-])(\d\d)(\d\d): "
#: One event line: optional timestamp, event name, domain, the rest.
LINE = re.compile(
    r"(?:" + _TS + r")?event '([\w-]+)' for domain (?:'(.*?)'|(.+?))(?=$| disk |:)"
    r"(?: disk (\S+?)(?=:|$))?(?:(:)(?: (.*))?)?$"
)
#: A continuation line of a multi-line event: ``\tFIELD: VALUE`` / ``\tTYPE=NAME`` of any
#: event, or ``FIELD: VALUE`` (``flags:``) after a header that ended in ``:``.
_CONTINUED = re.compile(r"\t.*")
_BLOCK_LINE = re.compile(r"[A-Za-z][\w ]*:(?: .*)?")
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


class _Event:
    """One event being read: its header line and the continuation lines that follow it."""

    __slots__ = ("block", "disk", "domain", "lines", "name", "number", "rest", "ts")

    def __init__(self, ts: int | None, number: int, name: str, domain: str, disk: str | None,
                 rest: str, *, block: bool) -> None:
        self.ts, self.number, self.name, self.domain = ts, number, name, domain
        self.disk, self.rest, self.block = disk, rest, block
        self.lines: list[str] = []

    def add(self, parts: dict[str, Part], text: InputText) -> None:
        """Append the event's row to the part of its domain."""
        part = parts.get(self.domain)
        if part is None:
            part = parts[self.domain] = Part(source="virsh-events", path=text.path, rows=Rows())
            part.vm = self.domain
        data: dict[str, object] = {"text": self.rest}
        if self.disk is not None:
            data["disk"] = self.disk
        if self.lines:
            data["lines"] = self.lines
        device, action, runstate = self.disk, None, None
        if self.name == "lifecycle":
            kind_, _, detail = self.rest.partition(" ")
            data.update(event=kind_, detail=detail)
            runstate = lifecycle_runstate(kind_, detail)
        elif self.name in ("io-error", "io-error-reason"):
            io = _IO_ERROR.match(self.rest)
            if io is not None:
                data.update(path=io.group(1), alias=io.group(2), libvirt_action=io.group(3))
                if io.group(4) is not None:
                    data["reason"] = io.group(4)
                device = io.group(2) or None
                action = _ACTIONS.get(io.group(3))
        part.rows.add(
            "mgmt_event", self.ts, self.number, name=self.name, thread="mgmt", thread_kind="mgmt",
            payload=json.dumps(data, sort_keys=True), device=device, action=action,
            runstate=runstate,
        )


def parse(text: InputText, policy: LinePolicy) -> ParsedInput:
    """virsh event output -> one Part per domain it names."""
    parts: dict[str, Part] = {}
    crlf = text.crlf
    event: _Event | None = None  # the last event, until a line shows it is complete
    for number, line in enumerate(text.lines, 1):
        if not number % PROGRESS_EVERY:
            policy.progress(number)
        if crlf and line[-1:] == "\r":
            line = line[:-1]
        if event is not None and (_CONTINUED.fullmatch(line) or (event.block and _BLOCK_LINE.fullmatch(line))):
            event.lines.append(line.strip())
            continue
        if event is not None:
            event.add(parts, text)
            event = None
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
        domain = m.group(7) if m.group(7) is not None else m.group(8)
        event = _Event(ts, number, m.group(6), domain, m.group(9), m.group(11) or "",
                       block=m.group(10) is not None and m.group(11) is None)
    if event is not None:
        event.add(parts, text)
    for part in parts.values():
        part.rows.fill_missing_ts()
    return ParsedInput(
        path=text.path, format="virsh-events", sha256=text.sha256, lines=len(text.lines),
        skipped=policy.skipped, truncated=policy.truncated, parts=[parts[k] for k in sorted(parts)],
    )
