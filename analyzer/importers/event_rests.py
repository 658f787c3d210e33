"""QMP events read from what follows their timestamp, parsed once per distinct rest.

QEMU writes every event as ``{"timestamp": {"seconds": S, "microseconds": U}, REST`` (its
``qmp_dispatch``/``monitor_qapi_event_emit`` formatting, which a trace log's
``monitor_qmp_respond`` and libvirt's ``QEMU_MONITOR_RECV_EVENT`` show as sent). The timestamp
makes every event's text new, so a message cache keyed on the text never hits, yet the REST
(``"event": "STOP"}``, a ``BLOCK_IO_ERROR``'s device and reason) repeats. `EventRests` parses
the first event of each rest in full, judges it (`qmp_types.check_event`) and keeps what it
means (`EventMeaning`); every later event of that rest costs two string searches and its
timestamp's check (`qmp_types.check_event_time`), which is all that differs.

Only the exact shape is read so: seconds and microseconds as plain JSON integers (no sign,
no leading zero), nothing else in the timestamp, an event name that is a string. Anything
else (``-1``/``-1``, a duplicate key, a bad rest) is None here and the caller parses the
message itself, as it did before: it says what is wrong. At most `LIMIT` rests are kept.
"""

from __future__ import annotations

from typing import Any

from analyzer.importers.json_scan import parse_json
from analyzer.importers.qmp_semantics import EventMeaning, message_type
from analyzer.importers.qmp_types import check_event

#: How an event's text starts, and the member between its seconds and microseconds.
STAMP_OPEN = '{"timestamp": {"seconds": '
_USEC = ', "microseconds": '
_MISSING = object()


def _plain_int(text: str) -> bool:
    return text.isdigit() and text.isascii() and len(text) <= 16 and (text[0] != "0" or len(text) == 1)


class EventRests:
    """What the events of each rest mean (see the module docstring)."""

    LIMIT = 4096

    def __init__(self) -> None:
        self._meanings: dict[str, EventMeaning | None] = {}

    def read(self, text: str) -> tuple[EventMeaning, int, int] | None:
        """(meaning, seconds, microseconds) of the event `text` (stripped, as sent), or None
        when it is not in the shape read here (the caller then parses it)."""
        if not text.startswith(STAMP_OPEN):
            return None
        comma = text.find(_USEC, len(STAMP_OPEN))
        close = text.find("}, ", comma + len(_USEC)) if comma > 0 else -1
        if close < 0:
            return None
        seconds, micros = text[len(STAMP_OPEN) : comma], text[comma + len(_USEC) : close]
        if not (_plain_int(seconds) and _plain_int(micros)):
            return None
        rest = text[close + 3 :]
        meaning = self._meanings.get(rest, _MISSING)
        if meaning is _MISSING:
            meaning = _meaning(text, rest, int(seconds), int(micros))
            if len(self._meanings) >= self.LIMIT:
                self._meanings.clear()
            self._meanings[rest] = meaning
        if meaning is None:
            return None
        return meaning, int(seconds), int(micros)  # type: ignore[return-value]


def _meaning(text: str, rest: str, seconds: int, micros: int) -> EventMeaning | None:
    """What the event `text` means, if it is a valid event whose whole timestamp is this one
    and whose `rest` names no timestamp of its own (a duplicate key, which would win over any
    other timestamp before the same rest), so that any other timestamp means the same."""
    try:
        if "timestamp" in parse_json("{" + rest):
            return None
        msg: Any = parse_json(text)
        if message_type(msg) != "event" or not isinstance(msg.get("event"), str):
            return None
        if msg.get("timestamp") != {"seconds": seconds, "microseconds": micros} or len(msg["timestamp"]) != 2:
            return None
        check_event(msg)
    except ValueError:
        return None
    return EventMeaning.of(msg)


__all__ = ["STAMP_OPEN", "EventRests"]
