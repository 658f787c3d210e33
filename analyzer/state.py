"""The replayed state of every VM at every step: one implementation for all who show or judge it.

State, per VM, rebuilt from the steps alone (docs/rules.md §1-2), vectorized over a `Steps`
batch — the rules' (the interesting rows of a check) or a report's (every row); rows that change
no state (successful I/O, trace events) change nothing here either:

* **run state**: where a VM has `runstate` rows, the last one's new state, and before the first
  one its `prev_runstate` (the trace may start mid-run). A VM without them (a QMP-only import)
  is running after a RESUME and :data:`STOPPED` after a STOP, all the events tell.
* **io-status of each device**: replayed from `iostatus_set` (the value after the call) and
  `iostatus_reset` (ok), ok before any. In a VM without such rows, the last value a
  `query-block` reply showed (what "info block" said when it was last asked).
* **the stop-request slot** (QEMU keeps a single one): `vmstop_request` rows with an error id
  fill it, consumptions (`vm_stop` / `vm_start` with an error id) empty it; who consumed an
  error's request is its *served_by* (:func:`service`).

Who asks, and the few ways their questions differ (parameters, so that each keeps its answers):

* the replay view (`analyzer.replay`) and the report's context windows show the state *after*
  each step; before a VM's first STOP / RESUME its event-told run state is unknown;
* the rules (`analyzer.rules.derived`) ask about the state *before* a step: the run state also
  from `query-status` replies (``replies``), taken as running before the first evidence unless
  that is a RESUME (``assume_running``); a device's io-status only as replayed
  (``observed=False``);
* the report's run-state timeline (`analyzer.report.stats`) draws the changes
  (:func:`runstate_sources`), counting only `runstate` rows that name a state (``valued``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analyzer.steps import IOS, NULL, RS, Steps, last_before
from tracer.schema import IOSTATUSES, RUNSTATES

#: Run-state code of a VM known stopped only from a STOP event (no `runstate` rows).
STOPPED = len(RUNSTATES)
#: Name of every run-state code (-1: unknown, None).
RUNSTATE_NAMES: tuple[str, ...] = (*RUNSTATES, "stopped")

_NAMES = np.array([*RUNSTATE_NAMES, None], dtype=object)
_IOSTATUS_NAMES = np.array([*IOSTATUSES, None], dtype=object)


def _last(s: Steps, mask: np.ndarray, at: np.ndarray, after: bool) -> np.ndarray:
    """Per position in `at`: the last `mask` row at or before it (`after`) or strictly before
    it, in the same VM (-1: none)."""
    j = last_before(mask)[at + 1 if after else at]
    return np.where(j >= s.vstart[at], j, NULL)


def _positions(s: Steps, at: np.ndarray | None) -> np.ndarray:
    return s.idx if at is None else np.asarray(at, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Run state
# ---------------------------------------------------------------------------------------------


def runstate_sources(
    s: Steps, *, replies: bool = False, valued: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The rows that tell each VM's run state, and the run-state code each tells.

    In a VM with `runstate` rows (with `valued`, rows naming a state): those rows, telling
    their `runstate`. Otherwise its RESUME (running) and STOP (:data:`STOPPED`) events, and
    with `replies` its `query-status` replies that show a state (that state).
    """
    is_rs = s.is_kind("runstate")
    if valued:
        is_rs &= s.runstate >= 0
    by_rows = s.vm_any(is_rs)
    resume = s.event("RESUME")
    events = s.event("STOP") | resume
    code = np.where(resume, RS["running"], STOPPED)
    if replies:
        status = s.reply("query-status") & (s.runstate >= 0)
        events |= status
        code = np.where(status, s.runstate, code)
    return np.where(by_rows, is_rs, events), np.where(by_rows, s.runstate, code)


def run_state(
    s: Steps,
    at: np.ndarray | None = None,
    *,
    after: bool = True,
    replies: bool = False,
    assume_running: bool = False,
) -> np.ndarray:
    """Per position in `at` (default: every row): the VM's run-state code just after the step
    (or, without `after`, just before it); -1 unknown. Names: :data:`RUNSTATE_NAMES`.

    Before a VM's first `runstate` row: that row's `prev_runstate`. Before the first event
    (or reply, with `replies`) of a VM without them: unknown, or with `assume_running` running
    unless that first one is a RESUME (then :data:`STOPPED`: the capture began while stopped).
    """
    at = _positions(s, at)
    told, code = runstate_sources(s, replies=replies)
    by_rows = s.vm_any(s.is_kind("runstate"))[at]
    last = _last(s, told, at, after)
    first = s.after(told, np.full(len(at), NULL, dtype=np.int64), at)
    f = np.maximum(first, 0)
    if assume_running:
        unknown_start = np.where((first >= 0) & s.event("RESUME")[f], STOPPED, RS["running"])
    else:
        unknown_start = np.full(len(at), NULL, dtype=np.int64)
    start = np.where(by_rows, np.where(first >= 0, s.prev_runstate[f], NULL), unknown_start)
    return np.where(last >= 0, code[np.maximum(last, 0)], start)


def runstate_names(codes: np.ndarray) -> np.ndarray:
    """Run-state codes as names (object array, None for unknown)."""
    codes = np.asarray(codes, dtype=np.int64)
    return _NAMES[np.where(codes >= 0, codes, len(RUNSTATE_NAMES))]


# ---------------------------------------------------------------------------------------------
# io-status
# ---------------------------------------------------------------------------------------------


def iostatus_rows(s: Steps) -> np.ndarray:
    """Mask of the rows that change a device's replayed io-status (set and reset)."""
    return s.is_kind("iostatus_set") | s.is_kind("iostatus_reset")


def iostatus(
    s: Steps,
    device: int | np.ndarray,
    at: np.ndarray | None = None,
    *,
    after: bool = True,
    observed: bool = True,
) -> np.ndarray:
    """The io-status code of `device` (one code, or one per position) just after each position
    in `at` (default: every row), or without `after` just before it; -1 unknown.

    Replayed from iostatus_set / iostatus_reset, ok before any. With `observed`, a VM without
    such rows shows what its last `query-block` reply said of the device (unknown before one);
    without, every VM is replayed.
    """
    at = _positions(s, at)
    dev = np.broadcast_to(np.asarray(device, dtype=np.int64), at.shape).copy()
    vm = s.vm[at]
    upto = at + 1 if after else at
    io = iostatus_rows(s)
    last = s.by_device(io).last_before(vm, dev, upto)
    safe = np.maximum(last, 0)
    replayed = np.where((last < 0) | s.is_kind("iostatus_reset")[safe], IOS["ok"], s.iostatus[safe])
    if not observed:
        return replayed
    seen = s.reply("query-block") & (s.iostatus >= 0)
    last_seen = s.by_device(seen).last_before(vm, dev, upto)
    shown = np.where(last_seen < 0, NULL, s.iostatus[np.maximum(last_seen, 0)])
    return np.where(s.vm_any(io)[at], replayed, shown)


def iostatus_names(codes: np.ndarray) -> np.ndarray:
    """io-status codes as names (object array, None for unknown)."""
    codes = np.asarray(codes, dtype=np.int64)
    return _IOSTATUS_NAMES[np.where(codes >= 0, codes, len(IOSTATUSES))]


def devices(s: Steps) -> dict[int, list[int]]:
    """Per VM code: the device codes with an io-status (replayed or shown by a query-block
    reply), sorted by name. VMs without any are absent."""
    has = (iostatus_rows(s) | (s.reply("query-block") & (s.iostatus >= 0))) & (s.device >= 0)
    width = np.int64(len(s.device_names) + 1)
    pairs = np.unique(s.vm[has].astype(np.int64) * width + s.device[has])
    out: dict[int, list[int]] = {}
    for vm, dev in zip((pairs // width).tolist(), (pairs % width).tolist(), strict=True):
        out.setdefault(vm, []).append(dev)
    return {vm: sorted(devs, key=lambda c: s.device_names[c]) for vm, devs in out.items()}


# ---------------------------------------------------------------------------------------------
# The stop-request slot
# ---------------------------------------------------------------------------------------------


def consumptions(s: Steps) -> np.ndarray:
    """Mask of vm_stop / vm_start rows that consumed a pending stop request (carry an id)."""
    return (s.is_kind("vm_stop") | s.is_kind("vm_start")) & s.has_eid


def pending(s: Steps, at: np.ndarray | None = None) -> np.ndarray:
    """Per position in `at` (default: every row): the error id waiting in the stop-request slot
    just after the step (-1: none)."""
    at = _positions(s, at)
    request = s.is_kind("vmstop_request") & s.has_eid
    last = _last(s, request | consumptions(s), at, after=True)
    safe = np.maximum(last, 0)
    return np.where((last >= 0) & request[safe], s.eid[safe], NULL)


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


def service(s: Steps, rows: np.ndarray) -> Service:
    """served_by for the error of each row in `rows` (rows carrying an error id): the first
    consumption after its request; an error with no request but a vm_stop of its own
    (synchronous stop) is served by itself."""
    vm, eid, valid = s.vm[rows], s.eid[rows], s.has_eid[rows]
    request = s.by_eid(s.is_kind("vmstop_request")).first(vm, eid, valid)
    has_req = request >= 0
    consumed = np.full(len(rows), NULL, dtype=np.int64)
    if has_req.any():
        consumed[has_req] = s.next(consumptions(s), request[has_req])
    sync = s.by_eid(s.is_kind("vm_stop")).first(vm, eid, valid & ~has_req)
    consumer = np.where(has_req, consumed, sync)
    served_by = np.where(consumer >= 0, s.eid[np.maximum(consumer, 0)], 0)
    return Service(consumer, served_by, request, has_req & (consumed < 0))
