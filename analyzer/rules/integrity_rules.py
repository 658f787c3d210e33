"""The integrity rules: declared like every rule, but produced by the trace reader.

Whether every (vm, seq) occurs once, whether timestamps go forwards within a thread, whether
the input is complete and whether a recording is what its manifest lists can only be decided
over *every* row as it is read (and over the inputs' manifests), not over the interesting rows
a `Steps` batch keeps. So these rules have no function over `Steps`: the reader
(`analyzer.trace`, and `analyzer.check` for trace-truncated and recording-intact) makes their
findings, and the catalogue marks them as produced by the reader.
"""

from __future__ import annotations

from analyzer.rules.rule import Rule

SEQ_UNIQUE = Rule(
    id="seq-unique",
    severity="error",
    guarantee="integrity",
    title="every (vm, seq) occurs once",
    explanation=(
        "seq is the replay order; a (vm, seq) recorded twice (e.g. two files holding the same "
        "steps) makes the order ambiguous."
    ),
)

TS_MONOTONIC_PER_THREAD = Rule(
    id="ts-monotonic-per-thread",
    severity="warning",
    guarantee="integrity",
    title="timestamps do not go backwards within a thread",
    explanation=(
        "One thread's steps happen one after the other; a timestamp smaller than the previous "
        "step's of the same thread points at a clock or recording problem."
    ),
)

TRACE_TRUNCATED = Rule(
    id="trace-truncated",
    severity="warning",
    guarantee="integrity",
    title="the trace is complete",
    explanation=(
        "An input without the recorder's completion manifest, with a manifest marked incomplete "
        "(the recorder was interrupted), or marked truncated by its producer may miss its last "
        "steps: rules near the end may be undecidable."
    ),
)

RECORDING_INTACT = Rule(
    id="recording-intact",
    severity="error",
    guarantee="integrity",
    title="the recording is what its manifest lists",
    explanation=(
        "A recorder directory's manifest lists every segment with its rows and SHA-256. A "
        "segment missing, altered, not listed (added or foreign), named outside the directory "
        "or listed twice means the steps checked are not the steps recorded: the verdict would "
        "be about other data."
    ),
)

TRACE_EMPTY = Rule(
    id="trace-empty",
    severity="warning",
    guarantee="integrity",
    title="the trace holds steps",
    explanation=(
        "A trace of no steps at all (an import of a log without any QEMU event, a recording "
        "that recorded nothing) cannot break a rule: a PASS would say nothing about QEMU."
    ),
)

#: The rules the reader produces, in catalogue order.
PRODUCED_BY_READER: tuple[Rule, ...] = (SEQ_UNIQUE, TS_MONOTONIC_PER_THREAD, TRACE_TRUNCATED,
                                        RECORDING_INTACT, TRACE_EMPTY)
