"""libvirt's per-domain QEMU log (``/var/log/libvirt/qemu/NAME.log``), or a plain QEMU command
line (a ``cmdline`` file, a ``ps`` line) -> rows (the `domain-log` format).

It is the only place a libvirt host keeps the *configured* error policy, so what matters is
the command line: each block device (``-device`` with a ``drive``, in QEMU's JSON or
key=value syntax, its backend a ``-blockdev`` node or a legacy ``-drive``) becomes
``device_config`` rows, one per operation the policy applies to:

- ``op`` ``write`` with ``policy`` = ``werror``, ``op`` ``read`` with ``policy`` = ``rerror``
  (null when the command line does not set it: QEMU's default is left to QEMU, never guessed
  here, so no rule judges a device against a policy nobody configured);
- ``src_line`` is the line of its ``-device`` option (libvirt writes one option per line);
- ``device`` is each name a BLOCK_IO_ERROR may carry for it: the qdev id and, for a
  ``-drive`` backend, the drive id (the BlockBackend name);
- ``payload`` (JSON, sorted keys): ``driver``, ``qdev_id``, ``drive``, ``node_names`` (the
  backend's node chain, format then protocol), ``qom_path`` (``/machine/peripheral/<id>``,
  with ``/virtio-backend`` for virtio-blk, what BLOCK_IO_ERROR names), ``werror``/``rerror``
  as written, ``iothread`` (and ``iothread_vq_mapping`` when given) and the ``boot`` the rows
  belong to (1.. for each ``starting up`` of the log: a domain log keeps every start).

The part also gives the VM name (``-name guest=NAME``), the host (``hostname:`` of libvirt's
``starting up`` header) and the QEMU release (``qemu version: 7.2.22...``), which the import
records like the QMP greeting's (`vm_tables`); and its node-names and qom-paths name the
devices of BLOCK_IO_ERRORs that carry only those (`merge._resolve_devices`).

The rest of the log is QEMU's stderr: trace-log lines (``TID@SECONDS.MICROS:name args``,
QEMU's ``-msg timestamp=on``) and QEMU's own messages (``2026-...Z qemu-system-x86_64: ...``)
are parsed by `qemu_log` into a ``qemu-log`` part of the same VM (same file, same line
numbers). Other lines (libvirt's ``Domain id=1 is tainted``, ``IO error device=...``,
``shutting down``, firmware or guest-agent noise) are free-form text and are not rows.

Times: libvirt's header lines carry a time (``2026-12-02 05:24:24.992+0000``); the
``device_config`` rows take the time of the ``starting up`` line before them (0 for a plain
command line), so they sort before the VM's first QMP traffic.
"""

from __future__ import annotations

import calendar
import json
import re
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from analyzer.importers import qemu_log
from analyzer.importers.detect import QEMU_MESSAGE, TRACE_PREFIXED
from analyzer.importers.json_scan import parse_json
from analyzer.importers.lines import InputText, LinePolicy
from analyzer.importers.rows import ParsedInput, Part, Rows
from tracer.schema import POLICIES

#: libvirt's own lines in a domain log: ``YYYY-MM-DD HH:MM:SS.mmm+ZZZZ: message``.
HEADER = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d+)([+-])(\d\d)(\d\d): (.*)")
_STARTING = re.compile(r"starting up libvirt version: ")
_QEMU_VERSION = re.compile(r"qemu version: (\d+\.\d+(?:\.\d+)?)")
_HOSTNAME = re.compile(r"hostname: ([^\s,]+)")
#: The QEMU binary on a command line (a ``ps`` line has columns before it).
CMDLINE = re.compile(r"(?:^|\s)((?:\S*/)?(?:qemu-system-[\w.-]+|qemu-kvm))(?:\s+-|\s*\\?$)")
#: Longest command line joined from continuation lines (libvirt's are a few kB).
_MAX_CMDLINE = 1 << 20
_POLICY_NAMES = frozenset(POLICIES)


def header_ns(m: re.Match[str]) -> int:
    secs = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
    offset = (int(m.group(4)) * 60 + int(m.group(5))) * 60 * (1 if m.group(3) == "+" else -1)
    frac = (m.group(2) + "000000000")[:9]
    return (secs - offset) * 1_000_000_000 + int(frac)


def qemu_opts(text: str, implied: str | None = None) -> dict[str, str]:
    """QemuOpts ``key=value,key=value`` (``,,`` an escaped comma); a first element without
    ``=`` is the value of `implied` (``-device virtio-blk-pci,...`` its driver)."""
    out: dict[str, str] = {}
    items: list[str] = []
    cur = ""
    i = 0
    while i < len(text):
        c = text[i]
        if c == ",":
            if text[i + 1 : i + 2] == ",":
                cur += ","
                i += 2
                continue
            items.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    items.append(cur)
    for k, item in enumerate(items):
        key, eq, value = item.partition("=")
        if not eq:
            if k == 0 and implied is not None:
                out[implied] = key
            else:
                out[key] = "on"
        else:
            out[key] = value
    return out


def _option(value: str, implied: str | None) -> dict[str, Any]:
    """An option's value in JSON (``-device '{...}'``) or QemuOpts syntax."""
    if value.startswith("{"):
        try:
            obj = parse_json(value)
        except ValueError as exc:
            raise ValueError(f"not valid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        return obj
    return qemu_opts(value, implied)


def _text(value: object) -> str | None:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (str, int)):
        return str(value)
    return None


@dataclass
class CommandLine:
    """The block configuration one QEMU command line gives."""

    vm: str | None = None
    devices: list[dict[str, Any]] = field(default_factory=list)
    #: node-name / qom-path -> qdev id (names BLOCK_IO_ERRORs that carry only those).
    node_map: dict[str, str] = field(default_factory=dict)


def parse_command_line(argv: list[str], lines: list[int] | None = None) -> CommandLine:
    """The VM name and block devices of a QEMU argv (ValueError naming the bad option);
    `lines`: the input line of each argument (a device's fact keeps its ``line``)."""
    drives: dict[str, dict[str, Any]] = {}
    nodes: dict[str, dict[str, Any]] = {}
    devices: list[tuple[dict[str, Any], int | None]] = []
    out = CommandLine()
    for k in range(len(argv) - 1):
        opt, value = argv[k], argv[k + 1]
        if not opt.startswith("-") or opt.startswith("--"):
            continue
        opt = opt.lstrip("-")
        try:
            if opt == "name":
                props = qemu_opts(value, "guest")
                out.vm = props.get("guest") or out.vm
            elif opt == "drive":
                props = qemu_opts(value)
                if "id" in props:
                    drives[props["id"]] = props
            elif opt == "blockdev":
                props = _option(value, None)
                name = _text(props.get("node-name"))
                if name:
                    nodes[name] = props
            elif opt == "device":
                props = _option(value, "driver")
                if props.get("drive") is not None:
                    devices.append((props, lines[k] if lines else None))
        except ValueError as exc:
            # (message, the input line of the option's value)
            raise ValueError(f"-{opt} {value[:60]!r}: {exc}", lines[k + 1] if lines else None) from None
    for props, line in devices:
        fact = _device(props, drives, nodes, out.node_map)
        fact["line"] = line
        out.devices.append(fact)
    return out


def _node_chain(name: str, nodes: dict[str, dict[str, Any]]) -> list[str]:
    chain: list[str] = []
    while name in nodes and name not in chain and len(chain) < 16:
        chain.append(name)
        child = nodes[name].get("file")
        if not isinstance(child, str):
            break
        name = child
    if not chain:
        chain.append(name)
    return chain


def _device(
    props: dict[str, Any], drives: dict[str, dict[str, Any]], nodes: dict[str, dict[str, Any]],
    node_map: dict[str, str],
) -> dict[str, Any]:
    driver = _text(props.get("driver")) or ""
    qdev = _text(props.get("id"))
    drive = _text(props.get("drive")) or ""
    legacy = drives.get(drive)
    fact: dict[str, Any] = {"driver": driver, "qdev_id": qdev, "drive": drive}
    for key in ("werror", "rerror"):
        value = _text(props.get(key))
        if value is None and legacy is not None:
            value = legacy.get(key)
        fact[key] = value
    for key in ("iothread", "iothread-vq-mapping"):
        if props.get(key) is not None:
            fact[key.replace("-", "_")] = props[key]
    if legacy is not None:
        fact["node_names"] = []
        names = [n for n in (qdev, drive) if n]
    else:
        fact["node_names"] = _node_chain(drive, nodes)
        names = [qdev or drive]
    if qdev:
        base = f"/machine/peripheral/{qdev}"
        fact["qom_path"] = base + "/virtio-backend" if driver.startswith("virtio-blk") else base
        for node in fact["node_names"]:
            node_map.setdefault(node, qdev)
        node_map[fact["qom_path"]] = qdev
        node_map[base] = qdev
    fact["names"] = names
    return fact


class _TraceLines:
    """The domain log as `qemu_log` reads it: its trace and QEMU-message lines in place, every
    other line empty (so line numbers stay the file's)."""

    def __init__(self, text: InputText) -> None:
        self._text = text
        self.path, self.sha256, self.crlf = text.path, text.sha256, text.crlf
        self.lines = self

    def __len__(self) -> int:
        return len(self._text.lines)

    def __iter__(self) -> Iterator[str]:
        for line in self._text.lines:
            yield line if (TRACE_PREFIXED.match(line) or QEMU_MESSAGE.match(line)) else ""


def _argv(pending: list[tuple[int, str]]) -> tuple[list[str], list[int]]:
    """The arguments of a command line of one or more physical lines (libvirt writes one
    option and its value per line), and the line of each; a quote spanning lines is split as
    one text, its arguments all at the first line."""
    at = next((k for k, (_, text) in enumerate(pending) if CMDLINE.search(text)), None)
    if at is None:
        raise ValueError("no QEMU binary (qemu-system-*, qemu-kvm) on the command line")
    first_no, first = pending[at]
    binary = CMDLINE.search(first)
    assert binary is not None
    pieces = [(first_no, first[binary.start(1) :]), *pending[at + 1 :]]
    argv: list[str] = []
    lines: list[int] = []
    try:
        for number, text in pieces:
            words = shlex.split(text, posix=True)
            argv += words
            lines += [number] * len(words)
    except ValueError:
        argv = shlex.split(" ".join(text for _, text in pieces), posix=True)
        lines = [first_no] * len(argv)
    return argv, lines


_ISO = re.compile(r'\{"text": "(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{1,9})Z ')


def _message_times(rows: Rows) -> None:
    """QEMU messages (``-msg timestamp=on``: ``2026-...T05:24:53.574298Z qemu-...: ``) take
    their own time where the trace parser found none (a domain log without trace lines)."""
    for i, name in enumerate(rows.name):
        if name == "qemu_message" and not rows.ts[i]:
            m = _ISO.match(rows.payload[i] or "")
            if m is not None:
                secs = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
                rows.ts[i] = secs * 1_000_000_000 + int((m.group(2) + "00000000")[:9])


def parse(text: InputText, policy: LinePolicy) -> ParsedInput:
    """A domain log (or plain command line) -> a ``domain-log`` part (device facts) and a
    ``qemu-log`` part (its trace lines), both of the VM its ``-name`` gives."""
    rows = Rows()
    part = Part(source="domain-log", path=text.path, rows=rows)
    boot = 0
    start_ts: int | None = None
    pending: list[tuple[int, str]] = []
    first_line = size = 0
    crlf = text.crlf

    def finish_cmdline() -> None:
        try:
            cmd = parse_command_line(*_argv(pending))
        except ValueError as exc:
            at = exc.args[1] if len(exc.args) > 1 and exc.args[1] else first_line
            policy.bad(at, pending[0][1][:200], f"QEMU command line: {exc.args[0]}")
            return
        finally:
            pending.clear()
        part.vm = cmd.vm or part.vm
        part.node_map.update(cmd.node_map)
        for fact in cmd.devices:
            payload = dict(fact, boot=max(boot, 1))
            names = payload.pop("names")
            line = payload.pop("line") or first_line
            for name in names:
                for op, key in (("write", "werror"), ("read", "rerror")):
                    value = fact[key]
                    rows.add(
                        "device_config", start_ts, line, name="device_config",
                        payload=json.dumps(payload, sort_keys=True, separators=(",", ":")),
                        device=name, op=op, thread="mgmt", thread_kind="mgmt",
                        policy=value if value in _POLICY_NAMES else None,
                    )

    for number, line in enumerate(text.lines, 1):
        if crlf and line[-1:] == "\r":
            line = line[:-1]
        if pending:
            size += len(line)
            if size > _MAX_CMDLINE:
                policy.bad(first_line, pending[0][1][:200], "QEMU command line longer than 1 MiB")
                pending.clear()
                continue
            cont = line.endswith("\\")
            pending.append((number, line[:-1] if cont else line))
            if not cont:
                finish_cmdline()
            continue
        m = HEADER.match(line)
        if m is not None:
            message = m.group(6)
            if _STARTING.match(message):
                try:
                    start_ts = header_ns(m)
                except ValueError:  # a date that does not exist (month 13)
                    policy.bad(number, line, f"not a valid time {m.group(1)!r}")
                    continue
                boot += 1
                v = _QEMU_VERSION.search(message)
                if v is not None and part.qemu_version is None:
                    part.qemu_version = v.group(1)
                h = _HOSTNAME.search(message)
                if h is not None and part.host is None:
                    part.host = h.group(1)
            continue
        if TRACE_PREFIXED.match(line) or QEMU_MESSAGE.match(line):
            continue
        if CMDLINE.search(line) or (line.endswith("\\") and "=" in line.split(" ", 1)[0]):
            # The command line: libvirt writes its environment, then the binary and one
            # option per line, each but the last ending in a backslash.
            first_line, size = number, len(line)
            cont = line.endswith("\\")
            pending.append((number, line[:-1] if cont else line))
            if not cont:
                finish_cmdline()
    if pending:
        finish_cmdline()
    rows.fill_missing_ts()
    trace = qemu_log.parse(_TraceLines(text), policy)  # type: ignore[arg-type]
    trace_part = trace.parts[0]
    _message_times(trace_part.rows)
    parts = [part]
    if len(trace_part.rows):
        trace_part.vm = part.vm
        trace_part.host = part.host
        trace_part.qemu_version = trace_part.qemu_version or part.qemu_version
        parts.append(trace_part)
    return ParsedInput(
        path=text.path, format="domain-log", sha256=text.sha256, lines=len(text.lines),
        skipped=policy.skipped, truncated=policy.truncated, parts=parts,
    )
