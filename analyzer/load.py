"""Loading traces: from paths to validated inputs, a plan of per-VM work, and `Steps` batches.

Accepted inputs: a Parquet file, a recorder trace directory (``seg-*.parquet`` + manifest), a
hive-partitioned dataset (``host=a/vm=b/*.parquet``: partition values fill columns the files
lack), a glob, or several of these. `load` validates every file's schema and plans the work:
row groups are grouped into *units*, sets of whole VMs (a VM is never split between units), so
that every VM's replay is independent and memory is bounded by a unit (one VM's share of the
trace, or a few small VMs packed together).

Reading a unit (`read_unit`) streams its row groups: each is checked (schema values, replay
order), its integrity facts are decided over every row with column diffs (seq order,
timestamps per thread), and only the rows a rule reads are kept: successful I/O, the bulk of a
trace, is dropped by a vectorized mask right after the read. A unit whose rows are not already
in (vm, seq) order across row groups (shuffled files, duplicated steps) is read again and
sorted as a whole; the result is the same whatever the file order, row-group size or
partitioning.
"""

from __future__ import annotations

import glob as _glob
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analyzer.result import Finding, InputInfo
from analyzer.rules.catalogue import RULES
from analyzer.steps import (
    BULK_KINDS,
    NULLABLE_INTS,
    VOCABULARIES,
    K,
    Steps,
)
from tracer import tracedir
from tracer.errors import InputError, TraceFormatError, TraceSchemaError, first_line
from tracer.qemu import may_throttle, qemu_version
from tracer.schema import COLUMN_BY_NAME, COLUMNS, REQUIRED_COLUMNS, read_metadata, validate

PathArg = str | os.PathLike[str]

#: Target rows per unit when packing small VMs together (bounds memory and per-unit overhead).
UNIT_ROWS = 4_000_000

_GLOB_CHARS = set("*?[")
_UNKNOWN = -2


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Unit:
    """Whole VMs and every row group holding their steps."""

    vms: tuple[str, ...]
    row_groups: tuple[RowGroup, ...]
    rows: int


@dataclass
class Trace:
    """A loaded (validated, planned, not yet read) trace. Cheap to pickle: paths and numbers.

    The inputs' sha256 digests are computed in a background thread from `load` on, so that
    hashing overlaps the analysis; `inputs` waits for them.
    """

    files: list[TraceFile]
    units: list[Unit]
    vms: list[str]
    rows: int
    _digests: list[Future[str]] | None = field(default=None, repr=False, compare=False)

    @property
    def inputs(self) -> list[InputInfo]:
        if self._digests is None:
            return [f.info for f in self.files]
        return [replace(f.info, sha256=d.result()) for f, d in zip(self.files, self._digests, strict=True)]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self._digests is not None:  # futures do not travel: hand over the digests
            state["files"] = [replace(f, info=i) for f, i in zip(self.files, self.inputs, strict=True)]
        state["_digests"] = None
        return state

    @property
    def truncated(self) -> list[tuple[str, tuple[str, ...]]]:
        """(input, VMs it holds) for every input without a completion mark, sorted."""
        groups: dict[str, set[str]] = {}
        for fi, f in enumerate(self.files):
            if f.complete:
                continue
            vms = groups.setdefault(f.group, set())
            for u in self.units:
                for rg in u.row_groups:
                    if rg.file == fi:
                        vms.update(rg.vms)
        return [(g, tuple(sorted(v))) for g, v in sorted(groups.items())]

    def unit_of(self, vm: str) -> Unit:
        for u in self.units:
            if vm in u.vms:
                return u
        raise InputError(f"no VM named {vm!r} in the trace (VMs: {', '.join(self.vms[:10])}"
                         f"{', ...' if len(self.vms) > 10 else ''})")

    def table(
        self,
        vm: str | None = None,
        columns: Sequence[str] | None = None,
        *,
        from_seq: int | None = None,
        to_seq: int | None = None,
    ) -> pa.Table:
        """The steps (all of them, or one VM's, optionally a seq range) as one Arrow table in
        replay order (vm, seq), strings as plain strings.

        For notebooks, replay views and small traces: this materializes the selection (row
        groups whose seq statistics lie outside the range are not read).
        """
        cols = [c.name for c in COLUMNS] if columns is None else list(columns)
        read = list(dict.fromkeys([*cols, "vm", "seq", "ts_ns"]))
        units = [self.unit_of(vm)] if vm is not None else self.units
        parts = []
        for u in units:
            for rg in u.row_groups:
                if vm is not None and vm not in rg.vms:
                    continue
                if not _may_hold(self.files[rg.file], rg.index, from_seq, to_seq):
                    continue
                t = _read_group(self.files[rg.file], rg.index, read)
                mask = None
                if vm is not None and len(rg.vms) > 1:
                    mask = pc.equal(t.column("vm").cast(pa.string()), vm)
                for op, bound in ((pc.greater_equal, from_seq), (pc.less_equal, to_seq)):
                    if bound is not None:
                        m = op(t.column("seq"), bound)
                        mask = m if mask is None else pc.and_(mask, m)
                if mask is not None:
                    t = t.filter(mask)
                parts.append(_plain(t))
        if not parts:
            return pa.table({c: pa.array([], pa.string() if COLUMN_BY_NAME[c].is_string else COLUMN_BY_NAME[c].type)
                             for c in cols})
        table = pa.concat_tables(parts, promote_options="permissive")
        order = pc.sort_indices(table, sort_keys=[(c, "ascending") for c in ("vm", "seq", "ts_ns")])
        return table.take(order).select(cols)


def _may_hold(tf: TraceFile, index: int, lo: int | None, hi: int | None) -> bool:
    """Whether a row group may hold seqs in [lo, hi], by its statistics (True when unknown)."""
    if lo is None and hi is None:
        return True
    md = _parquet(tf.path).metadata
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    if "seq" not in names:
        return True
    stats = md.row_group(index).column(names.index("seq")).statistics
    if stats is None or not stats.has_min_max:
        return True
    return not ((lo is not None and stats.max < lo) or (hi is not None and stats.min > hi))


# ---------------------------------------------------------------------------------------------
# Expanding paths
# ---------------------------------------------------------------------------------------------


def _expand(paths: Iterable[PathArg]) -> list[tuple[Path, str, bool]]:
    """(file, input group, complete) for every Parquet file named by `paths`."""
    out: dict[str, tuple[Path, str, bool]] = {}
    given = list(paths)
    if not given:
        raise InputError("no input given")
    for raw in given:
        text = os.fspath(raw)
        p = Path(text)
        if p.exists():
            targets = [p]
        elif _GLOB_CHARS & set(text):
            targets = [Path(m) for m in sorted(_glob.glob(text, recursive=True))]
            if not targets:
                raise InputError("no file matches this pattern", path=text)
        else:
            raise InputError("no such file or directory", path=text)
        for t in targets:
            for f, group, complete in _files_of(t):
                out.setdefault(os.path.normpath(str(f)), (f, group, complete))
    if not out:
        raise InputError("no Parquet file found", path=os.fspath(given[0]))
    return [out[k] for k in sorted(out)]


def _files_of(p: Path) -> list[tuple[Path, str, bool]]:
    if p.is_file():
        return [(p, str(p), True)]
    if not p.is_dir():
        raise InputError("not a file or directory", path=p)
    found: list[tuple[Path, str, bool]] = []
    for root, dirs, files in os.walk(p):
        dirs.sort()
        rootp = Path(root)
        recorder = tracedir.is_trace_dir(rootp)
        complete = True
        if recorder:
            manifest = tracedir.read_manifest(rootp)
            complete = manifest is not None and manifest.complete
        for name in sorted(files):
            if not name.endswith(".parquet") or name.startswith("."):
                continue
            f = rootp / name
            is_segment = recorder and name.startswith(tracedir.SEGMENT_PREFIX)
            found.append((f, str(rootp) if is_segment else str(f), complete if is_segment else True))
    if not found:
        raise InputError("no Parquet files in this directory", path=p)
    return found


def _partition_values(path: Path) -> dict[str, str]:
    """``key=value`` directory names of `path` whose key is a schema string column."""
    out: dict[str, str] = {}
    for part in path.parent.parts:
        if "=" in part:
            key, _, value = part.partition("=")
            col = COLUMN_BY_NAME.get(key)
            if col is not None and col.is_string:
                out[key] = value
    return out


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load(paths: PathArg | Sequence[PathArg], *, unit_rows: int = UNIT_ROWS) -> Trace:
    """Validate and plan the trace at `paths` (files, directories, globs).

    Raises :class:`~tracer.errors.InputError` (a subclass naming the file and the problem) for
    anything unusable. Reads only Parquet footers and, where the statistics do not tell, the
    `vm` column; the steps themselves are read by :func:`read_unit`.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    files: list[TraceFile] = []
    groups: list[RowGroup] = []
    for path, group, complete in _expand(paths):
        tf, rgs = _open(path, group, complete, len(files))
        files.append(tf)
        groups.extend(rgs)
    units = _plan(groups, unit_rows)
    vms = sorted({v for u in units for v in u.vms})
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blkreplay-sha256")
    digests = [hasher.submit(_sha256, f.path) for f in files]
    hasher.shutdown(wait=False)
    return Trace(files, units, vms, sum(f.rows for f in files), digests)


def _sha256(path: str) -> str:
    try:
        return tracedir.sha256_file(path)
    except OSError as exc:
        raise TraceFormatError(f"unreadable ({first_line(exc)})", path=path) from None


def _parquet(path: Path | str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        hint = ""
        if Path(path).suffix in (".jsonl", ".json", ".log", ".txt"):
            hint = "; QMP transcripts and QEMU / libvirt logs need `blkreplay import` first"
        raise TraceFormatError(f"not a readable Parquet file ({first_line(exc)}){hint}", path=path) from None


def _open(path: Path, group: str, complete: bool, file_index: int) -> tuple[TraceFile, list[RowGroup]]:
    pf = _parquet(path)
    schema = pf.schema_arrow
    partition = {k: v for k, v in _partition_values(path).items() if k not in schema.names}
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
    idx, values = _raw(col)
    used = np.flatnonzero(np.bincount(idx, minlength=len(values)))
    return tuple(sorted({str(values[i]) for i in used}))


def _file_row(md: pq.FileMetaData, rg: int) -> int:
    return sum(md.row_group(j).num_rows for j in range(rg))


def _plan(groups: list[RowGroup], unit_rows: int) -> list[Unit]:
    """Group row groups into units of whole VMs (connected components, then packed)."""
    parent: dict[str, str] = {}

    def find(v: str) -> str:
        while parent.setdefault(v, v) != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for g in groups:
        roots = [find(v) for v in g.vms]
        for r in roots[1:]:
            a, b = sorted((find(roots[0]), find(r)))
            parent[b] = a
    components: dict[str, list[RowGroup]] = {}
    members: dict[str, set[str]] = {}
    for g in groups:
        root = find(g.vms[0])
        components.setdefault(root, []).append(g)
        members.setdefault(root, set()).update(g.vms)
    units: list[Unit] = []
    cur_vms: list[str] = []
    cur_groups: list[RowGroup] = []
    cur_rows = 0
    for root in sorted(components, key=lambda r: min(members[r])):
        rgs = components[root]
        rows = sum(g.rows for g in rgs)
        if cur_groups and cur_rows + rows > unit_rows:
            units.append(Unit(tuple(sorted(cur_vms)), tuple(cur_groups), cur_rows))
            cur_vms, cur_groups, cur_rows = [], [], 0
        cur_vms.extend(members[root])
        cur_groups.extend(rgs)
        cur_rows += rows
    if cur_groups:
        units.append(Unit(tuple(sorted(cur_vms)), tuple(cur_groups), cur_rows))
    return units


# ---------------------------------------------------------------------------------------------
# Reading a unit
# ---------------------------------------------------------------------------------------------


def _read_group(tf: TraceFile, index: int, columns: Sequence[str]) -> pa.Table:
    pf = _parquet(tf.path)
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


def _plain(table: pa.Table) -> pa.Table:
    """Dictionary columns as plain strings (for concatenating tables of different files)."""
    cols = []
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        cols.append(col)
    return pa.table(cols, names=table.column_names)


class Interner:
    """Stable small-integer codes for the strings of one unit (encounter order)."""

    def __init__(self, initial: Iterable[str] = ()) -> None:
        self.names: list[str] = []
        self.codes: dict[str, int] = {}
        for v in initial:
            self.code(v)

    def code(self, value: str | None) -> int:
        if value is None:
            return -1
        c = self.codes.get(value)
        if c is None:
            c = self.codes[value] = len(self.names)
            self.names.append(value)
        return c


def _codes(col: pa.ChunkedArray | pa.Array, lookup: Callable[[str | None], int]) -> np.ndarray:
    """Integer codes of a string column via `lookup` on its dictionary values (-1: null)."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    parts = []
    for chunk in chunks:
        if pa.types.is_null(chunk.type):
            parts.append(np.full(len(chunk), -1, dtype=np.int32))
            continue
        if not pa.types.is_dictionary(chunk.type):
            chunk = pc.dictionary_encode(chunk)
        values = chunk.dictionary.to_pylist()
        mapping = np.array([lookup(v) for v in values] + [-1], dtype=np.int32)
        idx = chunk.indices
        if idx.null_count:
            idx = pc.fill_null(idx, len(values))
        parts.append(mapping[idx.to_numpy(zero_copy_only=False)])
    if not parts:
        return np.zeros(0, dtype=np.int32)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _raw(col: pa.ChunkedArray) -> tuple[np.ndarray, list[str | None]]:
    """(dictionary indices as int32, dictionary values) of a string column without nulls."""
    chunks = col.chunks
    if not chunks:
        return np.zeros(0, dtype=np.int32), []
    if len(chunks) == 1:
        arr = chunks[0]
    elif pa.types.is_dictionary(col.type):
        arr = col.unify_dictionaries().combine_chunks()
    else:
        arr = pa.concat_arrays(chunks)
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr)
    idx = np.asarray(arr.indices.to_numpy(zero_copy_only=False), dtype=np.int32)
    return idx, arr.dictionary.to_pylist()


def _ints(col: pa.ChunkedArray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(values with nulls as -1, validity mask) of an integer column (all null when absent)."""
    if col is None or pa.types.is_null(col.type):
        return np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=bool)
    if col.null_count == 0:
        return np.asarray(col.to_numpy(), dtype=np.int64), np.ones(n, dtype=bool)
    valid = np.asarray(pc.is_valid(col).to_numpy(zero_copy_only=False), dtype=bool)
    return np.asarray(pc.fill_null(col, -1).to_numpy(), dtype=np.int64), valid


@dataclass
class UnitData:
    """What reading one unit gives: the rule-relevant steps, integrity findings, counts."""

    steps: Steps
    integrity: list[Finding]
    rows: int
    #: Step kinds and "kind:name" entries present (for rule applicability).
    present: set[str] = field(default_factory=set)


class _Encoders:
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
        return lambda v: -1 if v is None else table.get(v, _UNKNOWN)


_KEEP_KIND = np.array([k not in BULK_KINDS for k in VOCABULARIES["kind"]] + [False], dtype=bool)


class _GroupReader:
    """Decodes row groups of one unit into code arrays, validating values on the way."""

    def __init__(self, trace: Trace, unit: Unit, columns: Sequence[str]) -> None:
        self.trace = trace
        self.unit = unit
        self.columns = tuple(dict.fromkeys(("seq", "ts_ns", "vm", "thread", "kind", *columns)))
        self.enc = _Encoders(unit.vms)
        self._throttle: dict[int, np.ndarray] = {}

    def throttle_lut(self, file: int) -> np.ndarray:
        """Per unit VM code: whether that VM's QEMU, as file `file` records it, may throttle
        BLOCK_IO_ERROR (`may_throttle`)."""
        lut = self._throttle.get(file)
        if lut is None or len(lut) != len(self.enc.vm.names):
            meta = self.trace.files[file].info.metadata
            lut = np.array([may_throttle(qemu_version(meta, vm)) for vm in self.enc.vm.names], dtype=bool)
            self._throttle[file] = lut
        return lut

    def _fail(self, rg: RowGroup, column: str, message: str, row: int) -> None:
        raise TraceSchemaError(f"column '{column}': {message}", path=self.trace.files[rg.file].path,
                               row=rg.offset + int(row))

    def _string(self, rg: RowGroup, table: pa.Table, col: str) -> np.ndarray:
        n = table.num_rows
        if col not in table.column_names:
            return np.full(n, -1, dtype=np.int32)
        arr = table.column(col)
        if col in VOCABULARIES:
            codes = _codes(arr, self.enc.vocab_lookup(col))
            bad = codes == _UNKNOWN
            if bad.any():
                row = int(np.argmax(bad))
                value = arr[row].as_py()
                allowed = ", ".join(VOCABULARIES[col])
                self._fail(rg, col, f"unknown value {value!r} ({int(bad.sum())} rows); expected one of: {allowed}", row)
        else:
            codes = _codes(arr, self.enc.open_lookup(col))
        if col in REQUIRED_COLUMNS and arr.null_count:
            row = int(np.argmax(codes < 0))
            self._fail(rg, col, f"null in required column ({arr.null_count} rows)", row)
        return codes

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
            idx, values = _raw(arr)
            out[col] = idx
            if col == "kind":
                out["kind_map"] = np.array([self.enc.vocab["kind"].get(v, _UNKNOWN) for v in values], dtype=np.int32)
                if (out["kind_map"] == _UNKNOWN).any():
                    self._string(rg, table, "kind")  # raises if a row uses the unknown value
            else:
                out[f"{col}_map"] = np.array([self.enc.open_lookup(col)(v) for v in values], dtype=np.int32)
        for col in ("thread_kind", "op", "policy", "action", "iostatus", "runstate", "prev_runstate"):
            if col in table.column_names:
                self._check_vocabulary(rg, table.column(col), col)
        if "thread_kind" in table.column_names and table.column("thread_kind").null_count:
            self._string(rg, table, "thread_kind")  # raises, naming the first null row
        keep_lut = np.append(_KEEP_KIND[np.maximum(out["kind_map"], 0)], False)
        keep = keep_lut[out["kind"]]
        if "errno" in table.column_names and table.column("errno").null_count < n:
            errno = table.column("errno")
            if pc.any(pc.less_equal(errno, 0)).as_py():
                row = int(pc.index(pc.fill_null(pc.less_equal(errno, 0), False), True).as_py())
                self._fail(rg, "errno", f"errno must be positive, got {errno[row].as_py()}", row)
            ioc = np.flatnonzero(out["kind_map"] == K["io_complete"])
            if len(ioc):
                failed = np.asarray(pc.is_valid(errno).to_numpy(zero_copy_only=False), dtype=bool)
                keep |= failed & (out["kind"] == ioc[0])
        out["keep"] = keep
        return out

    @staticmethod
    def unit_codes(core: dict[str, np.ndarray], col: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Unit codes of a core string column (vm, thread, kind), for `rows` or every row."""
        idx = core[col] if rows is None else core[col][rows]
        return core[f"{col}_map"][idx]

    def detail(self, rg: RowGroup, table: pa.Table, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Every Steps column for the kept rows `rows` of a row group."""
        sub = table.take(pa.array(rows, type=pa.int64()))
        n = sub.num_rows
        out: dict[str, np.ndarray] = {}
        for col in ("thread_kind", "op", "policy", "action", "iostatus", "runstate", "prev_runstate"):
            out[col] = self._string(rg, sub, col) if col in self.columns else np.full(n, -1, np.int32)
        for col in ("device", "name", "src_file"):
            out[col] = self._string(rg, sub, col) if col in self.columns else np.full(n, -1, np.int32)
        for col in NULLABLE_INTS:
            values, valid = _ints(sub.column(col) if col in sub.column_names else None, n)
            out[col] = values
            out[f"has_{col}"] = valid
        # Vocabulary / null checks for columns read only on kept rows still cover every row
        # that matters; the bulk rows were validated for the core columns above.
        return out


R = TypeVar("R")


def scan_unit(
    trace: Trace,
    unit: Unit,
    columns: Sequence[str],
    judge: Callable[[UnitData], R],
    *,
    progress: Callable[[int], None] | None = None,
) -> list[R]:
    """Stream one unit and `judge` its VMs in batches, each batch as soon as the last row group
    holding its VMs has been read: memory holds one row group plus the kept rows of the VMs
    still being read. A unit not in (vm, seq) order is judged once, sorted as a whole."""
    reader = _GroupReader(trace, unit, columns)
    state = _Streaming(reader)
    last_group: dict[str, int] = {}
    for i, rg in enumerate(unit.row_groups):
        for vm in rg.vms:
            last_group[vm] = i
    done_after: dict[int, list[int]] = {}
    for vm, i in last_group.items():
        done_after.setdefault(i, []).append(reader.enc.vm.codes[vm])
    results: list[R] = []
    groups = unit.row_groups
    reported = 0

    def read(i: int) -> pa.Table:
        return _read_group(trace.files[groups[i].file], groups[i].index, reader.columns)

    # Read the next row group while this one is checked (Parquet decoding releases the GIL).
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = pool.submit(read, 0) if groups else None
        try:
            for i, rg in enumerate(groups):
                assert ahead is not None
                table = ahead.result()
                ahead = pool.submit(read, i + 1) if i + 1 < len(groups) else None
                state.add(rg, table)
                del table
                if i in done_after:
                    results.append(judge(state.flush(np.array(sorted(done_after[i]), dtype=np.int32))))
                if progress is not None:
                    progress(rg.rows)
                    reported += rg.rows
            return results
        except _Unordered:
            if ahead is not None:
                ahead.cancel()
    result = judge(_read_sorted(trace, unit, columns))
    if progress is not None:
        progress(unit.rows - reported)
    return [result]


def read_unit(
    trace: Trace,
    unit: Unit,
    columns: Sequence[str],
    *,
    vms: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> UnitData:
    """Read one unit (or only its VMs `vms`) whole: validated, integrity-checked, reduced to
    the rows the rules read. For replay views; a check judges batches via `scan_unit`."""
    wanted = None if vms is None else set(vms)

    def keep(batch: UnitData) -> UnitData:
        if wanted is None:
            return batch
        codes = [i for i, name in enumerate(batch.steps.vm_names) if name in wanted]
        steps = batch.steps.take(np.flatnonzero(np.isin(batch.steps.vm, codes)))
        return UnitData(steps, [f for f in batch.integrity if f.vm in wanted], batch.rows, batch.present)

    parts = scan_unit(trace, unit, columns, keep, progress=progress)
    steps = Steps.concat([p.steps for p in parts]) if parts else Steps.empty()
    return UnitData(
        steps,
        [f for p in parts for f in p.integrity],
        sum(p.rows for p in parts),
        set().union(*(p.present for p in parts)) if parts else set(),
    )


class _Unordered(Exception):
    """A unit whose rows are not in (vm, seq) order across row groups: read it sorted."""


@dataclass
class _Kept:
    """The kept rows of one row group: core (vm, seq, ts, thread, kind) and detail columns."""

    core: dict[str, np.ndarray]
    detail: dict[str, np.ndarray]

    def select(self, mask: np.ndarray) -> _Kept:
        return _Kept({k: v[mask] for k, v in self.core.items()},
                     {k: v[mask] for k, v in self.detail.items()})


class _Streaming:
    """Per-row-group streaming state of one unit whose row groups come in (vm, seq) order."""

    def __init__(self, reader: _GroupReader) -> None:
        self.reader = reader
        n_vm = len(reader.unit.vms)
        self.last_seq = np.zeros(n_vm, dtype=np.int64)
        self.seen = np.zeros(n_vm, dtype=bool)
        #: (vm, thread) -> (seq, ts, src) of its last step so far.
        self.carry: dict[tuple[int, int], tuple[int, int, str | None]] = {}
        self.vm_max_ts = np.zeros(n_vm, dtype=np.int64)
        self.seen_ts = np.zeros(n_vm, dtype=bool)
        self.has_src = "src_file" in reader.columns
        self.kept: list[_Kept] = []
        self.integrity: list[Finding] = []
        self.rows = 0
        self.present: set[str] = set()

    def add(self, rg: RowGroup, table: pa.Table) -> None:
        """Check one row group's order and timestamps, keep the rows the rules read."""
        core = self.reader.core(rg, table)
        n = table.num_rows
        self.rows += n
        if not n:
            return
        seq, ts, thr = core["seq"], core["ts_ns"], core["thread"]
        pos: np.ndarray | None = None
        change: np.ndarray | None = None
        if len(rg.vms) == 1:
            starts = np.zeros(1, dtype=np.int64)
        else:
            change = core["vm"][1:] != core["vm"][:-1]
            starts = np.concatenate([[0], np.flatnonzero(change) + 1])
        up = seq[1:] > seq[:-1]
        if len(starts) != len(rg.vms) or not np.all(up if change is None else up | change):
            # Not VM after VM in seq order: sort this group (a recorder of several VMs
            # interleaves them); duplicates or overlaps still need the whole-unit sort.
            vm_unit = self.reader.unit_codes(core, "vm")
            pos = np.lexsort((seq, vm_unit))
            seq, ts, thr, vm_unit = seq[pos], ts[pos], thr[pos], vm_unit[pos]
            change = vm_unit[1:] != vm_unit[:-1]
            if not np.all((seq[1:] > seq[:-1]) | change):
                raise _Unordered
            starts = np.concatenate([[0], np.flatnonzero(change) + 1])
            block_vm = vm_unit[starts]
        else:
            block_vm = core["vm_map"][core["vm"][starts]]
        ends = np.append(starts[1:], n) - 1
        if np.any(self.seen[block_vm] & (seq[starts] <= self.last_seq[block_vm])):
            raise _Unordered
        self.seen[block_vm] = True
        self.last_seq[block_vm] = seq[ends]
        self._timestamps(rg, table, core, seq, ts, thr, starts, block_vm, change, pos)
        self._keep(rg, table, core, np.flatnonzero(core["keep"]))

    def _timestamps(self, rg: RowGroup, table: pa.Table, core: dict[str, np.ndarray],
                    seq: np.ndarray, ts: np.ndarray, thr: np.ndarray, starts: np.ndarray,
                    block_vm: np.ndarray, change: np.ndarray | None, pos: np.ndarray | None) -> None:
        """ts-monotonic-per-thread over one row group in (vm, seq) order, continuing the
        carry of earlier groups. Fast path: when each VM's timestamps never decrease within the
        group and start no lower than the VM's latest carried one, no thread can go back."""
        n = len(ts)
        n_thr = max(len(core["thread_map"]), 1)
        nb = len(starts)
        rising = ts[1:] >= ts[:-1]
        inside = bool(np.all(rising if change is None else rising | change))
        fast = inside and not np.any(self.seen_ts[block_vm] & (ts[starts] < self.vm_max_ts[block_vm]))
        block = None if nb == 1 else np.repeat(np.arange(nb), np.diff(np.append(starts, n)))
        key = thr.astype(np.int64) if block is None else block * n_thr + thr
        has_src = "src_file" in table.column_names and table.column("src_file").null_count < table.num_rows

        def src(i: int) -> str | None:
            return _src_of(table, int(pos[i]) if pos is not None else i) if has_src else None

        def thread_code(i: int) -> int:
            return int(core["thread_map"][thr[i]])

        def vm_code(i: int) -> int:
            return int(block_vm[0 if block is None else block[i]])

        if not fast:
            order = np.argsort(key, kind="stable")
            k_sorted, t_sorted = key[order], ts[order]
            same = k_sorted[1:] == k_sorted[:-1]
            found: list[tuple[int, int, int, str | None]] = []  # (row, prev seq, prev ts, prev src)
            for b in np.flatnonzero(same & (t_sorted[1:] < t_sorted[:-1])):
                a, i = int(order[b]), int(order[b + 1])
                found.append((i, int(seq[a]), int(ts[a]), src(a)))
            for i in order[np.flatnonzero(np.concatenate([[True], ~same]))]:
                c = self.carry.get((vm_code(int(i)), thread_code(int(i))))
                if c is not None and ts[i] < c[1]:
                    found.append((int(i), c[0], c[1], c[2]))
            for i, prev_seq, prev_ts, prev_src in sorted(found):
                refs = tuple(x for x in (prev_src, src(i)) if x is not None)
                self.integrity.append(_ts_finding(self.reader.enc, vm_code(i), thread_code(i),
                                                  prev_seq, prev_ts, int(seq[i]), int(ts[i]), refs))
        # Carry: each VM's latest timestamp, and the last step of every (vm, thread).
        block_max = np.maximum.reduceat(ts, starts)
        seen = self.seen_ts[block_vm]
        self.vm_max_ts[block_vm] = np.where(seen, np.maximum(self.vm_max_ts[block_vm], block_max), block_max)
        self.seen_ts[block_vm] = True
        last = np.full(nb * n_thr, -1, dtype=np.int64)
        np.maximum.at(last, key, _arange(n))
        for k in np.flatnonzero(last >= 0):
            i = int(last[k])
            self.carry[(vm_code(i), thread_code(i))] = (int(seq[i]), int(ts[i]), src(i))

    def _keep(self, rg: RowGroup, table: pa.Table, core: dict[str, np.ndarray], keep: np.ndarray) -> None:
        used = np.bincount(core["kind"], minlength=len(core["kind_map"])) > 0
        self.present.update(VOCABULARIES["kind"][k] for k in core["kind_map"][used] if k >= 0)
        if not len(keep):
            return
        detail = self.reader.detail(rg, table, keep)
        vm_codes = self.reader.unit_codes(core, "vm", keep)
        detail["throttle"] = self.reader.throttle_lut(rg.file)[vm_codes]
        kc = {
            "vm": vm_codes,
            "thread": self.reader.unit_codes(core, "thread", keep),
            "kind": self.reader.unit_codes(core, "kind", keep),
            "seq": core["seq"][keep],
            "ts_ns": core["ts_ns"][keep],
        }
        self.kept.append(_Kept(kc, detail))

    def flush(self, vms: np.ndarray) -> UnitData:
        """Hand over the VMs `vms` (codes), whose rows have all been read: their kept rows,
        the integrity findings and row counts gathered since the last flush."""
        mine: list[_Kept] = []
        rest: list[_Kept] = []
        for k in self.kept:
            sel = np.isin(k.core["vm"], vms)
            if sel.all():
                mine.append(k)
            elif sel.any():
                mine.append(k.select(sel))
                rest.append(k.select(~sel))
            else:
                rest.append(k)
        self.kept = rest
        steps = _build_steps(self.reader.enc, mine)
        present = self.present | _named_kinds(steps)
        out = UnitData(steps, self.integrity, self.rows, present)
        self.integrity, self.rows, self.present = [], 0, set()
        return out

    def finish(self) -> UnitData:
        return self.flush(np.arange(len(self.reader.unit.vms), dtype=np.int32))


def _named_kinds(steps: Steps) -> set[str]:
    """"kind:name" entries for the QMP rows of a batch (replies named after their command)."""
    out: set[str] = set()
    for kind in ("qmp_event", "qmp_command", "qmp_reply"):
        mask = steps.kind == K[kind]
        names = steps.reply_name[mask] if kind == "qmp_reply" else steps.name[mask]
        for code in np.unique(names):
            if code >= 0:
                out.add(f"{kind}:{steps.names[code]}")
    return out


def _build_steps(enc: _Encoders, kept: list[_Kept]) -> Steps:
    if not kept:
        steps = Steps.empty()
    else:
        def cat(part: str, col: str) -> np.ndarray:
            return np.concatenate([getattr(k, part)[col] for k in kept])

        vm, seq, ts = cat("core", "vm"), cat("core", "seq"), cat("core", "ts_ns")
        kind, thread = cat("core", "kind"), cat("core", "thread")
        d = {c: cat("detail", c) for c in kept[0].detail}
        rank = _rank(enc.thread.names)
        order = np.lexsort((kind, rank[thread] if len(thread) else thread, ts, seq, vm))
        steps = Steps(
            vm=vm, seq=seq, ts=ts, kind=kind, thread=thread,
            thread_kind=d["thread_kind"], device=d["device"], op=d["op"], errno=d["errno"],
            policy=d["policy"], action=d["action"], iostatus=d["iostatus"],
            runstate=d["runstate"], prev_runstate=d["prev_runstate"], name=d["name"],
            eid=d["error_id"], has_eid=d["has_error_id"], cmd_seq=d["cmd_seq"],
            has_cmd=d["has_cmd_seq"], src_file=d["src_file"], src_line=d["src_line"],
            evt=d["event_ts_ns"], throttle=d["throttle"],
        ).take(order)
    steps.vm_names = enc.vm.names
    steps.thread_names = enc.thread.names
    steps.device_names = enc.device.names
    steps.names = enc.name.names
    steps.src_names = enc.src_file.names
    return steps


# ---------------------------------------------------------------------------------------------
# Integrity: timestamps per thread, duplicated seqs
# ---------------------------------------------------------------------------------------------


_ARANGE = np.arange(0, dtype=np.int64)


def _arange(n: int) -> np.ndarray:
    """np.arange(n) from a cached buffer (one allocation per process, not per row group)."""
    global _ARANGE
    if len(_ARANGE) < n:
        _ARANGE = np.arange(max(n, 2 * len(_ARANGE)), dtype=np.int64)
    return _ARANGE[:n]


def _ts_finding(enc, vm: int, thread: int, prev_seq: int, prev_ts: int, seq: int, ts: int,
                src: tuple[str, ...]) -> Finding:
    info = RULES["ts-monotonic-per-thread"]
    thr = enc.thread.names[thread]
    return Finding(
        rule=info.id, severity=info.severity, vm=enc.vm.names[vm], device=None, error_id=None,
        seq=(prev_seq, seq), ts_ns=prev_ts, thread=thr,
        message=(f"thread '{thr}' went back in time by {prev_ts - ts} ns: seq {prev_seq} at "
                 f"{prev_ts}, then seq {seq} at {ts}"),
        src=src,
    )


def _src_of(table: pa.Table, row: int) -> str | None:
    if "src_file" not in table.column_names:
        return None
    f = table.column("src_file")[row].as_py()
    if f is None:
        return None
    line = table.column("src_line")[row].as_py() if "src_line" in table.column_names else None
    return f"{f}:{line}" if line is not None else str(f)


def _rank(names: list[str]) -> np.ndarray:
    """rank[code] = position of names[code] in sorted order (deterministic tie-breaks)."""
    order = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    return rank


def _read_sorted(trace: Trace, unit: Unit, columns: Sequence[str]) -> UnitData:
    """The slow path: read the whole unit, sort it by (vm, seq), report duplicated seqs."""
    reader = _GroupReader(trace, unit, columns)
    state = _Streaming(reader)
    tables, cores = [], []
    for rg in unit.row_groups:
        table = _read_group(trace.files[rg.file], rg.index, reader.columns)
        tables.append((rg, table))
        cores.append(reader.core(rg, table))
    seq, ts = (np.concatenate([c[k] for c in cores]) for k in ("seq", "ts_ns"))
    vm, thread, kind = (np.concatenate([reader.unit_codes(c, k) for c in cores])
                        for k in ("vm", "thread", "kind"))
    which = np.concatenate([np.full(len(c["seq"]), i, dtype=np.int64) for i, c in enumerate(cores)])
    local = np.concatenate([np.arange(len(c["seq"]), dtype=np.int64) for c in cores])
    thread_rank = _rank(reader.enc.thread.names)[thread] if len(thread) else thread
    order = np.lexsort((kind, thread_rank, ts, seq, vm))
    vm, seq, ts, thread, which, local = (a[order] for a in (vm, seq, ts, thread, which, local))
    same = (vm[1:] == vm[:-1]) & (seq[1:] == seq[:-1])
    if same.any():
        state.integrity.extend(_duplicates(trace, reader, tables, vm, seq, ts, thread, which, local, same))
    state.integrity.extend(_ts_backwards_sorted(reader, tables, vm, seq, ts, thread, which, local))
    for (rg, table), core in zip(tables, cores, strict=True):
        state._keep(rg, table, core, np.flatnonzero(core["keep"]))
    state.rows = len(seq)
    return state.finish()


def _ts_backwards_sorted(reader, tables, vm, seq, ts, thread, which, local) -> list[Finding]:
    """ts-monotonic-per-thread over a whole unit already sorted by (vm, seq)."""
    n_thr = len(reader.enc.thread.names) + 1
    key = vm.astype(np.int64) * n_thr + thread
    order = np.argsort(key, kind="stable")
    k_sorted, t_sorted = key[order], ts[order]
    back = np.flatnonzero((k_sorted[1:] == k_sorted[:-1]) & (t_sorted[1:] < t_sorted[:-1]))
    out = []
    for b in back:
        a, c = int(order[b]), int(order[b + 1])
        src = tuple(x for x in (_src_of(tables[which[a]][1], int(local[a])),
                                _src_of(tables[which[c]][1], int(local[c]))) if x is not None)
        out.append(_ts_finding(reader.enc, int(vm[c]), int(thread[c]), int(seq[a]), int(ts[a]),
                               int(seq[c]), int(ts[c]), src))
    return out


def _duplicates(trace, reader, tables, vm, seq, ts, thread, which, local, same) -> list[Finding]:
    """seq-unique findings (one per repeated (vm, seq)); a seq repeated inside one file is a
    schema error (exit 2), as `tracer.schema.validate` says."""
    info = RULES["seq-unique"]
    enc = reader.enc
    file_of = np.array([rg.file for rg, _ in tables], dtype=np.int64)[which]
    run_start = np.flatnonzero(np.concatenate([[True], ~same]))
    run_len = np.diff(np.concatenate([run_start, [len(seq)]]))
    run_id = np.repeat(np.arange(len(run_start)), run_len)
    multi = run_len[run_id] > 1
    pair = run_id[multi] * np.int64(len(trace.files) + 1) + file_of[multi]
    by_pair = np.argsort(pair, kind="stable")
    repeat = np.flatnonzero(pair[by_pair][1:] == pair[by_pair][:-1])
    if len(repeat):
        m = np.flatnonzero(multi)[by_pair[repeat[0] + 1]]  # a second occurrence in one file
        rg = tables[which[m]][0]
        raise TraceSchemaError(
            f"column 'seq': duplicate seq {int(seq[m])} within vm '{enc.vm.names[int(vm[m])]}'",
            path=trace.files[rg.file].path, row=rg.offset + int(local[m]),
        )
    out: list[Finding] = []
    for start, length in zip(run_start[run_len > 1], run_len[run_len > 1], strict=True):
        paths = sorted({trace.files[int(f)].path for f in file_of[start:start + length]})
        out.append(Finding(
            rule=info.id, severity=info.severity, vm=enc.vm.names[int(vm[start])], device=None,
            error_id=None, seq=(int(seq[start]),), ts_ns=int(ts[start]),
            thread=enc.thread.names[int(thread[start])],
            message=f"seq {int(seq[start])} occurs {int(length)} times, in {', '.join(paths)}",
            src=(),
        ))
    return out
