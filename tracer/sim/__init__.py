"""The instrumented model of QEMU's block dataplane: the "record" half of blkreplay.

A VM with QEMU's run-state machine, a main loop holding the big lock, vCPUs issuing guest I/O,
iothreads completing it, block devices with rerror/werror policies and a sticky iostatus, fault
injection, and a libvirt-like management client, all recording schema-v1 steps. Two modes:
``sim`` (deterministic discrete-event simulation, virtual clock, seeded scheduler; writes
``truth.json``) and ``threads`` (real OS threads and clock). The QEMU release it follows is a
setting (``qemu``: 7.2, or 9.2 / 10.0 with BLOCK_IO_ERROR throttled per qom-path).

Public API::

    from tracer.sim import SimConfig, load_scenario, record, VARIANTS

Modules, each importing only those above it:

- :mod:`~tracer.sim.variants`, :mod:`~tracer.sim.config`, :mod:`~tracer.sim.faults`: what a run
  is (the defect variants, SimConfig and scenario files, fault injection);
- :mod:`~tracer.sim.sim_thread`: a model thread (a generator body), what it waits for, locks;
- :mod:`~tracer.sim.throttle`: QEMU >= 9.2's rate limit on BLOCK_IO_ERROR (windows, held events);
- :mod:`~tracer.sim.vm`: one QEMU process's state (devices, run state, QMP monitor);
- :mod:`~tracer.sim.error_path`, :mod:`~tracer.sim.guest_io`, :mod:`~tracer.sim.main_loop`,
  :mod:`~tracer.sim.management`: what each thread does (a failed completion; vCPUs and
  iothreads; the main loop and QMP commands; the libvirt-like client);
- :mod:`~tracer.sim.launch`: a VM with a body started on each thread;
- :mod:`~tracer.sim.scheduler` (sim mode) and :mod:`~tracer.sim.realtime` (threads mode): what
  runs the threads;
- :mod:`~tracer.sim.truth`: ground truth from the model's facts;
- :mod:`~tracer.sim.recording`: :func:`record`, the entry point tying them together.
"""

from tracer.sim.config import FaultRule, SimConfig, load_scenario
from tracer.sim.recording import RecordSummary, record
from tracer.sim.variants import VARIANTS

__all__ = ["VARIANTS", "FaultRule", "RecordSummary", "SimConfig", "load_scenario", "record"]
