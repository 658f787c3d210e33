"""Run-state transitions (docs/rules.md §3, runstate-transition)."""

from __future__ import annotations

import numpy as np

from analyzer.importers.qapi_events import UNNAMED_PREFIX
from analyzer.result import Finding, RuleInfo
from analyzer.rules.evidence import eids, findings
from analyzer.rules.rule import Rule, decides
from analyzer.steps import NULL, RS, Steps
from tracer.qemu import ALLOWED_TRANSITIONS
from tracer.schema import RUNSTATES

#: ALLOWED[a, b]: QEMU accepts a -> b (same-state sets included).
ALLOWED = np.zeros((len(RUNSTATES), len(RUNSTATES)), dtype=bool)
for _a, _b in ALLOWED_TRANSITIONS:
    ALLOWED[RS[_a], RS[_b]] = True


def _events_shown(s: Steps) -> np.ndarray:
    """Per row: whether its VM's trace shows its QMP events by name: it has some, and none
    that stayed a number (a trace log of event numbers without a known QEMU version:
    `event-names-unknown`). A trace log that does not trace monitor events at all, or cannot
    name them, cannot tell a silent run-state change from an unrecorded STOP or RESUME."""
    event = s.is_kind("qmp_event")
    numbers = np.array([i for i, n in enumerate(s.names) if n.startswith(UNNAMED_PREFIX)], dtype=np.int64)
    return s.vm_any(event) & ~s.vm_any(event & np.isin(s.name, numbers))


@decides(Rule(
    id="runstate-transition",
    severity="error",
    guarantee="runstate",
    title="run-state transitions follow QEMU's table and are announced",
    explanation=(
        "Every run-state change must be in QEMU's transition table and start from the state the "
        "replay reached; leaving running is announced by STOP, entering it by RESUME (judged "
        "only where the trace shows the VM's events by name). suspended -> paused (stop) and "
        "paused -> suspended (cont, QEMU >= 9.0) are QEMU's own transitions."
    ),
    needs=("runstate",),
    columns=("runstate", "prev_runstate"),
))
def runstate_transition(s: Steps, rule: RuleInfo) -> list[Finding]:
    """A transition outside QEMU's table, from a state the replay did not reach, or not
    announced (leaving running without STOP, entering it without RESUME)."""
    is_rs = s.is_kind("runstate")
    rows = np.flatnonzero(is_rs)
    prev, new = s.prev_runstate[rows], s.runstate[rows]
    known = (prev >= 0) & (new >= 0)
    illegal = known & ~ALLOWED[np.maximum(prev, 0), np.maximum(new, 0)]
    # prev_runstate against the replayed state (unknown before the VM's first runstate row).
    before = s.prev(is_rs, rows)
    replayed = np.where(before >= 0, s.runstate[np.maximum(before, 0)], NULL)
    mismatch = (before >= 0) & (prev >= 0) & (prev != replayed)
    after = s.next(is_rs, rows)
    running = RS["running"]
    # Announcements are judged only where the trace shows the VM's events by name.
    shown = _events_shown(s)[rows]
    # A guest's own suspend to RAM (running -> suspended: SUSPEND) and its wake-up (suspended ->
    # running: WAKEUP) are announced by other events; shutdown stops without STOP.
    suspended = RS["suspended"]
    leaves = shown & (prev == running) & ~np.isin(new, (running, RS["shutdown"], suspended)) & (new >= 0)
    silent_stop = leaves & ~s.between(s.event("STOP"), rows, after, rows)
    enters = shown & (new == running) & (prev >= 0) & ~np.isin(prev, (running, RS["prelaunch"], suspended))
    silent_resume = enters & ~s.between(s.event("RESUME"), before, after, rows)
    bad = illegal | mismatch | silent_stop | silent_resume
    reasons = [
        (illegal, "{prev} -> {new} is not in QEMU's transition table"),
        (mismatch, "prev_runstate {prev} but the replayed state was {replayed}"),
        (silent_stop, "left running for {new} with no STOP before the next run-state change"),
        (silent_resume, "entered running from {prev} with no RESUME around it"),
    ]
    keep = np.flatnonzero(bad)
    out_rows = rows[keep]

    def message(k: int, _: list[int]) -> str:
        j = keep[k]
        words = {
            "prev": RUNSTATES[prev[j]] if prev[j] >= 0 else "?",
            "new": RUNSTATES[new[j]] if new[j] >= 0 else "?",
            "replayed": RUNSTATES[replayed[j]] if replayed[j] >= 0 else "?",
        }
        parts = [text.format(**words) for mask, text in reasons if mask[j]]
        return f"runstate at seq {int(s.seq[rows[j]])}: " + "; ".join(parts)

    return findings(s, rule, [out_rows], device=np.full(len(out_rows), NULL),
                    error_id=eids(s, out_rows), message=message)
