"""What QMP messages mean, as trace rows: the one reading shared by every importer.

A transcript, a QEMU trace log (``monitor_qmp_respond``, ``handle_qmp_command``) and a
libvirt log (``QEMU_MONITOR_*``) carry the same QMP messages; `QmpState` turns the messages of
one monitor conversation into rows, so that a message means the same thing whatever carried
it:

- event -> ``qmp_event`` (``BLOCK_IO_ERROR``: device, op, action, errno; every event: its
  QMP timestamp in ``event_ts_ns`` (null for QEMU's -1/-1 "no time") and its whole JSON text
  in ``payload``);
- the device of a ``BLOCK_IO_ERROR``, whatever the QEMU version (`block_io_error_fields`): its
  ``device`` (the drive name; ``""`` under libvirt and with ``-blockdev``), else its
  ``node-name`` or ``qom-path`` (9.2+), resolved through what ``query-block`` replies map to a
  device name (``inserted.node-name`` and ``qdev``), else the qdev id in the QOM path; so one
  disk is one device across versions. QEMU 9.2.0 sends ``device`` and ``qom-path`` swapped
  (``device`` then starts with ``/machine/``): the fields are swapped back, and a marker event
  (`SWAPPED_MARKER`, right after the event) lets the ``qom-path-swapped`` rule report it;
- command -> ``qmp_command`` named by ``execute``;
- reply -> ``qmp_reply`` with ``cmd_ref`` on the command of the same id (the oldest
  unanswered one), named like it: ``query-block`` gives one row per device with its
  ``iostatus``, ``query-status`` one row with ``runstate``; replies to ``query-iothreads``
  and ``query-cpus-fast`` teach which thread ids are IOThreads and vCPUs, ``query-name`` the
  VM's name, ``query-version`` (like the greeting) the QEMU version;
- greeting -> a ``trace_event`` named ``qmp_greeting``.

How the rows are keyed for merging inputs is described in `analyzer.importers.rows`.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from analyzer.importers.message_cache import Shape
from analyzer.importers.qmp_types import (
    CHECKED_REPLIES,
    check_command,
    check_event,
    check_greeting,
    check_reply,
)
from analyzer.importers.rows import Rows
from analyzer.importers.thread_hints import ThreadHints
from tracer.qemu import EIO, ENOSPC, QemuVersion, version_from_qmp
from tracer.schema import ACTIONS, IOSTATUSES, OPS, RUNSTATES

_RUNSTATES = frozenset(RUNSTATES)
_IOSTATUSES = frozenset(IOSTATUSES)
_OPS = frozenset(OPS)
_ACTIONS = frozenset(ACTIONS)
_PERIPHERAL = "/machine/peripheral/"

#: Per row its ((sparse column, value), ...), and the (node-name or qdev path, device name)
#: pairs the reply teaches, in order.
ReplyFields = tuple[list[tuple], list[tuple[str, str]]]

#: The rows of a reply that gives one row without sparse values, and teaches no node name.
ONE_ROW: ReplyFields = ([()], [])
#: Replies that teach something besides their rows (`QmpState.learn`).
LEARNING_REPLIES = frozenset({"query-iothreads", "query-cpus-fast", "query-cpus", "query-name", "query-version"})


# -- single messages -----------------------------------------------------------------------


def event_time_ns(msg: dict) -> int | None:
    """The QMP timestamp of an event message in ns, or None."""
    stamp = msg.get("timestamp")
    if isinstance(stamp, dict):
        sec, usec = stamp.get("seconds"), stamp.get("microseconds")
        if isinstance(sec, int) and isinstance(usec, int) and sec >= 0 and usec >= 0:
            return sec * 1_000_000_000 + usec * 1000
    return None


def qdev_name(qdev: str) -> str:
    """The device id in a qdev path (``/machine/peripheral/<id>/...``), else the path itself."""
    if qdev.startswith(_PERIPHERAL):
        return qdev[len(_PERIPHERAL) :].split("/", 1)[0] or qdev
    return qdev


def bie_errno(data: dict) -> int | None:
    """errno of a BLOCK_IO_ERROR: 28 when ``nospace``, 5 for the EIO text, else unknown.

    ``reason`` is strerror() text and is not otherwise parsed: it is locale- and libc-specific.
    """
    if data.get("nospace") is True:
        return ENOSPC
    return EIO if data.get("reason") == "Input/output error" else None


#: Name of the marker row that follows a BLOCK_IO_ERROR whose ``device`` and ``qom-path`` came
#: swapped (QEMU 9.2.0; fixed in 10.0 by 107c551de0). No QAPI event name starts with ``#``.
SWAPPED_MARKER = "#qom-path-swapped"
_QOM_ROOT = "/machine/"


def swapped_qom_path(data: dict) -> bool:
    """Whether a BLOCK_IO_ERROR's ``device`` holds a QOM path (QEMU 9.2.0 sends ``device`` and
    ``qom-path`` swapped; a drive name never starts with ``/machine/``)."""
    device = data.get("device")
    return isinstance(device, str) and device.startswith(_QOM_ROOT)


def block_io_error_fields(data: dict) -> dict[str, Any]:
    """The sparse columns of a ``BLOCK_IO_ERROR`` event's row, from its ``data``.

    Without a ``device`` (a ``-blockdev`` drive, libvirt), ``node`` and ``qom`` keep the
    node-name and qom-path, resolved into a device name once every ``query-block`` reply has
    been seen. QEMU 9.2.0's swapped fields (`swapped_qom_path`) are read swapped back.
    """
    fields: dict[str, Any] = {}
    device, qom = data.get("device"), data.get("qom-path")
    if swapped_qom_path(data):
        device, qom = qom, device
    if isinstance(device, str) and device:
        fields["device"] = device
    else:
        node = data.get("node-name")
        fields["node"] = node if isinstance(node, str) and node else None
        fields["qom"] = qom if isinstance(qom, str) and qom else None
    op, action = data.get("operation"), data.get("action")
    fields["op"] = op if op in _OPS else None
    fields["action"] = action if action in _ACTIONS else None
    fields["errno"] = bie_errno(data)
    return fields


def message_type(msg: Any) -> str:
    """"event", "reply", "command" or "greeting"; ValueError if `msg` is no QMP message."""
    if not isinstance(msg, dict):
        raise ValueError("not a JSON object")
    if "event" in msg:
        return "event"
    if "return" in msg or "error" in msg:
        return "reply"
    if "execute" in msg or "exec-oob" in msg:
        return "command"
    if "QMP" in msg:
        return "greeting"
    raise ValueError("not a QMP message (no event, return, error, execute or QMP key)")


def id_key(value: Any) -> Any:
    """A hashable identity of a QMP id; 5 and "5" differ."""
    if type(value) is str:
        return value
    if type(value) is int:
        return ("int", value)
    return ("json", json.dumps(value, sort_keys=True))


def message_id_key(msg: dict) -> Any:
    """`id_key` of a message's id (None: no id)."""
    return id_key(msg["id"]) if "id" in msg else None


def guess_command(ret: Any) -> str | None:
    """Name an unanswered reply by its shape (a capture that missed the command)."""
    if isinstance(ret, dict) and "status" in ret and "running" in ret:
        return "query-status"
    if isinstance(ret, list) and ret and all(isinstance(i, dict) and "device" in i and "qdev" in i for i in ret):
        return "query-block"
    return None


def reply_fields(name: str | None, ret: Any) -> ReplyFields:
    """The rows of a successful reply to the command `name` (see `ReplyFields`).

    ``query-block`` gives one row per device with its ``iostatus``, ``query-status`` one row
    with ``runstate``, anything else one row.
    """
    check_reply(name, ret)  # ValueError for a field of the wrong type (qmp_types)
    if name == "query-block" and isinstance(ret, list) and ret:
        rows: list[tuple] = []
        learnt: list[tuple[str, str]] = []
        for info in ret:
            device, iostatus = _block_info(info, learnt)
            rows.append(tuple((k, v) for k, v in (("device", device), ("iostatus", iostatus)) if v is not None))
        return rows, learnt
    if name == "query-status" and isinstance(ret, dict):
        status = ret.get("status")
        if status in _RUNSTATES:
            return [(("runstate", status),)], []
    return ONE_ROW


def readable_whatever_answered(ret: Any) -> bool:
    """Whether a successful reply returning `ret` means its rows whatever command it answers:
    no command name can make it a bad line (`reply_fields` refuses it for none)."""
    try:
        for name in (None, *CHECKED_REPLIES):
            reply_fields(name, ret)
    except ValueError:
        return False
    return True


def _block_info(info: Any, learnt: list[tuple[str, str]]) -> tuple[str | None, str | None]:
    """(device name, io-status) of one BlockInfo; appends the node-name/qdev -> device it names."""
    if not isinstance(info, dict):
        return None, None
    device, qdev = info.get("device"), info.get("qdev")
    inserted = info.get("inserted")
    node = inserted.get("node-name") if isinstance(inserted, dict) else None
    if isinstance(device, str) and device:
        name = device
    elif isinstance(qdev, str) and qdev:
        name = qdev_name(qdev)
    else:
        name = node if isinstance(node, str) and node else None
    if name is not None:
        if isinstance(node, str) and node:
            learnt.append((node, name))
        if isinstance(qdev, str) and qdev:
            learnt.append((qdev, name))
    status = info.get("io-status")
    return name, status if status in _IOSTATUSES else None


@dataclass(frozen=True)
class EventMeaning:
    """What an event says but for its timestamp: its name and the sparse columns of its row
    (a ``BLOCK_IO_ERROR``'s, `block_io_error_fields`), and whether QEMU 9.2.0 swapped its
    ``device`` and ``qom-path`` (a marker row follows it)."""

    name: str | None
    fields: dict[str, Any]
    swapped: bool

    @classmethod
    def of(cls, msg: dict) -> EventMeaning:
        name = msg.get("event")
        name = name if isinstance(name, str) else None
        data = msg.get("data")
        bie = name == "BLOCK_IO_ERROR" and isinstance(data, dict)
        return cls(name, block_io_error_fields(data) if bie else {}, bie and swapped_qom_path(data))


# -- one conversation ----------------------------------------------------------------------


class QmpState:
    """The rows of one QMP conversation (one monitor), with what its replies teach."""

    def __init__(self, rows: Rows, hints: ThreadHints, node_map: dict[str, str]) -> None:
        self.rows = rows
        self.hints = hints
        self.node_map = node_map
        #: The QEMU version the greeting or a query-version reply announced.
        self.version: QemuVersion | None = None
        self.vm_name: str | None = None
        self._pending: dict[str | None, deque[int]] = {}
        self._cmd_name: dict[int, str | None] = {}
        self._occ: dict[tuple, int] = {}
        self._sparse = rows.sparse
        self._keys, self._cmd_refs = rows.sparse["key"], rows.sparse["cmd_ref"]
        self._threads, self._thread_kinds = rows.sparse["thread"], rows.sparse["thread_kind"]

    @property
    def qemu_release(self) -> str | None:
        """The full QEMU release ("7.2.22"), for the trace metadata."""
        return self.version.release if self.version is not None else None

    def announce(self, value: Any) -> None:
        """Learn the QEMU version from a greeting or a ``query-version`` return value."""
        self.version = version_from_qmp(value) or self.version

    def _occurrence(self, base: tuple) -> int:
        n = self._occ.get(base, 0)
        self._occ[base] = n + 1
        return n

    def message(
        self,
        msg: Any,
        text: str,
        ts: int | None,
        line: int,
        *,
        tid: int | None = None,
        preset_threads: bool = True,
    ) -> str:
        """Add the rows of one message; returns its type. ValueError if it is no QMP message.

        `preset_threads`: QMP-only rows get the conventional thread names (events "qemu",
        commands "mgmt", replies "main"); a trace log leaves them to its TIDs.
        """
        kind = message_type(msg)
        handle = {"event": self.event, "reply": self.reply, "command": self.command, "greeting": self.greeting}[kind]
        handle(msg, text, ts, line, tid=tid, preset=preset_threads)
        return kind

    def command(self, msg: dict, text: str, ts: int | None, line: int, *, tid: int | None = None, preset: bool = True) -> int:
        check_command(msg)
        name = msg.get("execute", msg.get("exec-oob"))
        return self._command(name if isinstance(name, str) else None, message_id_key(msg), text, ts, line, tid, preset)

    def reply(self, msg: dict, text: str, ts: int | None, line: int, *, tid: int | None = None, preset: bool = True) -> None:
        self._reply(message_id_key(msg), "error" in msg, msg.get("return"), None, text, ts, line, tid, preset)

    def known(
        self, shape: Shape, msg_id: Any, text: str, ts: int | None, line: int,
        *, tid: int | None = None, preset: bool = True,
    ) -> None:
        """Add the rows of a command or reply of a known `shape` (see `MessageCache`) with id
        `msg_id`: what `message` adds for it, without parsing it again."""
        if shape.command:
            check_command(shape.msg)  # a shape is cached before it is judged: judge each copy
            self._command(shape.name, id_key(msg_id), text, ts, line, tid, preset)
        else:
            self._reply(id_key(msg_id), shape.failed, shape.ret, shape, text, ts, line, tid, preset)

    def _command(self, name: str | None, idk: Any, text: str, ts: int | None, line: int, tid: int | None, preset: bool) -> int:
        base = ("cmd", idk, name)
        occ = self._occ.get(base, 0)
        self._occ[base] = occ + 1
        rows = self.rows
        i = len(rows.kind)
        rows.kind.append("qmp_command")  # Rows.append, inlined: the hot path of a transcript
        rows.ts.append(ts)
        rows.tid.append(tid)
        rows.name.append(name)
        rows.payload.append(text)
        rows.line.append(line)
        self._keys[i] = (*base, occ)
        if preset:
            self._threads[i] = "mgmt"
            self._thread_kinds[i] = "mgmt"
        queue = self._pending.get(idk)
        if queue is None:
            queue = self._pending[idk] = deque()
        queue.append(i)
        self._cmd_name[i] = name
        return i

    def _reply(
        self, idk: Any, failed: bool, ret: Any, shape: Shape | None,
        text: str, ts: int | None, line: int, tid: int | None, preset: bool,
    ) -> None:
        """The rows of one reply; `shape` (if known) memoizes what its `ret` means."""
        queue = self._pending.get(idk)
        cmd_row = None
        if queue:
            cmd_row = queue.popleft()
            if not queue:
                del self._pending[idk]  # the usual unique id: keep the table of waiting ids small
        name = self._cmd_name.pop(cmd_row, None) if cmd_row is not None else None
        if name is None and not failed:
            name = guess_command(ret)
        base = ("reply", idk, name)
        occ = self._occ.get(base, 0)
        self._occ[base] = occ + 1
        if failed:
            row_fields, learnt = ONE_ROW
        elif shape is not None:
            row_fields, learnt = shape.meaning(name, reply_fields)
        else:
            row_fields, learnt = reply_fields(name, ret)
        if learnt:
            self.node_map.update(learnt)
        sparse = self._sparse
        rows = self.rows
        for j, fields in enumerate(row_fields):
            i = len(rows.kind)
            rows.kind.append("qmp_reply")  # Rows.append, inlined as in `_command`
            rows.ts.append(ts)
            rows.tid.append(tid)
            rows.name.append(name)
            rows.payload.append(text)
            rows.line.append(line)
            self._keys[i] = (*base, occ, j)
            if cmd_row is not None:
                self._cmd_refs[i] = cmd_row
            if preset:
                self._threads[i] = "main"
                self._thread_kinds[i] = "main"
            for col, value in fields:
                sparse[col][i] = value
        if name in LEARNING_REPLIES and not failed:
            self.learn(name, ret)

    def learn(self, name: str | None, ret: Any) -> None:
        """What a successful reply teaches about the VM besides its rows."""
        if name == "query-iothreads":
            self.hints.add_iothreads(ret)
        elif name in ("query-cpus-fast", "query-cpus"):
            self.hints.add_vcpus(ret)
        elif name == "query-name" and isinstance(ret, dict) and isinstance(ret.get("name"), str):
            self.vm_name = ret["name"] or None
        elif name == "query-version":
            self.announce(ret)

    def event(self, msg: dict, text: str, ts: int | None, line: int, *, tid: int | None = None, preset: bool = True) -> int:
        check_event(msg)
        stamp = msg.get("timestamp")
        when = (stamp.get("seconds"), stamp.get("microseconds")) if isinstance(stamp, dict) else None
        return self.add_event(EventMeaning.of(msg), when, event_time_ns(msg), text, ts, line, tid=tid, preset=preset)

    def add_event(
        self, meaning: EventMeaning, stamp: tuple[Any, Any] | None, event_ts: int | None,
        text: str, ts: int | None, line: int, *, tid: int | None = None, preset: bool = True,
    ) -> int:
        """The rows of an event (checked) that means `meaning`, stamped (seconds,
        microseconds) `stamp` (None: no timestamp member)."""
        name, fields = meaning.name, meaning.fields
        key = None if stamp is None else ("event", name, *stamp)
        thread = ("qemu", "unknown") if preset else (None, None)
        # (`Rows.add` inlined: an event is a row of the hot path of a transcript)
        i = self.rows.append("qmp_event", ts, line, tid, name, text)
        sparse = self._sparse
        if preset:
            self._threads[i], self._thread_kinds[i] = thread
        if key is not None:
            self._keys[i] = key
        if event_ts is not None:
            sparse["event_ts"][i] = event_ts
        for col, value in fields.items():
            if value is not None:
                sparse[col][i] = value
        if meaning.swapped:
            marker_key = None if key is None else ("event", SWAPPED_MARKER, *key[2:])
            self.rows.add(
                "qmp_event", ts, line, tid=tid, name=SWAPPED_MARKER, payload=text,
                thread=thread[0], thread_kind=thread[1], key=marker_key, event_ts=event_ts,
                **{k: v for k, v in fields.items() if k in ("device", "node", "qom")},
            )
        return i

    def greeting(self, msg: dict, text: str, ts: int | None, line: int, *, tid: int | None = None, preset: bool = True) -> None:
        check_greeting(msg)
        self.announce(msg)
        thread = ("qemu", "unknown") if preset else (None, None)
        self.rows.add(
            "trace_event", ts, line, tid=tid, name="qmp_greeting", payload=text,
            thread=thread[0], thread_kind=thread[1], key=("greeting", self._occurrence(("greeting",))),
        )
