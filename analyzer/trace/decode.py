"""Decoding the row groups of one unit into the unit's integer codes, validating as it goes.

Every row group of a unit is decoded against the same `UnitCodes`, so codes agree across row
groups and files. Decoding is where values are judged: an unknown vocabulary value, a null in
a required column, a non-positive errno are schema errors (exit 2) naming the file and row.
It happens in two steps, because most rows are successful I/O no rule reads: `core` decides
the columns needed over every row (replay order, timestamps, which rows to keep), `detail`
decodes the other columns for the kept rows only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analyzer import identity
from analyzer.steps import BULK_KINDS, NULLABLE_INTS, VOCABULARIES, K
from analyzer.trace.arrow import Interner, codes, dictionary, ints
from analyzer.trace.files import IDENTITY_COLUMNS, RowGroup, row_keys
from analyzer.trace.plan import Trace, Unit
from tracer.errors import TraceSchemaError
from tracer.qemu import throttles
from tracer.schema import REQUIRED_COLUMNS

#: The code of a value outside a closed vocabulary (an error once a row uses it).
UNKNOWN = -2

#: The closed-vocabulary columns checked on every row.
_CHECKED_VOCABULARIES = ("thread_kind", "op", "policy", "action", "iostatus", "runstate", "prev_runstate")

#: The columns `detail` decodes for the kept rows.
_DETAIL_COLUMNS = frozenset((*_CHECKED_VOCABULARIES, "device", "name", "src_file", *NULLABLE_INTS))

_KEEP_KIND = np.array([k not in BULK_KINDS for k in VOCABULARIES["kind"]] + [False], dtype=bool)


def vm_keys(table: pa.Table, run: str | None) -> tuple[np.ndarray, list[str]]:
    """(per row, an index into the list of VM identity keys; that list) of a row group read from
    a file of run `run`: the one place that says which VM a row belongs to (decoding, and
    keeping a unit's rows of a row group it shares with other units, `analyzer.trace.scan`)."""
    return row_keys(table, run)


def _kept_kinds(kind: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Per row, whether its kind (an index into the dictionary whose entries `kept` says) is
    one the rules read. The dropped entries are the bulk kinds, one or two of them: comparing
    with each costs a fraction of a table lookup per row (which numpy does in intp)."""
    dropped = np.flatnonzero(~kept)
    if len(dropped) > 4:
        return np.take(kept, kind)
    keep = np.ones(len(kind), dtype=bool)
    for code in dropped.tolist():
        keep &= kind != code
    return keep


def _keep_valid_of(keep: np.ndarray, col: pa.ChunkedArray, kind: np.ndarray, code: int) -> None:
    """Keep too the rows of kind index `code` where `col` is not null (a failed I/O's errno):
    such rows are rare, so they are found as indices, not as a mask over every row."""
    rows = np.asarray(pc.indices_nonzero(pc.is_valid(col).combine_chunks()).to_numpy(), dtype=np.int64)
    rows = rows[kind[rows] == code]
    keep[rows] = True


class UnitCodes:
    """The unit-level string codes, shared by every row group of a unit."""

    def __init__(self, vms: Sequence[str]) -> None:
        self.vm = Interner(sorted(vms))
        self.thread = Interner()
        self.device = Interner()
        self.name = Interner()
        self.src_file = Interner()
        self.vocab = {
            col: {v: i for i, v in enumerate(vals)} for col, vals in VOCABULARIES.items()
        }

    def open_lookup(self, col: str) -> Callable[[str | None], int]:
        return getattr(self, col).code

    def vocab_lookup(self, col: str) -> Callable[[str | None], int]:
        table = self.vocab[col]
        return lambda v: -1 if v is None else table.get(v, UNKNOWN)


class RowGroupDecoder:
    """Decodes row groups of one unit into code arrays, validating values on the way."""

    def __init__(self, trace: Trace, unit: Unit, columns: Sequence[str]) -> None:
        self.trace = trace
        self.unit = unit
        self.columns = tuple(dict.fromkeys(("seq", "ts_ns", *IDENTITY_COLUMNS, "thread", "kind", *columns)))
        self.enc = UnitCodes(unit.vms)
        self._throttle: dict[tuple[str | None, ...], np.ndarray] = {}

    def throttle_lut(self, file: int) -> np.ndarray:
        """Per unit VM code: whether that VM's QEMU, as file `file` records it, may throttle
        BLOCK_IO_ERROR (`tracer.qemu.throttles`)."""
        meta = self.trace.files[file].info.metadata
        # What `throttles` reads: the segments of one recording share it, so compute it once.
        key = (meta.get("qemu_versions"), meta.get("qemu_version"), meta.get("throttled_vms"))
        lut = self._throttle.get(key)
        if lut is None or len(lut) != len(self.enc.vm.names):
            lut = np.array([throttles(meta, identity.split(vm).vm) for vm in self.enc.vm.names], dtype=bool)
            self._throttle[key] = lut
        return lut

    def _fail(self, rg: RowGroup, column: str, message: str, row: int) -> None:
        raise TraceSchemaError(f"column '{column}': {message}", path=self.trace.files[rg.file].path,
                               row=rg.row(row))

    def _string(self, rg: RowGroup, table: pa.Table, col: str) -> np.ndarray:
        n = table.num_rows
        if col not in table.column_names:
            return np.full(n, -1, dtype=np.int32)
        arr = table.column(col)
        if col in VOCABULARIES:
            out = codes(arr, self.enc.vocab_lookup(col))
            bad = out == UNKNOWN
            if bad.any():
                row = int(np.argmax(bad))
                value = arr[row].as_py()
                allowed = ", ".join(VOCABULARIES[col])
                self._fail(rg, col, f"unknown value {value!r} ({int(bad.sum())} rows); expected one of: {allowed}", row)
        else:
            out = codes(arr, self.enc.open_lookup(col))
        if col in REQUIRED_COLUMNS and arr.null_count:
            row = int(np.argmax(out < 0))
            self._fail(rg, col, f"null in required column ({arr.null_count} rows)", row)
        return out

    def _check_vocabulary(self, rg: RowGroup, arr: pa.ChunkedArray, col: str) -> None:
        """Values outside the column's vocabulary: decided on the dictionaries, so a clean
        column costs nothing per row."""
        allowed = self.enc.vocab[col]
        for chunk in arr.chunks:
            if pa.types.is_null(chunk.type):
                continue
            values = chunk.dictionary if pa.types.is_dictionary(chunk.type) else pc.unique(chunk)
            if any(v is not None and v not in allowed for v in values.to_pylist()):
                self._string(rg, pa.table({col: arr}), col)  # raises with the first bad row
                return

    def core(self, rg: RowGroup, table: pa.Table) -> dict[str, np.ndarray]:
        """The columns decided over every row, as raw dictionary indices plus small maps to the
        unit's codes (mapping a million indices costs more than the rules that need them):
        seq, ts_ns, vm/thread/kind (``*_map`` per index), and `keep`, the rows rules read."""
        n = table.num_rows
        out: dict[str, np.ndarray] = {}
        for col in ("seq", "ts_ns"):
            arr = table.column(col)
            if arr.null_count:
                row = int(pc.index(pc.is_null(arr), True).as_py())
                self._fail(rg, col, f"null in required column ({arr.null_count} rows)", row)
            out[col] = np.asarray(arr.to_numpy(), dtype=np.int64)
        for col in ("vm", "thread", "kind"):
            arr = table.column(col)
            if arr.null_count:
                self._string(rg, table, col)  # raises, naming the first null row
            # a VM is (vm, host, run): per row an index into the row group's keys
            idx, values = vm_keys(table, self.trace.files[rg.file].run) if col == "vm" else dictionary(arr)
            out[col] = idx
            if col == "kind":
                out["kind_map"] = np.array([self.enc.vocab["kind"].get(v, UNKNOWN) for v in values], dtype=np.int32)
                if (out["kind_map"] == UNKNOWN).any():
                    self._string(rg, table, "kind")  # raises if a row uses the unknown value
            else:
                out[f"{col}_map"] = np.array([self.enc.open_lookup(col)(v) for v in values], dtype=np.int32)
        for col in _CHECKED_VOCABULARIES:
            if col in table.column_names:
                self._check_vocabulary(rg, table.column(col), col)
        if "thread_kind" in table.column_names and table.column("thread_kind").null_count:
            self._string(rg, table, "thread_kind")  # raises, naming the first null row
        keep = _kept_kinds(out["kind"], _KEEP_KIND[np.maximum(out["kind_map"], 0)])
        if "errno" in table.column_names and table.column("errno").null_count < n:
            errno = table.column("errno")
            low = pc.min_max(errno)["min"].as_py()  # one pass, no mask: errors are rare
            if low is not None and low <= 0:
                row = int(pc.index(pc.fill_null(pc.less_equal(errno, 0), False), True).as_py())
                self._fail(rg, "errno", f"errno must be positive, got {errno[row].as_py()}", row)
            ioc = np.flatnonzero(out["kind_map"] == K["io_complete"])
            if len(ioc):  # failed I/O
                _keep_valid_of(keep, errno, out["kind"], int(ioc[0]))
        # A trace_event tied to an error (the simulator's monitor_protocol_event_queue row: the
        # raise of a throttled BLOCK_IO_ERROR) is read by the rules (`analyzer.steps.raised`).
        tev = np.flatnonzero(out["kind_map"] == K["trace_event"])
        if len(tev) and "error_id" in table.column_names and table.column("error_id").null_count < n:
            _keep_valid_of(keep, table.column("error_id"), out["kind"], int(tev[0]))
        out["keep"] = keep
        return out

    @staticmethod
    def unit_codes(core: dict[str, np.ndarray], col: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Unit codes of a core string column (vm, thread, kind), for `rows` or every row."""
        idx = core[col] if rows is None else core[col][rows]
        return core[f"{col}_map"][idx]

    def detail(self, rg: RowGroup, table: pa.Table, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Every Steps column for the kept rows `rows` of a row group."""
        wanted = [c for c in table.column_names if c in _DETAIL_COLUMNS]  # core ones are decoded
        sub = table.select(wanted).take(pa.array(rows, type=pa.int64()))
        n = sub.num_rows
        rg = replace(rg, rows_of=rows if rg.rows_of is None else rg.rows_of[rows])  # errors name file rows
        out: dict[str, np.ndarray] = {}
        for col in _CHECKED_VOCABULARIES:
            out[col] = self._string(rg, sub, col) if col in self.columns else np.full(n, -1, np.int32)
        for col in ("device", "name", "src_file"):
            out[col] = self._string(rg, sub, col) if col in self.columns else np.full(n, -1, np.int32)
        for col in NULLABLE_INTS:
            values, valid = ints(sub.column(col) if col in sub.column_names else None, n)
            out[col] = values
            out[f"has_{col}"] = valid
        # Vocabulary / null checks for columns read only on kept rows still cover every row
        # that matters; the bulk rows were validated for the core columns above.
        return out
