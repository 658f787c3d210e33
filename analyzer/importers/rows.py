"""The intermediate form every importer fills: one input's rows as Python column lists.

Parsers append rows while they read lines; columns that most rows leave empty (device,
iostatus, ...) are kept sparse (row index -> value) so that a million `trace_event` rows cost
six list appends each. `merge.build_rows` turns one VM's `Part`s into a schema-v1 table,
emptying their lists as it goes (a row is never held as Python objects and in Arrow at once
but for one chunk of `merge.CHUNK_ROWS`).

Besides schema columns, rows carry importer-internal fields:

- ``key``: identity of a QMP message for merging inputs (the same event or reply seen by two
  sources). Events: ``("event", name, seconds, microseconds)``; commands:
  ``("cmd", id, name, n)``; replies: ``("reply", id, command, n, device index)``, where ``n``
  counts earlier messages with the same id and name in the same input.
- ``cmd_ref``: on a reply, the row index (in the same `Rows`) of the command it answers.
- ``event_ts``: on a ``qmp_event``, the QMP timestamp it carries (the schema's
  ``event_ts_ns``): the emission time, which a throttled event keeps when delivered late.
- ``node`` / ``qom``: on a ``BLOCK_IO_ERROR`` whose ``device`` is empty, the ``node-name`` and
  ``qom-path`` to resolve into a device name once every ``query-block`` reply has been seen.

Rows read in bulk never become Python objects: they are `Segment` rows, columns already in
numpy and Arrow, kept beside the lists. The lists' rows are rows 0..k-1 of the `Rows`, the
segments' rows come after them. (Output order does not depend on it: rows are sorted by
time, input and line, and a line gives either list rows or segment rows.) A trace log's
plain ``trace_event`` rows (`trace_block`) have no sparse value, no key and no command link.
A transcript's commands and replies (`qmp_messages`) carry theirs as columns
(`MessageColumns`): their sparse values, and command links as indices among the part's
segment rows; their keys are made only when inputs merge, which reads rows one by one
(`Rows.materialize`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analyzer.importers.spill import loaded
from analyzer.importers.thread_hints import ThreadHints
from analyzer.trace.arrow import Interner, codes

#: Sparse columns: schema columns that few rows fill, plus the internal fields above.
SPARSE = (
    "thread",
    "thread_kind",
    "device",
    "req_id",
    "op",
    "errno",
    "policy",
    "action",
    "iostatus",
    "runstate",
    "prev_runstate",
    "key",
    "cmd_ref",
    "node",
    "qom",
    "event_ts",
)


@dataclass
class MessageColumns:
    """What the QMP command and reply rows of a segment carry besides its columns."""

    #: Sparse columns (thread, thread_kind, device, iostatus, runstate) as one value per row,
    #: null where the row has none.
    values: dict[str, pa.Array]
    #: Per row, the index among the part's segment rows of the command a reply answers, or -1.
    cmd_ref: np.ndarray
    #: Per row, its message key (see the module doc), made when asked for.
    keys: Callable[[], list[tuple]]


def _values(column: pa.Array) -> list[Any]:
    """`column.to_pylist()`, a dictionary column decoded through its few values (Arrow's
    conversion of a dictionary array makes each row's value anew)."""
    if not pa.types.is_dictionary(column.type):
        return column.to_pylist()
    words = Interner()
    coded = codes(column, words.code).tolist()
    return list(map([*words.names, None].__getitem__, coded))  # (code -1: null)


@dataclass
class Segment:
    """Rows read in bulk: one value per row in each column."""

    ts: np.ndarray  # int64
    tid: np.ndarray | pa.Array | None  # int64 (an Arrow array where some rows have none); None: no row has one
    line: np.ndarray  # int64
    name: pa.Array  # string, or dictionary of strings (a block's few names, coded)
    payload: pa.Array  # string (`spill.Spilled` once its input is parsed, in an import)
    #: Rows that are QMP command entries (``qmp_enter_*``), if any.
    commands: np.ndarray | None = None
    #: None: every row is a ``trace_event``.
    kind: pa.Array | None = None
    messages: MessageColumns | None = None
    #: Rows whose line has no time (0 in `ts` until `Rows.fill_missing_ts`), if any.
    untimed: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ts)

    def as_commands(self, rename: Any) -> None:
        """Make the `commands` rows ``qmp_command`` rows named ``rename(name)`` (a log that
        never traced ``handle_qmp_command``: its command entries are the commands)."""
        if self.commands is None or not self.commands.any():
            return
        at = np.flatnonzero(self.commands)
        names = [rename(n) for n in self.name.take(pa.array(at)).to_pylist()]
        mask = pa.array(self.commands)
        self.name = pc.replace_with_mask(self.name.cast(pa.string()), mask, pa.array(names, pa.string()))
        kind = self.kind if self.kind is not None else pa.repeat(pa.scalar("trace_event"), len(self))
        self.kind = pc.replace_with_mask(kind, mask, pa.repeat(pa.scalar("qmp_command"), len(at)))


class Rows:
    """Columns of one input's rows (or one VM's rows of a libvirt log), in reading order."""

    __slots__ = ("kind", "line", "name", "payload", "segments", "sparse", "tid", "ts", "unfit_ts")

    def __init__(self) -> None:
        self.kind: list[str] = []
        self.ts: list[int | None] = []
        self.tid: list[int | None] = []
        self.name: list[str | None] = []
        self.payload: list[str | None] = []
        self.line: list[int] = []
        self.sparse: dict[str, dict[int, Any]] = {c: {} for c in SPARSE}
        self.segments: list[Segment] = []
        #: (line, value) of the segment rows' times that int64 ns cannot hold (the segment
        #: holds 0 for them): `first_out_of_range` reports the first.
        self.unfit_ts: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self.kind) + sum(len(s) for s in self.segments)

    def first_tid(self) -> int | None:
        """The TID of the first line (by line number) that has one."""
        best: tuple[int, int] | None = None
        listed = next(((line, t) for line, t in zip(self.line, self.tid, strict=True) if t is not None), None)
        if listed is not None:
            best = listed
        for seg in self.segments:
            if seg.tid is None or not len(seg):
                continue
            tids = pa.array(seg.tid, pa.int64())
            first = pc.index(tids.is_valid(), True).as_py()
            if first >= 0 and (best is None or int(seg.line[first]) < best[0]):
                best = (int(seg.line[first]), tids[first].as_py())
        return None if best is None else best[1]

    def materialize(self) -> None:
        """Turn the segments of QMP messages into list rows, with their sparse values and keys:
        the form in which inputs are merged, row by row (`merge`)."""
        if not any(seg.messages is not None for seg in self.segments):
            return
        total = sum(len(seg) for seg in self.segments)
        moved_to = np.full(total, -1, dtype=np.int64)
        at, kept, moved = 0, [], []
        for seg in self.segments:
            if seg.messages is not None:
                moved_to[at : at + len(seg)] = len(self.kind) + sum(len(m) for m in moved) + np.arange(len(seg))
                moved.append(seg)
            else:
                kept.append(seg)
            at += len(seg)
        for seg in moved:
            assert seg.messages is not None and seg.kind is not None and seg.untimed is None
            base, n = len(self.kind), len(seg)
            self.kind.extend(_values(seg.kind))
            self.ts.extend(seg.ts.tolist())
            self.tid.extend([None] * n if seg.tid is None else pa.array(seg.tid, pa.int64()).to_pylist())
            self.name.extend(_values(seg.name))
            self.payload.extend(loaded(seg.payload).to_pylist())
            self.line.extend(seg.line.tolist())
            for col, column in seg.messages.values.items():
                valid = np.flatnonzero(column.is_valid().to_numpy(zero_copy_only=False))
                self.sparse[col].update(zip((valid + base).tolist(), _values(column.take(pa.array(valid))), strict=True))
            answers = np.flatnonzero(seg.messages.cmd_ref >= 0)
            self.sparse["cmd_ref"].update(zip((answers + base).tolist(), moved_to[seg.messages.cmd_ref[answers]].tolist(), strict=True))
            self.sparse["key"].update(zip(range(base, base + n), seg.messages.keys(), strict=True))
        self.segments = kept

    def map_lines(self, origin: np.ndarray) -> None:
        """Renumber every row's line through `origin` (carried line k -> origin[k - 1])."""
        if self.line:
            self.line = origin[np.asarray(self.line, dtype=np.int64) - 1].tolist()
        for seg in self.segments:
            seg.line = origin[seg.line - 1]

    def add(
        self,
        kind: str,
        ts: int | None,
        line: int,
        *,
        tid: int | None = None,
        name: str | None = None,
        payload: str | None = None,
        **extra: Any,
    ) -> int:
        """Append one row; `extra` fills sparse columns (None values are not stored)."""
        i = self.append(kind, ts, line, tid, name, payload)
        if extra:
            sparse = self.sparse
            for k, v in extra.items():
                if v is not None:
                    sparse[k][i] = v
        return i

    def append(self, kind: str, ts: int | None, line: int, tid: int | None, name: str | None, payload: str | None) -> int:
        """Append one row without sparse values (the hot path); returns its index."""
        self.kind.append(kind)
        self.ts.append(ts)
        self.tid.append(tid)
        self.name.append(name)
        self.payload.append(payload)
        self.line.append(line)
        return len(self.kind) - 1

    def fill_missing_ts(self) -> None:
        """Give a row without a time that of the nearest line before (the first one back); 0
        if no row has one.

        Sources without a time on every line (a raw QMP stream's replies, a trace log without
        ``-msg timestamp=on``) leave None where the line itself has no time. "Before" is in
        line order, not in the order rows were added: a parser adds some rows only at the end
        (a trace log's queued events and its unknown-lines marker), and segments hold rows of
        many lines, all timed.
        """
        if all(t is not None for t in self.ts) and all(s.untimed is None for s in self.segments):
            return
        listed = len(self.ts)
        lines = np.concatenate([np.asarray(self.line, dtype=np.int64)] + [s.line for s in self.segments])
        known = np.concatenate([np.array([t is not None for t in self.ts], dtype=bool)]
                               + [np.ones(len(s), bool) if s.untimed is None else ~s.untimed for s in self.segments])
        values = np.concatenate([np.array([t or 0 for t in self.ts], dtype=np.int64)] + [s.ts for s in self.segments])
        order = np.lexsort((np.arange(len(lines)), lines))
        at = np.where(known[order], np.arange(len(order)), -1)
        np.maximum.accumulate(at, out=at)
        first = values[order][np.argmax(known[order])] if known.any() else 0
        filled = np.where(at >= 0, values[order][np.maximum(at, 0)], first)
        out = np.empty(len(lines), dtype=np.int64)
        out[order] = filled
        self.ts = out[:listed].tolist()
        at = listed
        for seg in self.segments:
            if seg.untimed is not None:
                seg.ts = out[at : at + len(seg)]
                seg.untimed = None
            at += len(seg)


@dataclass
class Part:
    """The rows of one VM from one input, with what that input tells about the VM."""

    source: str
    path: str
    rows: Rows
    #: The input's (`pipeline.parse_input` sets it once the input is read: a parser never
    #: waits for the input's scan, `lines.InputText.start_scan`).
    sha256: str = ""
    hints: ThreadHints = field(default_factory=ThreadHints)
    #: node-name / qom-path / qdev path -> device name, learnt from query-block replies.
    node_map: dict[str, str] = field(default_factory=dict)
    #: VM name the input gives (libvirt domain name, a query-name reply), if any.
    vm: str | None = None
    host: str | None = None
    #: QEMU release ("7.2.22") from the QMP greeting or a query-version reply, if seen.
    qemu_version: str | None = None
    #: Whether the input shows QEMU rate-limiting BLOCK_IO_ERROR (a trace log's
    #: ``monitor_protocol_event_queue event=<BLOCK_IO_ERROR> ... rate=N`` with N > 0), whatever
    #: the version says (a distribution's backport).
    throttles: bool = False
    #: Canonical position of the input among all inputs (set by `vm_tables.vm_tables`).
    order: int = 0


@dataclass
class ParsedInput:
    """One input file after parsing: its parts (one per VM) and its bookkeeping."""

    path: str
    format: str
    sha256: str
    lines: int
    skipped: int
    truncated: bool
    parts: list[Part]
    #: Lines of a trace event the parser reads in none of its known formats (not kept).
    unknown_lines: int = 0

    @property
    def rows(self) -> int:
        return sum(len(p.rows) for p in self.parts)


#: Integer columns of `Rows` and the Arrow type each becomes (dense columns, then sparse ones).
_DENSE_INTS = (("ts", "ts_ns", pa.int64()), ("tid", "tid", pa.int64()))
_SPARSE_INTS = (("errno", "errno", pa.int32()), ("req_id", "req_id", pa.int64()), ("event_ts", "event_ts_ns", pa.int64()))


def first_out_of_range(rows: Rows) -> tuple[int, str, Any] | None:
    """(reading line, column, value) of the first integer that its schema column cannot hold
    (a 2^70 timestamp, an errno beyond int32), else None.

    The parsers check the values they make; this is the net under all of them, one C-level
    conversion per column, so that no overflow reaches the table builder as a traceback.
    """
    for attr, column, type_ in _DENSE_INTS:
        bad = _first_bad(getattr(rows, attr), type_)
        found = None if bad is None else (rows.line[bad], column, getattr(rows, attr)[bad])
        if attr == "ts" and rows.unfit_ts:
            line, value = min(rows.unfit_ts)
            if found is None or line < found[0]:
                found = (line, column, value)
        if found is not None:
            return found
    for attr, column, type_ in _SPARSE_INTS:
        values = rows.sparse[attr]
        if not values:
            continue
        listed = list(values.values())
        bad = _first_bad(listed, type_)
        if bad is not None:
            return rows.line[list(values)[bad]], column, listed[bad]
    return None


def _first_bad(values: list, type_: pa.DataType) -> int | None:
    try:
        pa.array(values, type_)
        return None
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
        pass
    low, high = (-(1 << 31), (1 << 31) - 1) if type_ == pa.int32() else (-(1 << 63), (1 << 63) - 1)
    for i, v in enumerate(values):  # only on the error path
        if v is not None and not (isinstance(v, int) and low <= v <= high):
            return i
    return None
