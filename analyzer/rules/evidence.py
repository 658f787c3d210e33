"""Turning a rule's vectorized verdict (target rows, evidence rows) into `Finding` records.

Rules decide over whole columns; only the (few) offending rows become Python objects here, so
the cost is per finding, never per step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from analyzer.result import Finding, RuleInfo
from analyzer.steps import Steps

#: Marker for "no error id" in the int64 error-id arrays the rules pass in.
NO_EID = np.iinfo(np.int64).min


def findings(
    steps: Steps,
    rule: RuleInfo,
    evidence: Sequence[np.ndarray],
    *,
    device: np.ndarray,
    error_id: np.ndarray | None,
    message: Callable[[int, list[int]], str],
) -> list[Finding]:
    """One Finding of `rule` per position k of the parallel arrays.

    `evidence`: arrays of row indices (-1: absent) whose seqs are the finding's evidence (shown
    in seq order, de-duplicated: a BLOCK_IO_ERROR judged at its raise is named by its
    delivery's seq, `Steps.raised`). `device`: device codes (-1: none). `error_id`: error ids
    (`NO_EID`: none; see :func:`eids`), or None for a rule whose findings never carry one.
    `message(k, rows)` builds the text from the sorted evidence rows.
    """
    out: list[Finding] = []
    if not len(evidence) or not len(evidence[0]):
        return out
    stacked = np.stack([np.asarray(e, dtype=np.int64) for e in evidence], axis=1)
    for k in range(len(stacked)):
        rows = sorted({int(r) for r in stacked[k] if r >= 0})
        if not rows:
            continue
        first = rows[0]
        dev = int(device[k])
        eid: int | None = None
        if error_id is not None and error_id[k] != NO_EID:
            eid = int(error_id[k])
        out.append(
            Finding(
                rule=rule.id,
                severity=rule.severity,
                vm=steps.vm_names[int(steps.vm[first])],
                device=steps.device_names[dev] if dev >= 0 else None,
                error_id=eid,
                seq=tuple(sorted({int(steps.seq[r]) for r in rows})),
                ts_ns=int(steps.ts[first]),
                thread=steps.thread_names[int(steps.thread[first])],
                message=message(k, rows),
                src=source_refs(steps, rows),
            )
        )
    return out


def eids(steps: Steps, rows: np.ndarray) -> np.ndarray:
    """The error id of each row in `rows` (NO_EID where the row has none or rows[k] < 0)."""
    rows = np.asarray(rows, dtype=np.int64)
    safe = np.where(rows >= 0, rows, 0)
    ok = (rows >= 0) & steps.has_eid[safe] if len(rows) else np.zeros(0, dtype=bool)
    return np.where(ok, steps.eid[safe], NO_EID)


def source_refs(steps: Steps, rows: Sequence[int]) -> tuple[str, ...]:
    """"file:line" of each row imported from real output (rows without a source are skipped)."""
    refs = []
    for r in rows:
        f = int(steps.src_file[r])
        if f >= 0:
            line = int(steps.src_line[r])
            refs.append(f"{steps.src_names[f]}:{line}" if line >= 0 else steps.src_names[f])
    return tuple(refs)


def describe(steps: Steps, r: int) -> str:
    """A short human name of row `r`: `BLOCK_IO_ERROR (seq 12)`, `iostatus_set (seq 10)`."""
    kind = steps.text("kind", r)
    name = steps.text("name", r)
    label = name if kind in ("qmp_event",) and name else (f"{kind} {name}" if name else kind)
    return f"{label} (seq {int(steps.seq[r])})"
