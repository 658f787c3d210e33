"""libvirt's view against QEMU's (docs/rules.md §3: libvirt-reports-io-error,
libvirt-event-has-cause, libvirt-delivers-events).

QEMU's view is its QMP events (``qmp_event`` rows: from a trace log, a QMP transcript, or the
``QEMU_MONITOR_RECV_EVENT`` lines of libvirt's own log). libvirt's view comes in two *views*,
each judged on its own:

- what it delivered to its clients: ``virsh event`` output (``mgmt_event`` rows named
  ``lifecycle``, ``io-error``, ``io-error-reason``; a lifecycle row's ``runstate`` is the state
  it announced, `analyzer.importers.virsh_events.lifecycle_runstate`);
- what it decided itself: ``qemuProcessHandleIOError`` / ``HandleStop`` / ``HandleResume``
  lines of its daemon log (``mgmt_event`` rows named after the handler,
  `analyzer.importers.libvirt_log`).

A management stack acts on libvirt's word, not QEMU's: a VM QEMU stopped on an I/O error that
libvirt shows as ``paused (unknown)`` is not recognised as one (oVirt does not extend the
volume, nothing resumes it). That is the failure QEMU 2.1-2.12 produced (BLOCK_IO_ERROR,
RESUME, STOP on ``cont``; fixed by f056158d69) and the one a QEMU >= 9.2 produces whenever
throttling delivers STOP before its BLOCK_IO_ERROR (libvirt's ``qemuProcessHandleStop`` then
pauses with reason unknown).

How rows of the two sides are paired: by time, since both sides are stamped by the same
host's clock (libvirt logs, virsh ``--timestamp``, QEMU trace): libvirt handles an event after
QEMU sent it (up to `SKEW` earlier for millisecond stamps) and its clients get it later (up to
`DELAY`). A QEMU pause pairs with the first suspension of the view from its cause on, unless
the view shows the VM running again before it (then that suspension is a later pause's). Only
the time both sides cover is judged (a ``virsh event`` started late, or without
``--timestamp``: rows at 0, is not read as events missing). Matching is per VM, vectorized
over the VM's rows (``searchsorted``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analyzer.result import Finding, RuleInfo
from analyzer.rules.evidence import findings
from analyzer.rules.rule import Rule, decides
from analyzer.steps import ACT, NULL, RS, K, Steps

#: How much earlier than QEMU's row a libvirt row may be stamped (millisecond stamps).
SKEW = 10_000_000
#: How long after QEMU's event libvirt's handling or delivery may come (measured: 2-50 ms).
DELAY = 2_000_000_000

#: libvirt's event names (virsh) and handler names (daemon log).
VIRSH_LIFECYCLE = "lifecycle"
VIRSH_IO_ERRORS = ("io-error", "io-error-reason")
HANDLERS = ("qemuProcessHandleIOError", "qemuProcessHandleStop", "qemuProcessHandleResume")
_VIRSH_NEEDS = tuple(f"mgmt_event:{n}" for n in (VIRSH_LIFECYCLE, *VIRSH_IO_ERRORS))
_HANDLER_NEEDS = tuple(f"mgmt_event:{n}" for n in HANDLERS)
_KIND_MGMT = K["mgmt_event"]
_KIND_EVENT = K["qmp_event"]
_SUSPENDED = (RS["io-error"], RS["paused"], RS["watchdog"])


@dataclass(frozen=True)
class _View:
    """One libvirt view of one VM: its state rows (suspensions and resumptions) and its
    extent in time."""

    label: str
    suspended: np.ndarray  # row indices, in row order
    running: np.ndarray
    io_errors: np.ndarray  # virsh io-error / io-error-reason rows (virsh view only)
    lo: int
    hi: int


def _codes(s: Steps, names: tuple[str, ...]) -> np.ndarray:
    return np.array([s.name_code(n) for n in names], dtype=np.int64)


def _views(s: Steps, vm_rows: np.ndarray) -> list[_View]:
    """The libvirt views present among `vm_rows` (one VM's rows)."""
    mgmt = vm_rows[s.kind[vm_rows] == _KIND_MGMT]
    out = []
    for label, names in (("virsh event", (VIRSH_LIFECYCLE, *VIRSH_IO_ERRORS)), ("libvirtd log", HANDLERS)):
        rows = mgmt[np.isin(s.name[mgmt], _codes(s, names))]
        if not len(rows):
            continue
        state = s.runstate[rows]
        io = rows[np.isin(s.name[rows], _codes(s, VIRSH_IO_ERRORS))]
        out.append(_View(
            label, rows[np.isin(state, _SUSPENDED)], rows[state == RS["running"]], io,
            int(s.ts[rows].min()), int(s.ts[rows].max()),
        ))
    return out


def _per_vm(s: Steps) -> list[np.ndarray]:
    """Row indices of each VM of the batch that has a libvirt view (``mgmt_event`` rows) and
    QMP events: the only VMs these rules can judge (rows are in (vm, seq) order)."""
    if not s.n:
        return []
    judged = s.vm_any(s.kind == _KIND_MGMT) & s.vm_any(s.kind == _KIND_EVENT)
    starts = np.unique(s.vstart[judged])
    ends = s.vend[starts] if len(starts) else starts
    return [np.arange(a, b) for a, b in zip(starts, ends, strict=True)]


def _event_time(s: Steps, rows: np.ndarray) -> np.ndarray:
    """When QEMU raised each event row: its QMP timestamp where it has one, else its row time."""
    return np.where(s.evt[rows] >= 0, s.evt[rows], s.ts[rows])


@dataclass(frozen=True)
class _Pauses:
    """QEMU's I/O-error pauses of one VM: the STOP, its earliest cause, the RESUME after."""

    stop: np.ndarray  # STOP rows
    cause: np.ndarray  # the first BLOCK_IO_ERROR(stop) raised since the previous STOP
    t0: np.ndarray  # earliest row time of cause and STOP
    resume: np.ndarray  # the first RESUME row after the STOP (NULL: none)


def _pauses(s: Steps, rows: np.ndarray) -> _Pauses:
    """The STOPs of one VM that an I/O error caused: a BLOCK_IO_ERROR with action stop was
    raised (QMP timestamp) after the STOP before and no later than this one. By raise time, so
    that a STOP delivered before its throttled BLOCK_IO_ERROR (QEMU >= 9.2) still counts, and
    so does QEMU 2.1-2.12's BLOCK_IO_ERROR, RESUME, STOP."""
    events = rows[s.kind[rows] == _KIND_EVENT]
    stops = events[s.name[events] == s.name_code("STOP")]
    errors = events[(s.name[events] == s.name_code("BLOCK_IO_ERROR")) & (s.action[events] == ACT["stop"])]
    resumes = events[s.name[events] == s.name_code("RESUME")]
    empty = np.zeros(0, dtype=np.int64)
    if not len(stops) or not len(errors):
        return _Pauses(empty, empty, empty, empty)
    stop_t = _event_time(s, stops)
    order = np.argsort(stop_t, kind="stable")
    stops, stop_t = stops[order], stop_t[order]
    err_t = _event_time(s, errors)
    eorder = np.argsort(err_t, kind="stable")
    errors, err_t = errors[eorder], err_t[eorder]
    prev_t = np.concatenate([[np.iinfo(np.int64).min], stop_t[:-1]])
    first = np.searchsorted(err_t, prev_t, side="right")  # first error raised after the STOP before
    caused = (first < len(errors)) & (err_t[np.minimum(first, len(errors) - 1)] <= stop_t)
    stops, first = stops[caused], first[caused]
    cause = errors[first]
    t0 = np.minimum(s.ts[cause], s.ts[stops])
    at = np.searchsorted(s.ts[resumes], s.ts[stops], side="right") if len(resumes) else None
    resume = (np.where(at < len(resumes), resumes[np.minimum(at, len(resumes) - 1)], NULL)
              if at is not None else np.full(len(stops), NULL, dtype=np.int64))
    return _Pauses(stops, cause, t0, resume)


def _first_from(s: Steps, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per time in `t`: the first row of `rows` (sorted by time) at or after it, else NULL."""
    if not len(rows):
        return np.full(len(t), NULL, dtype=np.int64)
    at = np.searchsorted(s.ts[rows], t, side="left")
    return np.where(at < len(rows), rows[np.minimum(at, len(rows) - 1)], NULL)


def _any_within(s: Steps, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per window [lo, hi]: the first row of `rows` (sorted by time) inside it, else NULL."""
    found = _first_from(s, rows, lo)
    ok = (found >= 0) & (s.ts[np.maximum(found, 0)] <= hi)
    return np.where(ok, found, NULL)


def _by_time(s: Steps, rows: np.ndarray) -> np.ndarray:
    return rows[np.argsort(s.ts[rows], kind="stable")]


def _collect(parts: list[tuple[np.ndarray, ...]], width: int) -> list[np.ndarray]:
    if not parts:
        return [np.zeros(0, dtype=np.int64) for _ in range(width)]
    return [np.concatenate([p[i] for p in parts]).astype(np.int64) for i in range(width)]


def _seq(s: Steps, r: int) -> int:
    return int(s.seq[r])


@decides(Rule(
    id="libvirt-reports-io-error",
    severity="error",
    guarantee="libvirt",
    title="libvirt reports a VM QEMU stopped on an I/O error as paused (I/O error)",
    explanation=(
        "When a BLOCK_IO_ERROR with action stop stops the VM, libvirt must suspend the domain "
        "with reason I/O error (virsh: lifecycle 'Suspended I/O Error'; its log: "
        "qemuProcessHandleIOError). A management tool decides on that reason (extend a full "
        "volume, then resume); 'paused (unknown)' hides the I/O error. QEMU 2.1-2.12 caused "
        "exactly that by sending BLOCK_IO_ERROR, RESUME, STOP after cont (fixed by f056158d69); "
        "a throttled BLOCK_IO_ERROR delivered after its STOP (QEMU >= 9.2) does it too."
    ),
    needs=("qmp_event:BLOCK_IO_ERROR", "qmp_event:STOP"),
    needs_one_of=((*_VIRSH_NEEDS[:1], *_HANDLER_NEEDS),),
    columns=("runstate", "event_ts_ns"),
))
def libvirt_reports_io_error(s: Steps, rule: RuleInfo) -> list[Finding]:
    """Per QEMU I/O-error pause and libvirt view covering it: the view's suspension for it
    must carry the I/O-error reason."""
    parts: list[tuple[np.ndarray, ...]] = []
    labels: list[str] = []
    for rows in _per_vm(s):
        p = _pauses(s, rows)
        if not len(p.stop):
            continue
        for view in _views(s, rows):
            covered = (p.t0 >= view.lo - SKEW) & (p.t0 <= view.hi)
            if not covered.any():
                continue
            susp = _by_time(s, view.suspended)
            found = _first_from(s, susp, p.t0 - SKEW)
            # A suspension after the view showed the VM running again (for the RESUME that
            # followed this pause) belongs to a later pause.
            back = np.where(p.resume >= 0, _first_from(s, _by_time(s, view.running),
                                                       s.ts[np.maximum(p.resume, 0)] - SKEW), NULL)
            later = (found >= 0) & (back >= 0) & (
                (s.ts[np.maximum(found, 0)] > s.ts[np.maximum(back, 0)])
                | ((s.ts[np.maximum(found, 0)] == s.ts[np.maximum(back, 0)]) & (found > back))
            )
            found = np.where(later, NULL, found)
            bad = covered & ((found < 0) | (s.runstate[np.maximum(found, 0)] != RS["io-error"]))
            k = np.flatnonzero(bad)
            if len(k):
                parts.append((p.cause[k], p.stop[k], found[k]))
                labels += [view.label] * len(k)
    cause, stop, found = _collect(parts, 3)

    def message(k: int, _: list[int]) -> str:
        c, st, f = int(cause[k]), int(stop[k]), int(found[k])
        head = (f"QEMU stopped the VM on an I/O error (BLOCK_IO_ERROR action stop at seq "
                f"{_seq(s, c)}, STOP at seq {_seq(s, st)})")
        if f < 0:
            return (f"{head} but libvirt's {labels[k]} shows no suspension for it: a management "
                    f"tool waiting for the I/O-error pause never hears of it")
        said = s.text("runstate", f) or "?"
        reason = "unknown" if said == "paused" else said
        why = ""
        if s.ts[c] > s.ts[st] or s.seq[c] > s.seq[st]:
            why = ("; STOP reached libvirt before its BLOCK_IO_ERROR (a throttled event, "
                   "QEMU >= 9.2), so libvirt paused it without a cause")
        else:
            r = s.next(s.event("RESUME"), np.array([c]))
            if r[0] >= 0 and s.seq[r[0]] < s.seq[st]:
                why = ("; RESUME came between the BLOCK_IO_ERROR and the STOP: QEMU 2.1-2.12's "
                       "order after cont (fixed by f056158d69)")
        return (f"{head} but libvirt's {labels[k]} reported it paused ({reason}) at seq "
                f"{_seq(s, f)}, not paused (I/O error){why}")

    return findings(s, rule, [cause, stop, found], device=s.device[cause] if len(cause) else cause,
                    error_id=None, message=message)


def _cause_rows(s: Steps, rows: np.ndarray) -> dict[str, np.ndarray]:
    events = rows[s.kind[rows] == _KIND_EVENT]
    name = s.name[events]
    return {
        "io-error": _by_time(s, events[(name == s.name_code("BLOCK_IO_ERROR")) & (s.action[events] == ACT["stop"])]),
        "any-io-error": _by_time(s, events[name == s.name_code("BLOCK_IO_ERROR")]),
        "paused": _by_time(s, events[name == s.name_code("STOP")]),
        "running": _by_time(s, events[name == s.name_code("RESUME")]),
    }


@decides(Rule(
    id="libvirt-event-has-cause",
    severity="error",
    guarantee="libvirt",
    title="every libvirt suspension, resumption and I/O-error event has its QEMU event",
    explanation=(
        "libvirt learns of a pause, a resume or an I/O error only from QEMU's events: a "
        "lifecycle 'Suspended I/O Error' (or qemuProcessHandleIOError) without a "
        "BLOCK_IO_ERROR(stop), a 'Suspended' without STOP, a 'Resumed' without RESUME, an "
        "io-error event without BLOCK_IO_ERROR means the two layers disagree about what "
        "happened (a lost or invented event, or logs of different runs). Judged where QEMU's "
        "events cover the time."
    ),
    needs_one_of=(("qmp_event:STOP", "qmp_event:RESUME", "qmp_event:BLOCK_IO_ERROR"),
                  (*_VIRSH_NEEDS, *_HANDLER_NEEDS)),
    columns=("runstate", "event_ts_ns"),
))
def libvirt_event_has_cause(s: Steps, rule: RuleInfo) -> list[Finding]:
    """Per libvirt state row or io-error event inside QEMU's extent: the QEMU event that
    causes it within [its time - DELAY, its time + SKEW]."""
    parts: list[tuple[np.ndarray, ...]] = []
    wants: list[str] = []
    for rows in _per_vm(s):
        events = rows[s.kind[rows] == _KIND_EVENT]
        if not len(events):
            continue
        lo, hi = int(s.ts[events].min()), int(s.ts[events].max())
        causes = _cause_rows(s, rows)
        for view in _views(s, rows):
            checks = [
                (view.suspended[s.runstate[view.suspended] == RS["io-error"]], "io-error",
                 "BLOCK_IO_ERROR with action stop"),
                (view.suspended[s.runstate[view.suspended] != RS["io-error"]], "paused", "STOP"),
                (view.running, "running", "RESUME"),
                (view.io_errors, "any-io-error", "BLOCK_IO_ERROR"),
            ]
            for mine, cause, want in checks:
                mine = mine[(s.ts[mine] >= lo - DELAY) & (s.ts[mine] <= hi + SKEW)]
                if not len(mine):
                    continue
                hit = _any_within(s, causes[cause], s.ts[mine] - DELAY, s.ts[mine] + SKEW)
                k = np.flatnonzero(hit < 0)
                if len(k):
                    parts.append((mine[k],))
                    wants += [f"{want} (libvirt's {view.label})"] * len(k)
    (row,) = _collect(parts, 1)

    def message(k: int, _: list[int]) -> str:
        r = int(row[k])
        what = s.text("name", r) or "?"
        state = s.text("runstate", r)
        shown = f"{what} ({'paused (I/O error)' if state == 'io-error' else state})" if state else what
        return (f"libvirt's {shown} at seq {_seq(s, r)} has no {wants[k]} from QEMU within "
                f"{DELAY // 1_000_000_000} s before it: the layers disagree about what happened")

    return findings(s, rule, [row], device=s.device[row] if len(row) else row, error_id=None,
                    message=message)


@decides(Rule(
    id="libvirt-delivers-events",
    severity="error",
    guarantee="libvirt",
    title="libvirt delivers every BLOCK_IO_ERROR and RESUME it received to its clients",
    explanation=(
        "libvirt turns each BLOCK_IO_ERROR it receives into an io-error and an "
        "io-error-reason event, and a RESUME of a paused domain into a lifecycle 'Resumed': a "
        "client (virsh event, a management daemon) that misses them keeps a stale view of the "
        "disk and the VM. Judged over the time the virsh event output covers."
    ),
    needs=("qmp_event:BLOCK_IO_ERROR",),
    needs_one_of=(_VIRSH_NEEDS,),
    columns=("runstate",),
))
def libvirt_delivers_events(s: Steps, rule: RuleInfo) -> list[Finding]:
    """Per QEMU BLOCK_IO_ERROR / RESUME inside the virsh view's extent: a virsh io-error
    (same device, when both name one) / running lifecycle row within [its time - SKEW, its
    time + DELAY]."""
    parts: list[tuple[np.ndarray, ...]] = []
    for rows in _per_vm(s):
        views = [v for v in _views(s, rows) if v.label == "virsh event"]
        if not views:
            continue
        view = views[0]
        causes = _cause_rows(s, rows)
        for qemu, mine in ((causes["any-io-error"], view.io_errors), (causes["running"], view.running)):
            qemu = qemu[(s.ts[qemu] >= view.lo - SKEW) & (s.ts[qemu] <= view.hi)]
            if not len(qemu):
                continue
            mine = _by_time(s, mine)
            hit = np.full(len(qemu), NULL, dtype=np.int64)
            for dev in np.unique(s.device[qemu]):  # per device: a few names, never per row
                q = s.device[qemu] == dev
                same = mine[(s.device[mine] == dev) | (s.device[mine] < 0) | (dev < 0)]
                hit[q] = _any_within(s, same, s.ts[qemu[q]] - SKEW, s.ts[qemu[q]] + DELAY)
            k = np.flatnonzero(hit < 0)
            if len(k):
                parts.append((qemu[k],))
    (row,) = _collect(parts, 1)

    def message(k: int, _: list[int]) -> str:
        r = int(row[k])
        name = s.text("name", r)
        want = ("io-error event" if name == "BLOCK_IO_ERROR"
                else "lifecycle 'Resumed' event")
        return (f"libvirt received {name} (seq {_seq(s, r)}) but the virsh event output shows "
                f"no {want} for it within {DELAY // 1_000_000_000} s: its clients never heard of it")

    return findings(s, rule, [row], device=s.device[row] if len(row) else row, error_id=None,
                    message=message)

