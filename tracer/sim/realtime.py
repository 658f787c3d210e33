"""Threads mode: the same model on real OS threads and the real (monotonic) clock.

Every model thread of every VM becomes an OS thread that runs its body one unit at a time.
A unit runs while holding the VM's *state lock*, the lock every reader of the state takes too
(the main loop answering query-block / query-status runs its units under it), so a state change
and the row that records it are atomic for readers, as docs/rules.md §1 requires; that is what
makes a `fixed` threads-mode trace free of findings. Between units the lock is released and the
operating system decides who runs next: the interleavings are real and not reproducible.

The model's own locks (vmstop_lock, the BQL) are held *across* units, exactly as in sim mode.
Waiting (for time, for work, for a model lock) is a wait on the state lock's condition; every
unit ends with a notify so that waiters re-check.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tracer.recorder import Recorder
from tracer.sim.config import SimConfig
from tracer.sim.launch import launch_vm
from tracer.sim.sim_thread import INF, SimThread, park
from tracer.sim.vm import VM

#: Longest single wait, so that the end of the run is noticed promptly.
_MAX_WAIT_S = 0.02
#: How long after the end of the run the VMs get to shut down before being abandoned.
_GRACE_S = 10.0


def _run(vm: VM, th: SimThread, cond: threading.Condition, end_ns: int) -> None:
    clock = time.monotonic_ns
    with cond:
        while not vm.done:
            now = clock()
            if now >= end_ns and not vm.shutdown_requested:
                vm.now = now
                vm.request_shutdown()
                cond.notify_all()
            ready = th.ready_at
            if ready > now:
                wait = _MAX_WAIT_S if ready == INF else min((ready - now) / 1e9, _MAX_WAIT_S)
                cond.wait(timeout=wait)
                continue
            vm.now = now
            park(th, th.step(), now, vm.run_waiters)
            cond.notify_all()
        cond.notify_all()


def run_realtime(
    config: SimConfig, rec: Recorder, progress: Callable[[int, int | None], None] | None = None
) -> list[VM]:
    """Run every VM of `config` on OS threads for `config.duration_s`, recording into `rec`.

    Returns the VMs (for their counters). `progress(done, total)` gets elapsed milliseconds.
    """
    duration_ns = round(config.duration_s * 1e9)
    workers: list[threading.Thread] = []
    vms: list[VM] = []
    conds: list[threading.Condition] = []
    start = time.monotonic_ns()
    end_ns = start + duration_ns
    for index in range(config.vms):
        vm = launch_vm(config, index, rec)
        vm.now = start
        for th in vm.threads:
            th.ready_at = start
        cond = threading.Condition()
        vms.append(vm)
        conds.append(cond)
        for th in vm.threads:
            workers.append(threading.Thread(
                target=_run, args=(vm, th, cond, end_ns), name=f"{vm.name}-{th.name}", daemon=True
            ))
    for w in workers:
        w.start()
    deadline = time.monotonic() + config.duration_s + _GRACE_S
    total_ms = duration_ns // 1_000_000
    for w in workers:
        while w.is_alive() and time.monotonic() < deadline:
            w.join(timeout=0.1)
            if progress is not None:
                done_ms = min((time.monotonic_ns() - start) // 1_000_000, total_ms)
                progress(done_ms, total_ms)
    for vm, cond in zip(vms, conds, strict=True):
        with cond:  # abandon a VM that did not shut down in time
            vm.done = True
            cond.notify_all()
    for w in workers:
        w.join(timeout=1.0)
    return vms
