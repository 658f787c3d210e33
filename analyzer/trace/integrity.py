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
    """Seqs of one VM that occur more than once, each in the same set of files: one fact per
    (VM, set of files), not per row, so that a file read twice is one finding."""

    #: The VM's identity key (`analyzer.identity`).
    vm: str
    #: The first repeated seq.
    seq: int
    #: ts_ns and thread of its first occurrence in replay order.
    ts: int
    thread: str
    #: How many times the first repeated seq occurs.
    count: int
    #: The files holding them, sorted.
    paths: tuple[str, ...]
    #: The last repeated seq, and how many seqs between `seq` and it are repeated.
    last: int | None = None
    seqs: int = 1
    #: Steps whose clock goes back only because the copies interleave (not reported apart).
    clock_backs: int = 0


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


def repeated_runs(start: np.ndarray, length: np.ndarray, file: np.ndarray, vm: np.ndarray
                  ) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """The repeated (vm, seq) runs of `seq_runs` grouped by (VM, set of files holding them).

    `file`: each row's file; `vm`: each row's VM. Returns (group of every repeated run, in run
    order; -1 for runs that are not repeated) and each group's sorted file indices. Vectorized
    where a seq is in two files (a copy, the common case); only runs in three or more files
    are looked at one by one."""
    group = np.full(len(start), -1, dtype=np.int64)
    runs = np.flatnonzero(length > 1)
    if not len(runs):
        return group, []
    width = np.int64(int(file.max(initial=0)) + 1)
    rid = np.repeat(np.arange(len(start)), length)
    multi = length[rid] > 1
    pairs = np.unique(rid[multi] * width + file[multi])  # (run, file), sorted by run then file
    p_run, p_file = pairs // width, pairs % width
    first = np.concatenate([[True], p_run[1:] != p_run[:-1]])
    at = np.flatnonzero(first)
    n_files = np.diff(np.append(at, len(pairs)))
    f0 = p_file[at]
    f1 = np.where(n_files > 1, p_file[np.minimum(at + 1, len(pairs) - 1)], -1)
    sig = np.where(n_files == 2, f1, -2)  # -2: three or more files, decided below
    many: dict[tuple[int, ...], int] = {}
    for j in np.flatnonzero(n_files > 2).tolist():  # rare: a step in three or more files
        files = tuple(p_file[at[j]:at[j] + n_files[j]].tolist())
        sig[j] = -3 - many.setdefault(files, len(many))
    key = np.stack([vm[start[runs]].astype(np.int64), f0, sig])
    uniq, inverse = np.unique(key, axis=1, return_inverse=True)
    group[runs] = inverse.ravel()
    by_sig = {v: k for k, v in many.items()}
    sets = [(int(a), int(b)) if b >= 0 else by_sig[-3 - int(b)] for a, b in zip(uniq[1], uniq[2], strict=True)]
    return group, sets


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
