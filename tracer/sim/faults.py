"""Fault injection: which completions fail, with which errno, in bursts (like blkdebug rules).

Per device and per op (read, write, flush): an error probability, an errno, and bursts: an
injected error starts, with probability ``burst_prob``, a burst in which the next ``burst_len``
completions of that op on that device fail too (so a request retried by `cont` may fail again
at once, as with a full disk or a blkdebug rule without ``once``).

A rule with a time window (`FaultRule.start_s` / `end_s`) fails its ops only within it, on the
VMs it names (`FaultRule.vms`): a shared storage outage, a flapping backend, a full volume.

The decision is one random draw per completion, from the VM's own generator.
"""

from __future__ import annotations

from collections.abc import Callable

from tracer.schema import ERRNO_BY_NAME
from tracer.sim.config import FAULT_OPS, SimConfig


class DeviceFaults:
    """The fault state of one device, indexed by op code (0 read, 1 write, 2 flush)."""

    __slots__ = ("burst_errno", "burst_left", "burst_len", "burst_prob", "errno", "rate", "rnd", "windows")

    def __init__(self, cfg: SimConfig, device: str, rnd: Callable[[], float], vm_index: int = 0) -> None:
        self.rnd = rnd
        self.rate = [cfg.error_rate] * len(FAULT_OPS)
        self.errno = [cfg.errno_value] * len(FAULT_OPS)
        self.burst_prob = [cfg.burst_prob] * len(FAULT_OPS)
        self.burst_len = [cfg.burst_len] * len(FAULT_OPS)
        #: (start_ns, end_ns, op, rate, errno) of the timed rules that apply here.
        self.windows: list[tuple[int, float, int, float, int]] = []
        for rule in cfg.faults:
            if not rule.matches_vm(vm_index):
                continue
            for i, op in enumerate(FAULT_OPS):
                if not rule.matches(device, op):
                    continue
                if rule.timed:
                    self.windows.append((
                        round((rule.start_s or 0.0) * 1e9),
                        float("inf") if rule.end_s is None else round(rule.end_s * 1e9),
                        i,
                        1.0 if rule.error_rate is None else rule.error_rate,
                        ERRNO_BY_NAME[rule.errno] if rule.errno is not None else cfg.errno_value,
                    ))
                    continue
                if rule.error_rate is not None:
                    self.rate[i] = rule.error_rate
                if rule.errno is not None:
                    self.errno[i] = ERRNO_BY_NAME[rule.errno]
                if rule.burst_prob is not None:
                    self.burst_prob[i] = rule.burst_prob
                if rule.burst_len is not None:
                    self.burst_len[i] = rule.burst_len
        self.burst_left = [0] * len(FAULT_OPS)
        self.burst_errno = [0] * len(FAULT_OPS)

    def outcome(self, op: int, now: int = 0) -> int:
        """0 for success, else the errno of this completion of `op` at time `now`."""
        if self.windows:
            for start, end, w_op, rate, errno in self.windows:
                if w_op == op and start <= now < end:
                    return errno if rate >= 1.0 or self.rnd() < rate else 0
        left = self.burst_left[op]
        if left:
            self.burst_left[op] = left - 1
            return self.burst_errno[op]
        if self.rnd() >= self.rate[op]:
            return 0
        errno = self.errno[op]
        if self.burst_len[op] and self.rnd() < self.burst_prob[op]:
            self.burst_left[op] = self.burst_len[op]
            self.burst_errno[op] = errno
        return errno
