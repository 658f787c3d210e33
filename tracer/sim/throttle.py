"""QEMU >= 9.2's rate limit on BLOCK_IO_ERROR: what reaches the QMP wire, and when.

QEMU's ``monitor_qapi_event_queue_no_reenter`` (monitor/monitor.c, rate 1 s for BLOCK_IO_ERROR
since commit 2155d2dd7f, keyed by the event's ``qom-path``):

- no window open for the key: the event is sent at once, and a window opens (a timer armed
  ``rate`` from now);
- a window open: the event is *held*; a newer one **replaces** the held one, which is never sent;
- the timer fires on the main loop (``monitor_qapi_event_handler``): a held event is sent then,
  with its original QMP timestamp, and the window restarts from that moment; an empty window
  closes.

Only delivery is throttled: the iostatus, the vmstop request and the stop itself happen at
raising time, as in 7.2. This module is the bookkeeping alone (no rows, no facts); the error path
(:mod:`tracer.sim.error_path`) raises through :meth:`EventThrottle.offer` and the main loop
(:mod:`tracer.sim.main_loop`) fires the timers through :meth:`EventThrottle.fire`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tracer.sim.sim_thread import INF


@dataclass
class Held:
    """A raised event waiting for its window's timer: what the delivery row needs."""

    error_id: int
    device: str
    op: str
    errno: int
    action: str
    payload: str
    #: When it was raised (its QMP timestamp).
    raised_ns: int
    raise_seq: int


@dataclass
class Window:
    """One throttle key's open window: its timer, and the event it holds (if any)."""

    timer_ns: int
    held: Held | None = None


@dataclass
class EventThrottle:
    """The open windows of one VM, by throttle key (the event's ``qom-path`` value)."""

    rate_ns: int
    windows: dict[str, Window] = field(default_factory=dict)

    def offer(self, key: str, now: int, event: Held) -> tuple[bool, Held | None]:
        """An event raised for `key` at `now`: (send it now?, the held event it replaces)."""
        if self.rate_ns <= 0:
            return True, None
        window = self.windows.get(key)
        if window is None:
            self.windows[key] = Window(now + self.rate_ns)
            return True, None
        replaced, window.held = window.held, event
        return False, replaced

    def next_timer(self) -> float:
        """The earliest armed timer (INF when no window is open)."""
        return min((w.timer_ns for w in self.windows.values()), default=INF)

    def fire(self, now: int) -> tuple[str, Held | None] | None:
        """Fire the earliest due timer (ties: the window opened first): (its key, the event to
        send now, if it held one). None when no timer is due."""
        due = [(w.timer_ns, i, k) for i, (k, w) in enumerate(self.windows.items()) if w.timer_ns <= now]
        if not due:
            return None
        _, _, key = min(due)
        window = self.windows[key]
        held, window.held = window.held, None
        if held is None:
            del self.windows[key]
        else:
            window.timer_ns = now + self.rate_ns
        return key, held

    def pending(self) -> list[Held]:
        """Events still held (at the end of the run: never sent, QEMU quit first)."""
        return [w.held for w in self.windows.values() if w.held is not None]


def throttle_key(data: dict[str, Any]) -> str:
    """The key QEMU throttles BLOCK_IO_ERROR by: its ``qom-path`` (in 9.2.0, the drive name,
    which is "" for every disk attached with -blockdev)."""
    return str(data.get("qom-path", ""))
