"""One simulated QEMU process: its state, and the state changes every thread shares.

A :class:`VM` holds QEMU's run state, the single vmstop-request slot, the model locks
(vmstop_lock, the BQL), its block devices (:class:`Device`), its threads (main loop, iothreads,
vCPUs, the management client) and its QMP :class:`Monitor`. Its methods are the state changes
more than one thread makes (run-state transitions, STOP/RESUME events, the retry of parked
requests), each recording its row on the thread that makes it.

What each thread *does* lives beside this module: :mod:`tracer.sim.guest_io` (vCPUs, iothreads),
:mod:`tracer.sim.error_path` (a failed completion), :mod:`tracer.sim.main_loop` (QMP commands,
the vmstop request), :mod:`tracer.sim.management` (the client); :mod:`tracer.sim.launch` builds
a VM and starts those bodies on its threads. They all import this module, never the reverse.

Besides the trace, the model appends *facts* (small tuples, in recording order) to
:attr:`VM.facts` for every step that matters to a guarantee; :mod:`tracer.sim.truth` derives
ground truth from them. The hot steps (successful submits and completions) add no fact.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable
from heapq import heappush
from typing import Any

from tracer import qemu
from tracer.recorder import Recorder
from tracer.sim.config import FAULT_OPS, SimConfig
from tracer.sim.faults import DeviceFaults
from tracer.sim.sim_thread import INF, Lock, SimThread, wake
from tracer.sim.throttle import EventThrottle
from tracer.sim.variants import Variant, get_variant

OP_NAMES = FAULT_OPS  # op codes: 0 read, 1 write, 2 flush
#: Op code of a "retry the parked requests" work item.
RESTART = -1

_PAYLOADS = {name: json.dumps({"execute": name}) for name in ("cont", "stop", "query-block", "query-status")}


def _shifted(emit: Callable[..., int], offset: int) -> Callable[..., int]:
    """`emit` with the model's times moved by `offset` ns (`SimConfig.epoch_s`): the model keeps
    its own clock from 0, the trace reads as wall-clock time."""
    def shifted(kind: str, *, ts_ns: int | None = None, **details: Any) -> int:
        if details.get("event_ts_ns") is not None:
            details["event_ts_ns"] += offset
        return emit(kind, ts_ns=None if ts_ns is None else ts_ns + offset, **details)
    return shifted


class Device:
    """A block device (virtio-blk + BlockBackend): policies, iostatus, parked requests."""

    __slots__ = ("faults", "index", "iostatus", "iostatus_enabled", "name", "parked", "policy",
                 "qom_path", "worker", "workers")

    def __init__(self, index: int, cfg: SimConfig, workers: list[SimThread], rnd: Callable[[], float],
                 vm_index: int = 0) -> None:
        self.index = index
        self.name = f"drive{index}"
        self.qom_path = f"/machine/peripheral/virtio-disk{index}/virtio-backend"
        #: The threads completing its requests: one, or with iothread-vq-mapping several (a
        #: vCPU's queue is served by workers[vcpu % len(workers)]).
        self.workers = workers
        self.worker = workers[0]
        #: Policy per op code: reads follow rerror; writes and flushes werror.
        self.policy = (cfg.rerror, cfg.werror, cfg.werror)
        self.iostatus_enabled = qemu.iostatus_enabled(cfg.werror, cfg.rerror)
        self.iostatus = "ok"
        #: (req_id, op, the worker it failed on): a retry restarts in that queue's thread.
        self.parked: list[tuple[int, int, SimThread]] = []
        self.faults = DeviceFaults(cfg, self.name, rnd, vm_index)


class Monitor:
    """The VM's QMP monitor: one connection between the main loop and the management client.

    Commands wait in :attr:`commands` for the main loop, one at a time (the client sends the next
    only after the reply of the previous, :attr:`awaiting`); events wait in :attr:`events` for the
    client. Each side wakes the other's thread. Sending a command records the ``qmp_command`` row
    on the client's thread; the main loop records the reply; receiving events records nothing.
    """

    __slots__ = ("awaiting", "client", "commands", "conts", "events", "vm")

    def __init__(self, vm: VM, client: SimThread) -> None:
        self.vm = vm
        self.client = client
        #: (command name, seq of its qmp_command row), for the main loop.
        self.commands: deque[tuple[str, int]] = deque()
        #: (event name, action or None), for the client.
        self.events: deque[tuple[str, str | None]] = deque()
        self.awaiting = False
        self.conts = 0

    def send(self, name: str) -> None:
        """The client sends command `name` (on its own thread)."""
        vm = self.vm
        seq = self.client.emit("qmp_command", ts_ns=vm.now, name=name, payload=_PAYLOADS[name])
        vm.facts.append(("command", seq, name))
        self.commands.append((name, seq))
        self.awaiting = True
        if name == "cont":
            self.conts += 1
        wake(vm.main, vm.now)

    def deliver(self, name: str, action: str | None) -> None:
        """An event reaches the client (QMP events go to every monitor)."""
        self.events.append((name, action))
        wake(self.client, self.vm.now)

    def replied(self) -> None:
        """The reply of the command in flight reaches the client."""
        self.awaiting = False
        wake(self.client, self.vm.now)


class VM:
    """One QEMU process: run state, the single stop-request slot, locks, devices and threads.

    Its threads have no bodies yet: :func:`tracer.sim.launch.launch_vm` starts them.
    """

    def __init__(self, cfg: SimConfig, index: int, rec: Recorder) -> None:
        self.cfg = cfg
        self.index = index
        self.name = f"vm{index}"
        #: One generator per VM, derived from the run's seed and the VM index (string seeding is
        #: stable across Python versions and machines).
        self.rng = random.Random(f"blkreplay-sim:{cfg.seed}:{index}")
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
        self.run_waiters: list[SimThread] = []
        self.shutdown_requested = False
        self.done = False
        self.facts: list[tuple] = []
        self.errors = 0
        self.stops = 0
        self.resumes = 0
        #: (model time, whether an I/O error's) of every STOP: the patterns' ground truth.
        self.stop_times: list[tuple[int, bool]] = []
        #: error_id of the runstate row that last entered io-error.
        self.io_error_by: int | None = None

        #: Its host in a fleet (`SimConfig.hosts`), else None.
        self.host = f"host{index % cfg.hosts:02d}" if cfg.hosts else None
        epoch = None if cfg.epoch_s is None else round(cfg.epoch_s * 1e9)

        def bind(name: str, kind: str) -> SimThread:
            emit = rec.thread(name, kind, vm=self.name, host=self.host).emit
            return SimThread(name, kind, emit if epoch is None else _shifted(emit, epoch))

        self.main = bind("main", "main")
        self.iothreads = [bind(f"iothread{i}", "iothread") for i in range(min(cfg.iothreads, cfg.devices))]
        self.vcpus = [bind(f"vcpu{i}", "vcpu") for i in range(cfg.vcpus)]
        self.mgmt_thread = bind("mgmt", "mgmt")
        self.monitor = Monitor(self, self.mgmt_thread)
        rnd = self.rng.random
        n_io = len(self.iothreads)
        self.devices = [
            Device(i, cfg, [self.iothreads[(i + j) % n_io] for j in range(cfg.vq_iothreads)]
                   if i < n_io else [self.main], rnd, index)
            for i in range(cfg.devices)
        ]
        #: QEMU >= 9.2: the BLOCK_IO_ERROR rate limit (None: every event sent at once).
        self.throttle = EventThrottle(cfg.throttle_ns) if cfg.throttled else None
        self.queue_payload = json.dumps({"event": "BLOCK_IO_ERROR", "rate": cfg.throttle_ns})
        self.enabled_devices = [d for d in self.devices if d.iostatus_enabled]
        self.main.next_work = self._main_next_work
        #: Scheduling order: fixed, so that the seeded choice is reproducible.
        self.threads = [self.main, *self.iothreads, *self.vcpus, self.mgmt_thread]

    def _main_next_work(self) -> float:
        if self.monitor.commands or self.slot is not None or self.shutdown_requested:
            return self.now
        heap = self.main.heap
        head = heap[0][0] if heap else INF
        if self.throttle is not None:
            return min(head, self.throttle.next_timer())
        return head

    def timer_due(self) -> bool:
        """Whether a BLOCK_IO_ERROR throttle timer is due (the main loop fires it)."""
        return self.throttle is not None and self.throttle.next_timer() <= self.now

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
        if self.throttle is None:
            seq = th.emit("qmp_event", ts_ns=self.now, name=name, error_id=error_id)
        else:  # QMP timestamps, as a >= 9.2 trace carries them (STOP and RESUME are never held)
            seq = th.emit("qmp_event", ts_ns=self.now, name=name, error_id=error_id, event_ts_ns=self.now)
        if name == "STOP":
            self.stops += 1
            self.facts.append(("stop", seq, error_id))
            self.stop_times.append((self.now, error_id is not None))
        elif name == "RESUME":
            self.resumes += 1
            self.facts.append(("resume", seq, error_id))
        self.monitor.deliver(name, None)

    def kick_retries(self) -> None:
        """vm_state_notify(running): virtio-blk schedules the retry of its parked requests."""
        now = self.now
        for dev in self.devices:
            if dev.parked:
                # each queue's parked requests restart in its own thread (71ee0cdd14)
                for worker in dict.fromkeys(w for _, _, w in dev.parked):
                    tie = self.next_restart
                    self.next_restart = tie - 1
                    heappush(worker.heap, (now, tie, dev.index, RESTART))
                    wake(worker, now)

    def all_iostatus_ok(self) -> bool:
        return all(d.iostatus == "ok" for d in self.enabled_devices)
