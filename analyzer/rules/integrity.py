"""The integrity rules (seq-unique, ts-monotonic-per-thread, trace-truncated, recording-intact)
as findings.

Unlike the other rules these are not decided over a `Steps` batch: reading the trace decides
them over every row (`analyzer.trace.integrity`) and hands on plain facts. This module only
words each fact as the finding of its rule, with the evidence a user needs to find it.
"""

from __future__ import annotations

from collections.abc import Iterable

from analyzer.result import Finding
from analyzer.rules.catalogue import RULES
from analyzer.trace.integrity import (
    ClockBackwards,
    EmptyTrace,
    RecordingProblem,
    RepeatedSeq,
    TruncatedInput,
)

IntegrityFact = ClockBackwards | RepeatedSeq | TruncatedInput | RecordingProblem | EmptyTrace


def findings(facts: Iterable[IntegrityFact]) -> list[Finding]:
    """The findings of `facts`, in their order (a truncated input gives one per VM it holds)."""
    out: list[Finding] = []
    for fact in facts:
        if isinstance(fact, ClockBackwards):
            out.append(clock_backwards(fact))
        elif isinstance(fact, RepeatedSeq):
            out.append(repeated_seq(fact))
        elif isinstance(fact, RecordingProblem):
            out.append(recording_problem(fact))
        elif isinstance(fact, EmptyTrace):
            out.append(empty_trace(fact))
        else:
            out.extend(truncated_input(fact))
    return out


def clock_backwards(fact: ClockBackwards) -> Finding:
    """ts-monotonic-per-thread."""
    info = RULES["ts-monotonic-per-thread"]
    return Finding(
        rule=info.id, severity=info.severity, vm=fact.vm, device=None, error_id=None,
        seq=(fact.prev_seq, fact.seq), ts_ns=fact.prev_ts, thread=fact.thread,
        message=(f"thread '{fact.thread}' went back in time by {fact.prev_ts - fact.ts} ns: seq "
                 f"{fact.prev_seq} at {fact.prev_ts}, then seq {fact.seq} at {fact.ts}"),
        src=fact.src,
    )


def repeated_seq(fact: RepeatedSeq) -> Finding:
    """seq-unique."""
    info = RULES["seq-unique"]
    return Finding(
        rule=info.id, severity=info.severity, vm=fact.vm, device=None, error_id=None,
        seq=(fact.seq,) if fact.seqs == 1 else (fact.seq, fact.last or fact.seq),
        ts_ns=fact.ts, thread=fact.thread, message=_repeated_message(fact), src=(),
    )


def _repeated_message(fact: RepeatedSeq) -> str:
    """One sentence for all the seqs a set of files repeats: which files, how many seqs, where."""
    if fact.seqs == 1:
        text = f"seq {fact.seq} occurs {fact.count} times, in {', '.join(fact.paths)}"
    else:
        text = (f"{fact.seqs} seqs between {fact.seq} and {fact.last} occur in each of "
                f"{', '.join(fact.paths)} (the same steps read twice, or recordings of one VM that "
                f"no host or run tells apart)")
    if fact.clock_backs:
        text += (f"; {fact.clock_backs} steps whose clock goes back between the copies are not "
                 f"reported apart")
    return text


def truncated_input(fact: TruncatedInput) -> list[Finding]:
    """trace-truncated: one finding per VM the input holds (one with no VM when it holds none)."""
    info = RULES["trace-truncated"]
    if fact.interrupted:
        message = (f"{fact.group}: the recorder was interrupted before the run ended (its "
                   f"manifest is marked incomplete): the recording stops early")
    else:
        message = (f"{fact.group} has no completion manifest (or is marked truncated): the "
                   f"recording may have been cut short")
    return [
        Finding(
            rule=info.id, severity=info.severity, vm=vm, device=None, error_id=None, seq=(),
            ts_ns=None, thread=None, message=message, src=(fact.group,),
        )
        for vm in fact.vms or ("",)
    ]


#: What each kind of difference from the manifest means, in a user's words.
_RECORDING_PROBLEM = {
    "segment-missing": "segment {segment} is listed in the manifest but missing: its steps are not checked",
    "segment-sha256": "segment {segment} was altered: its content differs from the manifest's SHA-256",
    "segment-rows": "segment {segment} was altered: {detail}",
    "segment-extra": ("{segment} is not listed in the manifest (added or foreign) but would be "
                      "read with the recording"),
    "segment-name": "the manifest lists {segment!r}, which is not a file name inside the directory",
    "segment-outside": "segment {segment} resolves outside the trace directory",
    "segment-duplicate": "the manifest lists segment {segment} more than once",
    "segment-unreadable": "segment {segment} cannot be verified: {detail}",
    "rows-total": "the manifest's row total is wrong: {detail}",
    "manifest-unreadable": "the manifest cannot be used: {detail}",
}


def recording_problem(fact: RecordingProblem) -> Finding:
    """recording-intact: one finding per difference between a directory and its manifest."""
    info = RULES["recording-intact"]
    template = _RECORDING_PROBLEM.get(fact.kind, "{detail}")
    text = template.format(segment=fact.segment, detail=fact.detail)
    return Finding(
        rule=info.id, severity=info.severity, vm="", device=None, error_id=None, seq=(),
        ts_ns=None, thread=None, message=f"{fact.directory}: {text}",
        src=(fact.directory if fact.segment is None else f"{fact.directory}/{fact.segment}",),
    )


def empty_trace(fact: EmptyTrace) -> Finding:
    """trace-empty: one finding for the whole trace."""
    info = RULES["trace-empty"]
    names = ", ".join(fact.inputs[:3]) + (f" and {len(fact.inputs) - 3} more" if len(fact.inputs) > 3 else "")
    return Finding(
        rule=info.id, severity=info.severity, vm="", device=None, error_id=None, seq=(),
        ts_ns=None, thread=None, message=f"{names}: no steps at all (0 rows): nothing was checked",
        src=fact.inputs[:1],
    )
