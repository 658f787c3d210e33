"""Recognising an input's format from its content, and judging single lines.

The first non-empty line decides (with ``--skip-bad``, the first recognisable one among the
first `SCAN_LINES`), except that QEMU stderr followed, within `SCAN_LINES`, by libvirt's own
lines is a per-domain log (a rotated one starts anywhere). Each line type has one cheap test, so the same function also tells, for
a line a parser rejects, whether it belongs to another format (a mixed file) or to none.
Host-side renderings are recognised the same way: a JSON object by its keys (a journal
record's ``__REALTIME_TIMESTAMP``, a KubeVirt record's ``component`` / ``level`` / ``msg``, else
QMP), a journal export by its ``__CURSOR=`` fields, journalctl's short formats, SystemTap's
``PID@NANOSECONDS name`` and virsh qemu-monitor-event's ``event NAME ... for domain`` by their
heads; `BASE_FORMAT` says which plain format each carries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from analyzer.importers.json_scan import parse_json
from tracer.errors import ImportFormatError

FORMATS = (
    "qmp", "qemu-log", "libvirt-log", "domain-log", "virsh-events",
    "journal-json", "journal-export", "journal-short", "kubevirt-log", "qemu-stap", "qemu-monitor-event",
)

#: The plain format each host-side rendering carries (what it merges and names VMs as):
#: the journal's and a KubeVirt pod's libvirt log, SystemTap's QEMU trace, virsh's QMP events
#: of named domains (like ``virsh event``'s).
BASE_FORMAT = {
    "journal-json": "libvirt-log", "journal-export": "libvirt-log", "journal-short": "libvirt-log",
    "kubevirt-log": "libvirt-log", "qemu-stap": "qemu-log", "qemu-monitor-event": "virsh-events",
}

#: How much of an input `detect_format` is given to look at (a first line may be a long reply).
DETECT_BYTES = 32 << 20

#: How many leading lines `detect_format` looks at when unrecognisable lines may be skipped.
SCAN_LINES = 1000

LIBVIRT_HEAD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+[+-]\d{4}: \d+: ")
#: `-msg timestamp=on` trace line: ``TID@SECONDS.MICROS:name``.
TRACE_PREFIXED = re.compile(r"\d+@\d+\.\d+:[A-Za-z_]\w*")
#: Trace line without timestamps: ``name args``; QEMU's event names are snake_case.
TRACE_PLAIN = re.compile(r"[a-z][a-z0-9]*_[a-z0-9_]*(?: |$)")
#: A QEMU message on the same stderr (error_report / warn_report), optionally timestamped.
QEMU_MESSAGE = re.compile(r"(?:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z )?qemu[\w.+-]*: ")
#: libvirt's own lines in a per-domain QEMU log (``/var/log/libvirt/qemu/NAME.log``).
DOMAIN_HEAD = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+[+-]\d{4}: "
    r"(?:starting up libvirt version: |Domain id=\d+ is tainted|shutting down, reason=)"
)
#: A QEMU command line (a ``cmdline`` file, the start of one in a domain log).
COMMAND_LINE = re.compile(r"(?:^|\s)(?:\S*/)?(?:qemu-system-[\w.-]+|qemu-kvm) +-\w")
#: ``virsh event --loop [--timestamp]``: ``[TIME: ]event 'NAME' for domain 'VM'`` (older virsh: ``VM`` bare).
VIRSH_EVENT = re.compile(r"(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+[+-]\d{4}: )?event '[\w-]+' for domain \S")
#: ``virsh qemu-monitor-event --loop``: ``[TIME: ]event NAME [at SEC.USEC ]for domain 'VM': DATA``.
MONITOR_EVENT = re.compile(
    r"(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+[+-]\d{4}: )?event [A-Z][A-Z0-9_]* (?:at \d+\.\d+ )?for domain \S"
)
#: ``journalctl -o export``: a record starts with the journal's own ``__`` fields.
JOURNAL_EXPORT = re.compile(r"__(?:CURSOR|REALTIME_TIMESTAMP|MONOTONIC_TIMESTAMP|SEQNUM|SEQNUM_ID|BOOT_ID)=")
#: ``journalctl -o short-precise`` / ``short-iso-precise``: ``TIME host ident[pid]: ``.
JOURNAL_SHORT = re.compile(
    r"(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d\.\d+"
    r"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[.,]\d+(?:Z|[+-]\d\d:?\d\d)) \S+ [^\s\[\]]+?(?:\[\d+\])?: "
    r"|-- (?:Logs begin at|Journal begins at) "
)
#: ``qemu-trace-stap run`` (tracetool's log_stap format): ``PID@NANOSECONDS name args``.
STAP_LINE = re.compile(r"\d+@\d+ [A-Za-z_]\w*(?: |$)")


def is_qmp_message(obj: object) -> bool:
    """A QMP wire message, or a transcript record wrapping one."""
    if not isinstance(obj, dict):
        return False
    if "t" in obj and "dir" in obj and "line" in obj:
        return True
    return any(k in obj for k in ("QMP", "event", "return", "error", "execute", "exec-oob"))


def json_format(obj: object) -> str | None:
    """The format whose line is JSON object `obj`: a journal record, a KubeVirt pod log
    record, a QMP message; else None."""
    if not isinstance(obj, dict):
        return None
    if "__REALTIME_TIMESTAMP" in obj:
        return "journal-json"
    if "component" in obj and "msg" in obj and "level" in obj:
        return "kubevirt-log"
    return "qmp" if is_qmp_message(obj) else None


def classify_line(line: str) -> str | None:
    """The format `line` belongs to, or None (empty or unrecognisable)."""
    s = line.strip()
    if not s:
        return None
    if s[0] == "{":
        try:
            obj = parse_json(s)
        except ValueError:
            return None
        return json_format(obj)
    if LIBVIRT_HEAD.match(s):
        return "libvirt-log"
    if DOMAIN_HEAD.match(s):
        return "domain-log"
    if VIRSH_EVENT.match(s):
        return "virsh-events"
    if MONITOR_EVENT.match(s):
        return "qemu-monitor-event"
    if JOURNAL_EXPORT.match(s):
        return "journal-export"
    if JOURNAL_SHORT.match(s):
        return "journal-short"
    if STAP_LINE.match(s):
        return "qemu-stap"
    if TRACE_PREFIXED.match(s) or QEMU_MESSAGE.match(s):
        return "qemu-log"
    if COMMAND_LINE.search(s):  # also a ``ps`` line, its columns before the binary
        return "domain-log"
    if TRACE_PLAIN.match(s):
        return "qemu-log"
    return None


def _domain_lines_follow(lines: Iterable[str]) -> bool:
    """Whether one of the next `SCAN_LINES` lines is libvirt's own line of a domain log."""
    return any(DOMAIN_HEAD.match(line) for line, _ in zip(lines, range(SCAN_LINES), strict=False))


def detect_format(lines: Iterable[str], path: str, *, skip_bad: bool = False, whole: bool = True) -> str:
    """The format of an input whose first lines are `lines`; ImportFormatError if there is
    none. `whole`: `lines` are all the input's (else only a prefix: a prefix of blank or
    unrecognisable lines is "no recognisable line", not "empty input")."""
    limit = SCAN_LINES if skip_bad else None
    seen = 0
    it = iter(lines)
    for number, line in enumerate(it, 1):
        if not line.strip():
            continue
        fmt = classify_line(line)
        if fmt == "qemu-log":
            # A rotated per-domain log (NAME.log.1) may start with QEMU's stderr: libvirt's
            # own lines further on tell it from a trace log.
            return "domain-log" if _domain_lines_follow(it) else fmt
        if fmt is not None:
            return fmt
        seen += 1
        if limit is None or seen >= limit:
            raise ImportFormatError(
                "unknown format: not QMP JSON, a QEMU trace log (log or SystemTap), a libvirt daemon or "
                "per-domain log (plain, in the journal or a KubeVirt pod log), a QEMU command line or virsh event output "
                f"(line starts {line[:60]!r})",
                path=path,
                line=number,
            )
    if not whole:
        raise ImportFormatError(
            f"unknown format: no QMP, QEMU trace log, libvirt log or virsh event line in its first {DETECT_BYTES >> 20} MiB",
            path=path,
        )
    raise ImportFormatError("empty input: no line to import", path=path)
