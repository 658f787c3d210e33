"""`Steps`: the table every rule reads, and the few vectorized primitives the rules are made of.

A `Steps` batch holds the *interesting* rows of one or more whole VMs (everything but
successful I/O and raw trace events), sorted by (vm, seq). Strings are small integer codes:
closed vocabularies (kind, op, action, ...) use the schema's own order, open ones (vm, thread,
device, name, src_file) index the batch's name lists. Nulls are -1 (``has_eid`` / ``has_cmd``
say whether the integer columns are set).

Why numpy codes and not a DataFrame: a rule is a handful of whole-column operations over these
arrays, so a batch of many VMs costs a few microseconds per operation instead of pandas'
per-call overhead, and per-VM independence comes from the primitives below, which never look
across a VM boundary. The primitives answer the only questions the rules ask:

* the previous / next row of some kind, strictly before / after a row, in the same VM;
* whether any row of some kind lies strictly between two rows of the same VM;
* the same questions restricted to rows with an equal key (error_id, device).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from tracer.schema import ACTIONS, IOSTATUSES, KINDS, OPS, POLICIES, RUNSTATES, THREAD_KINDS

#: Code of every closed-vocabulary value, per column.
VOCABULARIES: dict[str, tuple[str, ...]] = {
    "kind": KINDS,
    "thread_kind": THREAD_KINDS,
    "op": OPS,
    "policy": POLICIES,
    "action": ACTIONS,
    "iostatus": IOSTATUSES,
    "runstate": RUNSTATES,
    "prev_runstate": RUNSTATES,
}
#: Columns holding codes into a per-batch list of names.
OPEN_STRINGS = ("vm", "thread", "device", "name", "src_file")
#: Nullable integer columns.
NULLABLE_INTS = ("errno", "error_id", "cmd_seq", "src_line", "event_ts_ns")

K = {k: i for i, k in enumerate(KINDS)}
TK = {k: i for i, k in enumerate(THREAD_KINDS)}
OP = {k: i for i, k in enumerate(OPS)}
POL = {k: i for i, k in enumerate(POLICIES)}
ACT = {k: i for i, k in enumerate(ACTIONS)}
IOS = {k: i for i, k in enumerate(IOSTATUSES)}
RS = {k: i for i, k in enumerate(RUNSTATES)}

#: Kinds no rule reads row by row: dropped before the rules run (failed io_complete is kept,
#: it is the "error" milestone of an episode when a source has no error_action rows).
BULK_KINDS = ("io_submit", "io_complete", "trace_event")

NULL = -1
_NONE = -2  # a code that matches nothing (a name absent from the batch)


def _empty(dtype: type) -> np.ndarray:
    return np.zeros(0, dtype=dtype)


@dataclass
class Steps:
    """Interesting rows of whole VMs in (vm, seq) order, as code arrays (see module doc)."""

    vm: np.ndarray
    seq: np.ndarray
    ts: np.ndarray
    kind: np.ndarray
    thread: np.ndarray
    thread_kind: np.ndarray
    device: np.ndarray
    op: np.ndarray
    errno: np.ndarray
    policy: np.ndarray
    action: np.ndarray
    iostatus: np.ndarray
    runstate: np.ndarray
    prev_runstate: np.ndarray
    name: np.ndarray
    eid: np.ndarray
    has_eid: np.ndarray
    cmd_seq: np.ndarray
    has_cmd: np.ndarray
    src_file: np.ndarray
    src_line: np.ndarray
    #: event_ts_ns: the emission time a qmp_event carries (-1: none).
    evt: np.ndarray
    #: Per row: whether its VM's QEMU may throttle BLOCK_IO_ERROR (>= 9.2, or unknown).
    throttle: np.ndarray
    vm_names: list[str] = field(default_factory=list)
    thread_names: list[str] = field(default_factory=list)
    device_names: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    src_names: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ construction

    ARRAYS = (
        "vm", "seq", "ts", "kind", "thread", "thread_kind", "device", "op", "errno", "policy",
        "action", "iostatus", "runstate", "prev_runstate", "name", "eid", "has_eid", "cmd_seq",
        "has_cmd", "src_file", "src_line", "evt", "throttle",
    )

    @classmethod
    def empty(cls) -> Steps:
        ints = {a: _empty(np.int64) for a in cls.ARRAYS}
        ints["has_eid"] = _empty(np.bool_)
        ints["has_cmd"] = _empty(np.bool_)
        ints["throttle"] = _empty(np.bool_)
        return cls(**ints)

    @classmethod
    def concat(cls, parts: list[Steps]) -> Steps:
        """Batches of distinct VMs sharing name lists, in order (each already sorted)."""
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        arrays = {a: np.concatenate([getattr(p, a) for p in parts]) for a in cls.ARRAYS}
        first = parts[-1]
        merged = cls(**arrays, vm_names=first.vm_names, thread_names=first.thread_names,
                     device_names=first.device_names, names=first.names, src_names=first.src_names)
        order = np.argsort(merged.vm, kind="stable")
        return merged.take(order)

    def take(self, index: np.ndarray) -> Steps:
        """The rows at `index` (same name lists)."""
        arrays = {a: getattr(self, a)[index] for a in self.ARRAYS}
        return Steps(
            **arrays,
            vm_names=self.vm_names,
            thread_names=self.thread_names,
            device_names=self.device_names,
            names=self.names,
            src_names=self.src_names,
        )

    def __len__(self) -> int:
        return len(self.seq)

    # ------------------------------------------------------------------ names and masks

    def name_code(self, value: str) -> int:
        try:
            return self.names.index(value)
        except ValueError:
            return _NONE

    def device_code(self, value: str) -> int:
        try:
            return self.device_names.index(value)
        except ValueError:
            return _NONE

    def is_kind(self, kind: str) -> np.ndarray:
        return self.kind == K[kind]

    def is_named(self, kind: str, name: str) -> np.ndarray:
        return (self.kind == K[kind]) & (self.name == self.name_code(name))

    def event(self, name: str) -> np.ndarray:
        return self.is_named("qmp_event", name)

    @cached_property
    def n(self) -> int:
        return len(self.seq)

    @cached_property
    def idx(self) -> np.ndarray:
        return np.arange(self.n, dtype=np.int64)

    @cached_property
    def vstart(self) -> np.ndarray:
        """Per row: index of its VM's first row."""
        if not self.n:
            return _empty(np.int64)
        change = np.flatnonzero(np.diff(self.vm)) + 1
        starts = np.concatenate([[0], change])
        counts = np.diff(np.concatenate([starts, [self.n]]))
        return np.repeat(starts, counts).astype(np.int64)

    @cached_property
    def vend(self) -> np.ndarray:
        """Per row: one past its VM's last row."""
        if not self.n:
            return _empty(np.int64)
        change = np.flatnonzero(np.diff(self.vm)) + 1
        ends = np.concatenate([change, [self.n]])
        starts = np.concatenate([[0], change])
        return np.repeat(ends, ends - starts).astype(np.int64)

    def vm_any(self, mask: np.ndarray) -> np.ndarray:
        """Per row: whether any row of its VM has `mask`."""
        hits = np.flatnonzero(mask)  # the few rows of a kind: search them, not sum every row
        if not len(hits):
            return np.zeros(self.n, dtype=bool)
        with_hit = np.zeros(int(self.vm.max()) + 1, dtype=bool)
        with_hit[self.vm[hits]] = True
        return with_hit[self.vm]

    # ------------------------------------------------------------------ raising order

    @cached_property
    def raised(self) -> Steps:
        """This batch with every BLOCK_IO_ERROR at its *raise* (docs/rules.md §2, traces with
        error ids).

        A producer that records the throttle (the simulator of QEMU >= 9.2) marks each raise
        with a ``trace_event`` row ``monitor_protocol_event_queue`` carrying the event's error
        id, device, op, errno and action, on the raising thread; the ``qmp_event`` row of the
        same error id is only its delivery (at once, late from the main loop, or never: held
        and replaced, or still held when QEMU quit). The rules judge the raise: the queue row
        becomes the BLOCK_IO_ERROR (kind qmp_event, at its own position, thread and time, but
        named in evidence by the delivery's seq, the row a user finds on the wire) and the
        delivery row of that error id is dropped. An error id without a queue row keeps its event row.
        Without such rows the batch itself is returned.
        """
        queue = self.is_named("trace_event", "monitor_protocol_event_queue") & self.has_eid
        if not queue.any():
            return self
        width = np.int64(max(int(self.eid.max(initial=0)), 0) + 2)
        key = self.vm.astype(np.int64) * width + (self.eid + 1)
        delivered = self.event("BLOCK_IO_ERROR") & self.has_eid & np.isin(key, key[queue])
        out = self.take(np.flatnonzero(~delivered))
        names = self.names
        code = self.name_code("BLOCK_IO_ERROR")
        if code < 0:
            names = [*names, "BLOCK_IO_ERROR"]
            code = len(names) - 1
        out.names = names
        q = queue[~delivered]
        out.kind[q] = K["qmp_event"]
        out.name[q] = code
        out.evt[q] = out.ts[q]
        # Evidence names the event row a user finds on the wire (its delivery), else the raise.
        # Replies are tied to their commands first: seqs are no longer sorted afterwards.
        _ = out.cmd_index
        d = np.flatnonzero(delivered)
        qi = np.flatnonzero(q)
        if len(d) and len(qi):
            order = np.argsort(key[d], kind="stable")
            sorted_keys = key[d][order]
            want = out.vm[qi].astype(np.int64) * width + (out.eid[qi] + 1)
            at = np.minimum(np.searchsorted(sorted_keys, want), len(d) - 1)
            hit = sorted_keys[at] == want
            out.seq[qi[hit]] = self.seq[d[order[at[hit]]]]
        return out

    # ------------------------------------------------------------------ emission order

    @cached_property
    def emitted(self) -> tuple[Steps, np.ndarray]:
        """This batch in *emission* (raising) order, and for each of its rows the row of `self`
        it is.

        QEMU >= 9.2 throttles BLOCK_IO_ERROR per device to one a second and delivers the last
        one of a window late, keeping its QMP timestamp; imported rows are in arrival order.
        Where a VM may throttle (`throttle`), a late BLOCK_IO_ERROR moves back to just before
        the first row raised after it: a STOP / RESUME whose `evt` is >= its own (STOP and
        RESUME come from the main loop in order, so their timestamps are taken as
        non-decreasing: a running maximum), or any other row (command, reply) whose `ts` is
        (events without `evt`: their `ts`). One that arrived before a STOP / RESUME raised
        *earlier* than it moves forward past it (a correct QEMU cannot deliver an event before
        a STOP that was raised before it: STOP is never held). Nothing else moves. When
        nothing moves, the batch itself is returned (the common case, and every simulated
        trace: its BLOCK_IO_ERRORs carry error ids and sit at their raise, `raised`).
        """
        ident = self.idx
        is_bie = self.event("BLOCK_IO_ERROR")
        bie = is_bie & self.throttle & (self.evt >= 0) & ~self.has_eid
        if not bie.any():
            return self, ident
        b = np.flatnonzero(bie)
        stamped = (self.kind == K["qmp_event"]) & (self.evt >= 0)
        time = np.where(stamped, self.evt, self.ts)
        back = self._first_raised_from(self.throttle & ~is_bie, time, b)
        marks = (self.event("STOP") | self.event("RESUME")) & self.throttle & (self.evt >= 0)
        ahead = self._first_raised_from(marks, self.evt, b)
        move_back = (back >= 0) & (back < b)
        # Forward past the marks that arrived after it but were raised before it (none
        # between: it stays where it is).
        move_fwd = ~move_back & (ahead > b) & self.between(marks, b, ahead, b)
        target = np.where(move_back, back, ahead)
        move = move_back | move_fwd
        if not move.any():
            return self, ident
        pos = ident.copy()
        pos[b[move]] = target[move]
        after = np.ones(self.n, dtype=np.int64)
        after[b[move]] = 0
        order = np.lexsort((ident, after, pos))
        out = self.take(order)
        new_of = np.empty(self.n, dtype=np.int64)
        new_of[order] = ident
        ci = self.cmd_index[order]
        out.__dict__["cmd_index"] = np.where(ci >= 0, new_of[np.maximum(ci, 0)], NULL)
        return out, order

    def _first_raised_from(self, mask: np.ndarray, time: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per BLOCK_IO_ERROR row in `b`: the first `mask` row of its VM whose `time` (a
        running maximum in arrival order) is >= the BIE's `evt` (-1: none)."""
        m = np.flatnonzero(mask)
        if not len(m):
            return np.full(len(b), NULL, dtype=np.int64)
        values, rank = np.unique(np.concatenate([time[m], self.evt[b]]), return_inverse=True)
        width = np.int64(len(values) + 1)
        m_key = np.maximum.accumulate(self.vm[m].astype(np.int64) * width + rank[: len(m)])
        b_key = self.vm[b].astype(np.int64) * width + rank[len(m) :]
        k = np.searchsorted(m_key, b_key, side="left")
        target = m[np.minimum(k, len(m) - 1)]
        return np.where((k < len(m)) & (self.vm[target] == self.vm[b]), target, NULL)

    # ------------------------------------------------------------------ replies and commands

    @cached_property
    def cmd_index(self) -> np.ndarray:
        """Per qmp_reply row: the index of the command it answers (cmd_seq), else -1."""
        out = np.full(self.n, NULL, dtype=np.int64)
        rows = np.flatnonzero(self.has_cmd)
        if len(rows):
            out[rows] = self.find_seq(rows, self.cmd_seq[rows])
        return out

    @cached_property
    def point(self) -> np.ndarray:
        """Per row: the moment a reply's question was asked (its command), else the row itself."""
        out = self.idx.copy()
        ci = self.cmd_index
        has = ci >= 0
        out[has] = ci[has]
        return out

    @cached_property
    def reply_name(self) -> np.ndarray:
        """`name` of every row, a qmp_reply without one taking its command's name."""
        out = self.name.copy()
        fill = (self.kind == K["qmp_reply"]) & (out < 0) & (self.cmd_index >= 0)
        out[fill] = self.name[self.cmd_index[fill]]
        return out

    def reply(self, name: str) -> np.ndarray:
        return (self.kind == K["qmp_reply"]) & (self.reply_name == self.name_code(name))

    def command(self, name: str) -> np.ndarray:
        return self.is_named("qmp_command", name)

    def find_seq(self, rows: np.ndarray, seqs: np.ndarray) -> np.ndarray:
        """Index of the row with seq `seqs[k]` in the VM of row `rows[k]`, else -1.

        A binary search per query, vectorized over all queries at once (log2(n) passes).
        """
        lo = self.vstart[rows].copy()
        hi = self.vend[rows].copy()
        while True:
            active = lo < hi
            if not active.any():
                break
            mid = (lo + hi) // 2
            mid_c = np.where(active, mid, 0)
            go_right = active & (self.seq[mid_c] < seqs)
            lo = np.where(go_right, mid + 1, lo)
            hi = np.where(active & ~go_right, mid, hi)
        found = lo < self.vend[rows]
        safe = np.where(found, lo, 0)
        found &= self.seq[safe] == seqs
        return np.where(found, lo, NULL)

    # ------------------------------------------------------------------ positional primitives

    def prev(self, mask: np.ndarray, at: np.ndarray | None = None) -> np.ndarray:
        """Index of the last `mask` row strictly before each row (or position `at`), same VM."""
        at = self.idx if at is None else at
        j = last_before(mask)[at]
        return np.where(j >= self.vstart[at], j, NULL)

    def next(self, mask: np.ndarray, at: np.ndarray | None = None) -> np.ndarray:
        """Index of the first `mask` row strictly after each row (or position `at`), same VM."""
        at = self.idx if at is None else at
        j = first_from(mask)[at + 1]
        return np.where(j < self.vend[at], j, NULL)

    def after(self, mask: np.ndarray, lo: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """First `mask` row strictly after position `lo` (-1: from the VM's start), in the VM of
        `rows`; -1 if none."""
        lo = np.where(lo < 0, self.vstart[rows] - 1, lo)
        j = first_from(mask)[lo + 1]
        return np.where(j < self.vend[rows], j, NULL)

    def between(self, mask: np.ndarray, lo: np.ndarray, hi: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Whether a `mask` row lies strictly between `lo` and `hi` (either order; -1 means
        the VM's start for `lo` and its end for `hi`), in the VM of `rows`."""
        lo = np.where(lo < 0, self.vstart[rows] - 1, lo)
        hi = np.where(hi < 0, self.vend[rows], hi)
        a, b = np.minimum(lo, hi), np.maximum(lo, hi)
        hits = np.flatnonzero(mask)  # a mask row k with a < k < b
        return np.searchsorted(hits, b, side="left") > np.searchsorted(hits, a, side="right")

    def by_eid(self, mask: np.ndarray) -> KeyedIndex:
        return KeyedIndex(self, mask & self.has_eid, self.eid)

    def by_device(self, mask: np.ndarray) -> KeyedIndex:
        return KeyedIndex(self, mask & (self.device >= 0), self.device)

    # ------------------------------------------------------------------ text

    def text(self, column: str, i: int) -> str | None:
        """Row `i`'s value of a string column, as text (None for null)."""
        code = int(getattr(self, column)[i])
        return None if code < 0 else self._values(column)[code]

    def texts(self, column: str, rows: np.ndarray) -> list[str | None]:
        """`text` of every row of `rows` (-1: None), looked up as a column, not row by row."""
        values = np.array([*self._values(column), None], dtype=object)
        codes = np.where(rows >= 0, getattr(self, column)[np.maximum(rows, 0)], -1)
        return values[np.where(codes >= 0, codes, len(values) - 1)].tolist()

    def _values(self, column: str) -> Sequence[str]:
        """The values a string column's codes stand for."""
        if column in VOCABULARIES:
            return VOCABULARIES[column]
        lists = {
            "vm": self.vm_names,
            "thread": self.thread_names,
            "device": self.device_names,
            "name": self.names,
            "src_file": self.src_names,
        }
        return lists[column]


def cumcount(mask: np.ndarray) -> np.ndarray:
    """c[k] = number of True in mask[:k] (length n+1)."""
    c = np.zeros(len(mask) + 1, dtype=np.int64)
    np.cumsum(mask, out=c[1:])
    return c


def last_before(mask: np.ndarray) -> np.ndarray:
    """p[k] = last index < k with mask (-1 if none), for k in 0..n (length n+1)."""
    n = len(mask)
    cand = np.where(mask, np.arange(n, dtype=np.int64), NULL)
    p = np.empty(n + 1, dtype=np.int64)
    p[0] = NULL
    if n:
        np.maximum.accumulate(cand, out=p[1:])
    return p


def first_from(mask: np.ndarray) -> np.ndarray:
    """f[k] = first index >= k with mask (n if none), for k in 0..n (length n+1)."""
    n = len(mask)
    cand = np.where(mask, np.arange(n, dtype=np.int64), n)
    f = np.empty(n + 1, dtype=np.int64)
    f[n] = n
    if n:
        f[:n] = np.minimum.accumulate(cand[::-1])[::-1]
    return f


class KeyedIndex:
    """The `mask` rows of a batch grouped by (vm, key): which of them precede or follow a
    position, or come first, for a given (vm, key). Queries with key < 0 (or, for error ids,
    without one: pass `valid`) find nothing."""

    def __init__(self, steps: Steps, mask: np.ndarray, key: np.ndarray) -> None:
        self.steps = steps
        rows = np.flatnonzero(mask)
        self.keys = np.unique(key[rows])
        self.width = np.int64(steps.n + 2)
        comb = self._comb(steps.vm[rows], key[rows])
        order = np.lexsort((rows, comb))
        self.rows = rows[order]
        self.comb = comb[order]
        self.pos = self.comb * self.width + (self.rows + 1)

    def _comb(self, vm: np.ndarray, key: np.ndarray) -> np.ndarray:
        rank = np.searchsorted(self.keys, key).astype(np.int64)
        return vm.astype(np.int64) * np.int64(len(self.keys) + 1) + rank

    def _search(
        self, vm: np.ndarray, key: np.ndarray, at: np.ndarray, valid: np.ndarray | None, before: bool
    ) -> np.ndarray:
        n = len(at)
        if not len(self.rows) or not n:
            return np.full(n, NULL, dtype=np.int64)
        ok = np.ones(n, dtype=bool) if valid is None else valid.copy()
        r = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        ok &= self.keys[r] == key
        comb = self._comb(vm, key)
        target = comb * self.width + (at + 1)
        if before:
            k = np.searchsorted(self.pos, target, side="left") - 1
        else:
            k = np.searchsorted(self.pos, target, side="right")
        ok &= (k >= 0) & (k < len(self.pos))
        k = np.where(ok, k, 0)
        ok &= self.comb[k] == comb
        return np.where(ok, self.rows[k], NULL)

    def last_before(
        self, vm: np.ndarray, key: np.ndarray, at: np.ndarray, valid: np.ndarray | None = None
    ) -> np.ndarray:
        """Last indexed row of (vm, key) strictly before position `at`, else -1."""
        return self._search(vm, key, at, valid, before=True)

    def first_after(
        self, vm: np.ndarray, key: np.ndarray, at: np.ndarray, valid: np.ndarray | None = None
    ) -> np.ndarray:
        """First indexed row of (vm, key) strictly after position `at` (-1: the first), else -1."""
        return self._search(vm, key, at, valid, before=False)

    def first(self, vm: np.ndarray, key: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """First indexed row of (vm, key), else -1."""
        return self._search(vm, key, np.full(len(vm), -1, dtype=np.int64), valid, before=False)
