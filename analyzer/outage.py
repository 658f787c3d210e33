"""Incidents: many VMs pausing on I/O errors together, the unit an SRE reports an outage in.

A storage outage does not pause one VM: it pauses every VM on the failing backend, on many
hosts, within seconds. Per-VM findings cannot show that; an *incident* groups the io-error
pauses of the fleet that start within a window of each other into one result with its window
(UTC), VMs, hosts, devices, errnos and how long the VMs stayed paused.

This module holds the result type every layer shares (check, report, exports); finding the
incidents is `find_incidents`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Incident:
    """Correlated io-error pauses across the fleet (sorted, deterministic fields)."""

    #: 1-based, in order of `start_ns`.
    id: int
    #: First and last io-error pause start (BLOCK_IO_ERROR / STOP) of the incident, ns.
    start_ns: int
    end_ns: int
    #: (host, vm) of every VM paused in it, sorted; host is None where the trace has none.
    vms: tuple[tuple[str | None, str], ...]
    hosts: tuple[str, ...]
    devices: tuple[str, ...]
    errnos: tuple[int, ...]
    #: Error episodes (io-error pauses) it groups.
    episodes: int
    #: Time paused (STOP -> RESUME, ns) over its episodes that resumed; None when none did.
    paused_p50_ns: int | None
    paused_p95_ns: int | None
    paused_max_ns: int | None
    #: Episodes still paused at the end of the trace.
    still_paused: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "vms": [{"host": h, "vm": v} for h, v in self.vms],
            "hosts": list(self.hosts),
            "devices": list(self.devices),
            "errnos": list(self.errnos),
            "episodes": self.episodes,
            "paused_p50_ns": self.paused_p50_ns,
            "paused_p95_ns": self.paused_p95_ns,
            "paused_max_ns": self.paused_max_ns,
            "still_paused": self.still_paused,
        }
