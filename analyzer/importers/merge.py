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

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analyzer.importers import disagree
from analyzer.importers.qmp_semantics import qdev_name
from analyzer.importers.rows import Part
from analyzer.importers.thread_hints import ThreadHints, attribute
from tracer.schema import COLUMNS, schema_with_metadata

#: Output rows turned from Python objects into Arrow at a time (see `build_rows`).
CHUNK_ROWS = 65_536

SOURCE_ORDER = {"qemu-log": 0, "qmp": 1, "libvirt-log": 2, "domain-log": 3, "virsh-events": 4}

#: Fields a merged row takes from its partner when it has none itself.
_DATA_FIELDS = ("device", "op", "errno", "action", "iostatus", "runstate", "cmd_ref", "node", "qom",
                "event_ts")


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
) -> VmRows:
    """The schema-v1 rows of one VM from its parts (any order: they are sorted here).

    The parts are consumed: their row lists are emptied as the rows move into the table, in
    chunks of `chunk_rows` output rows (default `CHUNK_ROWS`), so that a VM's rows are never
    held twice (as Python objects and in Arrow) but for one chunk. The table is the same
    whatever the chunk size."""
    parts = sorted(parts, key=lambda p: (p.order, *part_sort_key(p)))
    links = disagree.find(parts) if len(parts) > 1 else []  # (adds marker rows: before counting)
    offsets = np.cumsum([0] + [len(p.rows) for p in parts])
    n = int(offsets[-1])
    chunk = max(1, int(CHUNK_ROWS if chunk_rows is None else chunk_rows))

    # The dense columns as pointer arrays (what the parts' lists held, which are emptied):
    # a chunk of output rows set to None frees its Python objects once it is in Arrow.
    kind, tid, name, payload = (np.empty(n, dtype=object) for _ in range(4))
    ts_arr = np.empty(n, dtype=np.int64)
    line_arr = np.empty(n, dtype=np.int64)
    part_of = np.empty(n, dtype=np.int64)
    sparse: dict[str, dict[int, Any]] = {}
    # Segment rows (read in bulk, never Python objects) stay Arrow: `segment_of` maps a row to
    # its place in the VM's segment columns (-1: a row of the lists).
    segment_of = np.full(n, -1, dtype=np.int64)
    segments: list = []
    for p_i, part in enumerate(parts):
        off = int(offsets[p_i])
        rows = part.rows
        end = off + len(rows.kind)
        for target, values in ((kind, rows.kind), (tid, rows.tid), (name, rows.name), (payload, rows.payload)):
            target[off:end] = values
            values.clear()
        ts_arr[off:end] = rows.ts
        line_arr[off:end] = rows.line
        rows.ts.clear()
        rows.line.clear()
        part_of[off : int(offsets[p_i + 1])] = p_i
        done = sum(len(s) for s in segments)
        for seg in rows.segments:
            ts_arr[end : end + len(seg)] = seg.ts
            line_arr[end : end + len(seg)] = seg.line
            segment_of[end : end + len(seg)] = np.arange(done, done + len(seg))
            done += len(seg)
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
        _match(parts, offsets, sparse, alias, name, payload)
        _match_numbered(parts, offsets, sparse, alias, kind, ts_arr, name)
    _resolve_devices(parts, sparse)

    keep = alias == np.arange(n)
    idx = np.nonzero(keep)[0]
    order = idx[np.lexsort((idx, line_arr[idx], part_of[idx], ts_arr[idx]))]
    m = len(order)
    position = np.full(n, -1, dtype=np.int64)
    position[order] = np.arange(m)

    # The dense columns go to Arrow in reading order -- the lists' rows a chunk at a time (a
    # chunk's Python objects are freed once it is in Arrow), then the segments' -- and into
    # output order with one take each.
    listed = np.flatnonzero(segment_of < 0)
    place = np.empty(n, dtype=np.int64)
    place[listed] = np.arange(len(listed))
    in_segments = segment_of >= 0
    place[in_segments] = len(listed) + segment_of[in_segments]
    output_place = place[order]
    # One input read in time order (the usual case) is in output order already: no take.
    in_place = m == n and bool(np.array_equal(output_place, np.arange(m)))
    output_indices = pa.array(output_place)
    bulk = _SegmentColumns(segments)

    def to_output(values: np.ndarray, col: str, type_: pa.DataType) -> pa.Array:
        chunks = []
        for start in range(0, len(listed), chunk):
            at = listed[start : start + chunk]
            chunks.append(pa.array(values[at], type_))
            values[at] = None
        chunks.extend(bulk.column(col, type_))
        whole = pa.concat_arrays(chunks) if chunks else pa.array([], type_)
        del chunks
        return whole if in_place else whole.take(output_indices)

    def to_output_codes(values: np.ndarray, col: str) -> pa.DictionaryArray:
        """`to_output` of a column of few distinct strings (kind, name), as dictionary codes
        all along: what is concatenated and taken is 4 bytes a row, not the strings."""
        chunks = []
        for start in range(0, len(listed), chunk):
            at = listed[start : start + chunk]
            chunks.append(pa.array(values[at], pa.string()).dictionary_encode())
            values[at] = None
        chunks.extend(bulk.codes(col))
        column = pa.chunked_array(chunks, pa.dictionary(pa.int32(), pa.string())).unify_dictionaries()
        return first_appearance((column if in_place else column.take(output_indices)).combine_chunks())

    dense_columns = {"tid": to_output(tid, "tid", pa.int64()), "kind": to_output_codes(kind, "kind"),
                     "name": to_output_codes(name, "name")}
    del kind, tid, name
    # (64-bit offsets: a VM's payloads may pass 2 GiB; each row group's fit in 32)
    payload_column = to_output(payload, "payload", pa.large_string())
    del payload

    def dense(col: str) -> pa.Array:
        return dense_columns.pop(col)

    hints = ThreadHints()
    for part in parts:
        hints.update(part.hints)

    def scattered(col: str, type_: pa.DataType) -> pa.Array:
        """A sparse column in output order, placed with numpy (no Python loop over its values)."""
        values = sparse.get(col, {})
        out = np.full(m, None, dtype=object)
        if values:
            at = position[np.fromiter(values, np.int64, len(values))]
            found = np.empty(len(values), dtype=object)
            found[:] = list(values.values())
            kept = at >= 0
            out[at[kept]] = found[kept]
        return pa.array(out, type_)

    def scattered_dictionary(col: str) -> pa.DictionaryArray:
        """A sparse string column straight to its dictionary column: no column of `m` strings.

        The dictionary is in order of first appearance in output order, as encoding the
        whole column would make it."""
        values = sparse.get(col, {})
        at = position[np.fromiter(values, np.int64, len(values))]
        found = np.empty(len(values), dtype=object)
        found[:] = list(values.values())
        kept = at >= 0
        at, found = at[kept], found[kept]
        by_row = np.argsort(at, kind="stable")
        encoded = pa.array(found[by_row], pa.string()).dictionary_encode()
        indices = np.zeros(m, dtype=np.int32)
        missing = np.ones(m, dtype=bool)
        codes = encoded.indices
        indices[at[by_row]] = codes.fill_null(0).to_numpy()
        missing[at[by_row]] = codes.is_null().to_numpy(zero_copy_only=False)
        return pa.DictionaryArray.from_arrays(pa.array(indices, mask=missing), encoded.dictionary)

    cmd_seq = np.zeros(m, dtype=np.int64)
    has_cmd = np.zeros(m, dtype=bool)
    refs = sparse.get("cmd_ref", {})
    if refs:
        at = position[np.fromiter(refs, np.int64, len(refs))]
        cmd_at = position[alias[np.fromiter(refs.values(), np.int64, len(refs))]]
        kept = at >= 0
        cmd_seq[at[kept]] = cmd_at[kept]
        has_cmd[at[kept]] = True

    tid_arr = dense("tid")
    thread_names, thread_kinds = attribute(tid_arr, hints)
    thread = _coalesce(scattered("thread", pa.string()), thread_names, "qemu")
    thread_kind = _coalesce(scattered("thread_kind", pa.string()), thread_kinds, "unknown")

    unique_paths = sorted({p.path for p in parts}, key=[p.path for p in parts].index)
    path_index = np.array([unique_paths.index(p.path) for p in parts], dtype=np.int32)
    paths = pa.array(unique_paths, pa.string())
    columns: dict[str, pa.Array] = {
        "seq": pa.array(np.arange(m, dtype=np.int64)),
        "ts_ns": pa.array(ts_arr[order]),
        "vm": pa.DictionaryArray.from_arrays(pa.array(np.zeros(m, dtype=np.int32)), pa.array([vm])),
        "host": pa.nulls(m, pa.string()) if host is None else pa.array([host] * m, pa.string()),
        "thread": thread,
        "thread_kind": thread_kind,
        "kind": dense("kind"),
        "device": scattered_dictionary("device"),
        "req_id": scattered("req_id", pa.int64()),
        "op": scattered_dictionary("op"),
        "errno": scattered("errno", pa.int32()),
        "policy": scattered_dictionary("policy"),
        "action": scattered_dictionary("action"),
        "iostatus": scattered_dictionary("iostatus"),
        "runstate": scattered_dictionary("runstate"),
        "prev_runstate": scattered_dictionary("prev_runstate"),
        "name": dense("name"),
        "error_id": pa.nulls(m, pa.int64()),
        "payload": pa.nulls(m, pa.string()),  # placeholder: `VmRows.batches` fills it
        "tid": tid_arr,
        "cmd_seq": pa.array(cmd_seq, pa.int64(), mask=~has_cmd),
        "src_file": pa.DictionaryArray.from_arrays(pa.array(path_index[part_of[order]]), paths),
        "src_line": pa.array(line_arr[order]),
        "event_ts_ns": scattered("event_ts", pa.int64()),
    }
    arrays = []
    for col in COLUMNS:
        arr = columns[col.name]
        if pa.types.is_dictionary(col.type) and not pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_encode()
        arr = arr.cast(col.type)
        arrays.append(arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr)
    table = pa.Table.from_arrays(arrays, schema=schema_with_metadata(source, metadata))
    return VmRows(table, payload_column)


def first_appearance(column: pa.DictionaryArray) -> pa.DictionaryArray:
    """`column` with its dictionary in order of first appearance (nulls stay nulls): what
    ``dictionary_encode`` of the plain strings gives, whatever dictionary it came with."""
    indices = column.indices
    seen = pc.drop_null(pc.unique(indices)).to_numpy()
    remap = np.zeros(max(len(column.dictionary), 1), dtype=np.int32)  # (all null: no dictionary)
    remap[seen] = np.arange(len(seen), dtype=np.int32)
    codes = remap[pc.fill_null(indices, 0).to_numpy()]
    mask = indices.is_null().to_numpy(zero_copy_only=False) if indices.null_count else None
    return pa.DictionaryArray.from_arrays(pa.array(codes, mask=mask), column.dictionary.take(pa.array(seen)))


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
                s.kind.dictionary_encode() if s.kind is not None
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
            return [pa.array(s.tid, type_) for s in self._segments]
        out = []
        for s in self._segments:  # each column is taken once: the segments let go of theirs
            out.append(getattr(s, col).cast(type_))
            setattr(s, col, None)
        return out


class VmRows:
    """One VM's rows in output order, ready to write: the table but its payloads, and them.

    Payloads (most of a VM's bytes) are one Arrow column beside `table`, which holds a
    placeholder: `batches` gives the rows one row group at a time with their payloads.
    `validate` can check `table` (payload is a free string column).
    """

    def __init__(self, table: pa.Table, payload: pa.Array) -> None:
        self.table = table
        self._payload: pa.Array | None = payload
        self._column = table.schema.get_field_index("payload")

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    def batches(self, rows: int) -> Iterator[pa.Table]:
        """The whole table, `rows` rows at a time (each column one array); single use."""
        payload, self._payload = self._payload, None
        if payload is None:
            raise RuntimeError("the rows of this VM were already taken")
        field = self.table.schema.field(self._column)
        for start in range(0, max(self.num_rows, 1), rows):
            part = self.table.slice(start, rows)
            yield part.set_column(self._column, field, payload.slice(start, rows).cast(field.type))

    def to_table(self) -> pa.Table:
        """The whole table in one piece (for `read_input`, and several VMs in one file)."""
        parts = list(self.batches(max(self.num_rows, 1)))
        return parts[0]


def _coalesce(preset: pa.Array, derived: pa.Array, default: str) -> pa.Array:
    return pc.fill_null(pc.coalesce(preset, derived), default)


def _match(
    parts: Sequence[Part],
    offsets: np.ndarray,
    sparse: dict[str, dict[int, Any]],
    alias: np.ndarray,
    name: list,
    payload: list,
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
    sparse: dict[str, dict[int, Any]],
    alias: np.ndarray,
    kind: list,
    ts: list,
    name: list,
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
        for g in range(int(offsets[p_i]), int(offsets[p_i + 1])):  # (the part's lists are emptied)
            if kind[g] != "qmp_event" or alias[g] != g:
                continue
            if part.source == "qemu-log" and g not in keys:
                numbered.append(g)
            elif g in event_ts and g in keys:
                stamped.append(g)
    if not numbered or not stamped:
        return
    part_of = np.searchsorted(offsets, np.arange(len(kind)), side="right") - 1
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
