"""Guest I/O: vCPUs submit requests, the device's worker thread completes them.

A device's worker is its iothread (dataplane) or, for devices without one, the main loop (which
completes its work items under the BQL, see :mod:`tracer.sim.main_loop`). A completion either
succeeds, fails into :func:`tracer.sim.error_path.error_path`, or is a restart work item that
resubmits the requests parked by an earlier error (scheduled by :meth:`VM.kick_retries`).
"""

from __future__ import annotations

from heapq import heappop, heappush

from tracer.sim.error_path import error_path
from tracer.sim.sim_thread import IDLE, RUN_WAIT, SimThread, ThreadBody
from tracer.sim.vm import OP_NAMES, RESTART, VM, Device


def vcpu_body(vm: VM, th: SimThread) -> ThreadBody:
    """A vCPU: while the VM runs, submit guest requests (virtio-blk kick) and think."""
    cfg = vm.cfg
    rnd = vm.rng.random
    names = [d.name for d in vm.devices]
    me = vm.vcpus.index(th)
    workers = [d.workers[me % len(d.workers)] for d in vm.devices]
    n = len(names)
    read_t = cfg.read_fraction
    flush_t = 1.0 - cfg.flush_fraction
    lat_lo = int(cfg.io_latency_us * 500)
    lat_span = int(cfg.io_latency_us * 1000)
    think_lo = int(cfg.io_think_us * 500)
    think_span = int(cfg.io_think_us * 1000)
    emit = th.emit
    while True:
        if vm.runstate != "running":
            yield RUN_WAIT
            continue
        now = vm.now
        d = int(rnd() * n)
        r = rnd()
        op = 0 if r < read_t else (2 if r >= flush_t else 1)
        rid = vm.next_req
        vm.next_req = rid + 1
        emit("io_submit", device=names[d], req_id=rid, op=OP_NAMES[op], ts_ns=now)
        t = now + lat_lo + int(lat_span * rnd())
        w = workers[d]
        heappush(w.heap, (t, rid, d, op))
        if w.idle and t < w.ready_at:
            w.ready_at = t
        yield think_lo + int(think_span * rnd())


def restart(vm: VM, th: SimThread, dev: Device) -> None:
    """virtio_blk_dma_restart_bh: resubmit the requests parked on `th`'s queues (same req_id)."""
    reqs = [p for p in dev.parked if p[2] is th]
    dev.parked = [p for p in dev.parked if p[2] is not th]
    now = vm.now
    cfg = vm.cfg
    lo = int(cfg.retry_latency_us * 500)
    span = int(cfg.retry_latency_us * 1000)
    rnd = vm.rng.random
    for rid, op, _ in reqs:
        th.emit("io_submit", device=dev.name, req_id=rid, op=OP_NAMES[op], ts_ns=now, payload='{"retry":true}')
        heappush(th.heap, (now + lo + int(span * rnd()), rid, dev.index, op))


def complete_due(vm: VM, th: SimThread) -> ThreadBody:
    """Pop one due work item of `th` and run it (a completion, maybe failing, or a restart)."""
    _, rid, d, op = heappop(th.heap)
    dev = vm.devices[d]
    if op == RESTART:
        restart(vm, th, dev)
        return
    errno = dev.faults.outcome(op, vm.now)
    if errno:
        yield from error_path(vm, th, dev, rid, op, errno)
    else:
        th.emit("io_complete", device=dev.name, req_id=rid, op=OP_NAMES[op], ts_ns=vm.now)


def iothread_body(vm: VM, th: SimThread) -> ThreadBody:
    """An iothread (dataplane): completes its devices' requests and runs their error path."""
    heap = th.heap
    devices = vm.devices
    emit = th.emit
    while True:
        # complete_due inlined: this is the hottest loop of the simulator
        if heap and heap[0][0] <= vm.now:
            _, rid, d, op = heappop(heap)
            dev = devices[d]
            if op == RESTART:
                restart(vm, th, dev)
            else:
                errno = dev.faults.outcome(op, vm.now)
                if errno:
                    yield from error_path(vm, th, dev, rid, op, errno)
                else:
                    emit("io_complete", device=dev.name, req_id=rid, op=OP_NAMES[op], ts_ns=vm.now)
        if heap and heap[0][0] <= vm.now:
            yield 0
        else:
            th.idle = True
            yield IDLE
            th.idle = False
