"""The JSON types and ranges of the QMP fields the importers read, checked before any is used.

QEMU's QAPI schema fixes the type of every field: an event's name is a string, its timestamp
two integers, a ``BLOCK_IO_ERROR``'s ``operation`` a string, a ``query-status`` reply's
``status`` a string. A message that breaks this did not come from QEMU (or was mangled on the
way), and taking it at its word crashes later (``["running"] in frozenset(...)``: TypeError)
or writes a trace that `check` then refuses (a 2^70 timestamp). Each check here raises
ValueError naming the field and what is wrong; the importers turn it into one bad line
(`lines.LinePolicy.bad`: exit 2 naming the file and line, or skipped with ``--skip-bad``).

Only fields the importers read are checked, so that a reply to a command they do not
interpret is taken whatever it holds.
"""

from __future__ import annotations

from typing import Any

#: Largest value of an int64 column (ts_ns, tid, req_id, event_ts_ns).
INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)
#: Largest QMP timestamp ``seconds`` whose time in ns fits in int64 (year 2262).
MAX_EVENT_SECONDS = INT64_MAX // 1_000_000_000 - 1

_BLOCK_IO_ERROR_TEXT = ("device", "node-name", "qom-path", "operation", "action", "reason")


def _kind(value: Any) -> str:
    """How a wrong value is named in a message: its JSON type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _all_text(*values: Any) -> bool:
    """Each value a string or absent (the fast path of a well-formed reply)."""
    return all(v is None or type(v) is str for v in values)


def _text(obj: dict, key: str, where: str) -> None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{where}{key} is {_kind(value)}, expected a string")


def check_event(msg: dict) -> None:
    """An event's name, timestamp and (for ``BLOCK_IO_ERROR``) the data fields read."""
    name = msg.get("event")
    if not isinstance(name, str):
        raise ValueError(f"QMP event name is {_kind(name)}, expected a string")
    stamp = msg.get("timestamp")
    if stamp is not None:
        if not isinstance(stamp, dict):
            raise ValueError(f"{name} timestamp is {_kind(stamp)}, expected an object")
        sec, usec = stamp.get("seconds"), stamp.get("microseconds")
        if not (_is_int(sec) and _is_int(usec)):
            raise ValueError(f"{name} timestamp needs integer seconds and microseconds")
        check_event_time(name, sec, usec)
    data = msg.get("data")
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"{name} data is {_kind(data)}, expected an object")
    if name == "BLOCK_IO_ERROR" and data is not None:
        for key in _BLOCK_IO_ERROR_TEXT:
            _text(data, key, "BLOCK_IO_ERROR data.")
        nospace = data.get("nospace")
        if nospace is not None and not isinstance(nospace, bool):
            raise ValueError(f"BLOCK_IO_ERROR data.nospace is {_kind(nospace)}, expected a boolean")


def check_event_time(name: str, sec: int, usec: int) -> None:
    """An event's timestamp (integers): a time QMP can stamp, or -1/-1 (no time)."""
    if (sec, usec) != (-1, -1) and not (0 <= sec <= MAX_EVENT_SECONDS and 0 <= usec < 1_000_000):
        raise ValueError(
            f"{name} timestamp out of range (seconds {_short(sec)}, microseconds {_short(usec)}; "
            f"seconds 0..{MAX_EVENT_SECONDS}, microseconds 0..999999, or -1/-1)"
        )


def check_command(msg: dict) -> None:
    """A command's name."""
    for key in ("execute", "exec-oob"):
        if key in msg and not isinstance(msg[key], str):
            raise ValueError(f"QMP command {key} is {_kind(msg[key])}, expected a string")


def check_greeting(msg: dict) -> None:
    """``{"QMP": {"version": ..., "capabilities": [...]}}``: the QMP member is an object."""
    value = msg.get("QMP")
    if not isinstance(value, dict):
        raise ValueError(f"QMP greeting: QMP is {_kind(value)}, expected an object")
    version = value.get("version")
    if version is not None and not isinstance(version, dict):
        raise ValueError(f"QMP greeting: version is {_kind(version)}, expected an object")


#: The commands whose replies `check_reply` (and `qmp_semantics.reply_fields`) read: a
#: reply to any other command is taken whatever it holds. (Keep in step with `check_reply`.)
CHECKED_REPLIES = ("query-status", "query-block", "query-name", "query-iothreads", "query-cpus-fast", "query-cpus")


def check_reply(name: str | None, ret: Any) -> None:
    """The fields of a successful reply to `name` that the importers read (`CHECKED_REPLIES`)."""
    if name == "query-status" and isinstance(ret, dict):
        _text(ret, "status", "query-status reply: ")
    elif name == "query-block" and isinstance(ret, list):
        for i, info in enumerate(ret):
            if not isinstance(info, dict):
                continue
            inserted = info.get("inserted")
            node = inserted.get("node-name") if isinstance(inserted, dict) else None
            if _all_text(info.get("device"), info.get("qdev"), info.get("io-status"), node):
                continue
            for key in ("device", "qdev", "io-status"):
                _text(info, key, f"query-block reply [{i}]: ")
            _text(inserted, "node-name", f"query-block reply [{i}]: inserted.")
    elif name == "query-name" and isinstance(ret, dict):
        _text(ret, "name", "query-name reply: ")
    elif name in ("query-iothreads", "query-cpus-fast", "query-cpus") and isinstance(ret, list):
        for i, item in enumerate(ret):
            if isinstance(item, dict):
                for key in ("thread-id", "cpu-index", "CPU"):
                    check_int64(item.get(key), f"{name} reply [{i}]: {key}")


def check_int64(value: Any, what: str) -> None:
    """ValueError when `value` is an integer outside int64 (other types are the caller's)."""
    if _is_int(value) and not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{what} {_short(value)} is out of range (int64)")


def _short(value: Any) -> str:
    """An integer as text, cut short when it is absurdly long."""
    if _is_int(value) and abs(value) >= 10**30:
        return f"{'-' if value < 0 else ''}about 2^{value.bit_length() - 1}"
    text = str(value)
    return text[:40]
