"""Launching a VM: build its state and start one body on each of its threads.

This is the only module that knows every thread body; :mod:`tracer.sim.scheduler` (virtual time)
and :mod:`tracer.sim.realtime` (OS threads) run what it returns.
"""

from __future__ import annotations

from tracer.recorder import Recorder
from tracer.sim.config import SimConfig
from tracer.sim.guest_io import iothread_body, vcpu_body
from tracer.sim.main_loop import main_body
from tracer.sim.management import Mgmt, mgmt_body
from tracer.sim.vm import VM


def launch_vm(cfg: SimConfig, index: int, rec: Recorder) -> VM:
    """VM number `index` of the run `cfg`, recording into `rec`, its threads ready to run."""
    vm = VM(cfg, index, rec)
    client = Mgmt(vm, vm.mgmt_thread)
    vm.main.start(main_body(vm, vm.main))
    for th in vm.iothreads:
        th.start(iothread_body(vm, th))
    for th in vm.vcpus:
        th.start(vcpu_body(vm, th))
    vm.mgmt_thread.start(mgmt_body(vm, vm.mgmt_thread, client))
    return vm
