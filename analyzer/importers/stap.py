"""QEMU trace events printed by SystemTap (``qemu-trace-stap run``) -> the `qemu-log` rows.

RHEL, Fedora and CentOS build QEMU with the ``dtrace`` trace backend: its trace events are
SystemTap probes, and ``qemu-trace-stap run qemu-system-x86_64 'runstate_set' 'virtio_blk_*'
...`` prints them with the probes tracetool generates (``scripts/tracetool/format/log_stap.py``)::

    printf("%d@%d <name> <the event's format>\\n", pid(), gettimeofday_ns(), <args>...)

so a line is ``PID@NANOSECONDS name args``, the arguments formatted by the same format
string the ``log`` backend prints (size qualifiers dropped, strings cut at 512 bytes, NULL
``<null>``). Each line is written back as the log backend's ``-msg timestamp=on`` line
(``PID@SECONDS.NANOSECONDS:name args``) and parsed by `qemu_log` (`carried`): the same
event table makes the same rows, each naming the stap output's line.

``pid()`` is the process, not the thread: SystemTap's line does not say which QEMU thread
traced it (the main loop's TID equals the pid, an IOThread's does not). So rows carry no TID
(``tid`` null, thread unknown), never the pid posing as the main loop: rules that judge the
thread of a stop are not applicable to a stap capture alone. The lines stap itself prints
(``Running script, <Ctrl>-c to quit`` with ``-v``, ``WARNING: ...``) are not events and are
left; any other line goes to `qemu_log` as it is (a QEMU message, or a bad line).
"""

from __future__ import annotations

import re

from analyzer.importers import qemu_log
from analyzer.importers.carried import CarriedText
from analyzer.importers.lines import PROGRESS_EVERY, InputText, LinePolicy
from analyzer.importers.rows import ParsedInput

_LINE = re.compile(r"(\d{1,20})@(\d{1,20}) ([A-Za-z_]\w*)(?: (.*))?$", re.DOTALL)
#: What stap prints that is no probe's line.
_STAP_OWN = re.compile(r"(?:Running script, <Ctrl>-c to quit|WARNING: |Pass \d: )")


def parse(text: InputText, policy: LinePolicy) -> ParsedInput:
    """``qemu-trace-stap run`` output -> one Part, as the log backend's trace would give."""
    carried = CarriedText()
    crlf = text.crlf
    for number, line in enumerate(text.lines, 1):
        if not number % PROGRESS_EVERY:
            policy.progress(number)
        if crlf and line[-1:] == "\r":
            line = line[:-1]
        if not line:
            continue
        m = _LINE.match(line)
        if m is None:
            if not _STAP_OWN.match(line):
                carried.add(line, number)
            continue
        pid, ns, name, args = m.groups()
        sec, frac = divmod(int(ns), 1_000_000_000)
        carried.add(f"{pid}@{sec}.{frac:09d}:{name}" + ("" if args is None else " " + args), number)
    parsed = carried.parse(text, policy, qemu_log.parse, "qemu-log", "qemu-stap")
    for part in parsed.parts:  # the pid is no thread id (see above)
        part.rows.tid = [None] * len(part.rows.tid)
        for seg in part.rows.segments:
            seg.tid = None
        part.hints.main_tid = part.hints.first_tid = None
        part.hints.monitor_tids.clear()
    return parsed


__all__ = ["parse"]
