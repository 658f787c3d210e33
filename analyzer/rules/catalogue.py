"""The rule catalogue: stable ids, severities, titles, the guarantee each rule checks, and what a
trace must contain for the rule to apply.

`docs/rules.md` §3 is the definition of every rule; the explanations here say it in a user's
words. Ids are stable: CI configurations and suppressions refer to them.

Applicability: a rule whose step kinds a trace does not contain is *not applicable* (a
QMP-only import has no `iostatus_set` rows, so "iostatus before event" cannot be judged and must
not be reported as passed). `needs` lists what must all be present ("kind" or "kind:name");
`NEEDS_ONE_OF` adds alternatives where either of two kinds of evidence will do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from analyzer.result import RuleInfo
from tracer.errors import InputError

_CATALOGUE: tuple[RuleInfo, ...] = (
    RuleInfo(
        "iostatus-before-event",
        "error",
        "iostatus is set before BLOCK_IO_ERROR",
        "For action stop, QEMU sets the device's io-status before it emits BLOCK_IO_ERROR, so "
        "'info block' never shows less than the events said (I1). A BLOCK_IO_ERROR(stop) with no "
        "iostatus_set of the same error before it breaks that.",
        "I1",
        ("iostatus_set",),
    ),
    RuleInfo(
        "iostatus-before-stop",
        "error",
        "iostatus is set before the run state becomes io-error",
        "The io-status of the failing device must be set before the VM enters io-error (I2): a "
        "client that sees the VM paused must find the failed device in query-block.",
        "I2",
        ("iostatus_set", "runstate"),
    ),
    RuleInfo(
        "event-before-stop",
        "error",
        "BLOCK_IO_ERROR comes before the STOP it causes",
        "BLOCK_IO_ERROR is emitted under vmstop_lock before the stop request is stored, so the "
        "STOP caused by an I/O error always follows its BLOCK_IO_ERROR (I3).",
        "I3",
        ("qmp_event:STOP",),
    ),
    RuleInfo(
        "stop-follows-error",
        "error",
        "every BLOCK_IO_ERROR(stop) while running is followed by STOP",
        "A BLOCK_IO_ERROR with action stop emitted while the VM runs must be followed by a STOP "
        "(or the STOP/RESUME pair when cont raced the pending request) (I4).",
        "I4",
        ("qmp_event:BLOCK_IO_ERROR",),
    ),
    RuleInfo(
        "stop-pending-at-end",
        "warning",
        "a stop request is still pending when the trace ends",
        "A BLOCK_IO_ERROR(stop) was emitted while running but its stop request was not consumed "
        "before the trace ended, so whether STOP followed cannot be decided (I4).",
        "I4",
        ("qmp_event:BLOCK_IO_ERROR",),
    ),
    RuleInfo(
        "resume-before-retry-error",
        "error",
        "after cont, RESUME comes before the retried requests' BLOCK_IO_ERROR",
        "cont emits RESUME before it retries the parked requests, so a retry that fails again "
        "gives BLOCK_IO_ERROR and STOP after the RESUME (I6). A RESUME between a BLOCK_IO_ERROR "
        "and its STOP is the QEMU 2.1-2.12 ordering that made libvirt report 'paused (unknown)'.",
        "I6",
        ("qmp_event:BLOCK_IO_ERROR", "qmp_event:RESUME", "qmp_event:STOP"),
    ),
    RuleInfo(
        "vm-stop-thread",
        "error",
        "vm_stop runs on the main loop or a vCPU, never an iothread",
        "Since QEMU 2.1 an I/O error only requests the stop; the main loop performs it. vm_stop "
        "on an iothread, worker or management thread is the pre-2014 synchronous stop (I5).",
        "I5",
        ("vm_stop",),
    ),
    RuleInfo(
        "query-matches-events",
        "error",
        "query-block does not show ok after an unreset BLOCK_IO_ERROR(stop)",
        "After a BLOCK_IO_ERROR(stop) of a device, query-block must show that device's io-status "
        "as failed or nospace until cont resets it: 'info block' never shows less than the "
        "events said (I1).",
        "I1",
        ("qmp_reply:query-block", "qmp_event:BLOCK_IO_ERROR"),
    ),
    RuleInfo(
        "query-matches-runstate",
        "error",
        "query-status io-error is backed by a failed io-status",
        "While the run state is io-error, some iostatus-enabled device must show failed or "
        "nospace: the io-status is set before the VM stops (I2).",
        "I2",
        ("qmp_reply:query-status",),
    ),
    RuleInfo(
        "iostatus-reset-on-cont",
        "error",
        "cont resets every io-status to ok",
        "cont resets the io-status of every device before it resumes the VM; a device still "
        "failed after cont, with no new error since, means the reset was lost.",
        "cont",
        ("qmp_reply:query-block", "qmp_reply:cont"),
    ),
    RuleInfo(
        "action-matches-policy",
        "error",
        "the error action and io-status follow the configured policy",
        "werror/rerror decide the action: stop, report and ignore map to themselves, enospc to "
        "stop on ENOSPC and report otherwise (and is rejected for reads); the first error sets "
        "io-status nospace for ENOSPC and failed otherwise.",
        "policy",
        (),
    ),
    RuleInfo(
        "runstate-transition",
        "error",
        "run-state transitions follow QEMU's table and are announced",
        "Every run-state change must be in QEMU's transition table and start from the state the "
        "replay reached; leaving running is announced by STOP, entering it by RESUME.",
        "runstate",
        ("runstate",),
    ),
    RuleInfo(
        "seq-unique",
        "error",
        "every (vm, seq) occurs once",
        "seq is the replay order; a (vm, seq) recorded twice (e.g. two files holding the same "
        "steps) makes the order ambiguous.",
        "integrity",
        (),
    ),
    RuleInfo(
        "ts-monotonic-per-thread",
        "warning",
        "timestamps do not go backwards within a thread",
        "One thread's steps happen one after the other; a timestamp smaller than the previous "
        "step's of the same thread points at a clock or recording problem.",
        "integrity",
        (),
    ),
    RuleInfo(
        "trace-truncated",
        "warning",
        "the trace is complete",
        "An input without the recorder's completion manifest (or marked truncated by its "
        "producer) may miss its last steps: rules near the end may be undecidable.",
        "integrity",
        (),
    ),
)

#: Alternatives: the rule applies when at least one entry of each group is present.
NEEDS_ONE_OF: dict[str, tuple[tuple[str, ...], ...]] = {
    "query-matches-runstate": (("iostatus_set", "iostatus_reset", "qmp_reply:query-block"),),
    "action-matches-policy": (("error_action", "iostatus_set"),),
}

RULES: dict[str, RuleInfo] = {r.id: r for r in _CATALOGUE}
RULE_IDS: tuple[str, ...] = tuple(r.id for r in _CATALOGUE)
INTEGRITY_RULES: frozenset[str] = frozenset({"seq-unique", "ts-monotonic-per-thread", "trace-truncated"})


def catalogue() -> list[RuleInfo]:
    """Every rule, in catalogue order."""
    return list(_CATALOGUE)


def select(ids: Iterable[str] | None) -> list[RuleInfo]:
    """The rules named by `ids` in catalogue order (all when None); unknown ids are an error."""
    if ids is None:
        return catalogue()
    wanted = [i.strip() for i in ids if i and i.strip()]
    unknown = sorted(set(wanted) - set(RULES))
    if unknown:
        raise InputError(
            f"unknown rule id {', '.join(unknown)}; known rules: {', '.join(RULE_IDS)}"
        )
    if not wanted:
        raise InputError("no rule selected")
    chosen = set(wanted)
    return [r for r in _CATALOGUE if r.id in chosen]


def applicable(rule: RuleInfo, present: Sequence[str] | frozenset[str] | set[str]) -> bool:
    """Whether a trace containing the step kinds / "kind:name" entries `present` can be judged
    by `rule`."""
    have = set(present)
    if not all(need in have for need in rule.needs):
        return False
    return all(any(alt in have for alt in group) for group in NEEDS_ONE_OF.get(rule.id, ()))
