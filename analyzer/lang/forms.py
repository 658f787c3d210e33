"""The four forms of the language, each a few whole-array searches over one scope.

Each form takes the masks of its predicates and returns a `Verdict`: per finding, the anchor row
and the rows of the form's roles (-1: none), which the rule turns into `Finding`s. The
semantics (docs/rules-language.md §3) in one line each; "before/after" is replay order (seq),
"in scope" is `analyzer.lang.scope`:

* precedes(first A, then B, since C): every B has an A before it in scope, after the last C
  before B (a row that is both A and C counts as after it). Finding per B without one; with
  require_since, B rows with no C before them are not judged.
* responds(trigger A, response B, before C, within T): every A is followed in scope by a B
  that comes no later than the next C (a row that is both counts as B) and at most T after A.
  When neither B nor C follows and the trace ends before T has passed (or there is no T), the
  finding is *at the end*: a warning, the trace cannot tell.
* absent(what A, after B, until C): no A while a B is open in scope (the last B or C before A
  is a B; a row both B and C closes). Without `after` the interval opens at the VM's start;
  without `until` it never closes. Finding per A (a VM-wide A in device scope: per open device).
* count_in_window(what A, more_than N, within T): no N+1 A rows in scope whose timestamps span
  at most T. Finding per maximal run of such windows, with the first window's rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analyzer.lang.scope import Scope, none
from analyzer.steps import Steps


@dataclass
class Verdict:
    anchor: np.ndarray
    roles: dict[str, np.ndarray]
    #: Role names whose rows are the finding's evidence, in order.
    evidence: list[str]
    #: Per finding: the device code to report (-1: none).
    device: np.ndarray
    #: Per finding: whether the trace ended before it could be decided (responds).
    at_end: np.ndarray
    #: Extra evidence arrays (count_in_window's window rows).
    extra: list[np.ndarray] = field(default_factory=list)

    def map_rows(self, to_s: np.ndarray) -> Verdict:
        """The same verdict with every row index mapped through `to_s` (emission -> arrival)."""
        def m(a: np.ndarray) -> np.ndarray:
            return np.where(a >= 0, to_s[np.maximum(a, 0)], a)

        return Verdict(m(self.anchor), {k: m(v) for k, v in self.roles.items()}, self.evidence,
                       self.device, self.at_end, [m(a) for a in self.extra])


def _no(n: int) -> np.ndarray:
    return np.zeros(n, dtype=bool)


def precedes(s: Steps, scope: Scope, first: np.ndarray, then: np.ndarray,
             since: np.ndarray | None, require_since: bool = False) -> Verdict:
    rows = scope.anchors(then)
    last_a = scope.prev(first, rows)
    last_c = scope.prev(since, rows) if since is not None else none(len(rows))
    bad = (last_a < 0) | (last_a < last_c)
    if require_since:
        bad &= last_c >= 0
    rows, last_c = rows[bad], last_c[bad]
    later = scope.next(first, rows)
    return Verdict(rows, {"row": rows, "later": later, "since": last_c}, ["row", "later"],
                   s.device[rows], _no(len(rows)))


def responds(s: Steps, scope: Scope, trigger: np.ndarray, response: np.ndarray,
             before: np.ndarray | None, within_ns: int | None) -> Verdict:
    rows = scope.anchors(trigger)
    nb = scope.next(response, rows)
    nc = scope.next(before, rows) if before is not None else none(len(rows))
    ts = s.ts
    c_first = (nc >= 0) & ((nb < 0) | (nc < nb))
    if within_ns is not None:
        deadline = ts[rows] + np.int64(within_ns)
        late = ~c_first & (nb >= 0) & (ts[np.maximum(nb, 0)] > deadline)
        end_ts = ts[s.vend[rows] - 1] if len(rows) else np.zeros(0, dtype=np.int64)
        missing = (nb < 0) & (nc < 0)
        expired = missing & (end_ts > deadline)
        at_end = missing & ~expired
    else:
        late = _no(len(rows))
        expired = _no(len(rows))
        at_end = (nb < 0) & (nc < 0)
    bad = c_first | late | expired | at_end
    rows = rows[bad]
    roles = {
        "trigger": rows,
        "response": np.where(late[bad], nb[bad], -1),
        "before": np.where(c_first[bad], nc[bad], -1),
    }
    return Verdict(rows, roles, ["trigger", "response", "before"], s.device[rows], at_end[bad])


def absent(s: Steps, scope: Scope, what: np.ndarray, after: np.ndarray | None,
           until: np.ndarray | None) -> Verdict:
    cand = np.flatnonzero(what)
    if after is None and until is None:
        rows, opened = cand, none(len(cand))
        device = s.device[rows]
    else:
        rows, keys = scope.expand(cand, after if after is not None else until)
        lc = scope.prev(until, rows, keys) if until is not None else none(len(rows))
        if after is not None:
            lb = scope.prev(after, rows, keys)
            bad = (lb >= 0) & (lb > lc)
        else:
            lb = none(len(rows))
            bad = lc < 0
        rows, opened, keys = rows[bad], lb[bad], keys[bad]
        device = keys if scope.name == "device" else s.device[rows]
    return Verdict(rows, {"row": rows, "after": opened}, ["row", "after"], device, _no(len(rows)))


def count_in_window(s: Steps, scope: Scope, what: np.ndarray, more_than: int, within_ns: int) -> Verdict:
    rows = scope.anchors(what)
    if scope.name == "vm":  # rows are in (vm, row) order already
        r = rows
        group = s.vm[r]
    else:
        key = scope.key[rows]
        order = np.lexsort((rows, key, s.vm[rows]))
        r = rows[order]
        group = s.vm[r].astype(np.int64) * np.int64(1 << 32) + key[order]
    n, N = len(r), more_than
    viol = _no(n)
    if n > N:
        j = np.arange(N, n)
        i = j - N
        viol[j] = (group[i] == group[j]) & (s.ts[r[j]] - s.ts[r[i]] <= np.int64(within_ns))
    # Consecutive violating windows overlap (share rows) unless a window is one row (N = 0).
    if n and N > 0:
        prev_viol = np.concatenate([[False], viol[:-1] & (group[1:] == group[:-1])])
    else:
        prev_viol = np.zeros(n, dtype=bool)
    starts = np.flatnonzero(viol & ~prev_viol)
    window = [r[starts - N + t] for t in range(N + 1)]
    first, last = (window[0], window[-1]) if len(window) else (none(0), none(0))
    return Verdict(first, {"first": first, "row": last}, [], s.device[first], _no(len(first)),
                   extra=window)
