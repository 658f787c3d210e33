"""The derived notions of docs/rules.md §2 the rules are written in, over a `Steps` batch.

The replayed state itself (run state, io-status, the stop-request slot, served_by) is
`analyzer.state`'s; this module asks it the rules' questions, which are about the state *before*
a step:

* **running at step s**: the replayed run state after the last `runstate` row before s; before
  a VM's first `runstate` row, that row's `prev_runstate` (the trace may start mid-run), not
  running when unknown. A VM without `runstate` rows is running after a RESUME, not after a
  STOP, and as a `query-status` reply said, whichever of them came last (before the first of
  them: running, unless that first one is a RESUME).
* **served_by(E)**: consumptions are `vm_stop` / `vm_start` rows carrying an error id X; every
  `vmstop_request` since the previous consumption is served by X (QEMU's single request slot).
  An error with no request but a `vm_stop` of its own (synchronous stop) is served by itself.
  A request never consumed is *pending at end*.
* **known not io-error after a STOP** and the io-status a device had before a step (replayed
  only, ok before any).
"""

from __future__ import annotations

import numpy as np

from analyzer.state import Service, consumptions, iostatus, iostatus_rows, run_state, service
from analyzer.steps import IOS, NULL, RS, Steps, last_before

__all__ = [
    "THROTTLE_WINDOW_NS",
    "Service",
    "changed_from_ok",
    "consumptions",
    "iostatus_rows",
    "known_not_io_error",
    "replayed_iostatus",
    "running_before",
    "service",
    "throttle_window_open",
    "vm_has",
]

#: QEMU >= 9.2 throttles BLOCK_IO_ERROR per device (qom-path) to one event a second
#: (monitor_qapi_event_conf, 2155d2dd7f).
THROTTLE_WINDOW_NS = 1_000_000_000
#: Slack for the clocks of different sources (capture client, libvirt's millisecond log).
THROTTLE_SLACK_NS = 100_000_000


def running_before(steps: Steps, at: np.ndarray | None = None) -> np.ndarray:
    """Whether the VM was running just before each row (or each position in `at`)."""
    state = run_state(steps, at, after=False, replies=True, assume_running=True)
    return state == RS["running"]


def known_not_io_error(steps: Steps, stops: np.ndarray, until: np.ndarray) -> np.ndarray:
    """Whether the run state right after each STOP `stops[k]` is known not to be io-error,
    from what lies before `until[k]` (-1: the VM's end): the last `runstate` row since the
    RESUME before the STOP enters a state other than io-error and running (a trace log:
    `stop` from any monitor gives paused), or a `query-status` reply whose command was sent after the last STOP before it
    says a state other than io-error. For rules that cannot see a `stop` sent on another
    monitor (libvirt's `virsh suspend`): its STOP is then no I/O-error stop."""
    if not len(stops):
        return np.zeros(0, dtype=bool)
    is_rs = steps.is_kind("runstate") & (steps.runstate >= 0)
    hi = np.where(until >= 0, until, steps.vend[stops])
    last_rs = last_before(is_rs)[hi]
    last_rs = np.where(last_rs >= steps.vstart[stops], last_rs, NULL)
    since = steps.prev(steps.event("RESUME"), stops)
    entered = steps.runstate[np.maximum(last_rs, 0)]
    by_rs = (last_rs > since) & (entered != RS["io-error"]) & (entered != RS["running"])
    stop = steps.event("STOP")
    qs = steps.reply("query-status") & (steps.runstate >= 0) & (steps.runstate != RS["io-error"])
    qs &= steps.point > steps.prev(stop, steps.idx)
    by_qs = steps.between(qs, stops, until, stops)
    return by_rs | by_qs


def vm_has(steps: Steps, mask: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Whether the VM of each row in `rows` has any `mask` row."""
    return steps.vm_any(mask)[rows] if len(rows) else np.zeros(0, dtype=bool)


def replayed_iostatus(steps: Steps, devices: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The io-status code of device `devices[k]` just before position `at[k]`, replayed from
    iostatus_set (the value after the call) and iostatus_reset (ok); ok before any."""
    return iostatus(steps, devices, at, after=False, observed=False)


def changed_from_ok(steps: Steps) -> np.ndarray:
    """Mask of iostatus_set rows that changed their device from ok to something else."""
    rows = np.flatnonzero(steps.is_kind("iostatus_set") & (steps.device >= 0))
    before = replayed_iostatus(steps, steps.device[rows], rows)
    out = np.zeros(steps.n, dtype=bool)
    out[rows] = (before == IOS["ok"]) & (steps.iostatus[rows] != IOS["ok"])
    return out


def throttle_window_open(steps: Steps, rows: np.ndarray, devices: np.ndarray) -> np.ndarray:
    """Whether, where the VM may throttle, a BLOCK_IO_ERROR of `devices[k]` was sent (arrived)
    within a throttle window before row `rows[k]`: then an error of that device raised just
    before the row may have had its event held and replaced by a later one (never sent), so
    the row's own BLOCK_IO_ERROR may be missing from the wire. Rows in `steps`' order (the
    emission order `Steps.emitted`: a moved BIE keeps its arrival `ts`, its sending time)."""
    if not len(rows):
        return np.zeros(0, dtype=bool)
    bie = steps.event("BLOCK_IO_ERROR") & (steps.device >= 0)
    last = steps.by_device(bie).last_before(steps.vm[rows], devices.astype(np.int64), rows)
    at = steps.ts[np.maximum(last, 0)]
    open_ = (last >= 0) & (at + THROTTLE_WINDOW_NS + THROTTLE_SLACK_NS >= steps.ts[rows])
    return steps.throttle[rows] & open_
