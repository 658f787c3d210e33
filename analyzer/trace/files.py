"""One Parquet file of a trace: opening it, validating its footer, reading its row groups.

`load` must reject an unusable input before any analysis starts, naming the file and the
problem, yet read as little as possible: a file is judged by its footer (schema, metadata,
row-group statistics) and, only where the statistics do not say which VMs a row group holds,
its `vm` column. Reading a row group later fills in the columns its hive partition directories
name (``vm=b/``), so the rest of the analyzer never knows how the steps were laid out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analyzer.result import InputInfo
from analyzer.trace.arrow import dictionary
from analyzer.trace.sources import SourceFile, partition_values
from tracer import tracedir
from tracer.errors import TraceFormatError, TraceSchemaError, first_line
from tracer.schema import read_metadata, validate


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


@dataclass(frozen=True)
class RowGroup:
    file: int
    index: int
    rows: int
    #: Row number of the group's first row within its file.
    offset: int
    vms: tuple[str, ...]


def open_parquet(path: Path | str) -> pq.ParquetFile:
    """The Parquet file at `path`, or a `TraceFormatError` saying why it is not one."""
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        hint = ""
        if Path(path).suffix in (".jsonl", ".json", ".log", ".txt"):
            hint = "; QMP transcripts and QEMU / libvirt logs need `blkreplay import` first"
        raise TraceFormatError(f"not a readable Parquet file ({first_line(exc)}){hint}", path=path) from None


def open_trace_file(source: SourceFile, file_index: int) -> tuple[TraceFile, list[RowGroup]]:
    """Validate one file's footer; its `TraceFile` and non-empty row groups (numbered as file
    `file_index` of the trace)."""
    path, group, complete = source
    pf = open_parquet(path)
    schema = pf.schema_arrow
    partition = {k: v for k, v in partition_values(path).items() if k not in schema.names}
    structure = schema.empty_table()
    for key in partition:
        structure = structure.append_column(key, pa.array([], pa.string()))
    problems = validate(structure)
    if problems:
        first = problems[0]
        col = f"column '{first.column}': " if first.column else ""
        raise TraceSchemaError(f"{col}{first.message}", path=path)
    meta = read_metadata(schema)
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
    tf = TraceFile(str(path), group, complete, tuple(sorted(partition.items())),
                   frozenset(schema.names), md.num_rows, info)
    rgs: list[RowGroup] = []
    offset = 0
    vm_col = schema.get_field_index("vm") if "vm" in schema.names else -1
    for i in range(md.num_row_groups):
        rows = md.row_group(i).num_rows
        if rows:
            if vm_col < 0:
                vms: tuple[str, ...] = (partition["vm"],)
            else:
                vms = _row_group_vms(pf, md, i, vm_col, path)
            rgs.append(RowGroup(file_index, i, rows, offset, vms))
        offset += rows
    return tf, rgs


def _row_group_vms(pf: pq.ParquetFile, md: pq.FileMetaData, i: int, vm_col: int, path: Path) -> tuple[str, ...]:
    """The VMs of a row group: from its statistics when min == max, else from the column."""
    stats = md.row_group(i).column(vm_col).statistics
    if stats is not None and stats.has_min_max and stats.null_count == 0 and stats.min == stats.max:
        value = stats.min
        return (value.decode() if isinstance(value, bytes) else str(value),)
    try:
        col = pf.read_row_group(i, columns=["vm"]).column("vm")
    except (pa.ArrowException, OSError) as exc:
        raise TraceFormatError(f"unreadable row group {i} ({first_line(exc)})", path=path) from None
    if col.null_count:
        row = int(pc.index(pc.is_null(col), True).as_py())
        raise TraceSchemaError(f"column 'vm': null in required column ({col.null_count} rows)",
                               path=path, row=_file_row(md, i) + row)
    idx, values = dictionary(col)
    used = np.flatnonzero(np.bincount(idx, minlength=len(values)))
    return tuple(sorted({str(values[i]) for i in used}))


def _file_row(md: pq.FileMetaData, rg: int) -> int:
    return sum(md.row_group(j).num_rows for j in range(rg))


def sha256(path: str) -> str:
    """The file's sha256 (hex), or a `TraceFormatError` when it cannot be read."""
    try:
        return tracedir.sha256_file(path)
    except OSError as exc:
        raise TraceFormatError(f"unreadable ({first_line(exc)})", path=path) from None


def read_row_group(tf: TraceFile, index: int, columns: Sequence[str]) -> pa.Table:
    """Row group `index` of `tf`: those of `columns` the file holds, then those its partition
    directories give (as one-value dictionary columns)."""
    pf = open_parquet(tf.path)
    present = [c for c in columns if c in tf.columns]
    try:
        table = pf.read_row_group(index, columns=present)
    except (pa.ArrowException, OSError) as exc:
        raise TraceFormatError(f"unreadable row group {index} ({first_line(exc)})", path=tf.path) from None
    n = table.num_rows
    for key, value in tf.partition:
        if key in columns:
            table = table.append_column(key, pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, dtype=np.int32)), pa.array([value])))
    return table


def may_hold(tf: TraceFile, index: int, lo: int | None, hi: int | None) -> bool:
    """Whether a row group may hold seqs in [lo, hi], by its statistics (True when unknown)."""
    if lo is None and hi is None:
        return True
    md = open_parquet(tf.path).metadata
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    if "seq" not in names:
        return True
    stats = md.row_group(index).column(names.index("seq")).statistics
    if stats is None or not stats.has_min_max:
        return True
    return not ((lo is not None and stats.max < lo) or (hi is not None and stats.min > hi))
