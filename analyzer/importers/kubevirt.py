"""A KubeVirt ``virt-launcher`` pod log (``kubectl logs virt-launcher-...``) -> libvirt's rows.

In KubeVirt each VM runs in its own pod, whose libvirt daemon writes its log to stderr; the
launcher reads it line by line and prints each as a JSON record (``LogLibvirtLogLine`` in
``pkg/virt-launcher/virtwrap/util/libvirt_helper.go``), as every line of the pod log is::

    {"component":"virt-launcher","level":"info","msg":"QEMU_MONITOR_RECV_EVENT: mon=0x7f.. event={...}",
     "pos":"qemuMonitorJSONIOProcessLine:205","subcomponent":"libvirt","thread":"46",
     "timestamp":"2024-03-01T10:00:00.123000Z"}

The libvirt line is split at ``": "``: ``timestamp`` (libvirt's own time, to the
millisecond), ``thread``, ``level`` (``debug`` printed as ``info``), ``pos`` (the function and
line, when there is one) and ``msg``. A line that has no libvirt head (the ``fd=-1``
continuation of a QMP command) has ``msg`` only, as the line was. Each record of
``subcomponent`` ``libvirt`` is written back as the libvirt log line it was, and the result is
parsed by `libvirt_log` (`carried`): same rows, each naming the pod log's line. Other records
(the launcher's own, QEMU's) are not libvirt's and are left. The VM is libvirt's domain name
(``NAMESPACE_NAME`` in KubeVirt), from libvirt's lines; a monitor they do not name takes the
name of the launcher's ``"kind":"Domain"`` records (``namespace`` and ``name``).

The launcher trims each line, so the ``\\r`` of a QMP command's ``\\r\\n`` is gone: the
messages of an old libvirt's ``QEMU_MONITOR_IO_PROCESS`` buffers (split at ``\\r\\n``) cannot
be told apart; libvirt since 1.2 logs ``QEMU_MONITOR_RECV_EVENT`` / ``_REPLY``, which are read.
A line that is not a JSON object (``kubectl logs --timestamps`` prefixes, a Go panic) is a bad
line.
"""

from __future__ import annotations

import json
import re

from analyzer.importers import libvirt_log
from analyzer.importers.carried import CarriedText
from analyzer.importers.json_scan import json_error, parse_json
from analyzer.importers.lines import PROGRESS_EVERY, InputText, LinePolicy
from analyzer.importers.rows import ParsedInput

#: KubeVirt's timestamp: ``2006-01-02T15:04:05.000000Z`` (UTC).
_TIME = re.compile(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:?\d\d)$")
_THREAD = re.compile(r"\d{1,20}")
_LEVEL = re.compile(r"[A-Za-z]{1,20}")


def _text(obj: dict, key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) else None


def parse(text: InputText, policy: LinePolicy) -> ParsedInput:
    """A virt-launcher pod log -> one Part per monitor (VM) of its libvirt daemon."""
    carried = CarriedText()
    domains: list[str] = []
    for number, line in enumerate(text.lines, 1):
        if not number % PROGRESS_EVERY:
            policy.progress(number)
        s = line.strip()
        if not s:
            continue
        try:
            obj = parse_json(s)
        except ValueError as exc:
            reason = json_error(exc) if isinstance(exc, json.JSONDecodeError) else str(exc)
            policy.bad(number, line, f"not a KubeVirt pod log record: not JSON ({reason})")
            continue
        if not isinstance(obj, dict):
            policy.bad(number, line, "not a KubeVirt pod log record (not a JSON object)")
            continue
        if obj.get("kind") == "Domain":
            name, namespace = _text(obj, "name"), _text(obj, "namespace")
            domain = f"{namespace}_{name}" if namespace else name
            if domain and domain not in domains:
                domains.append(domain)
        if obj.get("subcomponent") != "libvirt":
            continue
        msg = _text(obj, "msg")
        if msg is None:
            policy.bad(number, line, "KubeVirt libvirt record without its msg text")
            continue
        thread = _text(obj, "thread")
        if thread is None:  # no libvirt head: the line as libvirt wrote it (a continuation)
            carried.add(msg, number)
            continue
        stamp = _TIME.match(_text(obj, "timestamp") or "")
        level = _text(obj, "level") or "info"
        if stamp is None or not _THREAD.fullmatch(thread) or not _LEVEL.fullmatch(level):
            policy.bad(number, line, "KubeVirt libvirt record without a valid timestamp, thread or level")
            continue
        day, clock, frac, zone = stamp.groups()
        zone = "+0000" if zone == "Z" else zone.replace(":", "")
        head = f"{day} {clock}.{frac or '000'}{zone}: {thread}: {level} : "
        pos = _text(obj, "pos")
        carried.add(head + (f"{pos} : " if pos else "") + msg, number)
    parsed = carried.parse(text, policy, libvirt_log.parse, "libvirt-log", "kubevirt-log")
    if len(domains) == 1:
        for part in parsed.parts:
            if part.vm is not None and part.vm.startswith("mon-"):
                part.vm = domains[0]
    return parsed


__all__ = ["parse"]
