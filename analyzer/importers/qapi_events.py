"""QAPI event numbers: what ``monitor_protocol_event_queue event=N`` means in a given QEMU.

``N`` is the index of the event in the generated ``QAPIEvent`` enum, which follows the order
events are defined in QEMU's QAPI schema; adding an event anywhere renumbers the ones after
it, so the numbers are not stable across versions. A trace log is therefore read with, in
order of preference:

1. the numbers learnt from the same trace, where ``monitor_qmp_respond`` shows the JSON of the
   event a ``monitor_protocol_event_queue``/``_emit`` pair queued (`EventNumbers.learn`);
2. a table for the QEMU version (from the QMP greeting or ``query-version``), holding only
   numbers verified on a real build of that version;
3. nothing: an event whose number stays unknown is kept as a ``trace_event`` row, never
   guessed into a ``qmp_event`` (a wrong name would make false findings).
"""

from __future__ import annotations

#: Verified event numbers per QEMU version ("major.minor"). 7.2: Debian 7.2.22, the real
#: captures in shared/samples/qemu-7.2 (queue/emit lines paired with monitor_qmp_respond).
TABLES: dict[str, dict[int, str]] = {
    "7.2": {0: "SHUTDOWN", 3: "STOP", 4: "RESUME", 15: "BLOCK_IO_ERROR"},
}


class EventNumbers:
    """Event number -> name for one trace: learnt pairs first, then the version's table."""

    def __init__(self, version: str | None = None) -> None:
        #: The QEMU series ("major.minor", `tracer.qemu.QemuVersion.series`) whose table applies.
        self.version = version
        self.learnt: dict[int, str] = {}
        self._conflicts: set[int] = set()

    def learn(self, number: int, name: str) -> None:
        """Record that `number` was `name` in this trace (a conflicting pair voids the number)."""
        known = self.learnt.get(number)
        if known is None and number not in self._conflicts:
            self.learnt[number] = name
        elif known is not None and known != name:
            del self.learnt[number]
            self._conflicts.add(number)

    def name(self, number: int) -> str | None:
        if number in self._conflicts:
            return None
        if number in self.learnt:
            return self.learnt[number]
        return TABLES.get(self.version or "", {}).get(number)
