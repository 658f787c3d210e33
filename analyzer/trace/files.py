"""One Parquet file of a trace: opening it, validating its footer, reading its row groups.

`load` must reject an unusable input before any analysis starts, naming the file and the
problem, yet read as little as possible: a file is judged by its footer (schema, metadata,
row-group statistics) and, only where the statistics do not say which VMs a row group holds,
its `vm` column. Reading a row group later fills in the columns its hive partition directories
name (``vm=b/``), so the rest of the analyzer never knows how the steps were laid out.

This is the one door of Parquet input: whatever a file holds, what passes it is a table of
schema v1's types, and what does not is a :class:`~tracer.errors.InputError` naming the file,
the row group or row, the column and what is wrong (exit 2). Checked in the footer: duplicated
column names, column types, the schema version, a hive ``vm=x`` directory against the file's
`vm` column. Checked on every row group read: invalid UTF-8 in string columns (on the
dictionaries, so a clean column costs next to nothing) and integers beyond their schema type
(a ``uint64`` seq >= 2^63 would wrap to a negative seq), cast to the schema's types.

Files are opened by their bytes path (a file name need not be UTF-8) and kept open, one
`ParquetFile` per file and thread (`_OpenFiles`): a row group is read without re-parsing a
footer that grows with the row groups, so reading is linear in their number. The parsed footer
itself (`FileMetaData`, ~22 KB a row group of 24 columns: 4.4 GB for 200,000 row groups) is
parsed once per process and shared (`_Footers`) by planning and by every reading thread, so it
is in memory once, not once per thread plus once for `load`.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analyzer import identity
from analyzer.result import InputInfo
from analyzer.trace.arrow import dictionary
from analyzer.trace.sources import SourceFile, partition_values
from tracer import tracedir
from tracer.errors import TraceFormatError, TraceSchemaError, first_line
from tracer.schema import COLUMN_BY_NAME, SCHEMA_VERSION, read_metadata, validate


@dataclass(frozen=True)
class TraceFile:
    """One Parquet file of the input."""

    path: str
    #: The input this file belongs to (its recorder directory, or the file itself).
    group: str
    #: Whether that input is complete (manifest present / not marked truncated).
    complete: bool
    #: Partition values (hive ``key=value`` directories) for schema columns the file lacks.
    partition: tuple[tuple[str, str], ...]
    columns: frozenset[str]
    rows: int
    info: InputInfo
    #: The recorder stopped before the run ended (its manifest says ``"interrupted": true``).
    interrupted: bool = False
    #: The run of rows whose `run` column is null (their recorder directory, when the trace
    #: holds several; see `analyzer.trace.plan.load`), else None.
    run: str | None = None


@dataclass(frozen=True)
class RowGroup:
    """A unit of reading: one Parquet row group, or `count` consecutive tiny ones read at once."""

    file: int
    index: int
    rows: int
    #: Row number of the group's first row within its file.
    offset: int
    #: The identity keys (`analyzer.identity`) of the VMs whose steps it holds, sorted.
    vms: tuple[str, ...]
    #: Consecutive Parquet row groups from `index` on that this one stands for.
    count: int = 1
    #: When this stands for a unit's share of a row group it shares with other units: where
    #: each of its rows lies in the row group read (`analyzer.trace.scan.read_own`).
    rows_of: np.ndarray | None = field(default=None, repr=False, compare=False)

    def row(self, local: int) -> int:
        """The file row number of row `local` of this row group as read."""
        return self.offset + int(local if self.rows_of is None else self.rows_of[int(local)])


#: Consecutive row groups smaller than this are read together, up to this many rows and
#: `COALESCE_GROUPS` groups a read: a file of a million one-row row groups is read in a
#: thousand reads, not a million (Arrow allocates per column chunk, hence the second bound).
COALESCE_ROWS = 65_536
COALESCE_GROUPS = 1_024


def _os_path(path: Path | str) -> bytes:
    """The path as bytes: Arrow encodes str paths as UTF-8, which a non-UTF-8 name is not."""
    return os.fsencode(path)


def open_parquet(path: Path | str, metadata: pq.FileMetaData | None = None) -> pq.ParquetFile:
    """The Parquet file at `path` (with its footer `metadata` when already parsed), or a
    `TraceFormatError` saying why it is not one."""
    try:
        pf = pq.ParquetFile(pa.OSFile(_os_path(path)), metadata=metadata)
        plain = _plain_dictionary_columns(pf.schema_arrow)
        if plain:
            pf = pq.ParquetFile(pa.OSFile(_os_path(path)), metadata=pf.metadata, read_dictionary=plain)
        return pf
    except (pa.ArrowException, OSError) as exc:
        hint = ""
        if Path(path).suffix in (".jsonl", ".json", ".log", ".txt"):
            hint = "; QMP transcripts and QEMU / libvirt logs need `blkreplay import` first"
        raise TraceFormatError(f"not a readable Parquet file ({first_line(exc)}){hint}", path=path) from None


def _plain_dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns the trace schema types as dictionaries that a file without Arrow's schema
    (written by DuckDB, Spark, ...) would read as plain strings: read as dictionaries instead
    (Parquet's dictionary pages decoded as they are, not every value hashed again)."""
    out = []
    for f in schema:
        spec = COLUMN_BY_NAME.get(f.name)
        if (spec is not None and pa.types.is_dictionary(spec.type)
                and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))):
            out.append(f.name)
    return out


def stat_key(path: str) -> tuple[int, int, int]:
    """(inode, size, mtime): what tells a file changed on disk since its footer was parsed."""
    try:
        st = os.stat(_os_path(path))
    except OSError as exc:
        raise TraceFormatError(f"unreadable ({first_line(exc)})", path=path) from None
    return st.st_ino, st.st_size, st.st_mtime_ns


class _Footers:
    """Process-wide, the parsed footers of the last few Parquet files opened.

    A `FileMetaData` is immutable once parsed, so one can back the `ParquetFile`s of every
    thread (`_OpenFiles`) and the planning of `load`: a footer that grows with the row groups
    is parsed and held once. A file that changed on disk (inode, size, mtime) is parsed anew.
    """

    SIZE = 8

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.footers: OrderedDict[str, tuple[tuple[int, int, int], pq.FileMetaData]] = OrderedDict()

    def get(self, path: str, key: tuple[int, int, int]) -> pq.FileMetaData | None:
        with self.lock:
            hit = self.footers.get(path)
            if hit is None or hit[0] != key:
                return None
            self.footers.move_to_end(path)
            return hit[1]

    def put(self, path: str, key: tuple[int, int, int], md: pq.FileMetaData) -> None:
        with self.lock:
            self.footers[path] = (key, md)
            self.footers.move_to_end(path)
            while len(self.footers) > self.SIZE:
                self.footers.popitem(last=False)


_FOOTERS = _Footers()


def shared_parquet(path: str) -> tuple[tuple[int, int, int], pq.ParquetFile]:
    """(stat key, a new `ParquetFile` of `path`) over the process's one parsed footer of it
    (parsed now when no current one is cached)."""
    key = stat_key(path)
    md = _FOOTERS.get(path, key)
    pf = open_parquet(path, md)
    if md is None:
        _FOOTERS.put(path, key, pf.metadata)
    return key, pf


class _OpenFiles(threading.local):
    """Per thread, the last few Parquet files read, kept open with their parsed footers.

    Per thread because a `ParquetFile` is not safe to share between threads reading at once
    (the check reads units in threads, each with a read-ahead thread). A file is reopened when
    it changed on disk (inode, size or mtime), so a cached footer never describes other bytes.
    """

    SIZE = 8

    def __init__(self) -> None:
        self.files: OrderedDict[str, tuple[tuple[int, int, int], pq.ParquetFile]] = OrderedDict()

    def get(self, path: str) -> pq.ParquetFile:
        key = stat_key(path)
        hit = self.files.get(path)
        if hit is not None and hit[0] == key:
            self.files.move_to_end(path)
            return hit[1]
        key, pf = shared_parquet(path)
        self.files[path] = (key, pf)
        while len(self.files) > self.SIZE:
            self.files.popitem(last=False)
        return pf


_OPEN = _OpenFiles()


def release_footers() -> None:
    """Drop the process's cached footers and this thread's open files.

    Called when a whole command's reading is done (`analyzer.check`), so that a notebook that
    checked a file of 200,000 row groups does not keep its ~4 GB footer alive afterwards. The
    reading threads' own open files go with their threads."""
    with _FOOTERS.lock:
        _FOOTERS.footers.clear()
    _OPEN.files.clear()
    _SHARED.clear()


def parquet_file(path: str) -> pq.ParquetFile:
    """The open `ParquetFile` of `path` for this thread (opened once, footer parsed once)."""
    return _OPEN.get(path)


def open_trace_file(source: SourceFile, file_index: int, run: str | None = None
                    ) -> tuple[TraceFile, list[RowGroup]]:
    """Validate one file's footer; its `TraceFile` and non-empty row groups (numbered as file
    `file_index` of the trace). `run`: the run of its rows whose `run` column is null."""
    path, group, complete, interrupted = source
    _, pf = shared_parquet(str(path))
    schema = pf.schema_arrow
    seen: set[str] = set()
    for name in schema.names:
        if name in seen:
            raise TraceSchemaError(f"column '{name}': appears {schema.names.count(name)} times", path=path)
        seen.add(name)
    given = partition_values(path)
    partition = {k: v for k, v in given.items() if k not in schema.names}
    structure = schema.empty_table()
    for key in partition:
        structure = structure.append_column(key, pa.array([], pa.string()))
    problems = validate(structure)
    if problems:
        first = problems[0]
        col = f"column '{first.column}': " if first.column else ""
        raise TraceSchemaError(f"{col}{first.message}", path=path)
    meta = read_metadata(schema)
    version = meta.get("schema_version")
    if version is not None and version != SCHEMA_VERSION:
        raise TraceSchemaError(
            f"unsupported trace schema version {version[:40]!r} (this blkreplay reads version "
            f"{SCHEMA_VERSION})", path=path)
    if meta.get("truncated", "").lower() == "true":
        complete = False
    md = pf.metadata
    info = InputInfo(
        path=str(path),
        sha256="",  # filled in by Trace.inputs (hashed in the background)
        rows=md.num_rows,
        schema_version=meta.get("schema_version", ""),
        source=meta.get("source", ""),
        complete=complete,
        metadata=meta,
    )
    if "run" in given and "run" in schema.names:
        # Every file written since the `run` column exists has one, mostly null: a run=
        # directory names the run of its null rows (a value that contradicts it is an error).
        run = given["run"]
    tf = TraceFile(str(path), group, complete, tuple(sorted(partition.items())),
                   frozenset(schema.names), md.num_rows, info, interrupted, run)
    rgs: list[RowGroup] = []
    offset = 0
    for i in range(md.num_row_groups):
        rows = md.row_group(i).num_rows
        if rows:
            rgs.append(RowGroup(file_index, i, rows, offset, _row_group_vms(pf, tf, given, i, offset)))
        offset += rows
    return tf, coalesce(rgs)


#: The columns that identify a VM (`analyzer.identity`): its name, host and run.
IDENTITY_COLUMNS = ("vm", "host", "run")


def _constant(md: pq.FileMetaData, i: int, names: list[str], column: str) -> tuple[bool, str | None]:
    """(known, value) of an identity column in row group `i` from its statistics alone: known
    when every row holds the same value (or every row is null: value None)."""
    if column not in names:
        return True, None
    chunk = md.row_group(i).column(names.index(column))
    stats = chunk.statistics
    if stats is None:
        return False, None
    if stats.null_count == md.row_group(i).num_rows:
        return True, None
    try:
        if stats.has_min_max and stats.null_count == 0 and stats.min == stats.max:
            value = stats.min
            return True, value.decode() if isinstance(value, bytes) else str(value)
    except UnicodeDecodeError:
        pass  # not UTF-8: read the column, which names the row
    return False, None


def row_keys(table: pa.Table, run: str | None = None) -> tuple[np.ndarray, list[str]]:
    """(per row an index into `keys`, `keys`): the identity key (`analyzer.identity`) of each
    row of `table`, from its `vm` (no nulls), `host` and `run` columns where present, `run` for
    rows without one.

    Vectorized: the three columns' dictionary indices are combined into one integer per row and
    only the few distinct combinations become keys (never a Python string per row). Without
    host and run the keys are the `vm` dictionary itself."""
    vm_idx, vm_values = dictionary(table.column("vm"))
    host_idx, host_values = _nullable_dictionary(table, "host")
    run_idx, run_values = _nullable_dictionary(table, "run")
    if run is not None and (run_idx is None or (run_idx < 0).any()):
        if run_idx is None:
            run_idx = np.full(len(vm_idx), -1, dtype=np.int64)
        run_values = [*run_values, run]
        run_idx = np.where(run_idx < 0, len(run_values) - 1, run_idx)
    if host_idx is None and run_idx is None:
        return vm_idx, [str(v) for v in vm_values]
    nh, nr = len(host_values) + 1, len(run_values) + 1
    comb = vm_idx.astype(np.int64) * (nh * nr)
    if host_idx is not None:
        comb += (host_idx + 1) * nr
    if run_idx is not None:
        comb += run_idx + 1
    size = len(vm_values) * nh * nr
    if size <= max(4 * len(comb), 4096):
        used = np.flatnonzero(np.bincount(comb, minlength=size))
        lut = np.full(size, -1, dtype=np.int32)
        lut[used] = np.arange(len(used), dtype=np.int32)
        idx = lut[comb]
    else:
        used, inverse = np.unique(comb, return_inverse=True)
        idx = inverse.astype(np.int32).ravel()
    hosts, runs = [None, *host_values], [None, *run_values]
    keys = [identity.make(str(vm_values[u // (nh * nr)]), hosts[(u // nr) % nh], runs[u % nr])
            for u in used.tolist()]
    return idx, keys


def _nullable_dictionary(table: pa.Table, column: str) -> tuple[np.ndarray | None, list[str]]:
    """(indices with -1 for null, values) of a string column, (None, []) when absent or all
    null."""
    if column not in table.column_names:
        return None, []
    col = table.column(column)
    if col.null_count == len(col):
        return None, []
    if pa.types.is_dictionary(col.type):
        arr = col.unify_dictionaries().combine_chunks() if col.num_chunks > 1 else col.chunk(0)
    else:
        arr = pc.dictionary_encode(col.combine_chunks())
    idx = np.asarray(pc.fill_null(arr.indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
    return idx, arr.dictionary.to_pylist()


def coalesce(groups: list[RowGroup]) -> list[RowGroup]:
    """Runs of consecutive tiny row groups of one file as one `RowGroup` each (at most
    `COALESCE_ROWS` rows), so that the cost per read (Arrow's, and the decoding's numpy calls)
    is paid per ~64k rows, not per row group."""
    out: list[RowGroup] = []
    for g in groups:
        last = out[-1] if out else None
        if (last is not None and g.rows < COALESCE_ROWS and last.rows + g.rows <= COALESCE_ROWS
                and last.count < COALESCE_GROUPS
                and last.file == g.file and last.index + last.count == g.index):
            vms = last.vms if g.vms == last.vms else tuple(sorted(set(last.vms) | set(g.vms)))
            out[-1] = RowGroup(last.file, last.index, last.rows + g.rows, last.offset, vms,
                               last.count + g.count)
        else:
            out.append(g)
    return out


def _row_group_vms(pf: pq.ParquetFile, tf: TraceFile, given: dict[str, str], i: int,
                   offset: int) -> tuple[str, ...]:
    """The identity keys of a row group's VMs: from the statistics of its vm, host and run
    columns where each holds one value (or partition directories give it), else from the
    columns. A hive ``vm=`` / ``host=`` / ``run=`` directory that a value of the file's own
    column contradicts is an error (a null / "" host or run is the file's, not a contradiction)."""
    md = pf.metadata
    names = [md.schema.column(j).name for j in range(md.num_columns)]
    partition = dict(tf.partition)
    values: dict[str, str | None] = {}
    for col in IDENTITY_COLUMNS:
        if col in partition:
            values[col] = partition[col]
            continue
        known, value = _constant(md, i, names, col)
        if not known:
            break
        values[col] = value
    else:
        vm = values["vm"]
        if vm is not None:
            for col in IDENTITY_COLUMNS:
                _same_as_directory(tf, given, col, [values[col]], i, offset)
            return (identity.make(vm, values["host"], values["run"] or tf.run),)
    read = [c for c in IDENTITY_COLUMNS if c in names]
    try:
        table = pf.read_row_group(i, columns=read)
    except (pa.ArrowException, OSError) as exc:
        raise TraceFormatError(f"unreadable row group {i} ({first_line(exc)})", path=tf.path) from None
    table = _checked_strings(table, tf.path, i, offset)
    for key, value in tf.partition:
        if key in IDENTITY_COLUMNS:
            table = table.append_column(key, pa.array([value] * table.num_rows, pa.string()))
    col = table.column("vm")
    if col.null_count:
        row = int(pc.index(pc.is_null(col), True).as_py())
        raise TraceSchemaError(f"column 'vm': null in required column ({col.null_count} rows)",
                               path=tf.path, row=offset + row)
    for name in IDENTITY_COLUMNS:
        if name in given and name in names:
            present = pc.unique(table.column(name).cast(pa.string())).to_pylist()
            _same_as_directory(tf, given, name, present, i, offset)
    idx, keys = row_keys(table, tf.run)
    used = np.flatnonzero(np.bincount(idx, minlength=len(keys)))
    return tuple(sorted({keys[k] for k in used.tolist()}))


def _same_as_directory(tf: TraceFile, given: dict[str, str], column: str,
                       values: Sequence[str | None], i: int, offset: int) -> None:
    """The error when a hive ``column=x`` directory holds a file whose `column` says otherwise
    (`values`: the column's values in row group `i`; null / "" host or run are no contradiction)."""
    if column not in given or column in dict(tf.partition):
        return
    expected = given[column]
    other = next((v for v in values if v != expected and (column == "vm" or v)), None)
    if other is None and not (column == "vm" and None in values):
        return
    raise TraceSchemaError(
        f"column '{column}': the file's {column} {other!r} disagrees with its directory "
        f"{column}={expected} (row group {i})", path=tf.path, row=offset)


def _offset(tf: TraceFile, index: int) -> int:
    """Row number of row group `index`'s first row in its file (for error messages only)."""
    md = parquet_file(tf.path).metadata
    return sum(md.row_group(j).num_rows for j in range(index))


def sha256(path: str) -> str:
    """The file's sha256 (hex), or a `TraceFormatError` when it cannot be read."""
    try:
        return tracedir.sha256_file(_os_path(path))
    except OSError as exc:
        raise TraceFormatError(f"unreadable ({first_line(exc)})", path=path) from None


def read_row_group(tf: TraceFile, index: int, columns: Sequence[str], count: int = 1) -> pa.Table:
    """Row group `index` of `tf` (and the `count` - 1 after it): those of `columns` the file
    holds, validated (UTF-8, integer ranges) and cast to the schema's types, then those its
    partition directories give (as one-value dictionary columns)."""
    pf = parquet_file(tf.path)
    present = [c for c in dict.fromkeys(columns) if c in tf.columns]
    try:
        if count == 1:
            table = pf.read_row_group(index, columns=present)
        else:
            table = _one_chunk(pf.read_row_groups(range(index, index + count), columns=present))
    except (pa.ArrowException, OSError) as exc:
        raise TraceFormatError(f"unreadable row group {index} ({first_line(exc)})", path=tf.path) from None
    table = _checked_strings(table, tf.path, index, None, tf)
    table = _checked_integers(table, tf, index)
    n = table.num_rows
    for key, value in tf.partition:
        if key in columns:
            table = table.append_column(key, pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, dtype=np.int32)), pa.array([value])))
    return table


class _SharedReads:
    """The last row group read that other units share, kept for the next unit to read it.

    Units of a file sorted by VM are cut inside row groups: the row group at a cut is read by
    the unit ending there and again by the unit starting there, which the local engine runs
    next. The second read takes the first one's table (once: it is then forgotten), so a cut
    costs one read, not two. One entry, so memory holds at most one row group more; keyed by
    the file's identity on disk as well, so a file changed in between is read again."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entry: tuple[tuple, pa.Table] | None = None

    def read(self, tf: TraceFile, rg: RowGroup, columns: list[str]) -> pa.Table:
        key = (tf.path, stat_key(tf.path), rg.index, rg.count, tuple(columns))
        with self.lock:
            if self.entry is not None and self.entry[0] == key:
                table, self.entry = self.entry[1], None
                return table
        table = read_row_group(tf, rg.index, columns, rg.count)
        with self.lock:
            self.entry = (key, table)
        return table

    def clear(self) -> None:
        with self.lock:
            self.entry = None


_SHARED = _SharedReads()


def read_shared_row_group(tf: TraceFile, rg: RowGroup, columns: list[str]) -> pa.Table:
    """`read_row_group` of a row group that several units share (see `_SharedReads`)."""
    return _SHARED.read(tf, rg, columns)


def _one_chunk(table: pa.Table) -> pa.Table:
    """`table` with one chunk a column (dictionaries unified): a read of many tiny row groups
    gives a chunk per row group, and everything after the read (validation, decoding, `take`)
    costs per chunk; combined, it costs per read. Values and row order are unchanged."""
    if all(col.num_chunks <= 1 for col in table.columns):
        return table
    return table.unify_dictionaries().combine_chunks()


def _fail(path: str, message: str, index: int, row: int, offset: int | None,
          tf: TraceFile | None) -> TraceSchemaError:
    """The error at `row` of a read starting at row group `index`, naming the Parquet row
    group that holds the row (a read of consecutive tiny row groups spans many)."""
    if offset is None and tf is not None:
        md = parquet_file(tf.path).metadata
        offset = _offset(tf, index)
        while index + 1 < md.num_row_groups and row >= md.row_group(index).num_rows:
            row -= md.row_group(index).num_rows
            offset += md.row_group(index).num_rows
            index += 1
    return TraceSchemaError(f"{message} (row group {index})", path=path, row=(offset or 0) + row)


def _checked_strings(table: pa.Table, path: str, index: int, offset: int | None,
                     tf: TraceFile | None = None) -> pa.Table:
    """`table`, or the error naming the first row of a string column that is not UTF-8.

    Parquet stores strings as bytes and Arrow does not check them on reading; a name that is
    not UTF-8 (a Latin-1 VM name) would otherwise raise deep inside the analysis or be shown
    as U+FFFD. Dictionary columns are checked on their dictionaries."""
    for name in table.column_names:
        col = table.column(name)
        typ = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
        if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
            continue
        start = 0
        for chunk in col.chunks:
            values = chunk.dictionary if pa.types.is_dictionary(chunk.type) else chunk
            try:
                values.validate(full=True)
            except pa.ArrowInvalid:
                bad = _first_invalid_utf8(values)
                if pa.types.is_dictionary(chunk.type):
                    idx = chunk.indices.to_numpy(zero_copy_only=False)
                    row = int(np.argmax(idx == bad))
                else:
                    row = bad
                raw = _as_binary(values)[bad].as_py()
                raise _fail(path, f"column '{name}': not UTF-8 text ({raw[:40]!r})",
                            index, start + row, offset, tf) from None
            start += len(chunk)
    return table


def _as_binary(values: pa.Array) -> pa.Array:
    return values.view(pa.binary() if pa.types.is_string(values.type) else pa.large_binary())


def _first_invalid_utf8(values: pa.Array) -> int:
    """Index of the first value of a string array that is not valid UTF-8."""
    for i, v in enumerate(_as_binary(values).to_pylist()):  # only on the error path, over a dictionary
        if v is not None:
            try:
                v.decode("utf-8")
            except UnicodeDecodeError:
                return i
    return 0


def _checked_integers(table: pa.Table, tf: TraceFile, index: int) -> pa.Table:
    """`table` with every integer column of a type other than its schema type cast to it, or
    the error naming the first row whose value does not fit (a uint64 seq >= 2^63, an errno
    beyond int32)."""
    for pos, name in enumerate(table.column_names):
        spec = COLUMN_BY_NAME.get(name)
        col = table.column(name)
        if spec is None or not pa.types.is_integer(spec.type) or col.type == spec.type:
            continue
        if not pa.types.is_integer(col.type):
            continue  # null columns (all null) are left as they are
        info = np.iinfo(spec.type.to_pandas_dtype())
        try:
            cast = col.cast(spec.type, safe=True)
        except pa.ArrowInvalid:
            out = []
            if _fits(int(info.max), col.type):
                out.append(pc.greater(col, pa.scalar(int(info.max), col.type)))
            if _fits(int(info.min), col.type):
                out.append(pc.less(col, pa.scalar(int(info.min), col.type)))
            mask = out[0] if len(out) == 1 else pc.or_(*out)
            row = int(pc.index(pc.fill_null(mask, False), True).as_py())
            raise _fail(tf.path, f"column '{name}': value {col[max(row, 0)].as_py()} out of range "
                        f"for {spec.type} ({col.type} column)", index, max(row, 0), None, tf) from None
        table = table.set_column(pos, name, cast)
    return table


def _fits(value: int, typ: pa.DataType) -> bool:
    info = np.iinfo(typ.to_pandas_dtype())
    return info.min <= value <= info.max


def may_hold(tf: TraceFile, rg: RowGroup, lo: int | None, hi: int | None) -> bool:
    """Whether a row group may hold seqs in [lo, hi], by its statistics (True when unknown)."""
    if lo is None and hi is None:
        return True
    md = parquet_file(tf.path).metadata
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    if "seq" not in names:
        return True
    seq = names.index("seq")
    for index in range(rg.index, rg.index + rg.count):
        stats = md.row_group(index).column(seq).statistics
        if stats is None or not stats.has_min_max:
            return True
        try:
            low, high = int(stats.min), int(stats.max)
        except (TypeError, ValueError):
            return True
        if not ((lo is not None and high < lo) or (hi is not None and low > hi)):
            return True
    return False
