"""The ordering guarantees of the error path (docs/rules.md §3, I1-I4 and I6).

Each rule is a pure function over a batch of whole VMs (`Steps`), declared beside it. Where a
source records error ids (the simulator, the real-thread recorder) the rules follow one error
through its steps; where it does not (imports of real QEMU output) they use the positional
definitions of rules.md. The choice is made per VM: a VM with any error id is judged by ids.
"""

from __future__ import annotations

import numpy as np

from analyzer.result import Finding, RuleInfo
from analyzer.rules.derived import (
    known_not_io_error,
    running_before,
    service,
    throttle_window_open,
    vm_has,
)
from analyzer.rules.evidence import NO_EID, describe, eids, findings
from analyzer.rules.masks import bie_stop, enters_io_error
from analyzer.rules.rule import Rule, decides
from analyzer.steps import NULL, RS, Steps


def _ids(s: Steps, rows: np.ndarray) -> np.ndarray:
    """Whether the VM of each row records error ids."""
    return vm_has(s, s.has_eid, rows)


def _none(n: int) -> np.ndarray:
    return np.full(n, NULL, dtype=np.int64)


def _before_iostatus_set(s: Steps, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows (steps of an error E) that come before E's first iostatus_set, with that
    iostatus_set's row (-1: E never set it)."""
    first_set = s.by_eid(s.is_kind("iostatus_set")).first(s.vm[rows], s.eid[rows])
    bad = (first_set < 0) | (first_set > rows)
    return rows[bad], first_set[bad]


@decides(Rule(
    id="iostatus-before-event",
    severity="error",
    guarantee="I1",
    title="iostatus is set before BLOCK_IO_ERROR",
    explanation=(
        "For action stop, QEMU sets the device's io-status before it emits BLOCK_IO_ERROR, so "
        "'info block' never shows less than the events said (I1). A BLOCK_IO_ERROR(stop) with no "
        "iostatus_set of the same error before it breaks that."
    ),
    needs=("iostatus_set",),
))
def iostatus_before_event(s: Steps, rule: RuleInfo) -> list[Finding]:
    """BIE(stop) of E with no iostatus_set of E before it (I1)."""
    rows, first_set = _before_iostatus_set(s, np.flatnonzero(bie_stop(s) & s.has_eid))

    def message(k: int, _: list[int]) -> str:
        r = rows[k]
        later = f"; it is set only later, {describe(s, first_set[k])}" if first_set[k] >= 0 else ""
        return (
            f"BLOCK_IO_ERROR(stop) of error {int(s.eid[r])} at seq {int(s.seq[r])} came before "
            f"the device's io-status was set{later}: 'info block' showed less than the events said"
        )

    return findings(s, rule, [first_set, rows], device=s.device[rows],
                    error_id=eids(s, rows), message=message)


@decides(Rule(
    id="iostatus-before-stop",
    severity="error",
    guarantee="I2",
    title="iostatus is set before the run state becomes io-error",
    explanation=(
        "The io-status of the failing device must be set before the VM enters io-error (I2): a "
        "client that sees the VM paused must find the failed device in query-block."
    ),
    needs=("iostatus_set", "runstate"),
    columns=("runstate", "prev_runstate"),
))
def iostatus_before_stop(s: Steps, rule: RuleInfo) -> list[Finding]:
    """runstate entering io-error for E with no iostatus_set of E before it (I2)."""
    rows, first_set = _before_iostatus_set(s, np.flatnonzero(enters_io_error(s) & s.has_eid))
    # The device of the error: its first row that names one.
    named = s.by_eid(s.device >= 0).first(s.vm[rows], s.eid[rows])
    device = np.where(named >= 0, s.device[np.maximum(named, 0)], NULL)

    def message(k: int, _: list[int]) -> str:
        r = rows[k]
        later = f"; it is set only later, {describe(s, first_set[k])}" if first_set[k] >= 0 else ""
        return (
            f"the run state became io-error for error {int(s.eid[r])} at seq {int(s.seq[r])} "
            f"before the device's io-status was set{later}"
        )

    return findings(s, rule, [first_set, rows], device=device,
                    error_id=eids(s, rows), message=message)


@decides(Rule(
    id="event-before-stop",
    severity="error",
    guarantee="I3",
    title="BLOCK_IO_ERROR comes before the STOP it causes",
    explanation=(
        "BLOCK_IO_ERROR is emitted under vmstop_lock before the stop request is stored, so the "
        "STOP caused by an I/O error always follows its BLOCK_IO_ERROR (I3). Where QEMU may "
        "throttle BLOCK_IO_ERROR (>= 9.2, or the version unknown) the order judged is the "
        "raising order (QMP timestamps), and a STOP whose event the 1-second window may have "
        "replaced is not judged."
    ),
    needs=("qmp_event:STOP",),
    columns=("runstate", "prev_runstate", "cmd_seq", "event_ts_ns"),
))
def event_before_stop(s: Steps, rule: RuleInfo) -> list[Finding]:
    """STOP caused by an error with no BLOCK_IO_ERROR(stop) of that error before it (I3)."""
    stop, bie = s.event("STOP"), bie_stop(s)
    # With error ids.
    rows = np.flatnonzero(stop & s.has_eid)
    rows = rows[_ids(s, rows)]
    first_bie = s.by_eid(bie).first(s.vm[rows], s.eid[rows])
    bad = (first_bie < 0) | (first_bie > rows)
    id_rows, id_bie = rows[bad], first_bie[bad]
    # Without (in emission order): STOP with no BIE since the previous RESUME, a BIE after it
    # before the next RESUME, no stop command since the previous RESUME, and the run state
    # after the STOP not known to be other than io-error (a stop from another monitor).
    e, to_s = s.emitted
    stop, resume, bie = e.event("STOP"), e.event("RESUME"), bie_stop(e)
    rows = np.flatnonzero(stop)
    rows = rows[~_ids(e, rows)]
    prev_resume = e.prev(resume, rows)
    next_resume = e.next(resume, rows)
    next_bie = e.next(bie, rows)
    # The first STOP after a RESUME that a retried request's BIE preceded serves that BIE:
    # QEMU 2.1-2.12's BIE, RESUME, STOP is resume-before-retry-error's finding, not this one.
    retry = np.full(len(rows), NULL, dtype=np.int64)
    has_r = prev_resume >= 0
    retry[has_r] = _retry_bie(e, prev_resume[has_r])
    served = (retry >= 0) & (e.next(stop, np.maximum(prev_resume, 0)) == rows)
    bad = (
        ~e.between(bie, prev_resume, rows, rows)
        & ~served
        & (next_bie >= 0)
        & ((next_resume < 0) | (next_bie < next_resume))
        & ~e.between(e.command("stop"), prev_resume, rows, rows)
    )
    rows, next_bie = rows[bad], next_bie[bad]
    # Throttled: with a BIE of that device sent within a window before the STOP, the STOP's
    # own BIE may have been held and replaced by the later one (never sent).
    real = ~known_not_io_error(e, rows, next_bie) & ~throttle_window_open(e, rows, e.device[next_bie])
    pos_rows, pos_bie = to_s[rows[real]], to_s[next_bie[real]]
    rows = np.concatenate([id_rows, pos_rows])
    bie_rows = np.concatenate([id_bie, pos_bie])
    has_bie = bie_rows >= 0
    device = np.where(has_bie, s.device[np.maximum(bie_rows, 0)], NULL)
    n_id = len(id_rows)

    def message(k: int, _: list[int]) -> str:
        r = rows[k]
        if k < n_id:
            tail = f"; it comes only later, {describe(s, bie_rows[k])}" if bie_rows[k] >= 0 else ""
            return (
                f"STOP at seq {int(s.seq[r])} for error {int(s.eid[r])} was emitted before "
                f"any BLOCK_IO_ERROR(stop) of that error{tail}"
            )
        return (
            f"STOP at seq {int(s.seq[r])} was emitted before the BLOCK_IO_ERROR(stop) that caused "
            f"it ({describe(s, bie_rows[k])}), with no stop command since the last RESUME"
        )

    return findings(s, rule, [rows, bie_rows], device=device,
                    error_id=eids(s, np.where(np.arange(len(rows)) < n_id, rows, -1)),
                    message=message)


@decides(
    Rule(
        id="stop-follows-error",
        severity="error",
        guarantee="I4",
        title="every BLOCK_IO_ERROR(stop) while running is followed by STOP",
        explanation=(
            "A BLOCK_IO_ERROR with action stop emitted while the VM runs must be followed by a "
            "STOP (or the STOP/RESUME pair when cont raced the pending request) (I4)."
        ),
        needs=("qmp_event:BLOCK_IO_ERROR",),
        columns=("runstate", "prev_runstate", "event_ts_ns"),
    ),
    Rule(
        id="stop-pending-at-end",
        severity="warning",
        guarantee="I4",
        title="a stop request is still pending when the trace ends",
        explanation=(
            "A BLOCK_IO_ERROR(stop) was emitted while running but its stop request was not "
            "consumed before the trace ended, so whether STOP followed cannot be decided (I4)."
        ),
        needs=("qmp_event:BLOCK_IO_ERROR",),
        columns=("runstate", "prev_runstate", "event_ts_ns"),
    ),
)
def stop_follows_error(
    s: Steps, stop_follows: RuleInfo, stop_pending: RuleInfo
) -> tuple[list[Finding], list[Finding]]:
    """BIE(stop) while running whose consumed request gave no STOP (`stop_follows`, I4) or whose
    request is still pending at the end (`stop_pending`, a warning): one search, two rules."""
    stop, bie = s.event("STOP"), bie_stop(s)
    cand = np.flatnonzero(bie & s.has_eid)
    cand = cand[_ids(s, cand)]
    cand = cand[running_before(s, cand)]
    # With error ids.
    rows = cand
    sv = service(s, rows)
    consumed = sv.consumer >= 0
    stop_of_x = s.by_eid(stop).first(s.vm[rows], sv.served_by, consumed)
    lost = consumed & (stop_of_x < 0) & ~s.between(stop, rows, sv.consumer, rows)
    err_rows, err_other = rows[lost], sv.consumer[lost]
    warn_rows = rows[sv.pending]
    # Without (in emission order): no STOP before the next RESUME (or, when no RESUME
    # follows, before the end).
    e, to_s = s.emitted
    e_stop, e_resume, e_bie = e.event("STOP"), e.event("RESUME"), bie_stop(e)
    rows = np.flatnonzero(e_bie)
    rows = rows[~_ids(e, rows)]
    rows = rows[running_before(e, rows)]
    next_stop, next_resume = e.next(e_stop, rows), e.next(e_resume, rows)
    unstopped = (next_stop < 0) | ((next_resume >= 0) & (next_resume < next_stop))
    err_pos = unstopped & (next_resume >= 0) & ~_served_after_resume(e, rows, next_resume, next_stop)
    n_id = len(err_rows)
    err_rows = np.concatenate([err_rows, to_s[rows[err_pos]]])
    err_other = np.concatenate([err_other, to_s[next_resume[err_pos]]])
    warn_rows = np.concatenate([warn_rows, to_s[rows[unstopped & (next_resume < 0)]]])

    def err_message(k: int, _: list[int]) -> str:
        r, o = err_rows[k], err_other[k]
        if k < n_id:
            x = int(s.eid[o])
            return (
                f"BLOCK_IO_ERROR(stop) of error {int(s.eid[r])} at seq {int(s.seq[r])} was "
                f"emitted while running; its stop request was consumed by {describe(s, o)} "
                f"(served by error {x}) but no STOP followed"
            )
        return (
            f"BLOCK_IO_ERROR(stop) at seq {int(s.seq[r])} was emitted while running but no STOP "
            f"came before {describe(s, o)}"
        )

    def warn_message(k: int, _: list[int]) -> str:
        r = warn_rows[k]
        return (
            f"BLOCK_IO_ERROR(stop) at seq {int(s.seq[r])} was emitted while running and its stop "
            f"request was still pending when the trace ended"
        )

    errors = findings(s, stop_follows, [err_rows, err_other],
                      device=s.device[err_rows], error_id=eids(s, err_rows), message=err_message)
    warnings = findings(s, stop_pending, [warn_rows], device=s.device[warn_rows],
                        error_id=eids(s, warn_rows), message=warn_message)
    return errors, warnings


def _served_after_resume(e: Steps, rows: np.ndarray, resume: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Whether the first STOP after the RESUME still serves the BIE(stop) at `rows`: no other
    BIE(stop) and no `stop` command between them, and that STOP not known to be other than an
    io-error stop. Then I4 holds (the BIE *is* followed by its STOP) and the order is
    `resume-before-retry-error`'s business (QEMU 2.1-2.12: BIE, RESUME, STOP), not a lost STOP."""
    out = (resume >= 0) & (stop > resume)
    out &= ~e.between(bie_stop(e), resume, stop, rows) & ~e.between(e.command("stop"), resume, stop, rows)
    # A query-status answered between the BIE and the RESUME with the VM stopped: the BIE's
    # stop happened before the RESUME, so the STOP after it is not the BIE's (its STOP is lost).
    stopped = e.reply("query-status") & (e.runstate >= 0) & (e.runstate != RS["running"])
    out &= ~e.between(stopped, rows, resume, rows)
    k = np.flatnonzero(out)
    out[k] = ~known_not_io_error(e, stop[k], e.next(e.event("RESUME"), stop[k]))
    return out


def _retry_bie(e: Steps, resumes: np.ndarray) -> np.ndarray:
    """Per RESUME (no-id form): a BIE(stop) after a `cont` was sent, between the last STOP
    before the RESUME and the RESUME: a retried request that failed before RESUME was emitted
    (-1: none). The first STOP after that RESUME is the one that serves it."""
    first_cont = e.after(e.command("cont"), np.full(len(resumes), -1, dtype=np.int64), resumes)
    lo = np.where(first_cont >= 0, np.maximum(e.prev(e.event("STOP"), resumes), first_cont), NULL)
    b = np.where(first_cont >= 0, e.after(bie_stop(e), lo, resumes), NULL)
    return np.where(b < resumes, b, NULL)


@decides(Rule(
    id="resume-before-retry-error",
    severity="error",
    guarantee="I6",
    title="after cont, RESUME comes before the retried requests' BLOCK_IO_ERROR",
    explanation=(
        "cont emits RESUME before it retries the parked requests, so a retry that fails again "
        "gives BLOCK_IO_ERROR and STOP after the RESUME (I6). A RESUME between a BLOCK_IO_ERROR "
        "and its STOP is the QEMU 2.1-2.12 ordering that made libvirt report 'paused (unknown)'. "
        "Where QEMU may throttle BLOCK_IO_ERROR (>= 9.2, or the version unknown), raising order, "
        "and a STOP whose event the window may have replaced is not judged."
    ),
    needs=("qmp_event:BLOCK_IO_ERROR", "qmp_event:RESUME", "qmp_event:STOP"),
    columns=("runstate", "prev_runstate", "event_ts_ns"),
))
def resume_before_retry_error(s: Steps, rule: RuleInfo) -> list[Finding]:
    """A RESUME between a BLOCK_IO_ERROR(stop) and the STOP it caused (I6)."""
    stop, resume, bie = s.event("STOP"), s.event("RESUME"), bie_stop(s)
    cand = np.flatnonzero(bie & s.has_eid)
    cand = cand[_ids(s, cand)]
    cand = cand[running_before(s, cand)]
    # With error ids: a RESUME strictly between the BIE and the STOP of served_by(E) after it.
    rows = cand
    sv = service(s, rows)
    stop_of_x = s.by_eid(stop).first(s.vm[rows], sv.served_by, sv.consumer >= 0)
    r_between = s.after(resume, rows, rows)
    bad = (stop_of_x > rows) & (r_between >= 0) & (r_between < stop_of_x)
    id_bie, id_resume, id_stop = rows[bad], r_between[bad], stop_of_x[bad]
    # Without (in emission order): RESUME R; a BIE(stop) after a cont command, between the
    # last STOP before R and R; the first STOP after R with no BIE(stop) and no stop command
    # between R and it, and not known to be other than an io-error stop (another monitor's
    # stop: its run state is paused).
    e, to_s = s.emitted
    e_stop, e_resume, e_bie = e.event("STOP"), e.event("RESUME"), bie_stop(e)
    resumes = np.flatnonzero(e_resume)
    resumes = resumes[~_ids(e, resumes)]
    b = _retry_bie(e, resumes)
    next_stop = e.next(e_stop, resumes)
    bad = (
        (b >= 0)
        & (b < resumes)
        & (next_stop >= 0)
        & ~e.between(e_bie, resumes, next_stop, resumes)
        & ~e.between(e.command("stop"), resumes, next_stop, resumes)
    )
    resumes, b, next_stop = resumes[bad], b[bad], next_stop[bad]
    # Throttled: with a BIE of that device sent within a window before the STOP, the STOP's
    # own BIE (after RESUME) may have been held and replaced by a later one (never sent).
    real = ~known_not_io_error(e, next_stop, e.next(e_resume, next_stop))
    real &= ~throttle_window_open(e, next_stop, e.device[b])
    n_id = len(id_bie)
    bies = np.concatenate([id_bie, to_s[b[real]]])
    res = np.concatenate([id_resume, to_s[resumes[real]]])
    stops = np.concatenate([id_stop, to_s[next_stop[real]]])

    def message(k: int, _: list[int]) -> str:
        what = f"of error {int(s.eid[bies[k]])} " if k < n_id else ""
        return (
            f"RESUME at seq {int(s.seq[res[k]])} came between BLOCK_IO_ERROR(stop) {what}at seq "
            f"{int(s.seq[bies[k]])} and the STOP it caused at seq {int(s.seq[stops[k]])}: the "
            f"retried request failed before RESUME was emitted (QEMU 2.1-2.12 ordering)"
        )

    error_id = np.where(np.arange(len(bies)) < n_id, eids(s, bies), NO_EID)
    return findings(s, rule, [bies, res, stops], device=s.device[bies],
                    error_id=error_id, message=message)
