"""QAPI event numbers: what ``monitor_protocol_event_queue event=N`` means in a given QEMU.

``N`` is the index of the event in the generated ``QAPIEvent`` enum. QEMU's QAPI generator
(scripts/qapi) visits the schema module by module, in the order the modules are first
included starting from ``qapi/qapi-schema.json`` (a module included from inside another, like
``block-core.json`` from ``block.json``, comes right after the module that includes it), and
within a module in definition order; ``QAPIEvent`` and the ``query-qmp-schema`` introspection
both follow that visit. Adding an event anywhere, or moving an include, renumbers the events
after it, so the numbers are not stable across versions. A trace log is therefore read with,
in order of preference:

1. the numbers learnt from the same trace, where ``monitor_qmp_respond`` shows the JSON of the
   event a ``monitor_protocol_event_queue``/``_emit`` pair queued (`EventNumbers.learn`);
2. the table of the QEMU series (from the QMP greeting or ``query-version``: `TABLES`);
3. nothing: an event whose number stays unknown is never guessed into a named event (a wrong
   name would make false findings); the importer keeps it as an unnamed event (`unnamed`).

How the tables were made (and checked). For each release the event order was read from the
``query-qmp-schema`` reply of that release's x86_64 build (libvirt's
``tests/qemucapabilitiesdata/caps_<X.Y.0>_x86_64.replies``, whose ``query-version`` reply says
``"package": "v<X.Y.0>"``, the QEMU git tag), counting ``"meta-type": "event"`` entries; the
order matches QEMU's ``qapi/qapi-schema.json`` include order of that tag (``job.json``
included ahead of ``block.json`` since 8.1; before, ``job.json`` came in through
``block-core.json``) and ``qapi/run-state.json`` (``GUEST_PVSHUTDOWN``, "Since: 9.1", after
``GUEST_CRASHLOADED``). The method reproduces the numbers seen in real traces: 7.2.22
(shared/samples/qemu-7.2: SHUTDOWN 0, STOP 3, RESUME 4, BLOCK_IO_ERROR 15) and 10.0.2
(shared/samples/qemu-10.0: BLOCK_IO_ERROR 17), queue/emit lines paired with
``monitor_qmp_respond``. Only the head of the enum is listed: the events of
``run-state.json``, ``job.json``, ``block.json`` and ``block-core.json``, none of which is
conditional; later modules hold events that exist only in some builds (``'if':
'CONFIG_SPICE'``, target conditions), whose numbers depend on the build.
"""

from __future__ import annotations

#: qapi/run-state.json before 9.1.
_RUN_STATE = (
    "SHUTDOWN", "POWERDOWN", "RESET", "STOP", "RESUME", "SUSPEND", "SUSPEND_DISK", "WAKEUP",
    "WATCHDOG", "GUEST_PANICKED", "GUEST_CRASHLOADED", "MEMORY_FAILURE",
)
#: qapi/run-state.json since 9.1 (GUEST_PVSHUTDOWN, "Since: 9.1").
_RUN_STATE_9_1 = (*_RUN_STATE[:11], "GUEST_PVSHUTDOWN", "MEMORY_FAILURE")
_JOB = ("JOB_STATUS_CHANGE",)
_BLOCK = ("DEVICE_TRAY_MOVED", "PR_MANAGER_STATUS_CHANGED")
_BLOCK_CORE = (
    "BLOCK_IMAGE_CORRUPTED", "BLOCK_IO_ERROR", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED",
    "BLOCK_JOB_ERROR", "BLOCK_JOB_READY", "BLOCK_JOB_PENDING", "BLOCK_WRITE_THRESHOLD",
    "QUORUM_FAILURE", "QUORUM_REPORT_BAD",
)


def _numbered(*modules: tuple[str, ...]) -> dict[int, str]:
    return dict(enumerate(name for module in modules for name in module))


#: QEMU <= 8.0: job.json is included from block-core.json, so it follows block-core.
_UNTIL_8_0 = _numbered(_RUN_STATE, _BLOCK, _BLOCK_CORE, _JOB)
#: 8.1 - 9.0: job.json included from qapi-schema.json ahead of block.json.
_FROM_8_1 = _numbered(_RUN_STATE, _JOB, _BLOCK, _BLOCK_CORE)
#: 9.1 and later: GUEST_PVSHUTDOWN in run-state.json.
_FROM_9_1 = _numbered(_RUN_STATE_9_1, _JOB, _BLOCK, _BLOCK_CORE)

#: Event number -> name per QEMU series ("major.minor"), from each release tag (module doc):
#: v7.2.0, v8.0.0, v8.1.0, v8.2.0, v9.0.0, v9.1.0 (libvirt's capture is v9.1.0-rc0-121-g75c7f57403;
#: the event list was frozen by then), v9.2.0, v10.0.0, v10.1.0.
TABLES: dict[str, dict[int, str]] = {
    "7.2": _UNTIL_8_0,
    "8.0": _UNTIL_8_0,
    "8.1": _FROM_8_1,
    "8.2": _FROM_8_1,
    "9.0": _FROM_8_1,
    "9.1": _FROM_9_1,
    "9.2": _FROM_9_1,
    "10.0": _FROM_9_1,
    "10.1": _FROM_9_1,
}

#: Name of a queued event whose number could not be named: ``#17`` (a `qmp_event` row; no
#: QAPI event name starts with ``#``).
UNNAMED_PREFIX = "#"


def unnamed(number: int) -> str:
    """The row name of an event that stayed a number (see `UNNAMED_PREFIX`)."""
    return f"{UNNAMED_PREFIX}{number}"


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

    @property
    def has_table(self) -> bool:
        """Whether the version is known and has a table."""
        return (self.version or "") in TABLES

    def name(self, number: int) -> str | None:
        if number in self._conflicts:
            return None
        if number in self.learnt:
            return self.learnt[number]
        return TABLES.get(self.version or "", {}).get(number)
