"""The error action and io-status a policy gives (docs/rules.md §3, action-matches-policy)."""

from __future__ import annotations

import numpy as np

from analyzer.result import Finding, RuleInfo
from analyzer.rules.derived import changed_from_ok
from analyzer.rules.evidence import eids, findings
from analyzer.rules.rule import Rule, decides
from analyzer.steps import ACT, IOS, NULL, OP, POL, Steps
from tracer.qemu import ENOSPC
from tracer.schema import ACTIONS


def _expected_action(s: Steps) -> np.ndarray:
    """The action QEMU takes for each row's policy and errno (-1: not checked, e.g. auto)."""
    exp = np.full(s.n, NULL, dtype=np.int64)
    for pol in ("stop", "report", "ignore"):
        exp[s.policy == POL[pol]] = ACT[pol]
    enospc = s.policy == POL["enospc"]
    exp[enospc] = np.where(s.errno[enospc] == ENOSPC, ACT["stop"], ACT["report"])
    return exp


@decides(Rule(
    id="action-matches-policy",
    severity="error",
    guarantee="policy",
    title="the error action and io-status follow the configured policy",
    explanation=(
        "werror/rerror decide the action: stop, report and ignore map to themselves, enospc to "
        "stop on ENOSPC and report otherwise (and is rejected for reads); the first error sets "
        "io-status nospace for ENOSPC and failed otherwise."
    ),
    needs_one_of=(("error_action", "iostatus_set"),),
    columns=("iostatus",),
))
def action_matches_policy(s: Steps, rule: RuleInfo) -> list[Finding]:
    """error_action whose action is not the policy's, enospc on a read, or an iostatus_set that
    changed a device from ok to the wrong value for its errno."""
    # error_action rows.
    act = s.is_kind("error_action")
    exp = _expected_action(s)
    wrong_action = act & (exp >= 0) & (s.action != exp)
    enospc_read = act & (s.policy == POL["enospc"]) & (s.op == OP["read"])
    a_rows = np.flatnonzero(wrong_action | enospc_read)
    # iostatus_set rows that changed the device from ok.
    rows = np.flatnonzero(changed_from_ok(s))
    source = s.by_eid(act).first(s.vm[rows], s.eid[rows], s.has_eid[rows])
    errno = np.where(source >= 0, s.errno[np.maximum(source, 0)], NULL)
    expected = np.where(errno == ENOSPC, IOS["nospace"], IOS["failed"])
    bad = (errno > 0) & (s.iostatus[rows] != expected)
    i_rows, i_errno = rows[bad], errno[bad]
    all_rows = np.concatenate([a_rows, i_rows])
    n_a = len(a_rows)

    def message(k: int, _: list[int]) -> str:
        r = all_rows[k]
        if k < n_a:
            pol, errno_, op = s.text("policy", r), int(s.errno[r]), s.text("op", r)
            if enospc_read[r] and not wrong_action[r]:
                return f"policy enospc on a {op}: QEMU rejects rerror=enospc"
            want = ACTIONS[int(exp[r])]
            extra = "; and enospc is not valid for reads" if enospc_read[r] else ""
            return (
                f"error_action took action {s.text('action', r)} but policy {pol} with errno "
                f"{errno_} gives {want}{extra}"
            )
        e = int(i_errno[k - n_a])
        want = "nospace" if e == ENOSPC else "failed"
        return f"iostatus_set changed the device from ok to {s.text('iostatus', r)} for errno {e}; expected {want}"

    return findings(s, rule, [all_rows], device=s.device[all_rows],
                    error_id=eids(s, all_rows), message=message)
