"""Reading the step columns a report needs, one unit at a time, and the same rows as a `Steps`.

The check itself (`analyzer.check`) reads the trace its own way and keeps only what the rules
need; the report additionally needs a few columns of every step, for the per-VM statistics, the
integrity facts and the replay view around each listed finding. :func:`read_unit_steps` reads
them for one unit of the trace the check ran on (one `load`: one validation, one plan, one
hashing of the inputs), into numpy arrays and categoricals: a few dozen bytes a step, no Python
or Arrow string per step. :func:`read_steps` reads every unit at once (small traces, tests).

The statistics count and group those rows as a pandas frame; the replayed state of the context
windows and the run-state timeline comes from `analyzer.state`, which reads a `Steps` batch:
:func:`as_steps` encodes a frame's rows as one, position for position, and :func:`state_rows`
picks the rows a replayed state can depend on (successful I/O, the bulk, is left out).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analyzer import identity
from analyzer.report.context import VIEW_COLUMNS
from analyzer.report.stats import STEP_COLUMNS
from analyzer.steps import NULL, OPEN_STRINGS, VOCABULARIES, Steps
from analyzer.trace import Trace, Unit, load
from analyzer.trace.files import RowGroup, read_row_group, row_keys
from tracer.schema import COLUMN_BY_NAME

#: The columns the statistics and the run-state timeline of a unit read: a unit without a
#: listed finding is read with these alone.
STAT_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMN_BY_NAME if c in set(STEP_COLUMNS))

#: Every column a report reads: the statistics' and the replay view's, in schema order.
REPORT_COLUMNS: tuple[str, ...] = tuple(
    c for c in COLUMN_BY_NAME if c in set(STEP_COLUMNS) | set(VIEW_COLUMNS)
)


def read_steps(
    paths: Trace | Sequence[str | Path], columns: Sequence[str] = REPORT_COLUMNS
) -> pd.DataFrame:
    """`columns` of every step of every input, in replay order (vm, seq).

    `paths`: a loaded `Trace`, or whatever :func:`analyzer.trace.load` accepts (files, trace
    directories, partitioned datasets, globs), with its errors. String columns come back as
    pandas categoricals (cheap for a million steps); a column no input has is all null.
    """
    trace = paths if isinstance(paths, Trace) else load([str(p) for p in paths])
    table = trace.table(columns=list(columns))
    n = table.num_rows
    arrays = []
    for name in columns:
        col = COLUMN_BY_NAME[name]
        if name in table.column_names:
            arr = table.column(name).combine_chunks()
        else:
            arr = pa.nulls(n, pa.string() if col.is_string else col.type)
        if col.is_string:
            arr = pc.dictionary_encode(arr.cast(pa.string()))
        arrays.append(arr)
    frame = pa.table(arrays, names=list(columns)).to_pandas()
    for name, arr in zip(columns, arrays, strict=True):
        col = COLUMN_BY_NAME[name]
        if not col.required and pa.types.is_integer(col.type):
            # nullable integers stay integers (pandas would make them floats)
            values = pc.fill_null(arr, 0).to_numpy(zero_copy_only=False).astype(np.int64)
            mask = pc.is_null(arr).to_numpy(zero_copy_only=False)
            frame[name] = pd.arrays.IntegerArray(values, mask)
    return frame


class _Column:
    """One column of a unit gathered row group by row group into one preallocated numpy array:
    a string column as int32 codes into one dictionary of its distinct values (first seen
    first), an integer column as int64 values and a validity mask."""

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.string = COLUMN_BY_NAME[name].is_string
        self.nullable = not self.string and not COLUMN_BY_NAME[name].required
        self.values: list[str] = []
        self.index: dict[str, int] = {}
        self.buf = np.empty(capacity, dtype=np.int32 if self.string else np.int64)
        self.valid = np.empty(capacity if self.nullable else 0, dtype=bool)
        self.n = 0

    def add(self, arr: pa.ChunkedArray | None, n: int) -> None:
        at = slice(self.n, self.n + n)
        self.n += n
        if arr is None:
            self.buf[at] = -1 if self.string else 0
            if self.nullable:
                self.valid[at] = False
            return
        arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
        if self.string:
            if not pa.types.is_dictionary(arr.type):
                arr = pc.dictionary_encode(arr.cast(pa.string()))
            local = arr.dictionary.cast(pa.string()).to_pylist()
            lookup = np.array([self._code(v) for v in local] + [-1], dtype=np.int32)
            if arr.null_count == 0 and (lookup[:-1] == np.arange(len(local))).all():
                self.buf[at] = arr.indices.to_numpy(zero_copy_only=False)  # same codes: no lookup
            else:
                self.buf[at] = lookup[pc.fill_null(arr.indices, len(local)).to_numpy(zero_copy_only=False)]
            return
        arr = arr.cast(COLUMN_BY_NAME[self.name].type)
        if self.nullable:
            self.valid[at] = pc.is_valid(arr).to_numpy(zero_copy_only=False)
            arr = pc.fill_null(arr, 0)
        self.buf[at] = arr.to_numpy(zero_copy_only=False)

    def _code(self, value: str | None) -> int:
        if value is None:
            return -1
        if value not in self.index:
            self.index[value] = len(self.values)
            self.values.append(value)
        return self.index[value]

    def data(self) -> np.ndarray:
        return self.buf[: self.n]

    def series(self, order: np.ndarray | None) -> pd.Categorical | pd.arrays.IntegerArray | np.ndarray:
        values = self.data() if order is None else self.data()[order]
        self.buf = np.empty(0, dtype=self.buf.dtype)
        if self.string:
            return pd.Categorical.from_codes(values, categories=pd.Index(self.values, dtype=object))
        if self.nullable:
            valid = self.valid[: len(values)] if order is None else self.valid[: self.n][order]
            return pd.arrays.IntegerArray(values, ~valid)
        return values


def read_unit_steps(
    trace: Trace, unit: Unit, columns: Sequence[str] = REPORT_COLUMNS,
    vms: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """`columns` of every step of one unit (or only of its VMs `vms`), in replay order
    (vm, seq, ts_ns): the rows of :func:`read_steps` that belong to the unit, row for row.

    Memory follows the unit, and only its needed columns: each row group is read and turned
    into numpy at once (strings as int32 codes into the unit's few distinct values, which the
    frame holds as categoricals; never one Python or Arrow string per step), and the rows are
    reordered only when they are not in order already. `progress(rows)` after each row group.
    """
    # a row group may hold other units' VMs (a layout split at row groups): keep the unit's
    wanted = {identity.label(k) for k in unit.vms} if vms is None else set(vms)
    groups = [rg for rg in unit.row_groups if wanted.intersection(identity.label(k) for k in rg.vms)]
    gather = UnitGather(columns, sum(rg.rows for rg in groups))
    for rg in groups:
        t = labelled(read_row_group(trace.files[rg.file], rg.index,
                                     list(dict.fromkeys([*gather.columns, "host", "run"])), rg.count),
                      rg, trace.files[rg.file].run)
        if not wanted.issuperset(identity.label(k) for k in rg.vms):
            t = t.filter(pc.is_in(t.column("vm").cast(pa.string()), pa.array(sorted(wanted))))
        gather.add(t)
        if progress is not None:
            progress(t.num_rows)
        del t
    return gather.frame()


class UnitGather:
    """The rows of one unit, row group by row group, into the frame :func:`read_unit_steps`
    returns: whoever reads the row groups (this module, or a check that shows a report every
    row group it reads: `analyzer.check`'s `observe`) hands them over one at a time."""

    def __init__(self, columns: Sequence[str], capacity: int) -> None:
        self.wanted = tuple(columns)
        self.columns = tuple(dict.fromkeys([*columns, "vm", "seq", "ts_ns"]))
        self.gathered = {c: _Column(c, capacity) for c in self.columns}

    def add(self, table: pa.Table) -> None:
        for c, col in self.gathered.items():
            col.add(table.column(c) if c in table.column_names else None, table.num_rows)

    @property
    def rows(self) -> int:
        return self.gathered["vm"].n

    def frame(self) -> pd.DataFrame:
        """The rows gathered, in replay order (vm, seq, ts_ns); the buffers are let go."""
        gathered = self.gathered
        vm = gathered["vm"]
        names = vm.values
        rank = np.empty(len(names) + 1, dtype=np.int64)
        rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
        rank[-1] = -1
        keys = (rank[vm.data()], gathered["seq"].data(), gathered["ts_ns"].data())
        order = None if _in_order(*keys) else np.lexsort(tuple(reversed(keys)))
        del keys
        out = pd.DataFrame({c: gathered[c].series(order) for c in self.wanted})
        self.gathered = {}
        return out


def labelled(table: pa.Table, rg: RowGroup, run: str | None) -> pa.Table:
    """`table` with its `vm` column the label of each row's identity (`analyzer.identity`):
    vm0 of two hosts or runs are two VMs of the report. Unchanged without hosts and runs."""
    if all(not identity.is_composite(k) for k in rg.vms):
        return table
    idx, keys = row_keys(table, run)
    labels = pa.array([identity.label(k) for k in keys], pa.string())
    vm = pa.DictionaryArray.from_arrays(pa.array(idx, pa.int32()), labels)
    return table.set_column(table.column_names.index("vm"), "vm", vm)


def empty_steps(columns: Sequence[str] = REPORT_COLUMNS) -> pd.DataFrame:
    """A frame of `columns` without rows, typed as :func:`read_steps` types them."""
    return pd.DataFrame({c: _Column(c, 0).series(None) for c in columns})


def _in_order(*keys: np.ndarray) -> bool:
    """Whether rows are sorted by `keys` (most significant first)."""
    if len(keys[0]) < 2:
        return True
    ok = np.ones(len(keys[0]) - 1, dtype=bool)
    tie = np.ones(len(keys[0]) - 1, dtype=bool)
    for k in keys:
        ok &= ~tie | (k[1:] >= k[:-1])
        tie &= k[1:] == k[:-1]
    return bool(ok.all())


# ---------------------------------------------------------------------------------------------
# The rows as a Steps batch
# ---------------------------------------------------------------------------------------------

#: Steps arrays holding a trace column of another name.
_COLUMN_OF = {"ts": "ts_ns", "eid": "error_id", "evt": "event_ts_ns"}
#: Steps flags telling where a nullable integer array is set.
_FLAGS = {"eid": "has_eid", "cmd_seq": "has_cmd"}


def _strings(series: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes of a string column (categorical or not) and the values they stand for; -1 null."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy().astype(np.int64)
        return codes, [str(c) for c in series.cat.categories]
    codes, uniques = pd.factorize(series)
    return codes.astype(np.int64), [str(u) for u in uniques]


def _vocabulary(series: pd.Series, vocabulary: tuple[str, ...]) -> np.ndarray:
    """Codes of a closed-vocabulary column in the schema's order (-1: null or unknown)."""
    codes, values = _strings(series)
    index = {v: i for i, v in enumerate(vocabulary)}
    lookup = np.array([index.get(v, NULL) for v in values] + [NULL], dtype=np.int64)
    return lookup[codes]


def _nullable(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A nullable integer column as (values, set): nulls are 0 and not set."""
    numbers = pd.to_numeric(series)
    valid = numbers.notna().to_numpy()
    return numbers.fillna(0).to_numpy(dtype=np.int64), valid


#: Step kinds no replayed state reads (successful I/O: the bulk of a trace).
_STATELESS_KINDS = ("io_submit", "io_complete")


def state_rows(frame: pd.DataFrame) -> np.ndarray:
    """Positions of the rows of a (vm, seq)-sorted `frame` that the replayed state can depend
    on: every row but successful I/O (an `io_submit`, an `io_complete` without errno), and
    each VM's first and last row. The state after any other row is the state after the last of
    these at or before it, so a `Steps` batch of these rows alone replays the whole VM
    (:func:`as_steps` of ``frame.iloc[rows]``) in a fraction of the memory."""
    n = len(frame)
    if not n:
        return np.zeros(0, dtype=np.int64)
    kind = frame["kind"]
    bulk = kind.isin(list(_STATELESS_KINDS)).to_numpy(dtype=bool, copy=True)
    if "errno" in frame:
        bulk &= ~((kind == "io_complete").to_numpy() & frame["errno"].notna().to_numpy())
    vm = frame["vm"]
    codes = vm.cat.codes.to_numpy() if isinstance(vm.dtype, pd.CategoricalDtype) else pd.factorize(vm)[0]
    edge = np.r_[True, codes[1:] != codes[:-1]]
    bulk &= ~(edge | np.r_[edge[1:], True])
    return np.flatnonzero(~bulk)


def as_steps(frame: pd.DataFrame) -> Steps:
    """The rows of `frame` (report columns; strings categorical or not) as a `Steps` batch of
    every row (bulk I/O included), in (vm, seq) order: row k of a frame already in that order,
    as :func:`read_steps` returns it, is row k of the batch. Columns the frame lacks are null.

    A `qmp_reply` is taken to answer a command only where its `cmd_seq` names a `qmp_command`
    of its VM (a reply without a name takes that command's).
    """
    n = len(frame)
    absent = np.broadcast_to(np.int64(NULL), (n,))  # a null column, without the memory
    arrays: dict[str, np.ndarray] = {}
    lists: dict[str, list[str]] = {}
    for field in Steps.ARRAYS:
        col = _COLUMN_OF.get(field, field)
        if field in _FLAGS.values() or field == "throttle":
            continue
        if col not in frame:
            arrays[field] = absent
        elif field in OPEN_STRINGS:
            arrays[field], lists[field] = _strings(frame[col])
        elif field in VOCABULARIES:
            arrays[field] = _vocabulary(frame[col], VOCABULARIES[field])
        else:
            values, valid = _nullable(frame[col])
            arrays[field] = values if field in _FLAGS else np.where(valid, values, NULL)
            if field in _FLAGS:
                arrays[_FLAGS[field]] = valid
    for flag in _FLAGS.values():
        arrays.setdefault(flag, np.zeros(n, dtype=bool))
    arrays["throttle"] = np.broadcast_to(False, (n,))
    # (vm name, seq) order, stable: a frame in replay order keeps its row order.
    names = lists.get("vm", [])
    rank = np.empty(len(names), dtype=np.int64)
    rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
    order = np.lexsort((arrays["seq"], rank[arrays["vm"]]))
    if not (order == np.arange(n)).all():
        arrays = {a: v if v.strides == (0,) else v[order] for a, v in arrays.items()}
    steps = Steps(
        **{a: arrays[a] for a in Steps.ARRAYS},
        vm_names=names,
        thread_names=lists.get("thread", []),
        device_names=lists.get("device", []),
        names=lists.get("name", []),
        src_names=lists.get("src_file", []),
    )
    replies = np.flatnonzero(steps.has_cmd)
    command = steps.find_seq(replies, steps.cmd_seq[replies])
    answers = np.zeros(n, dtype=bool)
    answers[replies] = (command >= 0) & steps.is_kind("qmp_command")[np.maximum(command, 0)]
    steps.has_cmd = answers
    return steps
