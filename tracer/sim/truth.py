"""Ground truth: which guarantees the model broke, by the definitions of docs/rules.md §3.

Input: the *facts* the model appended while it ran (tuples in recording order, each with the
``seq`` of its row; see :mod:`tracer.sim.vm`), never the trace and never the analyzer. The
facts carry the model's own state where a definition needs it (run state at a BLOCK_IO_ERROR,
iostatus before and after a set, every iostatus at a query-status reply).

Output: the set of ``(error_id, rule)`` broken in one VM. :func:`truth_document` assembles the
``blkreplay.truth/1`` document for a run. Only error-severity rules other than the integrity
rules are listed (``stop-pending-at-end`` is a warning and is not), and the one warning the
model can cause on purpose, ``qom-path-swapped`` (:data:`TRUTH_WARNINGS`).

Throttled QEMU (>= 9.2): every guarantee is judged in *raising* order. The ``bie`` fact is the
raise (the ``monitor_protocol_event_queue`` row on the raising thread), whatever happens to
the event afterwards: sent at once, held and sent late by the main loop (after a STOP, a cont,
its RESUME), replaced by a newer one and never sent, or never sent because QEMU quit. None of
these is a violation; a violation at raising time (an event raised before its iostatus, a
stop requested before its event) stays one however late the event arrives.

Fact shapes (first element = kind)::

    ("error_action", seq, E, device, op, errno, policy, action)
    ("iostatus_set", seq, E, device, before, after, errno)
    ("bie", seq, E, device, action, running)      # BLOCK_IO_ERROR; running = model run state
    ("request", seq, E)                            # vmstop_request
    ("vm_stop", seq, X | None, thread_kind)
    ("vm_start", seq, X | None)
    ("runstate", seq, E | None, prev, new)
    ("stop", seq, X | None) / ("resume", seq, X | None)
    ("command", seq, name)                         # qmp_command sent by management
    ("cont_reply", seq, cmd_seq)
    ("reset", seq, device)                         # iostatus_reset
    ("qb_reply", seq, cmd_seq, device, iostatus | None)
    ("qs_reply", seq, cmd_seq, runstate, all_enabled_iostatus_ok)
    ("bie_sent", seq, E, device, swapped)          # >= 9.2: the event reaches the wire
    ("bie_held", seq, E) / ("bie_replaced", seq, E_replaced)   # >= 9.2, not judged
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from pathlib import Path

from tracer import qemu
from tracer.tracedir import atomic_write_text

TRUTH_SCHEMA = "blkreplay.truth/1"
TRUTH_NAME = "truth.json"

#: The rules ground truth speaks about (docs/rules.md: error severity, not integrity).
TRUTH_RULES: tuple[str, ...] = (
    "iostatus-before-event",
    "iostatus-before-stop",
    "event-before-stop",
    "stop-follows-error",
    "resume-before-retry-error",
    "vm-stop-thread",
    "query-matches-events",
    "query-matches-runstate",
    "iostatus-reset-on-cont",
    "action-matches-policy",
    "runstate-transition",
)
#: Warning rules ground truth speaks about: QEMU 9.2.0's swapped device / qom-path, once per
#: BLOCK_IO_ERROR that reaches the wire swapped (its error id).
TRUTH_WARNINGS: tuple[str, ...] = ("qom-path-swapped",)
#: Rules that are not applicable to a trace without iostatus_set rows.
NEEDS_IOSTATUS_SET = ("iostatus-before-event", "iostatus-before-stop")
_JUDGED_THREADS = frozenset({"iothread", "worker", "mgmt"})

Broken = set[tuple[int | None, str]]


def broken_in_vm(facts: Sequence[tuple]) -> Broken:
    """Every (error_id, rule) the facts of one VM break."""
    out: Broken = set()
    iostatus_set_of: set[int] = set()  # E with an iostatus_set so far
    bie_stop_of: set[int] = set()  # E with a BIE(stop) so far
    stop_seq_of: dict[int, int] = {}  # X -> seq of STOP(X)
    stop_seqs: list[int] = []
    resume_seqs: list[int] = []
    bies: list[tuple[int, int, bool]] = []  # (E, seq, running) of BIE(stop)
    requested: set[int] = set()
    group: list[int] = []  # requests since the last consumption
    served: dict[int, tuple[int, int]] = {}  # E -> (X, seq of the consumption)
    errno_of: dict[int, int] = {}
    # query-matches-events / iostatus-reset-on-cont state
    last_bie: dict[str, tuple[int, int]] = {}  # device -> (seq, E) of its latest BIE(stop)
    last_reset: dict[str, int] = {}
    last_cont_cmd = -1
    last_cont_reply = -1
    last_resume = -1
    last_cont_reply_boundary: int | None = None  # boundary of the latest cont reply
    last_vm_start = -1
    last_set_seq: dict[str, int] = {}  # device -> seq of its latest iostatus_set
    changed_by: dict[str, int] = {}  # device -> E of the iostatus_set that last changed it from ok
    iostatus: dict[str, str] = {}  # replayed iostatus (devices never set are ok)
    # query-block command seq -> (last BIE(stop) per device, boundary of the last cont reply),
    # as they were when the command was sent (query-matches-events' excuses run up to the reply)
    snapshots: dict[int, tuple[dict[str, tuple[int, int]], int | None]] = {}
    # runstate-transition state
    current = "prelaunch"
    pending_check: tuple[int, int | None, str, str] | None = None  # the previous runstate row
    prev_runstate_seq = -1
    io_error_by: int | None = None

    def check_transition(row: tuple[int, int | None, str, str], upto: int | None, before: int) -> None:
        seq, eid, prev, new = row
        # leaving running (except to shutdown) needs a STOP before the next runstate row
        leaves = prev == "running" and new not in ("running", "shutdown")
        if leaves and not _any_between(stop_seqs, seq, upto):
            out.add((eid, "runstate-transition"))
        # entering running (except from prelaunch) needs a RESUME since the previous row
        enters = new == "running" and prev not in ("running", "prelaunch")
        if enters and not _any_between(resume_seqs, before, upto):
            out.add((eid, "runstate-transition"))

    pending_before = -1
    for fact in facts:
        kind = fact[0]
        seq = fact[1]
        if kind == "error_action":
            _, _, E, device, op, errno, policy, action = fact
            errno_of[E] = errno
            expected = qemu.action_for(policy, errno)
            if (expected is not None and action != expected) or (policy == "enospc" and op == "read"):
                out.add((E, "action-matches-policy"))
        elif kind == "iostatus_set":
            _, _, E, device, before, after, errno = fact
            iostatus_set_of.add(E)
            last_set_seq[device] = seq
            if before == "ok" and after != "ok":
                changed_by[device] = E
                if (after == "nospace") != (errno == qemu.ENOSPC):
                    out.add((E, "action-matches-policy"))
            iostatus[device] = after
        elif kind == "bie":
            _, _, E, device, action, running = fact
            if action == "stop":
                if E not in iostatus_set_of:
                    out.add((E, "iostatus-before-event"))
                bie_stop_of.add(E)
                bies.append((E, seq, running))
                last_bie[device] = (seq, E)
        elif kind == "request":
            E = fact[2]
            requested.add(E)
            group.append(E)
        elif kind in ("vm_stop", "vm_start"):
            X = fact[2]
            if kind == "vm_stop" and fact[3] in _JUDGED_THREADS:
                out.add((X, "vm-stop-thread"))
            if kind == "vm_start":
                last_vm_start = seq
            if X is not None:
                for E in group:
                    served[E] = (X, seq)
                group = []
                if X not in requested and X not in served:
                    served[X] = (X, seq)  # a synchronous stop serves its own error
        elif kind == "runstate":
            _, _, E, prev, new = fact
            if (prev, new) not in qemu.ALLOWED_TRANSITIONS or prev != current:
                out.add((E, "runstate-transition"))
            if pending_check is not None:
                check_transition(pending_check, seq, pending_before)
            pending_check, pending_before = (seq, E, prev, new), prev_runstate_seq
            prev_runstate_seq = seq
            current = new
            if new == "io-error" and prev != "io-error":
                io_error_by = E
                if E not in iostatus_set_of:
                    out.add((E, "iostatus-before-stop"))
        elif kind == "stop":
            X = fact[2]
            stop_seqs.append(seq)
            if X is not None:
                stop_seq_of.setdefault(X, seq)
                if X not in bie_stop_of:
                    out.add((X, "event-before-stop"))
        elif kind == "resume":
            resume_seqs.append(seq)
            last_resume = seq
        elif kind == "command":
            name = fact[2]
            if name == "cont":
                last_cont_cmd = seq
            elif name == "query-block":
                snapshots[seq] = (dict(last_bie), last_cont_reply_boundary)
        elif kind == "cont_reply":
            last_cont_reply = seq
            last_cont_reply_boundary = last_vm_start
        elif kind == "reset":
            device = fact[2]
            last_reset[device] = seq
            iostatus[device] = "ok"
        elif kind == "qb_reply":
            _, _, cmd_seq, device, status = fact
            snap = snapshots.get(cmd_seq)
            if snap is None or status is None:
                continue
            bie_by_dev, boundary = snap
            if status == "ok":
                bie = bie_by_dev.get(device)
                # the latest BIE(stop) before the command, excused by a cont command, a cont
                # reply, a RESUME or a reset of the device between it and this reply
                excuse = max(last_cont_cmd, last_cont_reply, last_resume, last_reset.get(device, -1))
                if bie is not None and excuse < bie[0]:
                    out.add((bie[1], "query-matches-events"))
            elif boundary is not None and last_set_seq.get(device, -1) < boundary:
                out.add((changed_by.get(device), "iostatus-reset-on-cont"))
        elif kind == "bie_sent":
            if fact[4]:
                out.add((fact[2], "qom-path-swapped"))
        elif kind == "qs_reply":
            _, _, cmd_seq, state, model_all_ok = fact
            replayed_ok = all(v == "ok" for v in iostatus.values())
            if replayed_ok != model_all_ok:  # pragma: no cover - a model/record mismatch
                raise AssertionError(f"replayed iostatus differs from the model at seq {seq}")
            if state == "io-error" and replayed_ok:
                out.add((io_error_by, "query-matches-runstate"))
    if pending_check is not None:
        check_transition(pending_check, None, pending_before)

    stop_seqs.sort()
    resume_seqs.sort()
    for E, bseq, running in bies:
        if not running or E not in served:
            continue
        X, cseq = served[E]
        sseq = stop_seq_of.get(X)
        if sseq is None and not _any_between(stop_seqs, bseq, cseq):
            out.add((E, "stop-follows-error"))
        if sseq is not None and sseq > bseq and _any_between(resume_seqs, bseq, sseq):
            out.add((E, "resume-before-retry-error"))
    return out


def _any_between(sorted_seqs: list[int], lo: int, hi: int | None) -> bool:
    """Whether some seq lies strictly between lo and hi (hi None: up to the end)."""
    i = bisect_right(sorted_seqs, lo)
    if i >= len(sorted_seqs):
        return False
    return hi is None or sorted_seqs[i] < hi


def truth_document(
    variant: str, seed: int, broken: Iterable[tuple[str, int | None, str]], *, has_iostatus_set: bool
) -> dict:
    """The ``blkreplay.truth/1`` document: sorted by (vm, error_id, rule), de-duplicated."""
    rows = set(broken)
    if not has_iostatus_set:
        rows = {r for r in rows if r[2] not in NEEDS_IOSTATUS_SET}
    ordered = sorted(rows, key=lambda r: (r[0], r[1] is not None, r[1] or 0, r[2]))
    return {
        "schema": TRUTH_SCHEMA,
        "variant": variant,
        "seed": seed,
        "broken": [{"vm": vm, "error_id": eid, "rule": rule} for vm, eid, rule in ordered],
    }


#: Defaults the patterns' truth uses (those of analyzer.rules.patterns / analyzer.outage).
STORM_WINDOW_NS, STORM_MIN_PAUSES = 60 * 10**9, 5
INCIDENT_WINDOW_NS, INCIDENT_MIN_VMS = 30 * 10**9, 2


def pattern_truth(stop_times: dict[str, list[tuple[int, bool]]]) -> dict:
    """The operational patterns of a wall-clock run (``epoch_s``), from the model's STOP times
    (never the trace): the VMs that paused `STORM_MIN_PAUSES` times within `STORM_WINDOW_NS`
    (``pause-storm``), and the VM sets of the incidents: io-error STOPs of the fleet chained
    `INCIDENT_WINDOW_NS` apart, with at least `INCIDENT_MIN_VMS` VMs."""
    storms = []
    for vm, stops in sorted(stop_times.items()):
        times = [t for t, _ in stops]
        if any(times[k] - times[k - STORM_MIN_PAUSES + 1] <= STORM_WINDOW_NS
               for k in range(STORM_MIN_PAUSES - 1, len(times))):
            storms.append(vm)
    io = sorted((t, vm) for vm, stops in stop_times.items() for t, is_io in stops if is_io)
    groups: list[set[str]] = []
    last = None
    for t, vm in io:
        if last is None or t - last > INCIDENT_WINDOW_NS:
            groups.append(set())
        groups[-1].add(vm)
        last = t
    incidents = [sorted(g) for g in groups if len(g) >= INCIDENT_MIN_VMS]
    return {"pause-storm": storms, "incidents": incidents}


def write_truth(path: str | Path, doc: dict) -> None:
    """Write the document atomically with sorted keys."""
    atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")


def read_truth(path: str | Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
