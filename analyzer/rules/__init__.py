"""The rules: a catalogue of stable ids (`catalogue`), and one pure function per rule over a
batch of whole VMs (`Steps`), grouped by family:

* `ordering`  - iostatus-before-event, iostatus-before-stop, event-before-stop,
  stop-follows-error, stop-pending-at-end, resume-before-retry-error (I1-I4, I6)
* `threads`   - vm-stop-thread (I5)
* `queries`   - query-matches-events, query-matches-runstate, iostatus-reset-on-cont
* `policy`    - action-matches-policy
* `runstate`  - runstate-transition
* `integrity` - seq-unique, ts-monotonic-per-thread, trace-truncated: decided while reading,
  over every row, in `analyzer.trace`; worded as findings here.

`docs/rules.md` §3 defines each rule; the functions implement it literally.
"""

from __future__ import annotations

from collections.abc import Callable

from analyzer.result import Finding
from analyzer.rules import ordering, policy, queries, runstate, threads
from analyzer.rules.catalogue import INTEGRITY_RULES, RULE_IDS, RULES, applicable, catalogue, select
from analyzer.steps import Steps

RuleFn = Callable[[Steps], list[Finding]]

#: The function deciding each (non-integrity) rule.
FUNCTIONS: dict[str, RuleFn] = {
    "iostatus-before-event": ordering.iostatus_before_event,
    "iostatus-before-stop": ordering.iostatus_before_stop,
    "event-before-stop": ordering.event_before_stop,
    "stop-follows-error": ordering.stop_follows_error,
    "stop-pending-at-end": ordering.stop_pending_at_end,
    "resume-before-retry-error": ordering.resume_before_retry_error,
    "vm-stop-thread": threads.vm_stop_thread,
    "query-matches-events": queries.query_matches_events,
    "query-matches-runstate": queries.query_matches_runstate,
    "iostatus-reset-on-cont": queries.iostatus_reset_on_cont,
    "action-matches-policy": policy.action_matches_policy,
    "runstate-transition": runstate.runstate_transition,
}

#: Columns every check reads: replay order, integrity, evidence, episodes.
BASE_COLUMNS: tuple[str, ...] = (
    "seq", "ts_ns", "vm", "thread", "kind", "name", "device", "error_id", "action", "op",
    "errno", "policy", "src_file", "src_line",
)

#: Columns a rule reads beyond BASE_COLUMNS.
RULE_COLUMNS: dict[str, tuple[str, ...]] = {
    "iostatus-before-stop": ("runstate", "prev_runstate"),
    "event-before-stop": ("runstate", "prev_runstate", "cmd_seq", "event_ts_ns"),
    "stop-follows-error": ("runstate", "prev_runstate", "event_ts_ns"),
    "stop-pending-at-end": ("runstate", "prev_runstate", "event_ts_ns"),
    "resume-before-retry-error": ("runstate", "prev_runstate", "event_ts_ns"),
    "vm-stop-thread": ("thread_kind",),
    "query-matches-events": ("iostatus", "cmd_seq", "event_ts_ns"),
    "query-matches-runstate": ("iostatus", "runstate", "prev_runstate", "cmd_seq", "event_ts_ns"),
    "iostatus-reset-on-cont": ("iostatus", "cmd_seq", "event_ts_ns"),
    "action-matches-policy": ("iostatus",),
    "runstate-transition": ("runstate", "prev_runstate"),
}


def columns_for(rule_ids: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The trace columns to read for `rule_ids`, in schema order."""
    from tracer.schema import COLUMN_NAMES

    wanted = set(BASE_COLUMNS)
    for rid in rule_ids:
        wanted.update(RULE_COLUMNS.get(rid, ()))
    return tuple(c for c in COLUMN_NAMES if c in wanted)


def run(steps: Steps, rule_ids: list[str] | tuple[str, ...]) -> list[Finding]:
    """Every finding of the (non-integrity) rules `rule_ids` over a batch of whole VMs."""
    out: list[Finding] = []
    done_follow = False
    for rid in rule_ids:
        fn = FUNCTIONS.get(rid)
        if fn is None:
            continue
        if rid in ("stop-follows-error", "stop-pending-at-end"):
            if done_follow:
                continue
            errors, warnings = ordering.follows(steps)
            out.extend(errors if "stop-follows-error" in rule_ids else [])
            out.extend(warnings if "stop-pending-at-end" in rule_ids else [])
            done_follow = True
            continue
        out.extend(fn(steps))
    return out


__all__ = [
    "FUNCTIONS",
    "INTEGRITY_RULES",
    "RULES",
    "RULE_IDS",
    "Steps",
    "applicable",
    "catalogue",
    "columns_for",
    "run",
    "select",
]
