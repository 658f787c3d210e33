"""Which thread may stop the VM (docs/rules.md §3, vm-stop-thread, I5)."""

from __future__ import annotations

import numpy as np

from analyzer.result import Finding, RuleInfo
from analyzer.rules.evidence import eids, findings
from analyzer.rules.rule import Rule, decides
from analyzer.steps import TK, Steps

#: Thread kinds that must never call vm_stop. `unknown` is not judged: an importer that cannot
#: name a thread must not cause a finding.
FORBIDDEN = (TK["iothread"], TK["worker"], TK["mgmt"])


@decides(Rule(
    id="vm-stop-thread",
    severity="error",
    guarantee="I5",
    title="vm_stop runs on the main loop or a vCPU, never an iothread",
    explanation=(
        "Since QEMU 2.1 an I/O error only requests the stop; the main loop performs it. vm_stop "
        "on an iothread, worker or management thread is the pre-2014 synchronous stop (I5)."
    ),
    needs=("vm_stop",),
    columns=("thread_kind",),
))
def vm_stop_thread(s: Steps, rule: RuleInfo) -> list[Finding]:
    """vm_stop on an iothread, worker or management thread (the pre-2014 synchronous stop)."""
    rows = np.flatnonzero(s.is_kind("vm_stop") & np.isin(s.thread_kind, FORBIDDEN))

    def message(k: int, _: list[int]) -> str:
        r = rows[k]
        return (
            f"vm_stop at seq {int(s.seq[r])} ran on {s.text('thread_kind', r)} thread "
            f"'{s.text('thread', r)}': only the main loop or a vCPU may stop the VM"
        )

    return findings(s, rule, [rows], device=s.device[rows], error_id=eids(s, rows),
                    message=message)
