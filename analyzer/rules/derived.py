"""The derived notions of docs/rules.md §2, over a `Steps` batch, vectorized.

* **running at step s**: the replayed run state after the last `runstate` row before s; a VM
  without `runstate` rows is running after a RESUME, not after a STOP, and as a
  `query-status` reply said, whichever of them came last (before the first of them: running,
  unless that first one is a RESUME).
  Before a VM's first `runstate` row the state is that row's `prev_runstate` (the trace may
  start mid-run), not running when unknown.
* **served_by(E)**: consumptions are `vm_stop` / `vm_start` rows carrying an error id X; every
  `vmstop_request` since the previous consumption is served by X (QEMU's single request slot).
  An error with no request but a `vm_stop` of its own (synchronous stop) is served by itself.
  A request never consumed is *pending at end*.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analyzer.steps import IOS, NULL, RS, Steps, last_before


def running_before(steps: Steps, at: np.ndarray | None = None) -> np.ndarray:
    """Whether the VM was running just before each row (or each position in `at`)."""
    at = steps.idx if at is None else at
    is_rs = steps.is_kind("runstate")
    has_rs = steps.vm_any(is_rs)[at] if len(at) else np.zeros(0, dtype=bool)
    # With runstate rows: the last one before, else the first one's prev_runstate.
    last = steps.prev(is_rs, at)
    first = steps.after(is_rs, np.full(len(at), -1, dtype=np.int64), at)
    safe_last = np.maximum(last, 0)
    safe_first = np.maximum(first, 0)
    state = np.where(last >= 0, steps.runstate[safe_last], steps.prev_runstate[safe_first])
    state = np.where((last < 0) & (first < 0), NULL, state)
    by_runstate = state == RS["running"]
    # Without: the last STOP, RESUME or query-status reply before: running after a RESUME,
    # not after a STOP, as the reply said; before the first of them, running unless it is a
    # RESUME (the capture began while the VM was stopped).
    stop, resume = steps.event("STOP"), steps.event("RESUME")
    status = steps.reply("query-status") & (steps.runstate >= 0)
    marks = stop | resume | status
    says = resume | (status & (steps.runstate == RS["running"]))
    last_m = steps.prev(marks, at)
    first_m = steps.after(marks, np.full(len(at), -1, dtype=np.int64), at)
    by_events = np.where(
        last_m >= 0, says[np.maximum(last_m, 0)], (first_m < 0) | ~resume[np.maximum(first_m, 0)]
    )
    return np.where(has_rs, by_runstate, by_events)


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


@dataclass(frozen=True)
class Service:
    """For each queried error: the row that consumed its stop request, and its fate."""

    #: The consuming vm_stop / vm_start row (-1: none).
    consumer: np.ndarray
    #: served_by(E): the error id the consumption carries (valid where consumer >= 0).
    served_by: np.ndarray
    #: The error's own vmstop_request row (-1: none).
    request: np.ndarray
    #: A request that no consumption followed before the end of the trace.
    pending: np.ndarray


def consumptions(steps: Steps) -> np.ndarray:
    """Mask of vm_stop / vm_start rows that consumed a pending stop request (carry an id)."""
    return (steps.is_kind("vm_stop") | steps.is_kind("vm_start")) & steps.has_eid


def service(steps: Steps, rows: np.ndarray) -> Service:
    """served_by for the error of each row in `rows` (rows carrying an error id)."""
    vm, eid, valid = steps.vm[rows], steps.eid[rows], steps.has_eid[rows]
    request = steps.by_eid(steps.is_kind("vmstop_request")).first(vm, eid, valid)
    has_req = request >= 0
    consumed = np.full(len(rows), NULL, dtype=np.int64)
    if has_req.any():
        consumed[has_req] = steps.next(consumptions(steps), request[has_req])
    sync = steps.by_eid(steps.is_kind("vm_stop")).first(vm, eid, valid & ~has_req)
    consumer = np.where(has_req, consumed, sync)
    served_by = np.where(consumer >= 0, steps.eid[np.maximum(consumer, 0)], 0)
    return Service(consumer, served_by, request, has_req & (consumed < 0))


def vm_has(steps: Steps, mask: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Whether the VM of each row in `rows` has any `mask` row."""
    return steps.vm_any(mask)[rows] if len(rows) else np.zeros(0, dtype=bool)


def replayed_iostatus(steps: Steps, devices: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The io-status code of device `devices[k]` just before position `at[k]`, replayed from
    iostatus_set (the value after the call) and iostatus_reset (ok); ok before any."""
    is_io = steps.is_kind("iostatus_set") | steps.is_kind("iostatus_reset")
    last = steps.by_device(is_io).last_before(steps.vm[at], devices, at)
    value = np.where(
        steps.is_kind("iostatus_reset")[np.maximum(last, 0)], IOS["ok"], steps.iostatus[np.maximum(last, 0)]
    )
    return np.where(last >= 0, value, IOS["ok"])


def iostatus_rows(steps: Steps) -> np.ndarray:
    """Mask of the rows that change a device's replayed io-status (set and reset)."""
    return steps.is_kind("iostatus_set") | steps.is_kind("iostatus_reset")


def changed_from_ok(steps: Steps) -> np.ndarray:
    """Mask of iostatus_set rows that changed their device from ok to something else."""
    rows = np.flatnonzero(steps.is_kind("iostatus_set") & (steps.device >= 0))
    before = replayed_iostatus(steps, steps.device[rows], rows)
    out = np.zeros(steps.n, dtype=bool)
    out[rows] = (before == IOS["ok"]) & (steps.iostatus[rows] != IOS["ok"])
    return out
