"""The management client (libvirt-like) on its own QMP connection.

It reacts to events and polls, one command at a time (libvirt serializes monitor commands of a
domain: it sends the next only after the reply of the previous):

- ``STOP``: send ``cont`` after ``cont_delay_ms`` x U(0.5, 1.5) (auto-resume after an I/O error,
  as a management layer does once the disk is fixed);
- ``BLOCK_IO_ERROR`` with action stop: with ``fast_cont_prob`` send ``cont`` at once (so that
  ``cont`` can meet a stop request the main loop has not consumed yet), and with
  ``query_on_error_prob`` a ``query-block`` at once (``virsh domblkerror``);
- ``STOP``, also: with ``query_on_error_prob`` a ``query-status`` at once (``virsh domstate``);
- ``RESUME``: forget a scheduled ``cont`` (the VM runs again);
- every ``poll_interval_ms`` x U(0.5, 1.5): ``query-status`` and ``query-block`` alternately, or,
  with ``stop_prob``, a user ``stop`` (resumed by a ``cont`` after the delay).

Sending a command records the ``qmp_command`` row on the ``mgmt`` thread; the main loop records
the reply. Receiving events records nothing.
"""

from __future__ import annotations

import json
from collections import deque
from typing import TYPE_CHECKING

from tracer.sim.model import DONE, IDLE, INF, SimThread, Unit, wake

if TYPE_CHECKING:
    from tracer.sim.model import VM

_PAYLOADS = {name: json.dumps({"execute": name}) for name in ("cont", "stop", "query-block", "query-status")}


class Mgmt:
    """The client's state: its event inbox, the command in flight, and its timers."""

    def __init__(self, vm: VM, th: SimThread) -> None:
        self.vm = vm
        self.th = th
        self.inbox: deque[tuple[str, str | None]] = deque()
        self.awaiting = False
        cfg = vm.cfg
        self.cont_delay = int(cfg.cont_delay_ms * 1_000_000)
        self.poll = int(cfg.poll_interval_ms * 1_000_000)
        self.cont_at: float = INF
        self.query_block_at: float = INF
        self.query_status_at: float = INF
        self.poll_at: float = self.poll
        self.poll_status_next = True
        self.conts = 0
        th.next_work = self.next_work

    def next_work(self) -> float:
        if self.inbox:
            return self.vm.now
        if self.awaiting or self.vm.shutdown_requested:
            return INF
        return min(self.cont_at, self.query_block_at, self.query_status_at, self.poll_at)

    def deliver(self, name: str, action: str | None) -> None:
        """An event reaches the client (QMP events go to every monitor)."""
        self.inbox.append((name, action))
        wake(self.th, self.vm.now)

    def replied(self) -> None:
        """The reply of the command in flight reaches the client."""
        self.awaiting = False
        wake(self.th, self.vm.now)

    def send(self, name: str) -> None:
        vm = self.vm
        seq = self.th.emit("qmp_command", ts_ns=vm.now, name=name, payload=_PAYLOADS[name])
        vm.facts.append(("command", seq, name))
        vm.cmds.append((name, seq))
        self.awaiting = True
        if name == "cont":
            self.conts += 1
        wake(vm.main, vm.now)


def mgmt_body(vm: VM, th: SimThread, m: Mgmt) -> Unit:
    cfg = vm.cfg
    rnd = vm.rng.random
    fast_cont = cfg.fast_cont_prob
    query_on_error = cfg.query_on_error_prob
    stop_prob = cfg.stop_prob
    while True:
        now = vm.now
        inbox = m.inbox
        while inbox:
            name, action = inbox.popleft()
            if name == "BLOCK_IO_ERROR":
                if action == "stop":
                    if rnd() < fast_cont:
                        m.cont_at = min(m.cont_at, now)
                    if rnd() < query_on_error:
                        m.query_block_at = min(m.query_block_at, now)
            elif name == "STOP":
                if m.cont_at == INF:
                    m.cont_at = now + int(m.cont_delay * (0.5 + rnd()))
                if rnd() < query_on_error:
                    m.query_status_at = min(m.query_status_at, now)
            elif name == "RESUME":
                m.cont_at = INF
        if vm.shutdown_requested:
            yield DONE
            return
        if not m.awaiting:
            sent = True
            if m.cont_at <= now:
                m.cont_at = INF
                m.send("cont")
            elif m.query_block_at <= now:
                m.query_block_at = INF
                m.send("query-block")
            elif m.query_status_at <= now:
                m.query_status_at = INF
                m.send("query-status")
            elif m.poll_at <= now:
                m.poll_at = now + int(m.poll * (0.5 + rnd()))
                if rnd() < stop_prob:
                    m.send("stop")
                    m.cont_at = min(m.cont_at, now + int(m.cont_delay * (0.5 + rnd())))
                else:
                    m.send("query-status" if m.poll_status_next else "query-block")
                    m.poll_status_next = not m.poll_status_next
            else:
                sent = False
            if sent:
                yield 0
                continue
        th.idle = True
        yield IDLE
        th.idle = False
