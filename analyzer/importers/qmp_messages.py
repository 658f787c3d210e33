"""A transcript's QMP commands and replies as columns, turned into rows once every one is read.

`qmp_semantics.QmpState` turns one message at a time into rows, Python objects a row. A
transcript is millions of them, nearly all management polls of a few shapes (`MessageCache`),
so `MessageTable` keeps them as columns instead -- per message its line, time, shape (a
`Shape`: what it says but for its id) and id -- and makes their rows at the end, for all of
them at once:

- which command each reply answers, by id, oldest first (`qmp_pairing.answered`), and so
  the reply's name (its command's, else guessed from its shape, as `QmpState` does);
- each message's occurrence among those of the same id and name (its key, for merging);
- what a reply means (`reply_fields`: ``query-block`` one row per device with its
  ``iostatus``, ``query-status`` its ``runstate``), worked out once per shape and name;
- what replies teach (node names, IOThreads and vCPUs, the VM name, the QEMU version), in
  reading order with the greetings.

The rows are `Segment` rows with `MessageColumns`, the same rows `QmpState` would have made
(``tests/analyzer/importers/test_bulk_reading.py`` compares the two). Events and greetings
stay with `QmpState`: they are few and need no pairing.

Messages come in chunks (`add_chunk`, one per block of the input: the ones read in bulk as
arrays, the others one by one with `add`), and each chunk becomes one segment.

A trace log's ``handle_qmp_command`` and ``monitor_qmp_respond`` lines are commands and
replies too, with what a transcript lacks: the TID of the thread that traced each (its thread
is the TID's, not a preset one: ``preset_threads=False``), and lines without a time (a log
without ``-msg timestamp=on``: `Segment.untimed`, filled from the line before).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from analyzer.importers.message_cache import Shape
from analyzer.importers.qmp_pairing import answered, in_turns, occurrences
from analyzer.importers.qmp_semantics import (
    LEARNING_REPLIES,
    ONE_ROW,
    QmpState,
    guess_command,
    reply_fields,
)
from analyzer.importers.qmp_types import INT64_MAX, INT64_MIN
from analyzer.importers.rows import MessageColumns, Segment
from analyzer.importers.spill import Spilled, SpillFile, loaded
from analyzer.trace.arrow import Interner

#: How an id is kept: an integer id (kind 0) is its value; any other (a string, a JSON
#: value, a counter beyond int64) a code into `MessageTable` ids (kind 1); no id, kind 2.
_INT, _OTHER, _NONE = 0, 1, 2
_KINDS = pa.array(["qmp_command", "qmp_reply"])
_THREADS = pa.array(["mgmt", "main"])
_VALUE_COLUMNS = ("device", "iostatus", "runstate")


@dataclass
class _Chunk:
    """The messages of one block: those read in bulk, then those read one by one."""

    line: np.ndarray
    ts: np.ndarray
    #: TIDs (None: the table has none), and which messages have no TID / no time.
    tid: np.ndarray | None
    no_tid: np.ndarray | None
    untimed: np.ndarray | None
    shape: np.ndarray  # index into MessageTable.shapes
    id_kind: np.ndarray
    id_value: np.ndarray
    #: Per message, where its payload is in `payloads`.
    payload_at: np.ndarray
    payloads: pa.Array | Spilled  # (`spill`: waiting on disk)
    #: What the caller gave with each message read one by one that may be a bad line (a reply
    #: whose meaning depends on its command): the errors name it.
    texts: dict[int, Any]


class MessageTable:
    """One input's commands and replies (a transcript's, a trace log's), as columns (see the module doc)."""

    def __init__(self, *, preset_threads: bool = True, tids: bool = False, spill: SpillFile | None = None) -> None:
        #: Commands' rows thread "mgmt", replies' "main" (a QMP capture); else none (a trace
        #: log's rows take their TID's thread). `tids`: the messages carry TIDs. `spill`:
        #: where each chunk's payloads wait until paired, and each segment's until written.
        self.preset_threads, self.tids, self.spill = preset_threads, tids, spill
        self.shapes: list[Shape] = []
        self._shape_index: dict[int, int] = {}
        #: Ids other than integers (`_OTHER`) -> their codes, in the order first seen.
        self._ids: dict[Any, int] = {}
        self._chunks: list[_Chunk] = []
        self._pending: list[tuple[int, int, int, int, int, str, Any, int | None, bool]] = []
        #: line -> time of the messages whose time int64 ns cannot hold (0 in the columns).
        self._unfit: dict[int, int] = {}

    def shape_index(self, shape: Shape) -> int:
        """The index of `shape` in `shapes` (added if new)."""
        found = self._shape_index.get(id(shape))
        if found is None:
            found = self._shape_index[id(shape)] = len(self.shapes)
            self.shapes.append(shape)
        return found

    def add(self, line: int, ts: int | None, shape: Shape, idk: Any, payload: str, text: Any, tid: int | None = None) -> None:
        """A message read one by one: `idk` is its `qmp_semantics.id_key`; `text` what an
        error about it names (None: it cannot be one), `ts` None: no time."""
        untimed = ts is None
        if untimed:
            ts = 0
        if idk is None:
            kind, value = _NONE, 0
        elif type(idk) is tuple and idk[0] == "int" and INT64_MIN <= idk[1] <= INT64_MAX:
            kind, value = _INT, idk[1]
        else:
            kind, value = _OTHER, self._ids.setdefault(idk, len(self._ids))
        if not INT64_MIN <= ts <= INT64_MAX:
            self._unfit[line], ts = ts, 0
        self._pending.append((line, ts, self.shape_index(shape), kind, value, payload, text, tid, untimed))

    def add_chunk(
        self, line: np.ndarray, ts: np.ndarray, shape: np.ndarray, id_value: np.ndarray, payloads: pa.Array,
        tid: np.ndarray | None = None,
    ) -> None:
        """Close a chunk: the messages read in bulk (integer ids, times; `tid` if the table has
        TIDs) of a block, with those read one by one since the last chunk; in line order."""
        pending, self._pending = self._pending, []
        n = len(line)
        if not n and not pending:
            return
        # (one column of the pending messages each: line, ts, shape, id kind, id value, payload,
        # text, tid, untimed)
        p_line, p_ts, p_shape, p_kind, p_value, p_payload, p_text, p_tid, p_untimed = (
            zip(*pending, strict=True) if pending else ((),) * 9
        )

        def joined(bulk: np.ndarray, listed: Any, dtype: Any = np.int64) -> np.ndarray:
            return np.concatenate((bulk, np.array(listed, dtype=dtype)))[order]

        lines = np.concatenate((line, np.array(p_line, dtype=np.int64)))
        order = np.argsort(lines, kind="stable")
        untimed = joined(np.zeros(n, dtype=bool), p_untimed, bool)
        tids = no_tid = None
        if self.tids:
            tids = joined(tid if tid is not None else np.zeros(n, np.int64), [t or 0 for t in p_tid])
            no_tid = joined(np.zeros(n, dtype=bool), [t is None for t in p_tid], bool)
        self._chunks.append(_Chunk(
            line=lines[order],
            ts=joined(ts, p_ts),
            tid=tids, no_tid=no_tid if no_tid is not None and no_tid.any() else None,
            untimed=untimed if untimed.any() else None,
            shape=joined(shape, p_shape),
            id_kind=joined(np.full(n, _INT, np.int64), p_kind),
            id_value=joined(id_value, p_value),
            payload_at=order,
            payloads=self._kept(pa.concat_arrays([payloads.cast(pa.string()), pa.array(p_payload, pa.string())])
                                if pending else payloads.cast(pa.string())),
            texts={number: text for number, text in zip(p_line, p_text, strict=True) if text is not None},
        ))

    def _kept(self, payloads: pa.Array) -> pa.Array | Spilled:
        return payloads if self.spill is None else self.spill.keep(payloads)

    def close_chunk(self) -> None:
        """Close a chunk of messages all read one by one (if any)."""
        if self._pending:
            self.add_chunk(*(np.zeros(0, np.int64) for _ in range(4)), pa.array([], pa.string()))

    def segments(
        self, state: QmpState, announced: list[tuple[int, Any]], *, rows_before: int = 0,
    ) -> tuple[list[Segment], list[tuple[int, Any, str]]]:
        """The rows of every message, one segment per chunk, and the bad lines (line, text,
        reason) among them. Teaches `state` what the replies teach, in reading order with the
        greetings' `announced` (line, greeting) versions; adds to `state.rows.unfit_ts` the
        rows whose time int64 ns cannot hold. `rows_before`: the part's segment rows that come
        before these segments' (command links are indices among them all)."""
        self.close_chunk()
        chunks, self._chunks = self._chunks, []
        if not chunks:
            return [], []
        line, shape, id_kind, id_value = (np.concatenate([getattr(c, f) for c in chunks])
                                          for f in ("line", "shape", "id_kind", "id_value"))
        is_reply = np.array([not s.command for s in self.shapes], dtype=bool)[shape]
        failed = np.array([s.failed for s in self.shapes], dtype=bool)[shape]
        command_of = answered(is_reply, id_kind, id_value)

        names = Interner()  # (command names, and guessed ones)
        shape_name = np.array([names.code(s.name) for s in self.shapes] or [-1], dtype=np.int64)
        guessed = np.array([names.code(guess_command(s.ret)) if not s.command and not s.failed else -1
                            for s in self.shapes] or [-1], dtype=np.int64)
        name = np.where(is_reply, -1, shape_name[shape])
        matched = command_of >= 0
        name[matched] = name[command_of[matched]]
        unnamed = is_reply & (name < 0) & ~failed
        name[unnamed] = guessed[shape[unnamed]]
        if in_turns(is_reply, id_kind, id_value):  # (each reply counts as its command does)
            occ = np.repeat(occurrences(id_kind[0::2], id_value[0::2], name[0::2]), 2)
        else:
            occ = occurrences(is_reply.astype(np.int64), id_kind, id_value, name)

        meanings = _Meanings(self.shapes, names)
        meaning = np.full(len(line), -1, dtype=np.int64)
        replies = np.flatnonzero(is_reply)
        width = len(names.names) + 1
        pair = shape[replies] * width + name[replies] + 1  # (small: shapes times names, counted)
        present = np.zeros(len(self.shapes) * width + 1, dtype=bool)
        present[pair] = True
        pairs = np.flatnonzero(present)
        codes = np.zeros(len(present), dtype=np.int64)
        codes[pairs] = [meanings.code(p // width, p % width - 1) for p in pairs.tolist()]
        meaning[replies] = codes[pair]
        bad = meaning <= -2
        rows_of = np.where(is_reply, meanings.row_counts[np.maximum(meaning, 0)], 1)
        rows_of[bad] = 0
        errors = [(int(line[i]), self._text(chunks, int(line[i])), meanings.reason(int(meaning[i])))
                  for i in np.flatnonzero(bad).tolist()]
        if self._unfit:
            with_rows = set(line[rows_of > 0].tolist())
            state.rows.unfit_ts.extend((n, t) for n, t in self._unfit.items() if n in with_rows)

        learning = np.flatnonzero(is_reply & ~failed & ~bad & np.isin(name, [names.codes[n] for n in LEARNING_REPLIES if n in names.codes]))
        self._teach(state, announced, [(int(line[i]), names.names[name[i]], self.shapes[shape[i]].ret) for i in learning.tolist()])
        meanings.teach(state, meaning)

        first_row = np.cumsum(rows_of) - rows_of + rows_before  # each message's first row among the segments'
        columns = meanings.columns()
        keys = _Keys(is_reply, id_kind, id_value, list(self._ids), names, name, occ)
        out, at = [], 0
        chunks.reverse()
        while chunks:  # (each chunk's payloads let go of once its segment has them)
            c = chunks.pop()
            n = len(c.line)
            out.append(self._segment(c, slice(at, at + n), rows_of, first_row, is_reply, name, names, meaning,
                                     meanings, columns, command_of, keys))
            at += n
        return out, errors

    @staticmethod
    def _text(chunks: list[_Chunk], line: int) -> Any:
        return next((c.texts[line] for c in chunks if line in c.texts), None)

    @staticmethod
    def _teach(state: QmpState, announced: list[tuple[int, Any]], learnt: list[tuple[int, str, Any]]) -> None:
        """What replies and greetings teach, in reading order (the last version seen wins)."""
        if not learnt:
            return
        state.version = None
        events = sorted([(line, 0, None, msg) for line, msg in announced] + [(line, 1, n, r) for line, n, r in learnt],
                        key=lambda e: e[0])
        for _, what, name, value in events:
            if what == 0:
                state.announce(value)
            else:
                state.learn(name, value)

    def _segment(
        self, c: _Chunk, at: slice, rows_of: np.ndarray, first_row: np.ndarray, is_reply: np.ndarray,
        name: np.ndarray, names: Interner, meaning: np.ndarray, meanings: _Meanings,
        columns: dict[str, tuple[np.ndarray, pa.Array]], command_of: np.ndarray, keys: _Keys,
    ) -> Segment:
        counts = rows_of[at]
        message = np.repeat(np.arange(at.start, at.stop), counts)  # the message of each row
        local = message - at.start
        j = np.arange(len(message)) - np.repeat(first_row[at] - first_row[at.start], counts)
        reply = is_reply[message].astype(np.int32)
        values: dict[str, pa.Array] = (
            {"thread": _coded(reply, _THREADS), "thread_kind": _coded(reply, _THREADS)} if self.preset_threads else {}
        )
        row = np.where(meaning[message] >= 0, meanings.first_row[np.maximum(meaning[message], 0)] + j, -1)
        for col, table in columns.items():
            values[col] = _coded(np.where(row >= 0, table[0][np.maximum(row, 0)], -1), table[1])
        command = command_of[message]
        cmd_ref = np.where(command >= 0, first_row[np.maximum(command, 0)], -1)
        tid = None
        if c.tid is not None:
            tid = c.tid[local] if c.no_tid is None else pa.array(c.tid[local], mask=c.no_tid[local])
        return Segment(
            ts=c.ts[local], tid=tid, line=c.line[local], untimed=None if c.untimed is None else c.untimed[local],
            name=_coded(name[message], pa.array(names.names, pa.string())),
            payload=self._kept(loaded(c.payloads).take(pa.array(c.payload_at[local]))),
            kind=_coded(reply, _KINDS),
            messages=MessageColumns(values=values, cmd_ref=cmd_ref, keys=_RowKeys(keys, message, j)),
        )


def _coded(codes: np.ndarray, dictionary: pa.Array) -> pa.DictionaryArray:
    """Dictionary codes (-1: null) over `dictionary`."""
    codes = np.asarray(codes)
    mask = codes < 0
    return pa.DictionaryArray.from_arrays(
        pa.array(np.maximum(codes, 0).astype(np.int32), mask=mask if mask.any() else None), dictionary
    )


class _Meanings:
    """What each (reply shape, command name) means (`reply_fields`), worked out once each:
    codes 0.. for meanings, -2 - k for the k-th reason a pair is a bad line."""

    def __init__(self, shapes: list[Shape], names: Interner) -> None:
        self._shapes, self._names = shapes, names
        self._rows: list[tuple] = []
        self._learnt: list[list[tuple[str, str]]] = []
        self._counts: list[int] = []
        self._firsts: list[int] = []
        self.reasons: list[str] = []

    def code(self, shape: int, name: int) -> int:
        s = self._shapes[shape]
        if s.failed:
            row_fields, learnt = ONE_ROW
        else:
            try:
                row_fields, learnt = reply_fields(self._names.names[name] if name >= 0 else None, s.ret)
            except ValueError as exc:
                self.reasons.append(str(exc))
                return -1 - len(self.reasons)
        self._firsts.append(len(self._rows))
        self._counts.append(len(row_fields))
        self._rows.extend(row_fields)
        self._learnt.append(learnt)
        return len(self._counts) - 1

    @property
    def row_counts(self) -> np.ndarray:
        return np.array(self._counts or [0], dtype=np.int64)

    @property
    def first_row(self) -> np.ndarray:
        return np.array(self._firsts or [0], dtype=np.int64)

    def reason(self, code: int) -> str:
        return self.reasons[-2 - code]

    def columns(self) -> dict[str, tuple[np.ndarray, pa.Array]]:
        """Per sparse column, its value code in each meaning's row (-1: none) and the values."""
        out = {}
        for col in _VALUE_COLUMNS:
            values: dict[str, int] = {}
            codes = np.array([values.setdefault(dict(fields)[col], len(values)) if col in dict(fields) else -1
                              for fields in self._rows] or [-1], dtype=np.int64)
            if values:
                out[col] = (codes, pa.array(list(values), pa.string()))
        return out

    def teach(self, state: QmpState, meaning: np.ndarray) -> None:
        """The node names the replies teach, as if each reply taught its own in reading order
        (each meaning's, in the order of the last reply that means it)."""
        taught = [m for m, learnt in enumerate(self._learnt) if learnt]
        if not taught:
            return
        last = {m: int(np.flatnonzero(meaning == m)[-1]) for m in taught if (meaning == m).any()}
        for m in sorted(last, key=last.__getitem__):
            state.node_map.update(self._learnt[m])


class _Keys:
    """The message keys of rows (see `rows`), made only when inputs merge."""

    def __init__(self, is_reply: np.ndarray, id_kind: np.ndarray, id_value: np.ndarray, id_objects: list[Any],
                 names: Interner, name: np.ndarray, occ: np.ndarray) -> None:
        self._is_reply, self._id_kind, self._id_value = is_reply, id_kind, id_value
        self._id_objects, self._names, self._name, self._occ = id_objects, names.names, name, occ

    def of(self, message: np.ndarray, j: np.ndarray) -> list[tuple]:
        """The key of each row: of its `message`, and `j`, its row among the message's."""
        objects = self._id_objects
        ids = [("int", value) if kind == _INT else objects[value] if kind == _OTHER else None
               for kind, value in zip(self._id_kind[message].tolist(), self._id_value[message].tolist(), strict=True)]
        names = [*self._names, None]  # (code -1: no name)
        return [
            ("reply", idk, names[c], occ, k) if reply else ("cmd", idk, names[c], occ)
            for reply, idk, c, occ, k in zip(self._is_reply[message].tolist(), ids, self._name[message].tolist(),
                                             self._occ[message].tolist(), j.tolist(), strict=True)
        ]


class _RowKeys:
    """The message keys of one segment's rows, when asked for (picklable: parsed inputs
    travel between worker processes)."""

    def __init__(self, keys: _Keys, message: np.ndarray, j: np.ndarray) -> None:
        self._keys, self._message, self._j = keys, message, j

    def __call__(self) -> list[tuple]:
        return self._keys.of(self._message, self._j)
