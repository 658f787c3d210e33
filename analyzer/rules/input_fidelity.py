"""What an imported input could not show faithfully (docs/rules.md §3: event-names-unknown,
qom-path-swapped).

These are warnings about the input, not about QEMU's error path: the importer marks what it
could not read as it was meant (`analyzer.importers.qapi_events.unnamed`,
`analyzer.importers.qmp_semantics.SWAPPED_MARKER`, both `qmp_event` rows whose name starts
with ``#``, which no QAPI event name does) and these rules say so once per VM, so that a user
knows why other rules stayed silent or how a device was named. The simulator writes the
same marker after each event of its 9.2.0 swap variant (`qom-path-swap`).
"""

from __future__ import annotations

import numpy as np

from analyzer.importers.qapi_events import UNNAMED_PREFIX
from analyzer.importers.qmp_semantics import SWAPPED_MARKER
from analyzer.result import Finding, RuleInfo
from analyzer.rules.evidence import findings
from analyzer.rules.rule import Rule, decides
from analyzer.steps import NULL, K, Steps

#: Evidence rows listed per finding (the first ones of the VM).
_EVIDENCE = 3


def _marked(s: Steps, test) -> np.ndarray:
    """Mask of the qmp_event rows whose name passes `test`."""
    codes = np.array([i for i, name in enumerate(s.names) if test(name)], dtype=np.int64)
    return (s.kind == K["qmp_event"]) & np.isin(s.name, codes)


def _first_per_vm(s: Steps, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first `mask` row of each VM, and how many such rows the VM has."""
    rows = np.flatnonzero(mask)
    if not len(rows):
        return rows, rows
    _, first, counts = np.unique(s.vm[rows], return_index=True, return_counts=True)
    return rows[first], counts


def _unnamed(name: str) -> bool:
    return name.startswith(UNNAMED_PREFIX) and name[len(UNNAMED_PREFIX):].isdigit()


@decides(Rule(
    id="event-names-unknown",
    severity="warning",
    guarantee="input",
    title="every QMP event of a trace log is named",
    explanation=(
        "A QEMU trace log enabled with monitor_protocol_event_* but not monitor_qmp_respond "
        "has event numbers only, and the numbers change between QEMU versions. Without a known "
        "version (query-version, the greeting) they cannot be named, so STOP, RESUME and "
        "BLOCK_IO_ERROR are not told apart and the rules that need them are not judged on "
        "these events."
    ),
    needs=("qmp_event",),
))
def event_names_unknown(s: Steps, rule: RuleInfo) -> list[Finding]:
    """One warning per VM with events that stayed numbers."""
    mask = _marked(s, _unnamed)
    first, counts = _first_per_vm(s, mask)
    rows = np.flatnonzero(mask)
    evidence = [np.full(len(first), NULL, dtype=np.int64) for _ in range(_EVIDENCE)]
    numbers: list[str] = []
    for k, r in enumerate(first):
        mine = rows[s.vm[rows] == s.vm[r]]
        for j in range(min(_EVIDENCE, len(mine))):
            evidence[j][k] = mine[j]
        found = sorted({int(s.names[c][len(UNNAMED_PREFIX):]) for c in np.unique(s.name[mine])})
        numbers.append(", ".join(str(n) for n in found))

    def message(k: int, _: list[int]) -> str:
        n = int(counts[k])
        return (
            f"{n} event{'s' if n != 1 else ''} of this trace log {'are' if n != 1 else 'is'} "
            f"numbers only (QAPIEvent {numbers[k]}) and the QEMU version is unknown, so they "
            f"cannot be named: STOP, RESUME and BLOCK_IO_ERROR were not judged from them. "
            f"Trace monitor_qmp_respond too, or keep query-version in the trace"
        )

    return findings(s, rule, evidence, device=np.full(len(first), NULL), error_id=None,
                    message=message)


@decides(Rule(
    id="qom-path-swapped",
    severity="warning",
    guarantee="input",
    title="BLOCK_IO_ERROR names its drive in device and its QOM path in qom-path",
    explanation=(
        "QEMU 9.2.0 sends BLOCK_IO_ERROR with device and qom-path swapped (the QOM path in "
        "device): a real QEMU bug, fixed in 10.0 (107c551de0), that breaks libvirt's matching "
        "of the event to its disk and puts every -blockdev disk of a VM into one throttle "
        "bucket. blkreplay reads the fields swapped back."
    ),
    needs=("qmp_event",),
))
def qom_path_swapped(s: Steps, rule: RuleInfo) -> list[Finding]:
    """One warning per VM whose BLOCK_IO_ERRORs came with device and qom-path swapped."""
    first, counts = _first_per_vm(s, _marked(s, lambda name: name == SWAPPED_MARKER))
    # The BLOCK_IO_ERROR the marker follows (same input line, just before it); with error ids
    # (the simulator) the one of the marker's error, which `Steps.raised` judges at its raise.
    event = np.where(first > 0, first - 1, NULL) if len(first) else first
    if len(first):
        own = s.by_eid(s.event("BLOCK_IO_ERROR")).first(s.vm[first], s.eid[first], s.has_eid[first])
        event = np.where(own >= 0, own, event)

    def message(k: int, _: list[int]) -> str:
        n = int(counts[k])
        more = f" (and {n - 1} more)" if n > 1 else ""
        device = s.text("device", int(first[k])) or "?"
        shown = event[k] if event[k] >= 0 else first[k]
        return (
            f"BLOCK_IO_ERROR at seq {int(s.seq[shown])}{more} carried the QOM path in "
            f"'device' and the drive name in 'qom-path' (QEMU 9.2.0's swapped fields, fixed in "
            f"10.0): read as device '{device}'. libvirt matches disks by these fields and "
            f"misses such events"
        )

    return findings(s, rule, [event, first], device=s.device[first], error_id=None,
                    message=message)
