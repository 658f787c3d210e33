"""The deterministic discrete-event scheduler: a virtual clock and a seeded choice of thread.

At every step the scheduler collects the threads that may run now (``ready_at <= now``), picks
one with the VM's seeded generator, runs one unit of it, and advances the virtual clock by
:data:`STEP_NS`. When no thread may run, the clock jumps to the earliest wake-up. Because the
choice is among *all* runnable threads, the main loop or the management client can run between
any two units of an error path: the races of the defect variants really happen, in some seeds.

Nothing here reads the real clock or iterates over hashed containers, so one seed gives one
trace, byte for byte, on any machine.
"""

from __future__ import annotations

from collections.abc import Callable

from tracer.sim.sim_thread import INF, park
from tracer.sim.vm import VM

#: Virtual time one unit of work takes.
STEP_NS = 1_000
#: Once the run is over, how long the VM gets to reach an idle point and shut down.
SHUTDOWN_GRACE_NS = 1_000_000_000
#: Call the progress callback every this many steps.
PROGRESS_EVERY = 1 << 14


def run_vm(vm: VM, end_ns: int, tick: Callable[[int], None] | None = None) -> int:
    """Run `vm` until it has shut down after `end_ns` of virtual time. Returns the steps run."""
    threads = vm.threads
    rnd = vm.rng.random
    now = 0
    steps = 0
    hard_end = end_ns + SHUTDOWN_GRACE_NS
    while not vm.done:
        if now >= end_ns and not vm.shutdown_requested:
            vm.now = now
            vm.request_shutdown()
        runnable = []
        soonest = INF
        for t in threads:
            r = t.ready_at
            if r <= now:
                runnable.append(t)
            elif r < soonest:
                soonest = r
        n = len(runnable)
        if not n:
            if soonest == INF or soonest > hard_end:
                break
            now = int(soonest)
            if now >= end_ns and not vm.shutdown_requested:
                continue
            runnable = [t for t in threads if t.ready_at <= now]
            n = len(runnable)
        t = runnable[int(rnd() * n)] if n > 1 else runnable[0]
        vm.now = now
        waiting = t.step()
        if waiting.__class__ is int:
            t.ready_at = now + waiting
        else:
            park(t, waiting, now, vm.run_waiters)
        now += STEP_NS
        steps += 1
        if tick is not None and not steps % PROGRESS_EVERY:
            tick(now)
    vm.now = now
    return steps
