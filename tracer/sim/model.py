"""The model of QEMU's block dataplane: a VM, its devices, its threads, and what each does.

Every model thread is a Python generator. One resumption runs one *unit*: an atomic piece of
work that changes the model's state and records the rows that describe it (always on the thread
that really does it in QEMU, see docs/rules.md §1), then yields what the thread waits for:

- an ``int`` n: "runnable again n ns from now" (0: at once, a mere scheduling point);
- :data:`IDLE`: "runnable when my work queue has something due" (``next_work``);
- a :class:`Lock`: "runnable when this lock is free" (the unit retries it);
- :data:`RUN_WAIT`: "runnable when the VM runs again" (a paused vCPU);
- :data:`DONE`: never again.

The same generators run under the deterministic scheduler (:mod:`tracer.sim.scheduler`) and on
real OS threads (:mod:`tracer.sim.threads`); both drive them through :func:`park`.

Besides the trace, the model appends *facts* (small tuples, in recording order) for every step
that matters to a guarantee; :mod:`tracer.sim.truth` derives ground truth from them. The hot
steps (successful submits and completions) add no fact.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable, Generator
from heapq import heappop, heappush
from typing import Any

from tracer import qemu
from tracer.recorder import Recorder
from tracer.sim.config import FAULT_OPS, SimConfig
from tracer.sim.faults import DeviceFaults
from tracer.sim.variants import Variant, get_variant

INF = float("inf")
OP_NAMES = FAULT_OPS  # op codes: 0 read, 1 write, 2 flush
#: BLOCK_IO_ERROR's `operation` (a flush fails as a write in virtio-blk).
QMP_OPERATION = ("read", "write", "write")
_RESTART = -1  # op code of a "retry the parked requests" work item


class _Token:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


IDLE = _Token("idle")
RUN_WAIT = _Token("run-wait")
DONE = _Token("done")

Unit = Generator[Any, None, None]


class Lock:
    """A model lock (vmstop_lock, the BQL). Held across units; waiters retry when it is freed."""

    __slots__ = ("name", "owner", "waiters")

    def __init__(self, name: str) -> None:
        self.name = name
        self.owner: SimThread | None = None
        self.waiters: list[SimThread] = []

    def release(self, now: int) -> None:
        self.owner = None
        if self.waiters:
            for w in self.waiters:
                w.ready_at = now
            self.waiters.clear()


class SimThread:
    """One thread of a VM: its recorder binding, its work queue and when it may run next."""

    __slots__ = ("emit", "gen", "heap", "idle", "kind", "name", "next_work", "ready_at", "step")

    def __init__(self, name: str, kind: str, emit: Callable[..., int]) -> None:
        self.name = name
        self.kind = kind
        self.emit = emit
        self.ready_at: float = 0
        self.idle = False
        #: (time, tiebreak, device index, op code) work items: completions and restarts.
        self.heap: list[tuple[int, int, int, int]] = []
        self.next_work: Callable[[], float] = self._heap_head
        self.gen: Generator[Any, None, None] | None = None
        self.step: Callable[[], Any] = _never

    def _heap_head(self) -> float:
        return self.heap[0][0] if self.heap else INF

    def start(self, gen: Generator[Any, None, None]) -> None:
        self.gen = gen
        self.step = gen.__next__

    def __repr__(self) -> str:
        return f"SimThread({self.name})"


def _never() -> Any:
    return DONE


def wake(th: SimThread, t: int) -> None:
    """New work for an idle thread at time `t`."""
    if th.idle and t < th.ready_at:
        th.ready_at = t


def park(vm: VM, th: SimThread, waiting: Any, now: int) -> None:
    """Record what `th` waits for after a unit (shared by the scheduler and threads mode)."""
    if waiting.__class__ is int:
        th.ready_at = now + waiting
    elif waiting is IDLE:
        th.ready_at = th.next_work()
    elif waiting.__class__ is Lock:
        th.ready_at = INF
        waiting.waiters.append(th)
    elif waiting is RUN_WAIT:
        th.ready_at = INF
        vm.run_waiters.append(th)
    elif waiting is DONE:
        th.ready_at = INF
    else:  # pragma: no cover - a model bug
        raise TypeError(f"thread {th.name} yielded {waiting!r}")


class Device:
    """A block device (virtio-blk + BlockBackend): policies, iostatus, parked requests."""

    __slots__ = ("faults", "index", "iostatus", "iostatus_enabled", "name", "parked", "policy",
                 "qom_path", "worker")

    def __init__(self, index: int, cfg: SimConfig, worker: SimThread, rnd: Callable[[], float]) -> None:
        self.index = index
        self.name = f"drive{index}"
        self.qom_path = f"/machine/peripheral/virtio-disk{index}/virtio-backend"
        self.worker = worker
        #: Policy per op code: reads follow rerror; writes and flushes werror.
        self.policy = (cfg.rerror, cfg.werror, cfg.werror)
        self.iostatus_enabled = qemu.iostatus_enabled(cfg.werror, cfg.rerror)
        self.iostatus = "ok"
        self.parked: list[tuple[int, int]] = []
        self.faults = DeviceFaults(cfg, self.name, rnd)


class VM:
    """One QEMU process: run state, the single stop-request slot, locks, devices and threads."""

    def __init__(self, cfg: SimConfig, index: int, rec: Recorder, *, seed_material: str | None = None) -> None:
        self.cfg = cfg
        self.index = index
        self.name = f"vm{index}"
        #: One generator per VM, derived from the run's seed and the VM index (string seeding is
        #: stable across Python versions and machines).
        self.rng = random.Random(seed_material or f"blkreplay-sim:{cfg.seed}:{index}")
        self.variant: Variant = get_variant(cfg.variant)
        self.now = 0
        self.runstate = "prelaunch"
        #: The pending vmstop request (error_id of its occupant) or None.
        self.slot: int | None = None
        self.vmstop_lock = Lock("vmstop_lock")
        self.bql = Lock("bql")
        self.next_req = 1
        self.next_error = 1
        self.next_restart = -1
        self.cmds: deque[tuple[str, int]] = deque()
        self.run_waiters: list[SimThread] = []
        self.shutdown_requested = False
        self.done = False
        self.facts: list[tuple] = []
        self.errors = 0
        self.stops = 0
        self.resumes = 0
        #: error_id of the runstate row that last entered io-error.
        self.io_error_by: int | None = None

        def bind(name: str, kind: str) -> SimThread:
            return SimThread(name, kind, rec.thread(name, kind, vm=self.name).emit)

        self.main = bind("main", "main")
        self.iothreads = [bind(f"iothread{i}", "iothread") for i in range(min(cfg.iothreads, cfg.devices))]
        self.vcpus = [bind(f"vcpu{i}", "vcpu") for i in range(cfg.vcpus)]
        self.mgmt_thread = bind("mgmt", "mgmt")
        rnd = self.rng.random
        self.devices = [
            Device(i, cfg, self.iothreads[i] if i < len(self.iothreads) else self.main, rnd)
            for i in range(cfg.devices)
        ]
        self.enabled_devices = [d for d in self.devices if d.iostatus_enabled]
        self.units = _compile_units(self.variant)

        from tracer.sim.mgmt import Mgmt, mgmt_body  # the client is a separate concept

        self.mgmt = Mgmt(self, self.mgmt_thread)
        self.main.next_work = self._main_next_work
        self.main.start(main_body(self, self.main))
        for th in self.iothreads:
            th.start(iothread_body(self, th))
        for th in self.vcpus:
            th.start(vcpu_body(self, th))
        self.mgmt_thread.start(mgmt_body(self, self.mgmt_thread, self.mgmt))
        #: Scheduling order: fixed, so that the seeded choice is reproducible.
        self.threads = [self.main, *self.iothreads, *self.vcpus, self.mgmt_thread]

    # ------------------------------------------------------------------ helpers used by units

    def _main_next_work(self) -> float:
        if self.cmds or self.slot is not None or self.shutdown_requested:
            return self.now
        heap = self.main.heap
        return heap[0][0] if heap else INF

    def request_shutdown(self) -> None:
        """End of the run: the main loop shuts the VM down at its next idle point."""
        self.shutdown_requested = True
        wake(self.main, self.now)
        wake(self.mgmt_thread, self.now)

    def set_runstate(self, th: SimThread, new: str, error_id: int | None) -> None:
        prev = self.runstate
        if (prev, new) not in qemu.ALLOWED_TRANSITIONS:  # pragma: no cover - a model bug
            raise AssertionError(f"{self.name}: invalid run-state transition {prev} -> {new}")
        self.runstate = new
        seq = th.emit("runstate", ts_ns=self.now, prev_runstate=prev, runstate=new, error_id=error_id)
        self.facts.append(("runstate", seq, error_id, prev, new))
        if new == "io-error" and prev != "io-error":
            self.io_error_by = error_id
        if new == "running" and self.run_waiters:
            for w in self.run_waiters:
                w.ready_at = self.now
            self.run_waiters.clear()

    def event(self, th: SimThread, name: str, error_id: int | None) -> None:
        """A QMP event without data (STOP, RESUME), delivered to management."""
        seq = th.emit("qmp_event", ts_ns=self.now, name=name, error_id=error_id)
        if name == "STOP":
            self.stops += 1
            self.facts.append(("stop", seq, error_id))
        elif name == "RESUME":
            self.resumes += 1
            self.facts.append(("resume", seq, error_id))
        self.mgmt.deliver(name, None)

    def kick_retries(self) -> None:
        """vm_state_notify(running): virtio-blk schedules the retry of its parked requests."""
        now = self.now
        for dev in self.devices:
            if dev.parked:
                tie = self.next_restart
                self.next_restart = tie - 1
                heappush(dev.worker.heap, (now, tie, dev.index, _RESTART))
                wake(dev.worker, now)

    def all_iostatus_ok(self) -> bool:
        return all(d.iostatus == "ok" for d in self.enabled_devices)


# ---------------------------------------------------------------------- error path


def _compile_units(variant: Variant) -> tuple[tuple[bool, bool, tuple[Callable, ...]], ...]:
    """Each unit of the variant's stop path as (needs vmstop_lock, needs BQL, step functions)."""
    units = []
    for unit in variant.stop_path:
        units.append(("vmstop_prepare" in unit, "vm_stop" in unit, tuple(STEPS[s] for s in unit)))
    return tuple(units)


def error_path(vm: VM, th: SimThread, dev: Device, rid: int, op: int, errno: int) -> Unit:
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
    dev.parked.append((rid, op))
    for needs_lock, needs_bql, steps in vm.units:
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
    vm.mgmt.deliver("BLOCK_IO_ERROR", action)


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


STEPS: dict[str, Callable[..., None]] = {
    "iostatus_set": _iostatus_set,
    "vmstop_prepare": _vmstop_prepare,
    "event": _event,
    "vmstop_request": _vmstop_request,
    "vm_stop": _sync_vm_stop,
}


def _restart(vm: VM, th: SimThread, dev: Device) -> None:
    """virtio_blk_dma_restart_bh: resubmit every parked request (same req_id)."""
    reqs, dev.parked = dev.parked, []
    now = vm.now
    cfg = vm.cfg
    lo = int(cfg.retry_latency_us * 500)
    span = int(cfg.retry_latency_us * 1000)
    rnd = vm.rng.random
    for rid, op in reqs:
        th.emit("io_submit", device=dev.name, req_id=rid, op=OP_NAMES[op], ts_ns=now, payload='{"retry":true}')
        heappush(th.heap, (now + lo + int(span * rnd()), rid, dev.index, op))


# ---------------------------------------------------------------------- threads


def vcpu_body(vm: VM, th: SimThread) -> Unit:
    """A vCPU: while the VM runs, submit guest requests (virtio-blk kick) and think."""
    cfg = vm.cfg
    rnd = vm.rng.random
    names = [d.name for d in vm.devices]
    workers = [d.worker for d in vm.devices]
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


def _complete(vm: VM, th: SimThread) -> Unit:
    """Pop one due work item of `th` and run it (a completion, maybe failing, or a restart)."""
    _, rid, d, op = heappop(th.heap)
    dev = vm.devices[d]
    if op == _RESTART:
        _restart(vm, th, dev)
        return
    errno = dev.faults.outcome(op)
    if errno:
        yield from error_path(vm, th, dev, rid, op, errno)
    else:
        th.emit("io_complete", device=dev.name, req_id=rid, op=OP_NAMES[op], ts_ns=vm.now)


def iothread_body(vm: VM, th: SimThread) -> Unit:
    """An iothread (dataplane): completes its devices' requests and runs their error path."""
    heap = th.heap
    devices = vm.devices
    emit = th.emit
    while True:
        if heap and heap[0][0] <= vm.now:
            _, rid, d, op = heappop(heap)
            dev = devices[d]
            if op == _RESTART:
                _restart(vm, th, dev)
            else:
                errno = dev.faults.outcome(op)
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


def main_body(vm: VM, th: SimThread) -> Unit:
    """The main loop, with the BQL: QMP commands, main-loop devices, then the vmstop request."""
    vm.event(th, "RESUME", None)
    vm.set_runstate(th, "running", None)
    yield 0
    heap = th.heap
    cmds = vm.cmds
    bql = vm.bql
    lock = vm.vmstop_lock
    while True:
        did = False
        if cmds or (heap and heap[0][0] <= vm.now) or vm.shutdown_requested:
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
            else:
                yield from _complete(vm, th)
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
        if cmds or vm.slot is not None or vm.shutdown_requested or (heap and heap[0][0] <= vm.now):
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


def _shutdown(vm: VM, th: SimThread) -> None:
    """End of the run: `quit` from the host (SHUTDOWN, then running -> shutdown)."""
    th.emit("qmp_event", ts_ns=vm.now, name="SHUTDOWN", payload='{"guest": false, "reason": "host-qmp-quit"}')
    if vm.runstate == "running":
        vm.set_runstate(th, "shutdown", None)
    vm.done = True


# ---------------------------------------------------------------------- QMP commands (main loop)


def _reply(vm: VM, th: SimThread, name: str, cmd_seq: int, **columns: Any) -> int:
    return th.emit("qmp_reply", ts_ns=vm.now, name=name, cmd_seq=cmd_seq, **columns)


def cmd_cont(vm: VM, th: SimThread, cmd_seq: int) -> Unit:
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
    vm.mgmt.replied()


def cmd_stop(vm: VM, th: SimThread, cmd_seq: int) -> Unit:
    """qmp_stop: vm_stop(paused) on the main loop (nothing changes if already stopped)."""
    seq = th.emit("vm_stop", ts_ns=vm.now, runstate="paused")
    vm.facts.append(("vm_stop", seq, None, th.kind))
    if vm.runstate == "running":
        vm.set_runstate(th, "paused", None)
        vm.event(th, "STOP", None)
    yield 0
    _reply(vm, th, "stop", cmd_seq)
    vm.mgmt.replied()


def cmd_query_block(vm: VM, th: SimThread, cmd_seq: int) -> Unit:
    """query-block: one reply row per device, read atomically with the state."""
    for dev in vm.devices:
        status = dev.iostatus if dev.iostatus_enabled else None
        seq = _reply(vm, th, "query-block", cmd_seq, device=dev.name, iostatus=status)
        vm.facts.append(("qb_reply", seq, cmd_seq, dev.name, status))
    vm.mgmt.replied()
    return
    yield  # a generator like every command


def cmd_query_status(vm: VM, th: SimThread, cmd_seq: int) -> Unit:
    state = vm.runstate
    payload = json.dumps({"running": state == "running", "status": state})
    seq = _reply(vm, th, "query-status", cmd_seq, runstate=state, payload=payload)
    vm.facts.append(("qs_reply", seq, cmd_seq, state, vm.all_iostatus_ok()))
    vm.mgmt.replied()
    return
    yield


COMMANDS: dict[str, Callable[[VM, SimThread, int], Unit]] = {
    "cont": cmd_cont,
    "stop": cmd_stop,
    "query-block": cmd_query_block,
    "query-status": cmd_query_status,
}
