"""The error action and io-status a policy gives (docs/rules.md §3, action-matches-policy)."""

from __future__ import annotations

import numpy as np

from analyzer.result import Finding, RuleInfo
from analyzer.rules.derived import changed_from_ok
from analyzer.rules.evidence import eids, findings
from analyzer.rules.rule import Rule, decides
from analyzer.steps import ACT, IOS, NULL, OP, POL, KeyedIndex, Steps
from tracer.qemu import ENOSPC
from tracer.schema import ACTIONS


def _expected_action(s: Steps, policy: np.ndarray | None = None) -> np.ndarray:
    """The action QEMU takes for each row's policy (or `policy`) and errno (-1: not checked,
    e.g. auto)."""
    policy = s.policy if policy is None else policy
    exp = np.full(s.n, NULL, dtype=np.int64)
    for pol in ("stop", "report", "ignore"):
        exp[policy == POL[pol]] = ACT[pol]
    enospc = policy == POL["enospc"]
    exp[enospc] = np.where(s.errno[enospc] == ENOSPC, ACT["stop"], ACT["report"])
    return exp


def _configured_policy(s: Steps) -> tuple[np.ndarray, np.ndarray]:
    """For each row: the policy its device was configured with for its op (the last
    ``device_config`` row of that VM, device and op before it: a domain log's command line),
    and that config row (-1: none; a null policy: not set on the command line)."""
    key = np.where((s.device >= 0) & (s.op >= 0), s.device.astype(np.int64) * len(OP) + s.op, NULL)
    config = s.is_kind("device_config") & (key >= 0)
    src = KeyedIndex(s, config, key).last_before(s.vm, key, s.idx, valid=key >= 0)
    pol = np.where(src >= 0, s.policy[np.maximum(src, 0)], NULL)
    return pol, src


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
    # error_action / iostatus_set rows (a trace log), or BLOCK_IO_ERROR events with the
    # devices' configuration (a per-domain log's command line).
    needs_one_of=(
        ("error_action", "iostatus_set", "device_config"),
        ("error_action", "iostatus_set", "qmp_event:BLOCK_IO_ERROR"),
    ),
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
    # BLOCK_IO_ERROR events of a device whose policy the command line gives.
    conf_pol, conf_row = _configured_policy(s)
    # (enospc with no errno known, a reason text other than EIO's, is not judged).
    event = s.event("BLOCK_IO_ERROR") & (s.action >= 0) & (conf_pol >= 0)
    event &= (conf_pol != POL["enospc"]) | (s.errno > 0)
    exp_event = _expected_action(s, conf_pol)
    e_rows = np.flatnonzero(event & (exp_event >= 0) & (s.action != exp_event))
    # iostatus_set rows that changed the device from ok.
    rows = np.flatnonzero(changed_from_ok(s))
    source = s.by_eid(act).first(s.vm[rows], s.eid[rows], s.has_eid[rows])
    errno = np.where(source >= 0, s.errno[np.maximum(source, 0)], NULL)
    expected = np.where(errno == ENOSPC, IOS["nospace"], IOS["failed"])
    bad = (errno > 0) & (s.iostatus[rows] != expected)
    i_rows, i_errno = rows[bad], errno[bad]
    all_rows = np.concatenate([a_rows, i_rows, e_rows])
    n_a, n_i = len(a_rows), len(i_rows)
    evidence = np.concatenate([np.full(n_a + n_i, NULL, dtype=np.int64), conf_row[e_rows]])

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
        if k >= n_a + n_i:
            c = int(conf_row[r])
            which = "werror" if s.op[r] == OP["write"] else "rerror"
            errno_ = int(s.errno[r]) if s.errno[r] > 0 else None
            return (
                f"BLOCK_IO_ERROR took action {s.text('action', r)} but the {s.text('op', r)} policy "
                f"configured on the command line ({which}={s.text('policy', c)}) with errno {errno_} "
                f"gives {ACTIONS[int(exp_event[r])]}"
            )
        e = int(i_errno[k - n_a])
        want = "nospace" if e == ENOSPC else "failed"
        return f"iostatus_set changed the device from ok to {s.text('iostatus', r)} for errno {e}; expected {want}"

    return findings(s, rule, [all_rows, evidence], device=s.device[all_rows],
                    error_id=eids(s, all_rows), message=message)
