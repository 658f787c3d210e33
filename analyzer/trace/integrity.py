"""Integrity facts of a trace: what reading it reveals about the recording itself.

Four things can be wrong with a trace as a recording rather than with the QEMU behaviour it
shows: a step recorded twice (the same (vm, seq) in two files), a thread's clock going back,
an input cut short (no manifest, or one marked incomplete by an interrupted recorder), and a
recording that is not what its manifest lists (a segment missing, altered, added, foreign, or
named outside the directory). The first two are decided while reading, over every row (the
rules only see the rows they need), the last two from the manifests (`Trace.truncated`,
`Trace.recording_problems`); all are handed on as plain facts, and `analyzer.rules.integrity`
words them as the findings of the `seq-unique`, `ts-monotonic-per-thread`, `trace-truncated`
and `recording-intact` rules.

The array functions here are pure, over whole columns, so any table of steps can use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class ClockBackwards:
    """A step of a thread whose timestamp is below the thread's previous step's."""

    vm: str
    thread: str
    prev_seq: int
    prev_ts: int
    seq: int
    ts: int
    #: Source locations of the previous step and this one, where the trace records them.
    src: tuple[str, ...]


@dataclass(frozen=True)
class RepeatedSeq:
    """A (vm, seq) that occurs more than once (in different files)."""

    vm: str
    seq: int
    #: ts_ns and thread of its first occurrence in replay order.
    ts: int
    thread: str
    count: int
    #: The files holding it, sorted.
    paths: tuple[str, ...]


class TruncatedInput(NamedTuple):
    """An input without a completion mark, and the VMs it holds (sorted)."""

    group: str
    vms: tuple[str, ...]
    #: Its manifest says the recorder was interrupted (rather than: no manifest at all).
    interrupted: bool = False


class EmptyTrace(NamedTuple):
    """A trace of no steps at all: nothing was judged, which must not read as a pass."""

    inputs: tuple[str, ...]


@dataclass(frozen=True)
class RecordingProblem:
    """A recorder directory that differs from what its manifest promises
    (`tracer.tracedir.verify_trace_dir`)."""

    directory: str
    #: `tracer.tracedir.ProblemKind`: segment-missing, segment-sha256, segment-extra, ...
    kind: str
    #: The segment as the manifest lists it (or as found), None for the manifest as a whole.
    segment: str | None
    detail: str


#: What reading a unit reports about its rows.
StepFact = ClockBackwards | RepeatedSeq
#: What the manifests of the inputs say about the recording.
InputFact = TruncatedInput | RecordingProblem | EmptyTrace


def clock_back(thread: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where time goes back on a thread.

    Rows are in replay order; `thread` identifies each row's thread as one integer (unique
    across VMs, e.g. ``vm * n_threads + thread``), `ts` is its timestamp. Returns
    (`earlier`, `later`, `first`): `later` are the rows whose timestamp is below that of
    `earlier`, the previous row of the same thread, ordered by (thread, row); `first` is each
    thread's first row (for comparing with a step carried over from an earlier chunk).
    """
    order = np.argsort(thread, kind="stable")
    k_sorted, t_sorted = thread[order], ts[order]
    same = k_sorted[1:] == k_sorted[:-1]
    back = np.flatnonzero(same & (t_sorted[1:] < t_sorted[:-1]))
    first = order[np.flatnonzero(np.concatenate([[True], ~same]))] if len(order) else order
    return order[back], order[back + 1], first


def seq_runs(vm: np.ndarray, seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first row, length) of every run of rows sharing one (vm, seq), rows sorted by (vm, seq)."""
    same = (vm[1:] == vm[:-1]) & (seq[1:] == seq[:-1])
    start = np.flatnonzero(np.concatenate([[True], ~same]))
    length = np.diff(np.concatenate([start, [len(seq)]]))
    return start, length


def repeated_within_a_file(start: np.ndarray, length: np.ndarray, file: np.ndarray) -> int | None:
    """A row repeating the (vm, seq) of an earlier row of the same file (`file`: each row's
    file), or None: the first such of the (run, file) with the lowest numbers.

    `start`, `length`: the runs of `seq_runs`."""
    run_id = np.repeat(np.arange(len(start)), length)
    multi = length[run_id] > 1
    pair = run_id[multi] * np.int64(int(file.max(initial=0)) + 1) + file[multi]
    by_pair = np.argsort(pair, kind="stable")
    repeat = np.flatnonzero(pair[by_pair][1:] == pair[by_pair][:-1])
    if not len(repeat):
        return None
    return int(np.flatnonzero(multi)[by_pair[repeat[0] + 1]])
