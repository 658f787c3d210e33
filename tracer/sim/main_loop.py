"""The main loop, with the BQL: QMP commands, main-loop devices, the vmstop request, shutdown.

Each turn dispatches one thing under the BQL (a QMP command from the :class:`~tracer.sim.vm.Monitor`,
else the shutdown at the end of the run, else a due completion of a device without an iothread),
then, like QEMU's ``main_loop_should_exit()``, consumes a pending vmstop request: ``vm_stop``
(io-error) on the main loop. The QMP command handlers (``qmp_cont``, ``qmp_stop``, the queries)
run here too, each a piece of the main loop's body.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tracer.sim.error_path import send_event
from tracer.sim.guest_io import complete_due
from tracer.sim.sim_thread import DONE, IDLE, SimThread, ThreadBody
from tracer.sim.vm import VM


def main_body(vm: VM, th: SimThread) -> ThreadBody:
    """The main loop, with the BQL: QMP commands, main-loop devices, then the vmstop request."""
    vm.event(th, "RESUME", None)
    vm.set_runstate(th, "running", None)
    yield 0
    heap = th.heap
    cmds = vm.monitor.commands
    bql = vm.bql
    lock = vm.vmstop_lock
    while True:
        did = False
        if cmds or (heap and heap[0][0] <= vm.now) or vm.shutdown_requested or vm.timer_due():
            while bql.owner is not None and bql.owner is not th:
                yield bql
            bql.owner = th
            if cmds:
                name, cmd_seq = cmds.popleft()
                yield from COMMANDS[name](vm, th, cmd_seq)
            elif vm.shutdown_requested:
                _shutdown(vm, th)
                yield DONE
                return
            elif vm.timer_due():
                _event_timer(vm, th)
            else:
                yield from complete_due(vm, th)
            bql.release(vm.now)
            did = True
        # main_loop_should_exit(): the vmstop request is checked after dispatching.
        if vm.slot is not None:
            if did:
                yield 0
            while lock.owner is not None:
                yield lock
            while bql.owner is not None and bql.owner is not th:
                yield bql
            if vm.slot is not None:
                _consume(vm, th)
        if (cmds or vm.slot is not None or vm.shutdown_requested or (heap and heap[0][0] <= vm.now)
                or vm.timer_due()):
            yield 0
        else:
            th.idle = True
            yield IDLE
            th.idle = False


def _consume(vm: VM, th: SimThread) -> None:
    """qemu_vmstop_requested() + vm_stop(io-error) on the main loop."""
    X = vm.slot
    vm.slot = None
    seq = th.emit("vm_stop", ts_ns=vm.now, runstate="io-error", error_id=X)
    vm.facts.append(("vm_stop", seq, X, th.kind))
    if vm.runstate == "running":
        vm.set_runstate(th, "io-error", X)
        vm.event(th, "STOP", X)


def _event_timer(vm: VM, th: SimThread) -> None:
    """monitor_qapi_event_handler: a throttle window's timer fired on the main loop; the event
    it held (if any) reaches the wire now, with its original timestamp."""
    assert vm.throttle is not None
    fired = vm.throttle.fire(vm.now)
    if fired is not None and fired[1] is not None:
        send_event(vm, th, fired[1])


def _shutdown(vm: VM, th: SimThread) -> None:
    """End of the run: `quit` from the host (SHUTDOWN, then running -> shutdown). Events still
    held by the throttle are never sent."""
    payload = '{"guest": false, "reason": "host-qmp-quit"}'
    if vm.throttle is None:
        th.emit("qmp_event", ts_ns=vm.now, name="SHUTDOWN", payload=payload)
    else:
        th.emit("qmp_event", ts_ns=vm.now, name="SHUTDOWN", payload=payload, event_ts_ns=vm.now)
    if vm.runstate == "running":
        vm.set_runstate(th, "shutdown", None)
    vm.done = True


# ---------------------------------------------------------------------- QMP commands


def _reply(vm: VM, th: SimThread, name: str, cmd_seq: int, **columns: Any) -> int:
    return th.emit("qmp_reply", ts_ns=vm.now, name=name, cmd_seq=cmd_seq, **columns)


def cmd_cont(vm: VM, th: SimThread, cmd_seq: int) -> ThreadBody:
    """qmp_cont: reset every iostatus, then vm_start (which consumes a pending request)."""
    lock = vm.vmstop_lock
    # vm_start takes vmstop_lock; the model takes it before the reset so that the reset and
    # the consumption are one atomic unit (see the variants module docstring).
    while lock.owner is not None:
        yield lock
    beh = vm.variant.cont
    now = vm.now
    if beh.reset_iostatus:
        for dev in vm.enabled_devices:
            dev.iostatus = "ok"
            seq = th.emit("iostatus_reset", device=dev.name, ts_ns=now, iostatus="ok")
            vm.facts.append(("reset", seq, dev.name))
    X = vm.slot
    vm.slot = None
    seq = th.emit("vm_start", ts_ns=now, error_id=X)
    vm.facts.append(("vm_start", seq, X))
    if vm.runstate == "running":
        if X is not None and beh.stop_resume_pair:
            vm.event(th, "STOP", X)
            vm.event(th, "RESUME", X)
    else:
        resume_ns = int(vm.cfg.vcpu_resume_us * 1000)
        if beh.resume_before_retry:
            vm.event(th, "RESUME", None)
            vm.set_runstate(th, "running", None)
            vm.kick_retries()
            yield resume_ns
        else:
            vm.set_runstate(th, "running", None)
            vm.kick_retries()
            yield resume_ns
            vm.event(th, "RESUME", None)
    yield 0
    seq = _reply(vm, th, "cont", cmd_seq)
    vm.facts.append(("cont_reply", seq, cmd_seq))
    vm.monitor.replied()


def cmd_stop(vm: VM, th: SimThread, cmd_seq: int) -> ThreadBody:
    """qmp_stop: vm_stop(paused) on the main loop (nothing changes if already stopped)."""
    seq = th.emit("vm_stop", ts_ns=vm.now, runstate="paused")
    vm.facts.append(("vm_stop", seq, None, th.kind))
    if vm.runstate == "running":
        vm.set_runstate(th, "paused", None)
        vm.event(th, "STOP", None)
    yield 0
    _reply(vm, th, "stop", cmd_seq)
    vm.monitor.replied()


def cmd_query_block(vm: VM, th: SimThread, cmd_seq: int) -> ThreadBody:
    """query-block: one reply row per device, read atomically with the state."""
    for dev in vm.devices:
        status = dev.iostatus if dev.iostatus_enabled else None
        seq = _reply(vm, th, "query-block", cmd_seq, device=dev.name, iostatus=status)
        vm.facts.append(("qb_reply", seq, cmd_seq, dev.name, status))
    vm.monitor.replied()
    return
    yield  # a generator like every command


def cmd_query_status(vm: VM, th: SimThread, cmd_seq: int) -> ThreadBody:
    state = vm.runstate
    payload = json.dumps({"running": state == "running", "status": state})
    seq = _reply(vm, th, "query-status", cmd_seq, runstate=state, payload=payload)
    vm.facts.append(("qs_reply", seq, cmd_seq, state, vm.all_iostatus_ok()))
    vm.monitor.replied()
    return
    yield


COMMANDS: dict[str, Callable[[VM, SimThread, int], ThreadBody]] = {
    "cont": cmd_cont,
    "stop": cmd_stop,
    "query-block": cmd_query_block,
    "query-status": cmd_query_status,
}
