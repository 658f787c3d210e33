"""Trace schema v1: the contract between every producer of traces and the analyzer.

One row per traced step. The simulator, the real-thread recorder and the importers of real QEMU
output all write tables of this schema; the analyzer reads nothing else. Columns may be added
in later versions, never renamed or dropped.

`validate` returns every problem it finds; `ensure_valid` raises the first as a
:class:`~tracer.errors.TraceSchemaError`; `conform` casts a table of compatible types (plain
strings for dictionary strings, narrower integers) to the canonical schema and adds the
optional columns that are missing, as nulls.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tracer.errors import TraceSchemaError

SCHEMA_VERSION = "1"

#: Parquet key-value metadata keys (bytes keys in the Arrow schema metadata).
META_SCHEMA_VERSION = "blkreplay.schema_version"
META_SOURCE = "blkreplay.source"
META_PREFIX = "blkreplay."

# ---------------------------------------------------------------------------------------------
# Closed vocabularies
# ---------------------------------------------------------------------------------------------

THREAD_KINDS = ("main", "vcpu", "iothread", "worker", "mgmt", "unknown")

KINDS = (
    "io_submit",
    "io_complete",
    "error_action",
    "iostatus_set",
    "iostatus_reset",
    "vmstop_prepare",
    "vmstop_request",
    "vm_stop",
    "vm_start",
    "runstate",
    "qmp_event",
    "qmp_command",
    "qmp_reply",
    # Added in v1 beyond the base list: any other traced event of a real source (a QEMU trace
    # log line we keep by name, with its arguments in `payload`).
    "trace_event",
    # Added in v1 for host logs (additive): a block device's configuration from a QEMU command
    # line (libvirt's per-domain log): device, op and the policy (werror / rerror) for it;
    # the rest (qom-path, node names, iothread) in `payload`.
    "device_config",
    # An event as the management layer delivered it (`virsh event`: lifecycle, io-error,
    # io-error-reason, ...), named in `name` with libvirt's event name.
    "mgmt_event",
)

OPS = ("read", "write", "flush", "discard")
POLICIES = ("report", "ignore", "enospc", "stop", "auto")
ACTIONS = ("report", "ignore", "stop")
IOSTATUSES = ("ok", "failed", "nospace")

#: QEMU RunState names in QAPI enum order (the index is the number QEMU's trace events print).
RUNSTATES = (
    "debug",
    "inmigrate",
    "internal-error",
    "io-error",
    "paused",
    "postmigrate",
    "prelaunch",
    "finish-migrate",
    "restore-vm",
    "running",
    "save-vm",
    "shutdown",
    "suspended",
    "watchdog",
    "guest-panicked",
    "colo",
)

SOURCES = (
    "sim", "threads", "qmp", "qemu-log", "libvirt-log", "simpletrace", "merged", "capture",
    "domain-log", "virsh-events",
)

# ---------------------------------------------------------------------------------------------
# Columns
# ---------------------------------------------------------------------------------------------

DICT_STRING = pa.dictionary(pa.int32(), pa.string())


@dataclass(frozen=True)
class Column:
    """One column of the schema: its name, canonical Arrow type, and what may be in it."""

    name: str
    type: pa.DataType
    required: bool
    meaning: str
    vocabulary: tuple[str, ...] | None = None

    @property
    def is_string(self) -> bool:
        return pa.types.is_dictionary(self.type) or pa.types.is_string(self.type)


COLUMNS: tuple[Column, ...] = (
    Column("seq", pa.int64(), True, "position in recording order; unique and increasing within one vm"),
    Column("ts_ns", pa.int64(), True, "timestamp in ns (sim: virtual clock; threads: monotonic; imports: Unix epoch)"),
    Column("vm", DICT_STRING, True, "VM identity"),
    Column("host", DICT_STRING, False, "host identity"),
    Column("thread", DICT_STRING, True, "thread name: main, vcpu0, iothread0, mgmt, ..."),
    Column("thread_kind", DICT_STRING, True, "kind of thread", THREAD_KINDS),
    Column("kind", DICT_STRING, True, "the step", KINDS),
    Column("device", DICT_STRING, False, "block device (drive id / qdev id)"),
    Column("req_id", pa.int64(), False, "I/O request id"),
    Column("op", DICT_STRING, False, "I/O operation", OPS),
    Column("errno", pa.int32(), False, "positive errno of a failed request (5 EIO, 28 ENOSPC)"),
    Column("policy", DICT_STRING, False, "configured on-error policy that decided", POLICIES),
    Column("action", DICT_STRING, False, "BlockErrorAction taken", ACTIONS),
    Column("iostatus", DICT_STRING, False, "device I/O status", IOSTATUSES),
    Column("runstate", DICT_STRING, False, "new run state (QEMU RunState name)", RUNSTATES),
    Column("prev_runstate", DICT_STRING, False, "run state before a transition", RUNSTATES),
    Column("name", DICT_STRING, False, "QMP event or command name (mgmt_event: libvirt's event name)"),
    Column("error_id", pa.int64(), False, "correlates all steps of one error action"),
    Column("payload", pa.string(), False, "extra data as JSON text"),
    # Added in v1 beyond the base list:
    Column("tid", pa.int64(), False, "host thread id, where the source knows it"),
    Column("cmd_seq", pa.int64(), False, "on a qmp_reply: the seq of the qmp_command it answers"),
    Column("src_file", DICT_STRING, False, "source file of an imported row"),
    Column("src_line", pa.int64(), False, "1-based line in src_file of an imported row"),
    Column("event_ts_ns", pa.int64(), False,
           "on a qmp_event: the emission time the event carries (its QMP timestamp), Unix ns"),
)

#: Optional columns added in v1 that a producer writes only when it has values (`conform` and
#: `from_pylist` keep them when given, never add them as nulls): a file without one reads as
#: all null, and every trace written before they existed keeps its exact bytes.
SPARSE_COLUMNS: tuple[Column, ...] = (
    # For fleets, where VM names repeat: a VM is identified by (run, host, vm). Null: the run
    # is the recorder directory of the file when several are read, else none.
    Column("run", DICT_STRING, False, "run identity (one recording or test run), where VM names repeat"),
)

#: Every column of schema v1: those always written, then the sparse ones.
ALL_COLUMNS: tuple[Column, ...] = COLUMNS + SPARSE_COLUMNS
COLUMN_BY_NAME: dict[str, Column] = {c.name: c for c in ALL_COLUMNS}
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in ALL_COLUMNS)
REQUIRED_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.required)

SCHEMA = pa.schema([pa.field(c.name, c.type, nullable=not c.required) for c in COLUMNS])

ERRNO_NAMES = {5: "EIO", 28: "ENOSPC", 1: "EPERM", 12: "ENOMEM", 22: "EINVAL", 122: "EDQUOT"}
ERRNO_BY_NAME = {v: k for k, v in ERRNO_NAMES.items()}


def schema_with_metadata(source: str, extra: Mapping[str, object] | None = None) -> pa.Schema:
    """The canonical schema carrying blkreplay's key-value metadata.

    `extra` keys are stored as ``blkreplay.<key>``; non-string values as JSON text.
    """
    return SCHEMA.with_metadata(make_metadata(source, extra))


def make_metadata(source: str, extra: Mapping[str, object] | None = None) -> dict[bytes, bytes]:
    meta = {META_SCHEMA_VERSION: SCHEMA_VERSION, META_SOURCE: source}
    for key, value in sorted((extra or {}).items()):
        full = key if key.startswith(META_PREFIX) else META_PREFIX + key
        meta[full] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return {k.encode(): v.encode() for k, v in meta.items()}


def read_metadata(schema: pa.Schema) -> dict[str, str]:
    """blkreplay's key-value metadata of a schema, keys without the ``blkreplay.`` prefix."""
    out: dict[str, str] = {}
    for k, v in (schema.metadata or {}).items():
        key = k.decode("utf-8", "replace")
        if key.startswith(META_PREFIX):
            out[key[len(META_PREFIX) :]] = v.decode("utf-8", "replace")
    return out


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One way a table breaks the schema. `row` is the first offending row (0-based), if any."""

    column: str | None
    message: str
    row: int | None = None

    def __str__(self) -> str:
        where = f"column '{self.column}'" if self.column else "table"
        at = f", row {self.row}" if self.row is not None else ""
        return f"{where}{at}: {self.message}"


def _type_compatible(col: Column, actual: pa.DataType) -> bool:
    if col.is_string:
        if pa.types.is_dictionary(actual):
            return pa.types.is_string(actual.value_type) or pa.types.is_large_string(
                actual.value_type
            )
        return pa.types.is_string(actual) or pa.types.is_large_string(actual) or pa.types.is_null(actual)
    if pa.types.is_integer(col.type):
        return pa.types.is_integer(actual) or pa.types.is_null(actual)
    return actual == col.type


def describe_type(t: pa.DataType) -> str:
    """An Arrow type as messages name it (``dictionary<string>``)."""
    return str(t).replace("dictionary<values=string, indices=int32, ordered=0>", "dictionary<string>")


def wrong_type(name: str, actual: pa.DataType) -> str | None:
    """What is wrong with a column `name` of type `actual` ("wrong type double, expected
    int64"), None when the schema accepts it or has no such column."""
    col = COLUMN_BY_NAME.get(name)
    if col is None or _type_compatible(col, actual):
        return None
    return f"wrong type {describe_type(actual)}, expected {describe_type(col.type)}"


def validate(table: pa.Table) -> list[Problem]:
    """Every way `table` breaks schema v1, most basic first.

    Checks, in order: missing required columns; columns of a wrong type; nulls in required
    columns; values outside a closed vocabulary (naming the value and its first row); negative
    errno; duplicate `seq` within one vm. Extra columns are allowed.
    """
    problems: list[Problem] = []
    names = set(table.column_names)
    for col in COLUMNS:
        if col.required and col.name not in names:
            problems.append(Problem(col.name, "missing required column"))
    usable: dict[str, pa.ChunkedArray] = {}
    for col in ALL_COLUMNS:
        if col.name not in names:
            continue
        arr = table.column(col.name)
        if not _type_compatible(col, arr.type):
            problems.append(
                Problem(col.name, f"wrong type {describe_type(arr.type)}, expected {describe_type(col.type)}")
            )
            continue
        usable[col.name] = arr
    for name, arr in usable.items():
        col = COLUMN_BY_NAME[name]
        if col.required and arr.null_count:
            first = _first_true(pc.is_null(arr))
            problems.append(Problem(name, f"null in required column ({arr.null_count} rows)", first))
        if col.vocabulary is not None and len(arr):
            problems.extend(_check_vocabulary(col, arr))
    if "errno" in usable and len(table):
        neg = pc.less_equal(usable["errno"], 0)
        if pc.any(neg).as_py():
            row = _first_true(neg)
            value = usable["errno"][row].as_py()
            problems.append(Problem("errno", f"errno must be positive, got {value}", row))
    if "seq" in usable and "vm" in usable and not problems:
        dup = _first_duplicate_seq(table)
        if dup is not None:
            row, vm, seq = dup
            problems.append(Problem("seq", f"duplicate seq {seq} within vm '{vm}'", row))
    return problems


def ensure_valid(table: pa.Table, *, path: str | None = None) -> None:
    """Raise :class:`TraceSchemaError` for the first problem of `table`, naming `path`."""
    problems = validate(table)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        col = f"column '{first.column}': " if first.column else ""
        raise TraceSchemaError(f"{col}{first.message}{more}", path=path, row=first.row)


def _first_true(mask: pa.ChunkedArray | pa.Array) -> int:
    arr = mask.combine_chunks() if isinstance(mask, pa.ChunkedArray) else mask
    idx = pc.index(pc.fill_null(arr, False), True).as_py()
    return int(idx)


def _check_vocabulary(col: Column, arr: pa.ChunkedArray) -> list[Problem]:
    """Values outside `col.vocabulary`. Dictionary columns are judged on their (small)
    dictionaries first, so a valid column costs almost nothing whatever its length."""
    assert col.vocabulary is not None
    allowed = pa.array(col.vocabulary, pa.string())
    if pa.types.is_dictionary(arr.type):
        dictionaries_ok = all(
            pc.all(pc.is_in(chunk.dictionary.cast(pa.string()), value_set=allowed)).as_py() is not False
            for chunk in arr.chunks
        )
        if dictionaries_ok:
            return []
        # an unused bad dictionary entry is no problem: fall through to the values
    values = arr.cast(pa.string()) if pa.types.is_dictionary(arr.type) else arr
    bad = pc.and_(pc.invert(pc.is_in(values, value_set=allowed)), pc.is_valid(values))
    if not pc.any(bad).as_py():
        return []
    row = _first_true(bad)
    value = values[row].as_py()
    n_bad = pc.sum(bad).as_py()
    return [
        Problem(
            col.name,
            f"unknown value {value!r} ({n_bad} rows); expected one of: {', '.join(col.vocabulary)}",
            row,
        )
    ]


def _string_codes(col: pa.ChunkedArray) -> np.ndarray:
    """Dictionary indices of a plain string column (equal strings, equal codes)."""
    return pc.dictionary_encode(col).combine_chunks().indices.to_numpy(zero_copy_only=False)


def _first_duplicate_seq(table: pa.Table) -> tuple[int, str, int] | None:
    """(row, vm, seq) of the first row whose (vm, seq) appeared before, or None."""
    n = table.num_rows
    if n < 2:
        return None
    vm = table.column("vm")
    if pa.types.is_dictionary(vm.type):
        vm = vm.cast(pa.string())
    vm_codes = _string_codes(vm).astype(np.int64)
    # A VM is (run, host, vm): vm0 of two hosts in one file may repeat each other's seqs.
    for name in ("host", "run"):
        if name in table.column_names and table.column(name).null_count < n:
            other = _string_codes(pc.fill_null(table.column(name).cast(pa.string()), ""))
            if not other.any():
                continue  # one host (one run) throughout: the VM alone tells
            vm_codes = np.unique(np.stack([vm_codes, other]), axis=1, return_inverse=True)[1].ravel()
    seq = table.column("seq").to_numpy().astype(np.int64, copy=False)
    if np.all((vm_codes[1:] > vm_codes[:-1]) | ((vm_codes[1:] == vm_codes[:-1]) & (seq[1:] > seq[:-1]))):
        return None  # in (vm, seq) order already, each seq new: what an import writes
    order = np.lexsort((np.arange(n), seq, vm_codes))
    s_vm, s_seq = vm_codes[order], seq[order]
    same = (s_vm[1:] == s_vm[:-1]) & (s_seq[1:] == s_seq[:-1])
    if not same.any():
        return None
    dup_rows = order[1:][same]
    row = int(dup_rows.min())
    return row, str(vm[row].as_py()), int(seq[row])


# ---------------------------------------------------------------------------------------------
# Conforming
# ---------------------------------------------------------------------------------------------


def conform(table: pa.Table, *, keep_extra: bool = False) -> pa.Table:
    """Cast `table` to the canonical schema v1 (column order, types), nulls for missing optional
    columns (but the `SPARSE_COLUMNS`, kept only when `table` has them). Call `validate` first:
    this assumes the types are compatible. Extra columns are dropped unless `keep_extra`.
    Schema metadata is kept.
    """
    n = table.num_rows
    arrays = []
    fields = []
    for col in COLUMNS:
        if col.name in table.column_names:
            arr = table.column(col.name)
            if arr.type != col.type:
                if pa.types.is_dictionary(col.type) and pa.types.is_dictionary(arr.type):
                    arr = arr.cast(pa.string())
                arr = arr.cast(col.type)
        else:
            arr = pa.nulls(n, col.type)
        arrays.append(arr)
        fields.append(pa.field(col.name, col.type, nullable=not col.required))
    for col in SPARSE_COLUMNS:
        if col.name in table.column_names:
            arr = table.column(col.name)
            if pa.types.is_dictionary(arr.type) and arr.type != col.type:
                arr = arr.cast(pa.string())
            arrays.append(arr.cast(col.type))
            fields.append(pa.field(col.name, col.type, nullable=True))
    if keep_extra:
        for name in table.column_names:
            if name not in COLUMN_BY_NAME:
                arrays.append(table.column(name))
                fields.append(table.schema.field(name))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=table.schema.metadata))


def empty_table(source: str = "sim", extra: Mapping[str, object] | None = None) -> pa.Table:
    """A table of zero rows with the canonical schema and metadata."""
    return schema_with_metadata(source, extra).empty_table()


def from_pylist(rows: list[dict], source: str, extra: Mapping[str, object] | None = None) -> pa.Table:
    """Build a canonical table from a list of row dicts (tests, small importers).

    Missing keys are nulls. Not for hot paths: the recorder builds columns directly.
    """
    cols = {}
    schema = schema_with_metadata(source, extra)
    for col in ALL_COLUMNS:
        values = [r.get(col.name) for r in rows]
        if col in SPARSE_COLUMNS:
            if all(v is None for v in values):
                continue
            schema = schema.append(pa.field(col.name, col.type))
        plain = pa.string() if col.is_string else col.type
        cols[col.name] = pa.array(values, type=plain).cast(col.type)
    return pa.Table.from_pydict(cols, schema=schema)
