"""A model thread: a generator body, what it yields while it waits, and the model's locks.

Every model thread is a Python generator, its :data:`ThreadBody`. One resumption runs one *unit*:
an atomic piece of work that changes the model's state and records the rows that describe it
(always on the thread that really does it in QEMU, see docs/rules.md §1), then yields what the
thread waits for:

- an ``int`` n: "runnable again n ns from now" (0: at once, a mere scheduling point);
- :data:`IDLE`: "runnable when my work queue has something due" (``next_work``);
- a :class:`Lock`: "runnable when this lock is free" (the unit retries it);
- :data:`RUN_WAIT`: "runnable when the VM runs again" (a paused vCPU);
- :data:`DONE`: never again.

The same bodies run under the deterministic scheduler (:mod:`tracer.sim.scheduler`) and on real
OS threads (:mod:`tracer.sim.realtime`); both turn what a body yielded into a wake-up time with
:func:`park`. This module knows nothing of VMs: it is the vocabulary both drivers and every
body share.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

INF = float("inf")


class _Token:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


IDLE = _Token("idle")
RUN_WAIT = _Token("run-wait")
DONE = _Token("done")

#: The body of a model thread (or a piece of one, run with ``yield from``): yields what the
#: thread waits for after each unit.
ThreadBody = Generator[Any, None, None]


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
        self.gen: ThreadBody | None = None
        self.step: Callable[[], Any] = _never

    def _heap_head(self) -> float:
        return self.heap[0][0] if self.heap else INF

    def start(self, gen: ThreadBody) -> None:
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


def park(th: SimThread, waiting: Any, now: int, run_waiters: list[SimThread]) -> None:
    """Record what `th` waits for after a unit; `run_waiters` is its VM's list of paused vCPUs."""
    if waiting.__class__ is int:
        th.ready_at = now + waiting
    elif waiting is IDLE:
        th.ready_at = th.next_work()
    elif waiting.__class__ is Lock:
        th.ready_at = INF
        waiting.waiters.append(th)
    elif waiting is RUN_WAIT:
        th.ready_at = INF
        run_waiters.append(th)
    elif waiting is DONE:
        th.ready_at = INF
    else:  # pragma: no cover - a model bug
        raise TypeError(f"thread {th.name} yielded {waiting!r}")
