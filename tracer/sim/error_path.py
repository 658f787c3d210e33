"""The error path: what the thread whose request failed does (QEMU's ``blk_error_action``).

A failed completion records ``io_complete`` and ``error_action``. With action ``stop`` the request
is parked and the variant's stop path runs: its atomic units in order (:mod:`tracer.sim.variants`
names their steps), with a scheduling point before each so that other threads can run between
them. Other actions just emit BLOCK_IO_ERROR.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tracer import qemu
from tracer.sim.sim_thread import SimThread, ThreadBody, wake
from tracer.sim.throttle import Held, throttle_key
from tracer.sim.variants import VARIANT_TABLE, Variant
from tracer.sim.vm import OP_NAMES, VM, Device

#: The row that marks a BLOCK_IO_ERROR sent with QEMU 9.2.0's swapped device / qom-path, as the
#: importer writes it (`analyzer.importers.qmp_semantics.SWAPPED_MARKER`; tracer cannot import
#: analyzer).
SWAPPED_MARKER = "#qom-path-swapped"

#: BLOCK_IO_ERROR's `operation` (a flush fails as a write in virtio-blk).
QMP_OPERATION = ("read", "write", "write")

Step = Callable[[VM, SimThread, Device, int, int, int], None]


def error_path(vm: VM, th: SimThread, dev: Device, rid: int, op: int, errno: int) -> ThreadBody:
    """A failed completion on `th`: blk_error_action and what follows, per the variant."""
    E = vm.next_error
    vm.next_error = E + 1
    vm.errors += 1
    policy = dev.policy[op]
    action = qemu.action_for(policy, errno)
    now = vm.now
    emit = th.emit
    opname = OP_NAMES[op]
    emit("io_complete", device=dev.name, req_id=rid, op=opname, ts_ns=now, errno=errno)
    seq = emit("error_action", device=dev.name, req_id=rid, op=opname, ts_ns=now, errno=errno,
               policy=policy, action=action, error_id=E)
    vm.facts.append(("error_action", seq, E, dev.name, opname, errno, policy, action))
    if action != "stop":
        _event(vm, th, dev, op, errno, E, action)
        return
    dev.parked.append((rid, op, th))
    for needs_lock, needs_bql, steps in STOP_PATHS[vm.variant.name]:
        yield 0
        if needs_lock:
            lock = vm.vmstop_lock
            while lock.owner is not None:
                yield lock
        if needs_bql:
            bql = vm.bql
            while bql.owner is not None and bql.owner is not th:
                yield bql
        for step in steps:
            step(vm, th, dev, op, errno, E)


def _iostatus_set(vm: VM, th: SimThread, dev: Device, op: int, errno: int, E: int) -> None:
    before = dev.iostatus
    if before == "ok":
        dev.iostatus = qemu.iostatus_for(errno)
    seq = th.emit("iostatus_set", device=dev.name, ts_ns=vm.now, iostatus=dev.iostatus, error_id=E)
    vm.facts.append(("iostatus_set", seq, E, dev.name, before, dev.iostatus, errno))


def _vmstop_prepare(vm: VM, th: SimThread, dev: Device, op: int, errno: int, E: int) -> None:
    vm.vmstop_lock.owner = th
    th.emit("vmstop_prepare", ts_ns=vm.now, error_id=E)


def _event(vm: VM, th: SimThread, dev: Device, op: int, errno: int, E: int, action: str = "stop") -> None:
    if vm.throttle is not None:
        _raise_throttled(vm, th, dev, op, errno, E, action)
        return
    data: dict[str, Any] = {
        "qom-path": dev.qom_path,
        "device": dev.name,
        "node-name": f"node-{dev.name}",
        "operation": QMP_OPERATION[op],
        "action": action,
    }
    if dev.iostatus_enabled:
        data["nospace"] = errno == qemu.ENOSPC
    data["reason"] = qemu.errno_reason(errno)
    seq = th.emit("qmp_event", device=dev.name, op=QMP_OPERATION[op], ts_ns=vm.now, name="BLOCK_IO_ERROR",
                  errno=errno, action=action, error_id=E, payload=json.dumps(data))
    vm.facts.append(("bie", seq, E, dev.name, action, vm.runstate == "running"))
    vm.monitor.deliver("BLOCK_IO_ERROR", action)


def event_data(vm: VM, dev: Device, op: int, errno: int, action: str) -> dict[str, Any]:
    """BLOCK_IO_ERROR's data as QEMU >= 9.2 sends it (field order of a real 10.0.2 capture).

    `device` is the drive name ("" with -blockdev); 9.2.0 (variant `qom-path-swap`) swaps it
    with `qom-path`."""
    drive = "" if vm.cfg.blockdev else dev.name
    device, qom_path = (dev.qom_path, drive) if vm.variant.swap_qom_path else (drive, dev.qom_path)
    data: dict[str, Any] = {"device": device}
    if dev.iostatus_enabled:
        data["nospace"] = errno == qemu.ENOSPC
    data["node-name"] = f"node-{dev.name}"
    data["qom-path"] = qom_path
    data["reason"] = qemu.errno_reason(errno)
    data["operation"] = QMP_OPERATION[op]
    data["action"] = action
    return data


def _raise_throttled(vm: VM, th: SimThread, dev: Device, op: int, errno: int, E: int, action: str) -> None:
    """QEMU >= 9.2: raise BLOCK_IO_ERROR through the rate limit (:mod:`tracer.sim.throttle`).

    The raise is recorded where QEMU's trace log shows it, on the raising thread: a
    ``trace_event`` row ``monitor_protocol_event_queue`` with the event's columns. If no window
    is open the ``qmp_event`` row follows at once (same unit, same thread); otherwise the event
    is held and the main loop sends it when the window's timer fires (or never, if a newer one
    replaces it or QEMU quits first)."""
    now = vm.now
    data = event_data(vm, dev, op, errno, action)
    qop = QMP_OPERATION[op]
    qseq = th.emit("trace_event", device=dev.name, op=qop, ts_ns=now, name="monitor_protocol_event_queue",
                   errno=errno, action=action, error_id=E, payload=vm.queue_payload)
    vm.facts.append(("bie", qseq, E, dev.name, action, vm.runstate == "running"))
    held = Held(E, dev.name, qop, errno, action, json.dumps(data), now, qseq)
    assert vm.throttle is not None
    send, replaced = vm.throttle.offer(throttle_key(data), now, held)
    if replaced is not None:
        vm.facts.append(("bie_replaced", qseq, replaced.error_id))
    if send:
        send_event(vm, th, held)
    else:
        vm.facts.append(("bie_held", qseq, E))


def send_event(vm: VM, th: SimThread, ev: Held) -> None:
    """A BLOCK_IO_ERROR reaches the wire (monitor_qapi_event_emit) on `th`, with the QMP
    timestamp it was raised with."""
    seq = th.emit("qmp_event", device=ev.device, op=ev.op, ts_ns=vm.now, name="BLOCK_IO_ERROR",
                  errno=ev.errno, action=ev.action, error_id=ev.error_id, payload=ev.payload,
                  event_ts_ns=ev.raised_ns)
    vm.facts.append(("bie_sent", seq, ev.error_id, ev.device, vm.variant.swap_qom_path))
    if vm.variant.swap_qom_path:
        # The row's `device` is the drive, read swapped back as an importer reads 9.2.0's
        # fields; like the importer, mark it for `qom-path-swapped` (docs/rules.md §3).
        th.emit("qmp_event", device=ev.device, ts_ns=vm.now, name=SWAPPED_MARKER,
                error_id=ev.error_id, payload=ev.payload, event_ts_ns=ev.raised_ns)
    vm.monitor.deliver("BLOCK_IO_ERROR", ev.action)


def _vmstop_request(vm: VM, th: SimThread, dev: Device, op: int, errno: int, E: int) -> None:
    vm.slot = E
    seq = th.emit("vmstop_request", ts_ns=vm.now, runstate="io-error", error_id=E)
    vm.facts.append(("request", seq, E))
    if vm.vmstop_lock.owner is th:
        vm.vmstop_lock.release(vm.now)
    wake(vm.main, vm.now)


def _sync_vm_stop(vm: VM, th: SimThread, dev: Device, op: int, errno: int, E: int) -> None:
    """Pre-2bd3bce8: vm_stop(io-error) called by the failing thread itself, under the BQL."""
    bql = vm.bql
    took = bql.owner is None
    bql.owner = th
    seq = th.emit("vm_stop", ts_ns=vm.now, runstate="io-error", error_id=E)
    vm.facts.append(("vm_stop", seq, E, th.kind))
    if vm.runstate == "running":
        vm.set_runstate(th, "io-error", E)
        vm.event(th, "STOP", E)
    if took:
        bql.release(vm.now)


#: The step functions, by the names the variants use.
STEPS: dict[str, Step] = {
    "iostatus_set": _iostatus_set,
    "vmstop_prepare": _vmstop_prepare,
    "event": _event,
    "vmstop_request": _vmstop_request,
    "vm_stop": _sync_vm_stop,
}


def compile_stop_path(variant: Variant) -> tuple[tuple[bool, bool, tuple[Step, ...]], ...]:
    """Each unit of the variant's stop path as (needs vmstop_lock, needs BQL, step functions)."""
    units = []
    for unit in variant.stop_path:
        units.append(("vmstop_prepare" in unit, "vm_stop" in unit, tuple(STEPS[s] for s in unit)))
    return tuple(units)


#: Every variant's stop path, compiled once.
STOP_PATHS = {name: compile_stop_path(variant) for name, variant in VARIANT_TABLE.items()}
