"""Which VM each parsed part belongs to.

A libvirt log names its VMs (one part per monitor). A QMP capture or a trace log is one VM's
and rarely says which: it is given by ``--vm``, or found by the events it shares with a VM of
a libvirt log imported with it, or named by a ``query-name`` reply, else `DEFAULT_VM`.
"""

from __future__ import annotations

from collections.abc import Sequence

from analyzer.importers.detect import BASE_FORMAT
from analyzer.importers.merge import part_sort_key
from analyzer.importers.rows import ParsedInput, Part
from tracer.errors import InputError

#: VM name for QMP / trace-log inputs that do not name their VM (no --vm, no query-name).
DEFAULT_VM = "vm0"
#: Formats whose parts name their VM (libvirt's domain name, a command line's ``-name``).
NAMING_FORMATS = frozenset({"libvirt-log", "domain-log", "virsh-events"})


def group_by_vm(parsed: Sequence[ParsedInput], vm: str | None) -> dict[str, list[Part]]:
    """The parts of each VM; QMP and trace-log parts get their ``vm`` set here.

    A libvirt log names its VMs (one per monitor); `vm` keeps only that one. QMP and trace-log
    inputs belong to one VM: `vm` if given, else the libvirt VM they share the most events with
    (the only one, if there is one), else the name a ``query-name`` reply gave, else ``vm0``.
    """
    named: dict[str, list[Part]] = {}
    unnamed: list[Part] = []
    for p in parsed:
        for part in p.parts:
            if BASE_FORMAT.get(p.format, p.format) in NAMING_FORMATS:
                named.setdefault(part.vm or DEFAULT_VM, []).append(part)
            else:
                unnamed.append(part)
    if vm is not None and named:
        if vm not in named:
            found = ", ".join(sorted(named)) or "none"
            raise InputError(f"no VM named {vm!r} in the libvirt log (found: {found})")
        named = {vm: named[vm]}
    if not unnamed:
        return named
    if vm is not None:
        target = vm
    elif len(named) == 1:
        target = next(iter(named))
    elif named:
        target = max(sorted(named), key=lambda name: _shared_events(named[name], unnamed))
    else:
        target = next((part.vm for part in sorted(unnamed, key=part_sort_key) if part.vm), DEFAULT_VM)
    for part in unnamed:
        part.vm = target
    named.setdefault(target, []).extend(unnamed)
    return named


def _shared_events(a: list[Part], b: list[Part]) -> int:
    """How many QMP events (by name and timestamp) the parts `a` and `b` both saw."""
    return len(_events(a) & _events(b))


def _events(parts: list[Part]) -> set[tuple]:
    return {k for part in parts for k in part.rows.sparse["key"].values() if k[0] == "event"}
