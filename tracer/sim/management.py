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

Commands and events travel over the VM's :class:`~tracer.sim.vm.Monitor`, which records the
``qmp_command`` rows; this module is only the client's policy: when to send what.
"""

from __future__ import annotations

from tracer.sim.sim_thread import DONE, IDLE, INF, SimThread, ThreadBody
from tracer.sim.vm import VM


class Mgmt:
    """The client's state: its timers (the monitor holds its inbox and the command in flight)."""

    def __init__(self, vm: VM, th: SimThread) -> None:
        self.vm = vm
        self.th = th
        self.monitor = vm.monitor
        cfg = vm.cfg
        self.cont_delay = int(cfg.cont_delay_ms * 1_000_000)
        self.poll = int(cfg.poll_interval_ms * 1_000_000)
        self.cont_at: float = INF
        self.query_block_at: float = INF
        self.query_status_at: float = INF
        self.poll_at: float = self.poll
        self.poll_status_next = True
        th.next_work = self.next_work

    def next_work(self) -> float:
        if self.monitor.events:
            return self.vm.now
        if self.monitor.awaiting or self.vm.shutdown_requested:
            return INF
        return min(self.cont_at, self.query_block_at, self.query_status_at, self.poll_at)


def mgmt_body(vm: VM, th: SimThread, m: Mgmt) -> ThreadBody:
    """The client's thread: react to the events received, then send at most one command."""
    cfg = vm.cfg
    rnd = vm.rng.random
    fast_cont = cfg.fast_cont_prob
    query_on_error = cfg.query_on_error_prob
    stop_prob = cfg.stop_prob
    monitor = m.monitor
    inbox = monitor.events
    while True:
        now = vm.now
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
        if not monitor.awaiting:
            sent = True
            if m.cont_at <= now:
                m.cont_at = INF
                monitor.send("cont")
            elif m.query_block_at <= now:
                m.query_block_at = INF
                monitor.send("query-block")
            elif m.query_status_at <= now:
                m.query_status_at = INF
                monitor.send("query-status")
            elif m.poll_at <= now:
                m.poll_at = now + int(m.poll * (0.5 + rnd()))
                if rnd() < stop_prob:
                    monitor.send("stop")
                    m.cont_at = min(m.cont_at, now + int(m.cont_delay * (0.5 + rnd())))
                else:
                    monitor.send("query-status" if m.poll_status_next else "query-block")
                    m.poll_status_next = not m.poll_status_next
            else:
                sent = False
            if sent:
                yield 0
                continue
        th.idle = True
        yield IDLE
        th.idle = False
