"""One VM's rows from one or several inputs -> one schema-v1 table, in a deterministic order.

Merging: the same QMP message seen by two inputs becomes one row.

- An event matches by name and QMP timestamp (``monitor_qmp_respond`` in a trace log, a line
  of a transcript, a libvirt RECV_EVENT): any inputs.
- A command matches by QMP id, name and occurrence, a reply by id, command, occurrence and
  device index (``handle_qmp_command`` / ``monitor_qmp_respond``): only between a trace log
  and a QMP or libvirt input (two clients of one VM talk on different monitors and may reuse
  ids; the trace log sees every monitor).

The row that stays is the one of the first input in source order (``qemu-log``, then
``qmp``, then ``libvirt-log``): it keeps its time, TID, thread and ``src_file:src_line``
(the trace log knows which thread did it, and when, to the microsecond); the QMP data it
lacks (device, op, action, errno, iostatus, runstate, name, command link) comes from the row
merged into it.

What the inputs *contradict* is not reconciled: an event whose data differ, events in another
order, an event one input shows inside the time another covers and that one lacks are each
marked with a row (`disagree`) that the rule ``sources-disagree`` reports with both places.

Order: by ``ts_ns``; ties by source order (qemu-log, qmp, libvirt-log), then by the inputs'
content (sha256, so the order the files were given in does not matter), then by line, then
by reading order. ``seq`` is 0.. in that order; ``cmd_seq`` of a reply is the seq of its
command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analyzer.importers import ahead, disagree
from analyzer.importers.qmp_semantics import qdev_name
from analyzer.importers.rows import MessageColumns, Part
from analyzer.importers.spill import Spilled, is_spilled, loaded
from analyzer.importers.thread_hints import ThreadHints, attribute
from tracer.schema import schema_with_metadata

#: Output rows turned from Python objects into Arrow at a time (see `build_rows`).
CHUNK_ROWS = 65_536

SOURCE_ORDER = {"qemu-log": 0, "qmp": 1, "libvirt-log": 2, "domain-log": 3, "virsh-events": 4}

#: Fields a merged row takes from its partner when it has none itself.
_DATA_FIELDS = ("device", "op", "errno", "action", "iostatus", "runstate", "cmd_ref", "node", "qom",
                "event_ts")


#: The sparse columns of integers and of words, each a value for few rows (`_Writes`).
_NUMBERS = ("req_id", "errno", "event_ts")
_WORDS = ("device", "op", "policy", "action", "iostatus", "runstate", "prev_runstate")


def part_sort_key(part: Part) -> tuple:
    return (SOURCE_ORDER.get(part.source, 9), part.sha256, part.path)


def build_rows(
    parts: Sequence[Part],
    vm: str,
    *,
    host: str | None,
    source: str,
    metadata: Mapping[str, Any] | None = None,
    chunk_rows: int | None = None,
    check: Callable[[pa.Table], None] | None = None,
) -> VmRows:
    """The schema-v1 rows of one VM from its parts (any order: they are sorted here), to be
    written a row group at a time (`VmRows`), each checked by `check` when it is made.

    The parts are consumed: their row lists are emptied as the rows move into Arrow, in
    chunks of `chunk_rows` output rows (default `CHUNK_ROWS`), so that a VM's rows are never
    held twice (as Python objects and in Arrow) but for one chunk. The rows are the same
    whatever the chunk size."""
    parts = sorted(parts, key=lambda p: (p.order, *part_sort_key(p)))
    if len(parts) > 1:  # inputs are merged row by row: every message a list row with its key
        for part in parts:
            part.rows.materialize()
    links = disagree.find(parts) if len(parts) > 1 else []  # (adds marker rows: before counting)
    offsets = np.cumsum([0] + [len(p.rows) for p in parts])
    n = int(offsets[-1])
    chunk = max(1, int(CHUNK_ROWS if chunk_rows is None else chunk_rows))

    # The dense columns of the lists' rows as pointer arrays (what the parts' lists held,
    # which are emptied; a chunk of them set to None frees its Python objects once it is in
    # Arrow). Segment rows (read in bulk, never Python objects) stay Arrow. `place` is where
    # each row is in the order the columns are put together -- the lists' rows, then the
    # segments' -- so for a row of the lists also its index into `kind`, `tid`, `name`, `payload`.
    list_offsets = np.cumsum([0] + [len(p.rows.kind) for p in parts])
    k = int(list_offsets[-1])
    kind, tid, name, payload = (np.empty(k, dtype=object) for _ in range(4))
    ts_arr = np.empty(n, dtype=np.int64)
    line_arr = np.empty(n, dtype=np.int64)
    part_of = np.empty(n, dtype=np.int64)
    place = np.empty(n, dtype=np.int64)
    sparse: dict[str, dict[int, Any]] = {}
    segments: list = []
    #: (row of its first, row of its part's first segment row, columns) of each segment of
    #: QMP messages (`rows.MessageColumns`): their sparse values and command links.
    messages: list[tuple[int, int, MessageColumns]] = []
    for p_i, part in enumerate(parts):
        off, lo, upto = int(offsets[p_i]), int(list_offsets[p_i]), int(offsets[p_i + 1])
        rows = part.rows
        end = off + len(rows.kind)
        for target, values in ((kind, rows.kind), (tid, rows.tid), (name, rows.name), (payload, rows.payload)):
            target[lo : lo + len(values)] = values
            values.clear()
        ts_arr[off:end] = rows.ts
        line_arr[off:end] = rows.line
        rows.ts.clear()
        rows.line.clear()
        part_of[off:upto] = p_i
        place[off:end] = np.arange(lo, lo + end - off)
        done = k + sum(len(s) for s in segments)
        place[end:upto] = np.arange(done, done + upto - end)
        first_segment_row = end
        for seg in rows.segments:
            ts_arr[end : end + len(seg)] = seg.ts
            line_arr[end : end + len(seg)] = seg.line
            if seg.messages is not None:
                messages.append((end, first_segment_row, seg.messages))
            end += len(seg)
        segments.extend(rows.segments)
        rows.segments = []
        for col, values in rows.sparse.items():
            if col not in sparse and off == 0:
                # The first part's own dict when nothing here writes to it (one part: no
                # merge, which writes the data fields; _resolve_devices writes "device"),
                # else one C-level copy.
                shared = len(parts) == 1 and col not in _DATA_FIELDS
                sparse[col] = values if shared else dict(values)
                continue
            target = sparse.setdefault(col, {})
            if col == "cmd_ref":
                target.update({off + i: off + v for i, v in values.items()})
            else:
                target.update({off + i: v for i, v in values.items()})

    if links:  # each marker's cmd_seq names the other source's row (`disagree`)
        refs = sparse.setdefault("cmd_ref", {})
        for pm, lm, po, lo in links:
            refs[int(offsets[pm]) + lm] = int(offsets[po]) + lo

    alias = np.arange(n, dtype=np.int64)
    if len(parts) > 1:  # one input keeps a message seen twice: nothing to merge
        names = _ByRow(name, place)
        _match(parts, offsets, sparse, alias, names, _ByRow(payload, place))
        _match_numbered(parts, offsets, list_offsets, sparse, alias, _ByRow(kind, place), ts_arr, names)
    _resolve_devices(parts, sparse)
    sparse.pop("key", None)  # (message keys only serve the matching: let them go)
    for part in parts:
        part.rows.sparse["key"] = {}

    order = _output_order(alias, ts_arr, line_arr, part_of, len(parts) == 1)
    m = len(order)
    position = np.full(n, -1, dtype=np.int64)
    position[order] = np.arange(m)

    # The dense columns go to Arrow in `place` order -- the lists' rows a chunk at a time (a
    # chunk's Python objects are freed once it is in Arrow), then the segments' -- and are
    # taken into output order a row group at a time as it is written (`_Taken`).
    bulk = _SegmentColumns(segments)
    piece_starts = np.concatenate((np.arange(0, k, chunk), k + np.cumsum([0] + [len(s) for s in segments])[:-1]))
    placement = _Placement(piece_starts, n, place[order])
    del place

    def taken(pieces: list[pa.Array | Spilled], type_: pa.DataType) -> _Taken:
        return _Taken(pieces, placement, type_)

    def list_chunks(values: np.ndarray, type_: pa.DataType) -> Iterator[pa.Array]:
        for start in range(0, k, chunk):
            yield pa.array(values[start : start + chunk], type_)
            values[start : start + chunk] = None

    def codes(values: np.ndarray, col: str) -> _Taken:
        """A column of few distinct strings (kind, name) as dictionary codes all along: what
        is put in order is 4 bytes a row, not the strings."""
        chunks = [c.dictionary_encode() for c in list_chunks(values, pa.string())] + bulk.codes(col)
        type_ = pa.dictionary(pa.int32(), pa.string())
        unified = pa.chunked_array(chunks, type_).unify_dictionaries().chunks
        del chunks
        return taken(unified, type_)

    dense = {"tid": taken([*list_chunks(tid, pa.int64()), *bulk.column("tid", pa.int64())], pa.int64()),
             "kind": codes(kind, "kind"), "name": codes(name, "name")}
    del kind, tid, name
    # (64-bit offsets: a VM's payloads may pass 2 GiB; each row group's fit in 32. The
    # payloads stay in pieces, what the parsers made, never copied into one array.)
    dense["payload"] = taken(
        [*list_chunks(payload, pa.large_string()), *bulk.column("payload", pa.large_string())], pa.large_string(),
    )
    del payload

    hints = ThreadHints()
    for part in parts:
        hints.update(part.hints)

    def numbers(col: str) -> _Writes | None:
        values = sparse.get(col, {})
        if not values:
            return None
        return _Writes([position[np.fromiter(values, np.int64, len(values))]],
                       [np.fromiter(values.values(), np.int64, len(values))], m, np.int64)

    def words(col: str) -> _Words | None:
        """A sparse string column as codes into its words, never a column of `m` strings."""
        values = sparse.get(col, {})
        if not values and all(col not in columns.values for _, _, columns in messages):
            return None
        out = _Words()
        if values:
            encoded = pa.array(list(values.values()), pa.string()).dictionary_encode()
            out.add(position[np.fromiter(values, np.int64, len(values))], encoded.indices, encoded.dictionary)
        for start, _, columns in messages:  # (rows of messages read in bulk: a code per row)
            column = columns.values.get(col)
            if column is not None:
                out.add(position[start : start + len(column)], column.indices, column.dictionary)
        return out.done(m)

    refs = sparse.get("cmd_ref", {})
    linked = [(np.fromiter(refs, np.int64, len(refs)), np.fromiter(refs.values(), np.int64, len(refs)))]
    for start, first, columns in messages:
        answering = np.flatnonzero(columns.cmd_ref >= 0)
        linked.append((start + answering, first + columns.cmd_ref[answering]))
    cmd_seq = _Writes([position[rows_at] for rows_at, _ in linked], [position[alias[commands]] for _, commands in linked],
                      m, np.int64)

    unique_paths = sorted({p.path for p in parts}, key=[p.path for p in parts].index)
    path_index = np.array([unique_paths.index(p.path) for p in parts], dtype=np.int32)
    return VmRows(_OutputRows(
        schema=schema_with_metadata(source, metadata), vm=vm, host=host, hints=hints, order=order,
        ts=ts_arr, line=line_arr, src_file=path_index[part_of], paths=pa.array(unique_paths, pa.string()),
        dense=dense, cmd_seq=cmd_seq,
        numbers={col: numbers(col) for col in _NUMBERS},
        words={col: words(col) for col in (*_WORDS, "thread", "thread_kind")},
    ), check=check)


def first_appearance(column: pa.DictionaryArray) -> pa.DictionaryArray:
    """`column` with its dictionary in order of first appearance (nulls stay nulls): what
    ``dictionary_encode`` of the plain strings gives, whatever dictionary it came with."""
    indices = column.indices
    seen = pc.drop_null(pc.unique(indices)).to_numpy()
    if len(seen) == len(column.dictionary) and bool(np.all(seen == np.arange(len(seen)))):
        return column  # (already so: one input read in order, a column of one word)
    remap = np.zeros(max(len(column.dictionary), 1), dtype=np.int32)  # (all null: no dictionary)
    remap[seen] = np.arange(len(seen), dtype=np.int32)
    codes = remap[pc.fill_null(indices, 0).to_numpy()]
    mask = indices.is_null().to_numpy(zero_copy_only=False) if indices.null_count else None
    return pa.DictionaryArray.from_arrays(pa.array(codes, mask=mask), column.dictionary.take(pa.array(seen)))


def _no_words(m: int) -> pa.DictionaryArray:
    """A dictionary column of `m` nulls (what `first_appearance` makes of one)."""
    return pa.DictionaryArray.from_arrays(pa.nulls(m, pa.int32()), pa.array([], pa.string()))


def _output_order(alias: np.ndarray, ts: np.ndarray, line: np.ndarray, part_of: np.ndarray, one_input: bool) -> np.ndarray:
    """The rows no other row was merged into, in output order: by time, then source order,
    line and reading order (see the module docstring).

    One input (no row merged away, one source) is put in line order and then in time order,
    each by a stable sort: its rows come as a few runs in line order (the lists' rows, the
    bulk segments, the QMP messages' segments) and a log is in time order but for the few
    lines threads wrote out of turn, which a stable sort (timsort) puts right in close to
    linear time. Otherwise all four keys are sorted."""
    if one_input:
        by_line = np.argsort(line, kind="stable")
        return by_line[np.argsort(ts[by_line], kind="stable")]
    idx = np.flatnonzero(alias == np.arange(len(alias)))
    return idx[np.lexsort((idx, line[idx], part_of[idx], ts[idx]))]


class _Placement:
    """Where a VM's output rows lie in the pieces its dense columns come in: every dense column
    comes in the same pieces (a chunk of the lists' rows, one segment), laid end to end in
    `place` order over its `rows` rows; `piece_starts` is where each starts, `output_place`
    the `place` of each output row. A row group's rows are found in them once (`locate`) for
    all its columns."""

    def __init__(self, piece_starts: np.ndarray, rows: int, output_place: np.ndarray) -> None:
        self.starts = np.append(piece_starts, rows).astype(np.int64)
        self.pieces = len(piece_starts)
        self._place = output_place
        self._last: tuple[tuple[int, int], tuple[list[int], np.ndarray]] | None = None

    def locate(self, start: int, rows: int) -> tuple[list[int], np.ndarray]:
        """(the pieces output rows start .. start + rows lie in, in order; each row's index
        among those pieces put end to end)."""
        if self._last is not None and self._last[0] == (start, rows):
            return self._last[1]
        place = self._place[start : start + rows]
        piece = np.searchsorted(self.starts, place, side="right") - 1
        touched = np.flatnonzero(np.bincount(piece, minlength=self.pieces))
        lengths = np.diff(self.starts)[touched]
        base = np.zeros(max(self.pieces, 1), dtype=np.int64)
        base[touched] = np.cumsum(lengths) - lengths
        found = (touched.tolist(), base[piece] + place - self.starts[piece])
        self._last = ((start, rows), found)
        return found


class _Taken:
    """A column in output order that is taken from its pieces only as its rows are asked for:
    a row group's rows from the pieces they lie in (one chunked take), so that the whole
    column is never copied at once. Its pieces (a segment's payloads may wait on disk:
    `spill`) are laid out as `placement` says."""

    def __init__(self, pieces: list[pa.Array | Spilled], placement: _Placement, type_: pa.DataType) -> None:
        if len(pieces) != placement.pieces:
            raise AssertionError("a dense column's pieces are not those of its VM's rows")
        self._type = type_
        self._pieces = [p if is_spilled(p) else p.cast(type_) for p in pieces]
        self._placement = placement

    def slice(self, start: int, rows: int) -> pa.Array:
        """Output rows start .. start + rows, as one array (what taking from all the pieces put
        together gives)."""
        touched, local = self._placement.locate(start, rows)
        if not touched:
            return pa.array([], self._type)
        # (one take over the touched pieces as chunks: no copy of them put together first)
        taken = pa.chunked_array([loaded(self._pieces[p]).cast(self._type) for p in touched], self._type)
        taken = taken.take(pa.array(local))
        return taken.chunk(0) if taken.num_chunks == 1 else taken.combine_chunks()


class _ByRow:
    """A column of the lists' rows (`kind`, `name`, `payload`) indexed by row, through `place`
    (for the merge's row-by-row matching)."""

    __slots__ = ("_place", "_values")

    def __init__(self, values: np.ndarray, place: np.ndarray) -> None:
        self._values, self._place = values, place

    def __getitem__(self, row: int) -> Any:
        return self._values[self._place[row]]

    def __setitem__(self, row: int, value: Any) -> None:
        self._values[self._place[row]] = value


class _SegmentColumns:
    """The segment rows of one VM (`rows.Segment`), column by column, in Arrow."""

    def __init__(self, segments: Sequence[Any]) -> None:
        self._segments = segments

    def codes(self, col: str) -> list[pa.DictionaryArray]:
        """Column `col` (kind or name) of every segment row as dictionary codes, in reading
        order (one array per segment); the segments let go of theirs."""
        if col == "kind":
            trace_event = pa.array(["trace_event"])
            return [
                (s.kind if pa.types.is_dictionary(s.kind.type) else s.kind.dictionary_encode()) if s.kind is not None
                else pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(s), np.int32)), trace_event)
                for s in self._segments
            ]
        out = []
        for s in self._segments:
            out.append(s.name if pa.types.is_dictionary(s.name.type) else s.name.dictionary_encode())
            s.name = None
        return out

    def column(self, col: str, type_: pa.DataType) -> list[pa.Array]:
        """Column `col` (tid, payload) of every segment row, in reading order (one array per
        segment)."""
        if col == "tid":
            return [pa.nulls(len(s), type_) if s.tid is None else pa.array(s.tid, type_) for s in self._segments]
        out = []
        for s in self._segments:  # each column is taken once: the segments let go of theirs
            column = getattr(s, col)
            out.append(column if is_spilled(column) else column.cast(type_))
            setattr(s, col, None)
        return out


class _Writes:
    """A sparse column in output order, made from writes (output rows, values) in the order
    they were made: a row written twice keeps its last value; rows at -1 (merged away) are
    dropped. Kept as the rows that have a value (sorted) and their values, or, when more than
    one row in `DENSE` has one (a transcript's threads), as a value and a flag per row."""

    DENSE = 8

    def __init__(self, rows: Sequence[np.ndarray], values: Sequence[np.ndarray], m: int, dtype: Any) -> None:
        self._m = m
        self._dense: tuple[np.ndarray, np.ndarray] | None = None
        if sum(len(r) for r in rows) * self.DENSE > m:
            found, valid = np.zeros(m, dtype=dtype), np.zeros(m, dtype=bool)
            for at, v in zip(rows, values, strict=True):  # (in order: the last write wins)
                kept = at >= 0
                found[at[kept]] = v[kept]
                valid[at[kept]] = True
            self._dense = found, valid
            return
        at = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        found = np.concatenate(values).astype(dtype, copy=False) if values else np.zeros(0, dtype)
        kept = at >= 0
        at, found = at[kept], found[kept]
        by = np.argsort(at, kind="stable")
        at, found = at[by], found[by]
        last = np.append(at[1:] != at[:-1], True) if len(at) else np.zeros(0, bool)
        self._rows, self._values = at[last], found[last]

    def window(self, start: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """(value, whether there is one) of each output row start .. start + rows."""
        rows = max(0, min(rows, self._m - start))
        if self._dense is not None:
            found, valid = self._dense
            return found[start : start + rows], valid[start : start + rows]
        lo, hi = np.searchsorted(self._rows, (start, start + rows))
        found, valid = np.zeros(rows, dtype=self._values.dtype), np.zeros(rows, dtype=bool)
        found[self._rows[lo:hi] - start] = self._values[lo:hi]
        valid[self._rows[lo:hi] - start] = True
        return found, valid

    def numbers(self, start: int, rows: int, type_: pa.DataType) -> pa.Array:
        """Output rows start .. start + rows as an integer column (null where no value),
        placed with numpy: no Python object per row."""
        found, valid = self.window(start, rows)
        rows = len(found)
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
        n_valid = int(np.count_nonzero(valid))
        column = pa.Array.from_buffers(pa.int64(), rows, [validity, pa.py_buffer(np.ascontiguousarray(found))],
                                       null_count=rows - n_valid)
        return column if type_ == pa.int64() else column.cast(type_)


class _Words:
    """A sparse string column as codes into its words (`_Writes` of codes), built from the
    codes of dictionary columns, whatever their dictionaries."""

    def __init__(self) -> None:
        self._words: dict[str, int] = {}
        self._rows: list[np.ndarray] = []
        self._codes: list[np.ndarray] = []

    def add(self, at: np.ndarray, codes: pa.Array, dictionary: pa.Array) -> None:
        """Rows `at` (output rows, -1: merged away) take `codes` into `dictionary` (nulls:
        no value)."""
        remap = np.array([self._words.setdefault(w, len(self._words)) for w in dictionary.to_pylist()] or [0],
                         dtype=np.int32)
        valid = codes.is_valid().to_numpy(zero_copy_only=False)
        self._rows.append(at[valid])
        self._codes.append(remap[pc.fill_null(codes, 0).to_numpy()[valid]])

    def done(self, m: int) -> _Words:
        self.writes = _Writes(self._rows, self._codes, m, np.int32)
        self.dictionary = pa.array(list(self._words), pa.string())
        del self._rows, self._codes, self._words
        return self

    def column(self, start: int, rows: int) -> pa.DictionaryArray:
        """Output rows start .. start + rows, dictionary in order of first appearance (as
        encoding the strings would make it)."""
        indices, valid = self.writes.window(start, rows)
        return first_appearance(pa.DictionaryArray.from_arrays(pa.array(indices, mask=~valid), self.dictionary))


class _OutputRows:
    """What one VM's columns are made of, put together in output order a row group at a time
    (`batch`): nothing of the size of the VM is built but the output order itself."""

    def __init__(
        self,
        *,
        schema: pa.Schema,
        vm: str,
        host: str | None,
        hints: ThreadHints,
        order: np.ndarray,
        ts: np.ndarray,
        line: np.ndarray,
        src_file: np.ndarray,
        paths: pa.Array,
        dense: dict[str, _Taken],
        cmd_seq: _Writes,
        numbers: dict[str, _Writes | None],
        words: dict[str, _Words | None],
    ) -> None:
        self.schema, self.vm, self.host, self.hints = schema, vm, host, hints
        #: Per row in reading order (`build_rows`): time, line, index into `paths`.
        self.order, self.ts, self.line, self.src_file, self.paths = order, ts, line, src_file, paths
        self.dense, self.cmd_seq, self.numbers, self.words = dense, cmd_seq, numbers, words

    def __len__(self) -> int:
        return len(self.order)

    def batch(self, start: int, rows: int) -> pa.Table:
        """Output rows start .. start + rows as a schema-v1 table (each column one array)."""
        rows = max(0, min(rows, len(self) - start))
        at = self.order[start : start + rows]

        def numbers(col: str, type_: pa.DataType) -> pa.Array:
            writes = self.numbers[col]
            return pa.nulls(rows, type_) if writes is None else writes.numbers(start, rows, type_)

        def words(col: str) -> pa.DictionaryArray:
            column = self.words[col]
            return _no_words(rows) if column is None else column.column(start, rows)

        def dense(col: str) -> pa.Array:
            return self.dense[col].slice(start, rows)

        tid = dense("tid")
        thread_names, thread_kinds = attribute(tid, self.hints)
        columns: dict[str, pa.Array] = {
            "seq": pa.array(np.arange(start, start + rows, dtype=np.int64)),
            "ts_ns": pa.array(self.ts[at]),
            "vm": pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)), pa.array([self.vm])),
            "host": pa.nulls(rows, pa.string()) if self.host is None else pa.array([self.host] * rows, pa.string()),
            "thread": _coalesce(words("thread"), thread_names, "qemu"),
            "thread_kind": _coalesce(words("thread_kind"), thread_kinds, "unknown"),
            "kind": first_appearance(dense("kind")),
            "req_id": numbers("req_id", pa.int64()),
            "errno": numbers("errno", pa.int32()),
            "name": first_appearance(dense("name")),
            "error_id": pa.nulls(rows, pa.int64()),
            "payload": dense("payload"),
            "tid": tid,
            "cmd_seq": self.cmd_seq.numbers(start, rows, pa.int64()),
            "src_file": pa.DictionaryArray.from_arrays(pa.array(self.src_file[at]), self.paths),
            "src_line": pa.array(self.line[at]),
            "event_ts_ns": numbers("event_ts", pa.int64()),
            **{col: words(col) for col in _WORDS},
        }
        arrays = []
        for field in self.schema:
            arr = columns[field.name]
            if pa.types.is_dictionary(field.type) and not pa.types.is_dictionary(arr.type):
                arr = arr.dictionary_encode()
            arrays.append(arr.cast(field.type))
        return pa.Table.from_arrays(arrays, schema=self.schema)


class VmRows:
    """One VM's rows in output order, ready to write a row group at a time (`batches`): its
    columns are put together only as each row group is written, so that a VM's output table
    is never in memory whole, and each row group is checked (`check`) as it is made."""

    def __init__(self, rows: _OutputRows, *, check: Callable[[pa.Table], None] | None = None) -> None:
        self._rows: _OutputRows | None = rows
        self._check = check
        self.num_rows = len(rows)
        self.schema = rows.schema

    def batches(self, rows: int) -> Iterator[pa.Table]:
        """The whole table, `rows` rows at a time; single use (what the rows were made of is
        let go of once the last is given). The next row group is made (and checked) on a
        thread while the caller writes this one: numpy and Arrow, mostly without the GIL."""
        source, self._rows = self._rows, None
        if source is None:
            raise RuntimeError("the rows of this VM were already taken")

        def make(start: int) -> pa.Table:
            part = source.batch(start, rows)
            if self._check is not None:
                self._check(part)
            return part

        starts = range(0, max(self.num_rows, 1), rows)
        yield from ahead.ordered(starts, make, workers=1, depth=1) if len(starts) > 1 else map(make, starts)

    def to_table(self) -> pa.Table:
        """The whole table in one piece (for `read_input`, and several VMs in one file)."""
        return next(self.batches(max(self.num_rows, 1)))


def _coalesce(preset: pa.DictionaryArray, derived: pa.DictionaryArray, default: str) -> pa.DictionaryArray:
    """Per row the preset value, else the derived one, else `default`, as one dictionary
    column (in order of first appearance, as encoding the strings would make it)."""
    words = [*preset.dictionary.to_pylist(), *derived.dictionary.to_pylist(), default]
    unique = list(dict.fromkeys(words))
    code = np.array([unique.index(w) for w in words], dtype=np.int32)
    p_codes, p_missing = _codes(preset)
    d_codes, d_missing = _codes(derived)
    codes = code[len(preset.dictionary) + d_codes]
    codes[d_missing] = code[-1]
    if not p_missing.all():
        codes[~p_missing] = code[p_codes[~p_missing]]
    return first_appearance(pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(unique, pa.string())))


def _codes(column: pa.DictionaryArray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, whether null) of a dictionary column, nulls as code 0."""
    indices = column.indices
    return pc.fill_null(indices, 0).to_numpy(), indices.is_null().to_numpy(zero_copy_only=False)


def _match(
    parts: Sequence[Part],
    offsets: np.ndarray,
    sparse: dict[str, dict[int, Any]],
    alias: np.ndarray,
    name: _ByRow,
    payload: _ByRow,
) -> None:
    """Merge rows with the same message key into the row of the first input (see module doc)."""
    keys = sparse.get("key", {})
    events: dict[tuple, int] = {}
    trace_messages: dict[tuple, int] = {}
    for p_i, part in enumerate(parts):
        off = int(offsets[p_i])
        is_trace = part.source == "qemu-log"
        for local in sorted(part.rows.sparse["key"]):
            g = off + local
            key = keys[g]
            if key[0] in ("event", "greeting"):
                survivor = events.get(key)
                if survivor is None:
                    events[key] = g
                    continue
            elif is_trace:
                trace_messages.setdefault(key, g)
                continue
            else:
                survivor = trace_messages.pop(key, None)
                if survivor is None:
                    continue
            if survivor >= off:
                continue  # the same message twice in one input: keep both
            alias[g] = survivor
            for col in _DATA_FIELDS:
                values = sparse.get(col)
                if values is not None and g in values and values.get(survivor) is None:
                    values[survivor] = values[g]
            if name[survivor] is None:
                name[survivor] = name[g]
            if payload[survivor] is None:
                payload[survivor] = payload[g]


#: How much earlier than its ``monitor_protocol_event_queue`` line an event's QMP timestamp
#: may be (QEMU stamps the event, then queues it; measured: tens of microseconds).
_QUEUE_LAG_NS = 10_000_000


def _match_numbered(
    parts: Sequence[Part],
    offsets: np.ndarray,
    list_offsets: np.ndarray,
    sparse: dict[str, dict[int, Any]],
    alias: np.ndarray,
    kind: _ByRow,
    ts: np.ndarray,
    name: _ByRow,
) -> None:
    """Merge the events of a trace log that has event numbers only (``qmp_event`` rows without
    a message key, named from the version's table or ``#N``) into the same events of the other
    inputs: an event is queued right after QEMU stamps it, so its queue line comes at most
    `_QUEUE_LAG_NS` after the QMP timestamp of the same event elsewhere. Pairs are taken
    nearest first, one to one; a named row pairs only with the same name, a ``#N`` row with any
    name and then takes it (and every ``#N`` row of its input takes the name its number was
    paired with, when all its pairs agree). The QMP row's data and key go to the surviving
    trace-log row, as in `_match`."""
    keys, event_ts = sparse.get("key", {}), sparse.get("event_ts", {})
    numbered: list[int] = []
    stamped: list[int] = []
    for p_i, part in enumerate(parts):
        first = int(offsets[p_i])  # (the part's lists are emptied; its segments hold no event)
        for g in range(first, first + int(list_offsets[p_i + 1] - list_offsets[p_i])):
            if kind[g] != "qmp_event" or alias[g] != g:
                continue
            if part.source == "qemu-log" and g not in keys:
                numbered.append(g)
            elif g in event_ts and g in keys:
                stamped.append(g)
    if not numbered or not stamped:
        return
    part_of = np.searchsorted(offsets, np.arange(int(offsets[-1])), side="right") - 1
    pairs = []
    stamps = sorted(stamped, key=lambda g: event_ts[g])
    times = np.array([event_ts[g] for g in stamps], dtype=np.int64)
    for g in numbered:
        q = ts[g]
        if q is None:
            continue
        lo, hi = np.searchsorted(times, q - _QUEUE_LAG_NS, "left"), np.searchsorted(times, q, "right")
        for j in range(lo, hi):
            h = stamps[j]
            if part_of[h] == part_of[g]:
                continue
            if name[g] != name[h] and not (name[g] or "").startswith("#"):
                continue
            pairs.append((q - int(times[j]), g, h))
    used: set[int] = set()
    numbers: dict[tuple[int, str], set[str]] = {}
    for _, g, h in sorted(pairs):
        if g in used or h in used:
            continue
        used.update((g, h))
        alias[h] = g
        if (name[g] or "").startswith("#"):
            numbers.setdefault((int(part_of[g]), name[g]), set()).add(name[h])
            name[g] = name[h]
        keys[g] = keys[h]
        for col in _DATA_FIELDS:
            values = sparse.get(col)
            if values is not None and h in values and values.get(g) is None:
                values[g] = values[h]
    learnt = {k: next(iter(v)) for k, v in numbers.items() if len(v) == 1}
    for g in numbered:
        new = learnt.get((int(part_of[g]), name[g] or ""))
        if new is not None:
            name[g] = new


def _resolve_devices(parts: Sequence[Part], sparse: dict[str, dict[int, Any]]) -> None:
    """Name the device of BLOCK_IO_ERROR events that carry only a node-name / qom-path."""
    node_map: dict[str, str] = {}
    for part in parts:
        node_map.update(part.node_map)
    device = sparse.setdefault("device", {})
    nodes, qoms = sparse.get("node", {}), sparse.get("qom", {})
    for i in set(nodes) | set(qoms):
        if device.get(i) is not None:
            continue
        node, qom = nodes.get(i), qoms.get(i)
        resolved = (node_map.get(node) if node else None) or (node_map.get(qom) if qom else None)
        if resolved is None and qom:
            resolved = qdev_name(qom)
        device[i] = resolved or node
