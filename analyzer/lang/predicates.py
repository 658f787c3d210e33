"""Predicates: what a rule says a step must be, as a small tree evaluated over whole columns.

The compiler (`analyzer.lang.compile`) builds these frozen records from a rule file; `mask`
turns one into a boolean array over a `Steps` batch with a handful of numpy operations per
node (never a loop over rows). A macro is just a shared subtree, so `mask` caches each node's
result per batch: a macro used by ten rules is computed once.

State predicates ask `analyzer.state` (the one replay of run state, io-status and the
stop-request slot), about the state *just before* the step, as the built-in rules do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analyzer.state import RUNSTATE_NAMES, pending, run_state
from analyzer.state import iostatus as replay_iostatus
from analyzer.steps import IOS, NULL, VOCABULARIES, K, Steps

_NONE = -2


class Pred:
    """A predicate node (frozen dataclasses below)."""


@dataclass(frozen=True)
class Always(Pred):
    pass


@dataclass(frozen=True)
class Column(Pred):
    """`column` is one of `values` (text, integers, or None for null); `negate`: is none."""

    column: str
    values: tuple[str | int | None, ...]
    negate: bool = False


@dataclass(frozen=True)
class Named(Pred):
    """A row of `kind` named one of `names` (for replies: the name of the command answered)."""

    kind: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class Flag(Pred):
    """has_error_id (the row carries one) or vm_has_error_ids (its VM records them)."""

    flag: str
    value: bool


@dataclass(frozen=True)
class State(Pred):
    """The replayed state just before the row: run state, the row's device io-status, or
    whether a stop request waits in the slot."""

    what: str
    values: tuple[str, ...]
    negate: bool = False


@dataclass(frozen=True)
class All(Pred):
    parts: tuple[Pred, ...]


@dataclass(frozen=True)
class AnyOf(Pred):
    parts: tuple[Pred, ...]


@dataclass(frozen=True)
class Not(Pred):
    part: Pred


def columns_read(p: Pred) -> set[str]:
    """The trace columns predicate `p` reads (for `analyzer.rules.columns_for`)."""
    if isinstance(p, Column):
        return {p.column}
    if isinstance(p, Named):
        return {"cmd_seq"} if p.kind == "qmp_reply" else set()
    if isinstance(p, State):
        if p.what == "run":
            return {"runstate", "prev_runstate", "cmd_seq"}
        return {"iostatus"}
    if isinstance(p, All | AnyOf):
        return set().union(*(columns_read(q) for q in p.parts)) if p.parts else set()
    if isinstance(p, Not):
        return columns_read(p.part)
    return set()


def mask(s: Steps, p: Pred, cache: dict[Pred, np.ndarray] | None = None) -> np.ndarray:
    """Boolean array: which rows of `s` satisfy `p` (results cached per node in `cache`)."""
    cache = {} if cache is None else cache
    hit = cache.get(p)
    if hit is not None:
        return hit
    out = _eval(s, p, cache)
    cache[p] = out
    return out


def _codes(s: Steps, column: str, values: tuple[str | int | None, ...]) -> list[int]:
    if column in VOCABULARIES:
        vocab = VOCABULARIES[column]
        return [NULL if v is None else (vocab.index(v) if v in vocab else _NONE) for v in values]
    if column == "errno":
        return [NULL if v is None else int(v) for v in values]
    names = {"vm": s.vm_names, "thread": s.thread_names, "device": s.device_names,
             "name": s.names}[column]
    lookup = {n: i for i, n in enumerate(names)}
    return [NULL if v is None else lookup.get(str(v), _NONE) for v in values]


def _member(arr: np.ndarray, codes: list[int]) -> np.ndarray:
    """arr in codes: a comparison or two for the usual one or two values, isin beyond."""
    if len(codes) == 1:
        return arr == codes[0]
    if len(codes) == 2:
        return (arr == codes[0]) | (arr == codes[1])
    return np.isin(arr, np.asarray(codes, dtype=np.int64))


def _eval(s: Steps, p: Pred, cache: dict[Pred, np.ndarray]) -> np.ndarray:
    if isinstance(p, Always):
        return np.ones(s.n, dtype=bool)
    if isinstance(p, Column):
        out = _member(getattr(s, p.column), _codes(s, p.column, p.values))
        return ~out if p.negate else out
    if isinstance(p, Named):
        names = s.reply_name if p.kind == "qmp_reply" else s.name
        return (s.kind == K[p.kind]) & _member(names, _codes(s, "name", p.names))
    if isinstance(p, Flag):
        has = s.has_eid if p.flag == "has_error_id" else s.vm_any(s.has_eid)
        return has if p.value else ~has
    if isinstance(p, State):
        out = _state(s, p)
        return ~out if p.negate else out
    if isinstance(p, All):
        out = np.ones(s.n, dtype=bool)
        for q in p.parts:
            out = out & mask(s, q, cache)
        return out
    if isinstance(p, AnyOf):
        out = np.zeros(s.n, dtype=bool)
        for q in p.parts:
            out = out | mask(s, q, cache)
        return out
    if isinstance(p, Not):
        return ~mask(s, p.part, cache)
    raise TypeError(f"not a predicate: {p!r}")  # pragma: no cover


def _state(s: Steps, p: State) -> np.ndarray:
    if p.what == "run":
        # As the built-in rules ask it (analyzer.rules.derived.running_before).
        codes = run_state(s, None, after=False, replies=True, assume_running=True)
        want = [NULL if v == "unknown" else RUNSTATE_NAMES.index(v) for v in p.values]
        return np.isin(codes, np.asarray(want, dtype=np.int64))
    if p.what == "iostatus":
        has = s.device >= 0
        codes = replay_iostatus(s, s.device, None, after=False, observed=False)
        want: list[int] = []
        for v in p.values:
            want.extend([IOS["failed"], IOS["nospace"]] if v == "not-ok" else [IOS[v]])
        return has & np.isin(codes, np.asarray(want, dtype=np.int64))
    if p.what == "stop_pending":
        # pending() answers "just after" a position: ask it of the row before, in the same VM.
        before = np.maximum(s.idx - 1, 0)
        waiting = (pending(s, before) >= 0) & (s.idx > s.vstart) if s.n else np.zeros(0, dtype=bool)
        return waiting if p.values == ("true",) else ~waiting
    raise TypeError(f"unknown state {p.what!r}")  # pragma: no cover
