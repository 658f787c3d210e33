"""A deliberately simple reference checker: docs/rules.md §3 as plain loops over rows.

Used only by tests, to cross-check the vectorized rules on generated traces. It favours being
obviously right over being fast: each rule scans the VM's rows with list comprehensions and
explicit searches. It shares no code with `analyzer.rules` (only the QEMU facts of
`tracer.qemu`), and makes the same interpretation choices, documented in the analyzer:

* per VM: a VM with any error id is judged by ids, otherwise positionally;
* running before a step: last `runstate` row's new state (before the first: that row's
  prev_runstate); without runstate rows: no STOP since the last RESUME;
* a reply's *point* is its command (cmd_seq), else the reply itself; a reply without a name
  takes its command's.

`check_rows(rows)` returns the set of (rule, vm, error_id, seq-tuple) of every finding of the
non-integrity rules.

Throttled QEMU (>= 9.2, `check_rows(rows, throttled=True)`): BLOCK_IO_ERROR is rate-limited per
qom-path, so on the wire an event may arrive after the STOP it caused, after the next cont and
RESUME, or never (replaced); its QMP timestamp (`event_ts_ns`) stays the time it was raised.
Every rule is judged in *raising* order, and a held, late or replaced event is never missing:

* with error ids and ``monitor_protocol_event_queue`` rows (the simulator, a trace log): the
  raise of error E is its queue row; it stands for the event (same columns) at that position,
  and the ``qmp_event`` row of E (the delivery) is not judged; the evidence seq is the
  delivery's (the event a user can look up), or the queue row's when the event was never sent;
* without error ids (docs/rules.md §2 *emission order*): a BLOCK_IO_ERROR with a timestamp
  moves back to just before the first other row raised at or after it (rows' times taken as a
  running maximum in arrival order: a STOP / RESUME by its `event_ts_ns`, any other row by its
  `ts_ns`); one that arrived before a STOP / RESUME raised earlier than it moves forward past
  it. Its seq stays the evidence. A held event may have been replaced, so the rules that read
  an *absent* event as evidence are excused within a throttle window (1 s + 0.1 s of slack):
  event-before-stop and resume-before-retry-error when a BLOCK_IO_ERROR of the device arrived
  within a window before the STOP; iostatus-reset-on-cont (judged in arrival order, without
  iostatus rows) when a BLOCK_IO_ERROR of the device arrived within a window before the cont
  and was raised no later than the reply, or arrived after the reply raised before it, or a
  failed io_complete of the device (or of no named device) lies between the cont and the reply.
"""

from __future__ import annotations

from collections import defaultdict

from tracer.qemu import ALLOWED_TRANSITIONS, ENOSPC, action_for

Key = tuple[str, str, int | None, tuple[int, ...]]


QUEUE = "monitor_protocol_event_queue"
#: QEMU >= 9.2's BLOCK_IO_ERROR rate (1 s), plus slack for the clocks of different sources.
WINDOW_NS = 1_000_000_000 + 100_000_000


def check_rows(rows: list[dict], throttled: bool = False) -> set[Key]:
    by_vm: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_vm[r["vm"]].append(r)
    out: set[Key] = set()
    for vm, vrows in by_vm.items():
        vrows = sorted(vrows, key=lambda r: r["seq"])
        if throttled:
            raised, lenient = raising_order(vrows)
            if lenient:  # iostatus-reset-on-cont without ids: arrival order, window excuses
                out |= {k for k in _check_vm(vm, raised, lenient=True) if k[0] != "iostatus-reset-on-cont"}
                out |= {k for k in _check_vm(vm, vrows, lenient=True) if k[0] == "iostatus-reset-on-cont"}
            else:
                out |= _check_vm(vm, raised)
        else:
            out |= _check_vm(vm, vrows)
    return out


def _is_bie(r: dict) -> bool:
    return r["kind"] == "qmp_event" and r.get("name") == "BLOCK_IO_ERROR"


def raising_order(rows: list[dict]) -> tuple[list[dict], bool]:
    """One VM's rows (seq order) in the order BLOCK_IO_ERRORs were raised, and whether the
    trace is judged leniently (no error ids: a replaced event is invisible)."""
    raised = {r["error_id"] for r in rows
              if r["kind"] == "trace_event" and r.get("name") == QUEUE and r.get("error_id") is not None}
    if raised:
        sent = {r["error_id"]: r["seq"] for r in rows if _is_bie(r) and r.get("error_id") in raised}
        out = []
        for r in rows:
            if r["kind"] == "trace_event" and r.get("name") == QUEUE and r.get("error_id") is not None:
                seq = sent.get(r["error_id"], r["seq"])
                out.append({**r, "kind": "qmp_event", "name": "BLOCK_IO_ERROR", "seq": seq})
            elif not (_is_bie(r) and r.get("error_id") in raised):
                out.append(r)
        return out, False
    if any(r.get("error_id") is not None for r in rows):
        return rows, False
    order = list(range(len(rows)))
    pos = {}

    def time(r: dict) -> int:
        return r["event_ts_ns"] if r["kind"] == "qmp_event" and r.get("event_ts_ns") is not None else r["ts_ns"]

    others = []  # (index, running max of the raising times of the rows that are no BIE)
    marks = []  # (index, running max of the timestamps of STOP / RESUME so far)
    top = mtop = None
    for i, r in enumerate(rows):
        if _is_bie(r):
            continue
        top = time(r) if top is None else max(top, time(r))
        others.append((i, top))
        if r["kind"] == "qmp_event" and r.get("name") in ("STOP", "RESUME") and r.get("event_ts_ns") is not None:
            mtop = r["event_ts_ns"] if mtop is None else max(mtop, r["event_ts_ns"])
            marks.append((i, mtop))
    for i, r in enumerate(rows):
        if _is_bie(r) and r.get("event_ts_ns") is not None:
            t = r["event_ts_ns"]
            back = next((j for j, m in others if m >= t), None)
            if back is not None and back < i:
                pos[i] = back
                continue
            ahead = next((j for j, m in marks if m >= t), None)
            if ahead is not None and ahead > i and any(i < j < ahead for j, _ in marks):
                pos[i] = ahead
    order.sort(key=lambda i: (pos.get(i, i), 0 if i in pos else 1, i))
    return [rows[i] for i in order], True


class _VM:
    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows
        self.n = len(rows)
        self.by_seq = {r["seq"]: i for i, r in enumerate(rows)}
        self.has_ids = any(r.get("error_id") is not None for r in rows)
        self.has_runstate = any(r["kind"] == "runstate" for r in rows)
        self.has_io = any(r["kind"] in ("iostatus_set", "iostatus_reset") for r in rows)

    def get(self, i: int, col: str):
        return self.rows[i].get(col)

    def cmd(self, i: int) -> int | None:
        c = self.get(i, "cmd_seq")
        return self.by_seq.get(c) if c is not None else None

    def point(self, i: int) -> int:
        c = self.cmd(i)
        return c if c is not None else i

    def reply_name(self, i: int):
        name = self.get(i, "name")
        if name is None and self.get(i, "kind") == "qmp_reply":
            c = self.cmd(i)
            if c is not None:
                return self.get(c, "name")
        return name

    def is_(self, i: int, kind: str, name: str | None = None) -> bool:
        if self.get(i, "kind") != kind:
            return False
        if name is None:
            return True
        return (self.reply_name(i) if kind == "qmp_reply" else self.get(i, "name")) == name

    def event(self, i: int, name: str) -> bool:
        return self.is_(i, "qmp_event", name)

    def bie_stop(self, i: int) -> bool:
        return self.event(i, "BLOCK_IO_ERROR") and self.get(i, "action") == "stop"

    def find(self, pred, lo: int = -1, hi: int | None = None) -> int | None:
        """First index in (lo, hi) with pred."""
        hi = self.n if hi is None else hi
        for i in range(lo + 1, hi):
            if pred(i):
                return i
        return None

    def find_last(self, pred, hi: int, lo: int = -1) -> int | None:
        """Last index in (lo, hi) with pred."""
        for i in range(hi - 1, lo, -1):
            if pred(i):
                return i
        return None

    def any_between(self, pred, a: int, b: int) -> bool:
        lo, hi = min(a, b), max(a, b)
        return self.find(pred, lo, hi) is not None

    def running_before(self, s: int) -> bool:
        if self.has_runstate:
            last = self.find_last(lambda i: self.is_(i, "runstate"), s)
            if last is not None:
                return self.get(last, "runstate") == "running"
            first = self.find(lambda i: self.is_(i, "runstate"))
            return first is not None and self.get(first, "prev_runstate") == "running"
        def mark(i: int) -> bool:
            return (self.event(i, "STOP") or self.event(i, "RESUME")
                    or (self.is_(i, "qmp_reply", "query-status") and self.get(i, "runstate") is not None))

        last = self.find_last(mark, s)
        if last is None:
            first = self.find(mark)
            return first is None or not self.event(first, "RESUME")
        if self.event(last, "STOP"):
            return False
        return self.event(last, "RESUME") or self.get(last, "runstate") == "running"

    def retry_bie(self, resume: int) -> int | None:
        """A BIE(stop) after the first cont command, between the last STOP before RESUME
        `resume` and it (a retried request that failed before RESUME was emitted)."""
        s0 = self.find_last(lambda j: self.event(j, "STOP"), resume)
        first_cont = self.find(lambda j: self.is_(j, "qmp_command", "cont"))
        if first_cont is None:
            return None
        return self.find(lambda j: self.bie_stop(j) and j > first_cont, -1 if s0 is None else s0, resume)

    def known_not_io_error(self, stop: int, until: int | None) -> bool:
        """The run state right after STOP `stop` is known not to be io-error, from what lies
        before `until` (None: the end): the last runstate row since the RESUME before the STOP
        enters neither io-error nor running, or a query-status reply after the STOP, whose
        command was sent after the last STOP before it, says something other than io-error."""
        hi = self.n if until is None else until
        since = self.find_last(lambda j: self.event(j, "RESUME"), stop)
        last_rs = self.find_last(lambda j: self.is_(j, "runstate") and self.get(j, "runstate") is not None, hi)
        if (last_rs is not None and (since is None or last_rs > since)
                and self.get(last_rs, "runstate") not in ("io-error", "running")):
            return True
        for j in range(stop + 1, hi):
            if self.is_(j, "qmp_reply", "query-status") and self.get(j, "runstate") not in (None, "io-error"):
                last_stop = self.find_last(lambda k: self.event(k, "STOP"), j)
                if self.point(j) > (-1 if last_stop is None else last_stop):
                    return True
        return False

    def eid_first(self, pred, e) -> int | None:
        return self.find(lambda i: pred(i) and self.get(i, "error_id") == e)

    def service(self, e) -> tuple[int | None, bool]:
        """(consumer index, pending at end) of error e."""
        req = self.eid_first(lambda i: self.is_(i, "vmstop_request"), e)
        if req is not None:
            c = self.find(lambda i: (self.is_(i, "vm_stop") or self.is_(i, "vm_start"))
                          and self.get(i, "error_id") is not None, req)
            return c, c is None
        return self.eid_first(lambda i: self.is_(i, "vm_stop"), e), False

    def window_open(self, i: int, device) -> bool:
        """A BLOCK_IO_ERROR of `device` arrived within a throttle window before row i (then
        the row's own event may have been held and replaced)."""
        b = self.find_last(lambda j: self.event(j, "BLOCK_IO_ERROR") and self.get(j, "device") == device, i)
        return device is not None and b is not None and self.get(b, "ts_ns") + WINDOW_NS >= self.get(i, "ts_ns")

    def retry_may_have_failed(self, i: int, start: int) -> bool:
        """Reply row i shows the device not ok after the cont at `start`: the retried request
        may have failed again with its event held or replaced, or the trace shows it failing."""
        d = self.get(i, "device")

        def failed(j: int) -> bool:
            return self.is_(j, "io_complete") and (self.get(j, "errno") or 0) > 0

        if self.find(lambda j: failed(j) and self.get(j, "device") in (d, None), start, i) is not None:
            return True

        def bie_of_d(j: int) -> bool:
            return self.event(j, "BLOCK_IO_ERROR") and self.get(j, "device") == d

        def raised(j: int) -> int:
            t = self.get(j, "event_ts_ns")
            return self.get(j, "ts_ns") if t is None else t

        last = self.find_last(bie_of_d, i)
        if (last is not None and self.get(last, "ts_ns") + WINDOW_NS >= self.get(start, "ts_ns")
                and raised(last) <= self.get(i, "ts_ns")):
            return True
        nxt = self.find(bie_of_d, i)
        return nxt is not None and self.get(nxt, "event_ts_ns") is not None and raised(nxt) <= self.get(i, "ts_ns")

    def iostatus_before(self, device, at: int) -> str:
        last = self.find_last(lambda i: self.get(i, "kind") in ("iostatus_set", "iostatus_reset")
                              and self.get(i, "device") == device, at)
        if last is None or self.is_(last, "iostatus_reset"):
            return "ok"
        return self.get(last, "iostatus")


def _seqs(v: _VM, *idx: int | None) -> tuple[int, ...]:
    return tuple(sorted({v.get(i, "seq") for i in idx if i is not None}))


def _check_vm(vm: str, rows: list[dict], lenient: bool = False) -> set[Key]:
    v = _VM(rows)
    out: set[Key] = set()

    def add(rule: str, eid, *idx: int | None) -> None:
        out.add((rule, vm, eid, _seqs(v, *idx)))

    def judge(i: int) -> None:  # every rule, for row i
        e = v.get(i, "error_id")
        # iostatus-before-event
        if v.bie_stop(i) and e is not None:
            first_set = v.eid_first(lambda j: v.is_(j, "iostatus_set"), e)
            if first_set is None or first_set > i:
                add("iostatus-before-event", e, first_set, i)
        # iostatus-before-stop
        if (v.is_(i, "runstate") and v.get(i, "runstate") == "io-error"
                and v.get(i, "prev_runstate") != "io-error" and e is not None):
            first_set = v.eid_first(lambda j: v.is_(j, "iostatus_set"), e)
            if first_set is None or first_set > i:
                add("iostatus-before-stop", e, first_set, i)
        # event-before-stop
        if v.event(i, "STOP"):
            if v.has_ids:
                if e is not None:
                    b = v.eid_first(v.bie_stop, e)
                    if b is None or b > i:
                        add("event-before-stop", e, i, b)
            else:
                prev_r = v.find_last(lambda j: v.event(j, "RESUME"), i)
                lo = -1 if prev_r is None else prev_r
                next_r = v.find(lambda j: v.event(j, "RESUME"), i)
                b = v.find(v.bie_stop, i, next_r)
                served = (prev_r is not None and v.retry_bie(prev_r) is not None
                          and v.find(lambda j: v.event(j, "STOP"), prev_r) == i)
                if (v.find(v.bie_stop, lo, i) is None and b is not None and not served
                        and v.find(lambda j: v.is_(j, "qmp_command", "stop"), lo, i) is None
                        and not v.known_not_io_error(i, b)
                        and not (lenient and v.window_open(i, v.get(b, "device")))):
                    add("event-before-stop", None, i, b)
        # stop-follows-error / stop-pending-at-end / resume-before-retry-error (ids)
        if v.bie_stop(i) and v.running_before(i):
            if v.has_ids:
                if e is not None:
                    c, pending = v.service(e)
                    if pending:
                        add("stop-pending-at-end", e, i)
                    elif c is not None:
                        x = v.get(c, "error_id")
                        stop_x = v.eid_first(lambda j: v.event(j, "STOP"), x)
                        if stop_x is None and not v.any_between(lambda j: v.event(j, "STOP"), i, c):
                            add("stop-follows-error", e, i, c)
                        if stop_x is not None and stop_x > i:
                            r = v.find(lambda j: v.event(j, "RESUME"), i, stop_x)
                            if r is not None:
                                add("resume-before-retry-error", e, i, r, stop_x)
            else:
                ns = v.find(lambda j: v.event(j, "STOP"), i)
                nr = v.find(lambda j: v.event(j, "RESUME"), i)
                if ns is None or (nr is not None and nr < ns):
                    served_late = (  # BIE, RESUME, STOP: I4 holds; the order is I6's concern
                        nr is not None and ns is not None
                        and v.find(v.bie_stop, nr, ns) is None
                        and v.find(lambda j: v.is_(j, "qmp_command", "stop"), nr, ns) is None
                        and v.find(lambda j: v.is_(j, "qmp_reply", "query-status")
                                   and v.get(j, "runstate") not in (None, "running"), i, nr) is None
                        and not v.known_not_io_error(ns, v.find(lambda j: v.event(j, "RESUME"), ns))
                    )
                    if nr is None:
                        add("stop-pending-at-end", None, i)
                    elif not served_late:
                        add("stop-follows-error", None, i, nr)
        # resume-before-retry-error (without ids)
        if v.event(i, "RESUME") and not v.has_ids:
            b = v.retry_bie(i)
            s1 = v.find(lambda j: v.event(j, "STOP"), i)
            if (b is not None and s1 is not None and v.find(v.bie_stop, i, s1) is None
                    and v.find(lambda j: v.is_(j, "qmp_command", "stop"), i, s1) is None
                    and not v.known_not_io_error(s1, v.find(lambda j: v.event(j, "RESUME"), s1))
                    and not (lenient and v.window_open(s1, v.get(b, "device")))):
                add("resume-before-retry-error", None, b, i, s1)
        # vm-stop-thread
        if v.is_(i, "vm_stop") and v.get(i, "thread_kind") in ("iothread", "worker", "mgmt"):
            add("vm-stop-thread", e, i)
        # query-matches-events
        if v.is_(i, "qmp_reply", "query-block") and v.get(i, "iostatus") == "ok" and v.get(i, "device") is not None:
            d, p = v.get(i, "device"), v.point(i)
            b = v.find_last(lambda j: v.bie_stop(j) and v.get(j, "device") == d, p)
            if b is not None and v.find(
                lambda j: v.is_(j, "qmp_command", "cont") or v.is_(j, "qmp_reply", "cont")
                or v.event(j, "RESUME")
                or (v.is_(j, "iostatus_reset") and v.get(j, "device") == d), b, i) is None:
                add("query-matches-events", v.get(b, "error_id"), b, p, i)
        # query-matches-runstate
        if v.is_(i, "qmp_reply", "query-status") and v.get(i, "runstate") == "io-error":
            entered = v.find_last(lambda j: v.is_(j, "runstate") and v.get(j, "runstate") == "io-error"
                                  and v.get(j, "prev_runstate") != "io-error", i)
            eid = v.get(entered, "error_id") if entered is not None else None
            if v.has_io:
                devices = {r["device"] for r in rows
                           if r["kind"] in ("iostatus_set", "iostatus_reset") and r.get("device") is not None}
                if all(v.iostatus_before(d, i) == "ok" for d in devices):
                    add("query-matches-runstate", eid, entered, i)
            else:
                barrier = v.find(lambda j: v.is_(j, "qmp_command", "cont") or v.is_(j, "qmp_reply", "cont")
                                 or v.is_(j, "qmp_command", "stop") or v.event(j, "RESUME")
                                 or v.event(j, "STOP"), i)
                for c in range(i + 1, v.n):
                    replies = [j for j in range(v.n) if v.is_(j, "qmp_reply", "query-block") and v.point(j) == c]
                    shown = [v.get(j, "iostatus") for j in replies if v.get(j, "iostatus") is not None]
                    if shown and all(s == "ok" for s in shown):
                        if barrier is None or max(replies) < barrier:
                            add("query-matches-runstate", eid, entered, i, min(replies))
                        break
        # iostatus-reset-on-cont
        if (v.is_(i, "qmp_reply", "query-block") and v.get(i, "iostatus") in ("failed", "nospace")
                and v.get(i, "device") is not None):
            d, p = v.get(i, "device"), v.point(i)
            cr = v.find_last(lambda j: v.is_(j, "qmp_reply", "cont"), p)
            if cr is not None:
                cc = v.cmd(cr)
                if v.has_io:
                    boundary = v.find_last(lambda j: v.is_(j, "vm_start"), cr)
                    if boundary is None:
                        boundary = cc if cc is not None else cr
                    if v.find(lambda j: v.is_(j, "iostatus_set") and v.get(j, "device") == d, boundary, i) is None:
                        changed = v.find_last(
                            lambda j: v.is_(j, "iostatus_set") and v.get(j, "device") == d
                            and v.iostatus_before(d, j) == "ok" and v.get(j, "iostatus") != "ok", i)
                        add("iostatus-reset-on-cont", v.get(changed, "error_id") if changed is not None else None, cr, i)
                else:
                    start = cc if cc is not None else cr
                    nc = v.find(lambda j: v.is_(j, "qmp_command", "cont"), start)
                    if (v.find(lambda j: v.bie_stop(j) and v.get(j, "device") == d, start, nc) is None
                            and not (lenient and v.retry_may_have_failed(i, start))):
                        add("iostatus-reset-on-cont", None, cr, i)
        # action-matches-policy
        if v.is_(i, "error_action"):
            policy, action, errno, op = (v.get(i, c) for c in ("policy", "action", "errno", "op"))
            expected = action_for(policy, errno or 0) if policy is not None else None
            if (expected is not None and action != expected) or (policy == "enospc" and op == "read"):
                add("action-matches-policy", e, i)
        if v.is_(i, "iostatus_set") and v.get(i, "device") is not None:
            d = v.get(i, "device")
            if v.iostatus_before(d, i) == "ok" and v.get(i, "iostatus") != "ok":
                src = v.eid_first(lambda j: v.is_(j, "error_action"), e) if e is not None else None
                errno = v.get(src, "errno") if src is not None else None
                if errno is not None and errno > 0:
                    want = "nospace" if errno == ENOSPC else "failed"
                    if v.get(i, "iostatus") != want:
                        add("action-matches-policy", e, i)
        # runstate-transition
        if v.is_(i, "runstate"):
            prev, new = v.get(i, "prev_runstate"), v.get(i, "runstate")
            before = v.find_last(lambda j: v.is_(j, "runstate"), i)
            after = v.find(lambda j: v.is_(j, "runstate"), i)
            bad = prev is not None and new is not None and (prev, new) not in ALLOWED_TRANSITIONS
            bad |= before is not None and prev is not None and prev != v.get(before, "runstate")
            if prev == "running" and new not in (None, "running", "shutdown"):
                bad |= v.find(lambda j: v.event(j, "STOP"), i, after) is None
            if new == "running" and prev not in (None, "running", "prelaunch"):
                bad |= v.find(lambda j: v.event(j, "RESUME"), -1 if before is None else before, after) is None
            if bad:
                add("runstate-transition", e, i)

    for i in range(v.n):
        judge(i)
    return out
