"""Operational patterns around I/O errors: warnings about how a fleet behaves, not about QEMU.

QEMU may keep every guarantee of docs/rules.md while the VMs it runs still suffer: management
resuming a VM before its storage is back, so it pauses again at once (KubeVirt #6599, #14589);
a VM flipping paused/running in a loop (KubeVirt #8562, #6600, #9704); oVirt's extend-on-ENOSPC
loop pausing a VM again and again because the extension is slower than the guest's writes
(vdsm #371); a disk whose error policy hands errors to the guest where the fleet expects it to
stop (KubeVirt #4799); a flood of BLOCK_IO_ERROR, which QEMU >= 9.2 throttles to one a second
per device (management then sees only some); VMs paused for longer than an SLO.

Each is a rule of severity `warning` (a healthy QEMU never FAILs because of them) with its
thresholds declared as parameters (`analyzer.params`; ``--param RULE.KEY=VALUE``), judged per
VM like every rule (incidents across VMs are `analyzer.outage`). Time windows are judged only
on wall-clock rows (`analyzer.timefmt.is_wall_clock`: imports and live captures): the
simulator's virtual clock compresses QEMU's seconds into milliseconds (management resumes
~2 ms after a stop), where a window of seconds holds a whole run and would flag every trace.
docs/rules.md §3 defines each rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from analyzer.params import Param
from analyzer.result import Finding, RuleInfo
from analyzer.rules.evidence import eids, findings
from analyzer.rules.rule import Rule, decides
from analyzer.steps import ACT, NULL, OP, POL, Steps
from analyzer.timefmt import WALL_CLOCK_MIN_NS, format_ts, seconds
from tracer.qemu import ENOSPC

_NS = 1e9


def _wall(s: Steps) -> np.ndarray:
    """Rows whose time is a wall clock (see the module doc)."""
    return s.ts >= WALL_CLOCK_MIN_NS


def _bursts(s: Steps, rows: np.ndarray, key: np.ndarray, window_ns: int, min_count: int) -> tuple[np.ndarray, ...]:
    """Bursts among `rows` (row indices) grouped by `key` (one int per row of `rows`): chains of
    rows of one key each within `window_ns` of the previous, in which at least `min_count` lie
    within one window. Returns per burst: its first row, the row where the count was reached,
    its last row, its number of rows and the largest count within one window (vectorized)."""
    empty = np.zeros(0, dtype=np.int64)
    if not len(rows):
        return empty, empty, empty, empty, empty
    ts = s.ts[rows]
    order = np.lexsort((rows, ts, key))
    rows, ts, key = rows[order], ts[order], key[order]
    _, krank = np.unique(key, return_inverse=True)
    uniq, trank = np.unique(ts, return_inverse=True)
    width = np.int64(len(uniq) + 1)
    comb = krank.astype(np.int64) * width + trank
    # rows of the same key with ts > ts_i - window: from the first with rank >= start
    start = np.searchsorted(uniq, ts - window_ns, side="right")
    left = np.searchsorted(comb, krank.astype(np.int64) * width + start, side="left")
    count = np.arange(len(rows)) - left + 1
    new_key = np.concatenate([[True], krank[1:] != krank[:-1]])
    gap = np.concatenate([[True], (ts[1:] - ts[:-1]) > window_ns])
    chain = np.cumsum(new_key | gap) - 1
    n_chain = int(chain[-1]) + 1
    peak = np.zeros(n_chain, dtype=np.int64)
    np.maximum.at(peak, chain, count)
    first = np.full(n_chain, len(rows), dtype=np.int64)
    np.minimum.at(first, chain, np.arange(len(rows)))
    last = np.zeros(n_chain, dtype=np.int64)
    np.maximum.at(last, chain, np.arange(len(rows)))
    hit = count >= min_count
    trig = np.full(n_chain, len(rows), dtype=np.int64)
    np.minimum.at(trig, chain[hit], np.flatnonzero(hit))
    size = np.bincount(chain, minlength=n_chain)
    keep = peak >= min_count
    return rows[first[keep]], rows[trig[keep]], rows[last[keep]], size[keep], peak[keep]


def _span(s: Steps, a: int, b: int) -> str:
    return f"{format_ts(int(s.ts[a]))} .. {format_ts(int(s.ts[b]))}"


# ------------------------------------------------------------------------------ storms

@decides(Rule(
    id="pause-storm",
    severity="warning",
    guarantee="pattern",
    title="a VM does not flip paused/running again and again",
    explanation=(
        "A VM paused min_pauses times or more within window_s is flapping: storage failing on "
        "and off, or management resuming it into the same error (KubeVirt #8562, #6600, #9704). "
        "One finding per storm; wall-clock traces only."
    ),
    needs=("qmp_event:STOP",),
    params=(
        Param("window_s", 60.0, "seconds within which the pauses are counted"),
        Param("min_pauses", 5, "pauses within window_s that make a storm", minimum=2),
    ),
))
def pause_storm(s: Steps, rule: RuleInfo, *, params: Mapping[str, Any]) -> list[Finding]:
    """STOP events of a VM, min_pauses within window_s (chained storms reported once)."""
    rows = np.flatnonzero(s.event("STOP") & _wall(s))
    window = int(params["window_s"] * _NS)
    first, trig, last, size, peak = _bursts(s, rows, s.vm[rows].astype(np.int64), window,
                                            int(params["min_pauses"]))

    def message(k: int, _: list[int]) -> str:
        return (f"VM paused {int(size[k])} times ({_span(s, first[k], last[k])}), up to {int(peak[k])} "
                f"within {params['window_s']:g} s: a pause/resume storm (threshold "
                f"{params['min_pauses']} within {params['window_s']:g} s)")

    return findings(s, rule, [first, trig, last], device=np.full(len(first), NULL),
                    error_id=None, message=message)


@decides(Rule(
    id="io-error-event-storm",
    severity="warning",
    guarantee="pattern",
    title="a device does not raise a flood of BLOCK_IO_ERROR",
    explanation=(
        "min_events BLOCK_IO_ERROR or more of one device within window_s: the guest keeps "
        "hitting a failing disk (often under werror/rerror=report or ignore). QEMU >= 9.2 "
        "delivers at most one a second per device, so management saw only some. Wall-clock "
        "traces only."
    ),
    needs=("qmp_event:BLOCK_IO_ERROR",),
    params=(
        Param("window_s", 1.0, "seconds within which the events are counted"),
        Param("min_events", 20, "events of one device within window_s that make a storm", minimum=2),
    ),
))
def io_error_event_storm(s: Steps, rule: RuleInfo, *, params: Mapping[str, Any]) -> list[Finding]:
    """BLOCK_IO_ERROR (at their raise) of one (VM, device), min_events within window_s."""
    rows = np.flatnonzero(s.event("BLOCK_IO_ERROR") & _wall(s))
    key = s.vm[rows].astype(np.int64) * np.int64(len(s.device_names) + 2) + (s.device[rows] + 1)
    window = int(params["window_s"] * _NS)
    first, trig, last, size, peak = _bursts(s, rows, key, window, int(params["min_events"]))

    def message(k: int, _: list[int]) -> str:
        text = (f"{int(size[k])} BLOCK_IO_ERROR ({_span(s, first[k], last[k])}), up to {int(peak[k])} "
                f"within {params['window_s']:g} s (threshold {params['min_events']})")
        if s.throttle[first[k]]:
            span_s = (int(s.ts[last[k]]) - int(s.ts[first[k]])) / _NS
            text += (f"; QEMU >= 9.2 throttles them to one a second per device: management saw "
                     f"about {int(span_s) + 1} of them, the others were dropped")
        return text

    return findings(s, rule, [first, trig, last], device=s.device[first], error_id=None,
                    message=message)


@decides(Rule(
    id="enospc-pause-loop",
    severity="warning",
    guarantee="pattern",
    title="a device does not pause the VM on ENOSPC again and again",
    explanation=(
        "min_pauses ENOSPC stops of one device or more, each within window_s of the previous: "
        "thin provisioning extends the volume after each pause, slower than the guest writes "
        "(oVirt/vdsm's extend-on-ENOSPC loop, vdsm #371). Wall-clock traces only."
    ),
    needs=("qmp_event:BLOCK_IO_ERROR",),
    params=(
        Param("window_s", 300.0, "seconds within which the ENOSPC pauses are counted"),
        Param("min_pauses", 3, "ENOSPC pauses of one device within window_s that make a loop", minimum=2),
    ),
))
def enospc_pause_loop(s: Steps, rule: RuleInfo, *, params: Mapping[str, Any]) -> list[Finding]:
    """BLOCK_IO_ERROR with errno ENOSPC and action stop of one (VM, device), chained."""
    rows = np.flatnonzero(s.event("BLOCK_IO_ERROR") & (s.errno == ENOSPC) & (s.action == ACT["stop"]) & _wall(s))
    key = s.vm[rows].astype(np.int64) * np.int64(len(s.device_names) + 2) + (s.device[rows] + 1)
    window = int(params["window_s"] * _NS)
    first, trig, last, size, _ = _bursts(s, rows, key, window, int(params["min_pauses"]))

    def message(k: int, _: list[int]) -> str:
        return (f"{int(size[k])} ENOSPC pauses of the device ({_span(s, first[k], last[k])}) without "
                f"the volume keeping up: the extension is slower than the guest's writes "
                f"(threshold {params['min_pauses']} within {params['window_s']:g} s)")

    return findings(s, rule, [first, trig, last], device=s.device[first], error_id=eids(s, first),
                    message=message)


# ------------------------------------------------------------------------------ management

@decides(Rule(
    id="resume-before-storage-back",
    severity="warning",
    guarantee="pattern",
    title="management resumes a VM only once its storage is back",
    explanation=(
        "An I/O error that stops the VM within within_s after the RESUME ending an io-error "
        "pause: the VM was resumed while its storage still failed (KubeVirt #6599, #14589). One finding per run of such resumes "
        "of a VM; wall-clock traces only."
    ),
    needs=("qmp_event:RESUME",),
    params=(Param("within_s", 10.0, "an I/O error this soon after RESUME counts"),),
))
def resume_before_storage_back(s: Steps, rule: RuleInfo, *, params: Mapping[str, Any]) -> list[Finding]:
    """RESUME ending an io-error pause (a stopping I/O error since the previous RESUME, then a
    STOP) followed, in the same VM, by a stopping I/O error within within_s; consecutive ones of
    a VM are one finding."""
    resume_mask = s.event("RESUME")
    err = (s.event("BLOCK_IO_ERROR") | s.is_kind("error_action")) & (s.action == ACT["stop"])
    resume = np.flatnonzero(resume_mask & _wall(s))
    prev_resume = s.prev(resume_mask, resume)
    paused = (s.prev(s.event("STOP"), resume) > prev_resume) & (s.prev(err, resume) > prev_resume)
    resume = resume[paused]
    nxt = s.next(err, resume)
    delay = np.where(nxt >= 0, s.ts[np.maximum(nxt, 0)] - s.ts[resume], -1)
    early = (nxt >= 0) & (delay >= 0) & (delay <= int(params["within_s"] * _NS))
    if not early.any():
        return []
    same_vm = np.concatenate([[False], s.vm[resume][1:] == s.vm[resume][:-1]])
    prev_early = np.concatenate([[False], early[:-1]])
    start = early & ~(same_vm & prev_early)
    run_id = np.cumsum(start) - 1
    e = np.flatnonzero(early)
    gid = run_id[e]
    n = int(gid.max()) + 1
    first_k = np.full(n, len(resume), dtype=np.int64)
    np.minimum.at(first_k, gid, e)
    last_k = np.zeros(n, dtype=np.int64)
    np.maximum.at(last_k, gid, e)
    count = np.bincount(gid, minlength=n)
    first, last, error = resume[first_k], resume[last_k], nxt[first_k]

    def message(k: int, _: list[int]) -> str:
        many = f"{int(count[k])} times ({_span(s, first[k], last[k])})" if count[k] > 1 else "once"
        return (f"management resumed the VM {many} before its storage was back for good: an I/O error "
                f"stopped it again {seconds(int(delay[first_k[k]]))} after RESUME (threshold "
                f"{params['within_s']:g} s)")

    return findings(s, rule, [first, error, last], device=s.device[error], error_id=None,
                    message=message)


@decides(Rule(
    id="paused-over-slo",
    severity="warning",
    guarantee="pattern",
    title="a VM paused on an I/O error is running again within the SLO",
    explanation=(
        "An io-error pause (STOP after a BLOCK_IO_ERROR that stops) longer than slo_s until its "
        "RESUME, or still paused slo_s after it at the end of the trace. One finding per VM, "
        "with its longest pause."
    ),
    needs=("qmp_event:STOP",),
    params=(Param("slo_s", 300.0, "seconds a VM may stay paused on an I/O error"),),
))
def paused_over_slo(s: Steps, rule: RuleInfo, *, params: Mapping[str, Any]) -> list[Finding]:
    """STOP rows preceded (since the last RESUME) by a stopping BLOCK_IO_ERROR, paused longer
    than slo_s (to their RESUME, else to the VM's last row)."""
    stop = np.flatnonzero(s.event("STOP"))
    bie = s.event("BLOCK_IO_ERROR") & (s.action == ACT["stop"])
    resume_mask = s.event("RESUME")
    io_error = s.prev(bie, stop) > s.prev(resume_mask, stop)
    stop = stop[io_error]
    if not len(stop):
        return []
    res = s.next(resume_mask, stop)
    end = np.where(res >= 0, res, s.vend[stop] - 1)
    dur = s.ts[end] - s.ts[stop]
    over = dur > int(params["slo_s"] * _NS)
    stop, res, dur = stop[over], res[over], dur[over]
    if not len(stop):
        return []
    vms, inverse = np.unique(s.vm[stop], return_inverse=True)
    worst = np.full(len(vms), -1, dtype=np.int64)
    np.maximum.at(worst, inverse, dur)
    pick = np.flatnonzero(dur == worst[inverse])
    _, first_of = np.unique(inverse[pick], return_index=True)
    k_rows = pick[first_of]
    count = np.bincount(inverse, minlength=len(vms))
    rows, ends = stop[k_rows], res[k_rows]

    def message(k: int, _: list[int]) -> str:
        tail = "" if ends[k] >= 0 else " (still paused at the end of the trace)"
        return (f"VM stayed paused on an I/O error longer than the SLO ({params['slo_s']:g} s) "
                f"{int(count[k])} time(s); longest {seconds(int(dur[k_rows[k]]))} from "
                f"{format_ts(int(s.ts[rows[k]]))}{tail}")

    return findings(s, rule, [rows, ends], device=np.full(len(rows), NULL), error_id=None,
                    message=message)


# ------------------------------------------------------------------------------ policy

_POLICY_NAMES = ("report", "ignore", "enospc", "auto")


@decides(Rule(
    id="error-policy-not-stop",
    severity="warning",
    guarantee="pattern",
    title="disks stop the VM on I/O errors, as the fleet expects",
    explanation=(
        "A device configured (werror/rerror on the command line, an error action's policy) or "
        "seen (BLOCK_IO_ERROR action) with a policy in `policies` hands errors to the guest "
        "instead of pausing the VM: guest filesystems go read-only or corrupt (KubeVirt #4799). "
        "One finding per VM and device."
    ),
    needs_one_of=(("device_config", "error_action", "qmp_event:BLOCK_IO_ERROR"),),
    params=(Param("policies", "report,ignore", "policies (or BLOCK_IO_ERROR actions) to warn about",
                  choices=_POLICY_NAMES),),
))
def error_policy_not_stop(s: Steps, rule: RuleInfo, *, params: Mapping[str, Any]) -> list[Finding]:
    """device_config / error_action rows whose policy, and BLOCK_IO_ERROR rows whose action, is
    one of `policies`: one finding per (VM, device), at its first such row, naming each
    (operation, policy) seen."""
    names = params["policies"].split(",")
    pols = [POL[n] for n in names]
    acts = [ACT[n] for n in names if n in ACT]
    is_config = s.is_kind("device_config")
    by_policy = (is_config | s.is_kind("error_action")) & np.isin(s.policy, pols)
    by_action = s.event("BLOCK_IO_ERROR") & np.isin(s.action, acts)
    rows = np.flatnonzero(by_policy | by_action)
    if not len(rows):
        return []
    dev_key = s.vm[rows].astype(np.int64) * np.int64(len(s.device_names) + 2) + (s.device[rows] + 1)
    # the distinct (how, op, value) of each (VM, device): a handful, whatever the rows
    how = np.where(by_action[rows], 2, np.where(is_config[rows], 0, 1))
    value = np.where(by_action[rows], s.action[rows], s.policy[rows])
    detail = ((dev_key * 3 + how) * np.int64(len(OP) + 1) + (s.op[rows] + 1)) * np.int64(len(POL) + 1) + value
    _, first_detail = np.unique(detail, return_index=True)
    details = rows[np.sort(first_detail)]
    _, first = np.unique(dev_key, return_index=True)
    out_rows = rows[np.sort(first)]
    detail_dev = s.vm[details].astype(np.int64) * np.int64(len(s.device_names) + 2) + (s.device[details] + 1)

    def what(r: int) -> str:
        op = s.text("op", r) or "any op"
        if by_action[r]:
            return f"BLOCK_IO_ERROR action {s.text('action', r)} on a {op}"
        if is_config[r]:
            return f"{'werror' if s.op[r] == OP['write'] else 'rerror'}={s.text('policy', r)}"
        return f"error policy {s.text('policy', r)} on a {op}"

    def message(k: int, _: list[int]) -> str:
        r = out_rows[k]
        key = int(s.vm[r]) * (len(s.device_names) + 2) + int(s.device[r]) + 1
        seen = ", ".join(what(int(d)) for d in details[detail_dev == key])
        return f"{seen}: the guest sees I/O errors instead of the VM pausing (the fleet expects stop)"

    return findings(s, rule, [out_rows], device=s.device[out_rows], error_id=None, message=message)
