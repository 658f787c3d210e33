"""What a management client was told: query-block and query-status answers against the events
and the replayed state (docs/rules.md §3: query-matches-events, query-matches-runstate,
iostatus-reset-on-cont).

A reply row is recorded when the state is read, atomically with it; its *point* is the moment
the question was asked (the command at `cmd_seq`, else the reply itself).
"""

from __future__ import annotations

import numpy as np

from analyzer.result import Finding, RuleInfo
from analyzer.rules.derived import (
    THROTTLE_SLACK_NS,
    THROTTLE_WINDOW_NS,
    changed_from_ok,
    iostatus_rows,
    replayed_iostatus,
    vm_has,
)
from analyzer.rules.evidence import NO_EID, eids, findings
from analyzer.rules.masks import bie_stop, enters_io_error, not_ok
from analyzer.rules.rule import Rule, decides
from analyzer.steps import IOS, NULL, RS, Steps


@decides(Rule(
    id="query-matches-events",
    severity="error",
    guarantee="I1",
    title="query-block does not show ok after an unreset BLOCK_IO_ERROR(stop)",
    explanation=(
        "After a BLOCK_IO_ERROR(stop) of a device, query-block must show that device's io-status "
        "as failed or nospace until cont resets it: 'info block' never shows less than the "
        "events said (I1)."
    ),
    needs=("qmp_reply:query-block", "qmp_event:BLOCK_IO_ERROR"),
    columns=("iostatus", "cmd_seq", "event_ts_ns"),
))
def query_matches_events(s: Steps, rule: RuleInfo) -> list[Finding]:
    """query-block says ok for a device after its BIE(stop), with no cont or reset since.

    The window ends at the reply, not the command: a cont processed while the query waited
    (ours, or another monitor's, seen only by its RESUME: cont resets every io-status before
    it emits RESUME) may have reset the device. Positions are in emission order
    (`Steps.emitted`: a throttled BLOCK_IO_ERROR arrives late)."""
    e, to_s = s.emitted
    rows = np.flatnonzero(e.reply("query-block") & (e.iostatus == IOS["ok"]) & (e.device >= 0))
    point = e.point[rows]
    vm, dev = e.vm[rows], e.device[rows]
    bie = e.by_device(bie_stop(e)).last_before(vm, dev, point)
    last_cont = e.prev(e.command("cont") | e.reply("cont") | e.event("RESUME"), rows)
    last_reset = e.by_device(e.is_kind("iostatus_reset")).last_before(vm, dev, rows)
    bad = (bie >= 0) & (np.maximum(last_cont, last_reset) < bie)
    rows, point, bie = to_s[rows[bad]], to_s[point[bad]], to_s[bie[bad]]

    def message(k: int, _: list[int]) -> str:
        r, b = rows[k], bie[k]
        return (
            f"query-block at seq {int(s.seq[point[k]])} showed io-status ok for "
            f"'{s.text('device', r)}' after BLOCK_IO_ERROR(stop) at seq {int(s.seq[b])}, with no "
            f"cont, RESUME or io-status reset before the reply"
        )

    return findings(s, rule, [bie, point, rows], device=s.device[rows],
                    error_id=eids(s, bie), message=message)


def _entered_io_error(s: Steps, at: np.ndarray) -> np.ndarray:
    """The last runstate row entering io-error strictly before each position (-1: none)."""
    return s.prev(enters_io_error(s), at)


def _all_enabled_ok(s: Steps, rows: np.ndarray) -> np.ndarray:
    """Whether every iostatus-enabled device of the row's VM has a replayed io-status ok at the
    row. Enabled devices are those with iostatus_set / iostatus_reset rows."""
    io = np.flatnonzero(iostatus_rows(s) & (s.device >= 0))
    width = np.int64(len(s.device_names) + 1)
    pairs = np.unique(s.vm[io].astype(np.int64) * width + s.device[io])
    pair_vm, pair_dev = pairs // width, pairs % width
    lo = np.searchsorted(pair_vm, s.vm[rows], side="left")
    hi = np.searchsorted(pair_vm, s.vm[rows], side="right")
    counts = hi - lo
    target = np.repeat(np.arange(len(rows)), counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    pair = np.repeat(lo, counts) + offset
    values = replayed_iostatus(s, pair_dev[pair], rows[target])
    failed = np.bincount(target, weights=not_ok(values), minlength=len(rows))
    return failed == 0


@decides(Rule(
    id="query-matches-runstate",
    severity="error",
    guarantee="I2",
    title="query-status io-error is backed by a failed io-status",
    explanation=(
        "While the run state is io-error, some iostatus-enabled device must show failed or "
        "nospace: the io-status is set before the VM stops (I2)."
    ),
    needs=("qmp_reply:query-status",),
    needs_one_of=(("iostatus_set", "iostatus_reset", "qmp_reply:query-block"),),
    columns=("iostatus", "runstate", "prev_runstate", "cmd_seq", "event_ts_ns"),
))
def query_matches_runstate(s: Steps, rule: RuleInfo) -> list[Finding]:
    """query-status answered io-error while every iostatus-enabled device was ok."""
    rows = np.flatnonzero(s.reply("query-status") & (s.runstate == RS["io-error"]))
    with_io = vm_has(s, iostatus_rows(s), rows)
    # With iostatus rows: the replayed io-status at the reply. An io-status row that names no
    # device (a trace without a `device` column) cannot say which device stayed failed, so its
    # VM's replies are not judged this way: "every device ok" would hold vacuously.
    unnamed = vm_has(s, iostatus_rows(s) & (s.device < 0), rows)
    io_rows = rows[with_io & ~unnamed]
    io_bad = io_rows[_all_enabled_ok(s, io_rows)]
    # Without: a later query-block (before any cont, stop or RESUME) shows every device with an
    # io-status ok.
    # The barrier is searched up to the query-block *reply*: a cont processed before our
    # query (another monitor's shows only as its RESUME) resets every io-status first.
    e, to_s = s.emitted
    new_of = np.empty(s.n, dtype=np.int64)
    new_of[to_s] = e.idx
    q_rows = new_of[rows[~with_io]]
    qb = np.flatnonzero(e.reply("query-block"))
    pts = e.point[qb]
    has_status = e.iostatus[qb] >= 0
    n_status = np.bincount(pts, weights=has_status, minlength=e.n)
    n_bad = np.bincount(pts, weights=has_status & not_ok(e.iostatus[qb]), minlength=e.n)
    all_ok = (n_status > 0) & (n_bad == 0)
    last_reply = np.full(e.n, NULL, dtype=np.int64)
    np.maximum.at(last_reply, pts, qb)
    first_reply = np.full(e.n, e.n, dtype=np.int64)
    np.minimum.at(first_reply, pts, qb)
    barrier = (e.command("cont") | e.reply("cont") | e.command("stop") | e.event("RESUME")
               | e.event("STOP"))
    ok_cmd = e.next(all_ok, q_rows)
    stop_at = e.next(barrier, q_rows)
    found = (ok_cmd >= 0) & ((stop_at < 0) | (last_reply[np.maximum(ok_cmd, 0)] < stop_at))
    q_bad, q_reply = to_s[q_rows[found]], to_s[first_reply[ok_cmd[found]]]
    bad = np.concatenate([io_bad, q_bad])
    shown = np.concatenate([np.full(len(io_bad), NULL, dtype=np.int64), q_reply])
    entered = _entered_io_error(s, bad)
    n_io = len(io_bad)

    def message(k: int, _: list[int]) -> str:
        r = bad[k]
        if k < n_io:
            return (
                f"query-status at seq {int(s.seq[r])} answered io-error while every "
                f"iostatus-enabled device was ok"
            )
        return (
            f"query-status at seq {int(s.seq[r])} answered io-error but query-block at seq "
            f"{int(s.seq[shown[k]])} (no cont, stop, STOP or RESUME before its reply) showed every "
            f"device ok"
        )

    return findings(s, rule, [entered, bad, shown],
                    device=np.full(len(bad), NULL), error_id=eids(s, entered), message=message)




def _retry_may_have_failed(s: Steps, rows: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Whether the io-status a query-block reply row shows not ok after the cont at `start`
    may be a retried request that failed again, its BLOCK_IO_ERROR unseen (no-id form):

    only where the VM may throttle (QEMU >= 9.2, or unknown; elsewhere the retry's event is
    always sent and the caller's search finds it):

    * a BLOCK_IO_ERROR of the device was sent within a throttle window before the retry could
      fail, i.e. one that arrived no earlier than a window before the cont and was raised no
      later than the reply, or one after the reply raised before it; then the retried
      request's event was held (delivered late, maybe after the next cont) or replaced and
      never sent. A held, late or replaced BLOCK_IO_ERROR is never missing;
    * the trace shows the retried request failing (a failed ``io_complete``: a trace log's
      ``virtio_blk_rw_complete ... ret -N``) of the device, or of an unnamed one, after the
      cont and before the reply, its event unseen.
    """
    if not len(rows):
        return np.zeros(0, dtype=bool)
    vm, dev = s.vm[rows], s.device[rows]
    failed = s.is_kind("io_complete") & (s.errno > 0)
    by_dev = s.by_device(failed).last_before(vm, dev, rows)
    unnamed = failed & (s.device < 0)
    proven = (by_dev > start) | s.between(unnamed, start, rows, rows)
    # Throttle: the last BIE of D that arrived before the reply, and whether it (or a later
    # one raised before the reply) lies inside the window.
    bie = s.event("BLOCK_IO_ERROR") & (s.device >= 0)
    last = s.by_device(bie).last_before(vm, dev, rows)
    arrived = s.ts[np.maximum(last, 0)]
    raised = np.where(s.evt[np.maximum(last, 0)] >= 0, s.evt[np.maximum(last, 0)], arrived)
    window = (last >= 0) & (arrived + THROTTLE_WINDOW_NS + THROTTLE_SLACK_NS >= s.ts[start]) & (raised <= s.ts[rows])
    # A late BIE of D raised before the reply but arriving after it also opened a window.
    nxt = s.by_device(bie).first_after(vm, dev, rows)
    late = (nxt >= 0) & (s.evt[np.maximum(nxt, 0)] >= 0) & (s.evt[np.maximum(nxt, 0)] <= s.ts[rows])
    return s.throttle[rows] & (proven | window | late)


@decides(Rule(
    id="iostatus-reset-on-cont",
    severity="error",
    guarantee="cont",
    title="cont resets every io-status to ok",
    explanation=(
        "cont resets the io-status of every device before it resumes the VM; a device still "
        "failed after cont, with no new error since, means the reset was lost. Where QEMU may "
        "throttle BLOCK_IO_ERROR (>= 9.2, or the version unknown) a retried request that "
        "failed again inside the 1-second window has its event held or replaced: that is a "
        "new error too."
    ),
    needs=("qmp_reply:query-block", "qmp_reply:cont"),
    columns=("iostatus", "cmd_seq", "event_ts_ns"),
))
def iostatus_reset_on_cont(s: Steps, rule: RuleInfo) -> list[Finding]:
    """query-block shows a device not ok after a cont that should have reset it."""
    rows = np.flatnonzero(s.reply("query-block") & not_ok(s.iostatus) & (s.device >= 0))
    point = s.point[rows]
    cont_reply = s.prev(s.reply("cont"), point)
    keep = cont_reply >= 0
    rows, point, cont_reply = rows[keep], point[keep], cont_reply[keep]
    vm, dev = s.vm[rows], s.device[rows]
    with_io = vm_has(s, iostatus_rows(s), rows)
    # With iostatus rows: no iostatus_set of D between the cont's boundary and the reply (the
    # moment the io-status was read).
    cont_cmd = s.cmd_index[cont_reply]
    boundary = s.prev(s.is_kind("vm_start"), cont_reply)
    boundary = np.where(boundary >= 0, boundary, np.where(cont_cmd >= 0, cont_cmd, cont_reply))
    last_set = s.by_device(s.is_kind("iostatus_set")).last_before(vm, dev, rows)
    stale_io = last_set < boundary
    # Without: no BIE(stop) of D from the cont command until the next cont command (or the end).
    start = np.where(cont_cmd >= 0, cont_cmd, cont_reply)
    next_cont = s.next(s.command("cont"), start)
    bie = s.by_device(bie_stop(s)).first_after(vm, dev, start)
    stale_ev = (bie < 0) | ((next_cont >= 0) & (bie > next_cont))
    stale_ev &= ~_retry_may_have_failed(s, rows, start)
    bad = np.where(with_io, stale_io, stale_ev)
    rows, point, cont_reply, with_io = rows[bad], point[bad], cont_reply[bad], with_io[bad]
    changed = s.by_device(changed_from_ok(s)).last_before(s.vm[rows], s.device[rows], rows)
    error_id = np.where(with_io, eids(s, changed), NO_EID)

    def message(k: int, _: list[int]) -> str:
        r = rows[k]
        return (
            f"query-block at seq {int(s.seq[point[k]])} showed '{s.text('device', r)}' "
            f"{s.text('iostatus', r)} after cont (reply at seq {int(s.seq[cont_reply[k]])}) with "
            f"no new error of that device since: cont did not reset its io-status"
        )

    return findings(s, rule, [cont_reply, rows], device=s.device[rows],
                    error_id=error_id, message=message)
