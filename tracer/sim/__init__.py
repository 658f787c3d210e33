"""The instrumented model of QEMU's block dataplane: the "record" half of blkreplay.

A VM with QEMU's run-state machine, a main loop holding the big lock, vCPUs issuing guest I/O,
iothreads completing it, block devices with rerror/werror policies and a sticky iostatus, fault
injection, and a libvirt-like management client, all recording schema-v1 steps. Two modes:
``sim`` (deterministic discrete-event simulation, virtual clock, seeded scheduler; writes
``truth.json``) and ``threads`` (real OS threads and clock).

Public API::

    from tracer.sim import SimConfig, load_scenario, record, VARIANTS
"""

from tracer.sim.config import FaultRule, SimConfig, load_scenario
from tracer.sim.recording import RecordSummary, record
from tracer.sim.variants import VARIANTS

__all__ = ["VARIANTS", "FaultRule", "RecordSummary", "SimConfig", "load_scenario", "record"]
