"""The replay view: each step in replay order with the VM's state after it.

What `blkreplay replay` prints and a notebook asks with `replay(trace, vm=...)`: every step of
a VM (or a seq / time range of it), the run state, each device's io-status and the pending stop
request *after* the step, the step's own state change, and the rules whose findings name it.

Two kinds of state, never mixed (`analyzer.observed`):

* a recording carries its state as rows: `analyzer.state` replays it exactly;
* an import carries only what crossed the wire, so its run state and io-status are *inferred*
  from the events (flagged by ``runstate_inferred`` / ``iostatus_inferred``), and beside them
  stands what was *observed*: the last `query-status` / `query-block` answer (value, seq,
  source ``file:line`` and time of the reply), which may be stale.

The state is computed over the rows the rules read (`analyzer.trace.read_unit`, the whole VM,
so that a cut range or time window raises no false alarm); every shown step takes the state
after the last of them at or before its seq. The shown steps themselves are read row group by
row group and produced in chunks of :data:`CHUNK_ROWS` (:func:`replay_chunks`), so that a
terminal shows the first lines of a big trace at once and memory follows one chunk.
`steps_around`, `episode_window` and `event_window` cut windows of it. The episodes table
(`analyzer.episodes`) is re-exported here, where it was first published.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analyzer import identity
from analyzer.episodes import EPISODE_COLUMNS, LATENCIES, MILESTONES, episodes
from analyzer.observed import (
    has_state_rows,
    inferred_iostatus,
    inferred_runstate,
    observed_iostatus,
    observed_runstate,
)
from analyzer.rules import columns_for, run
from analyzer.rules.catalogue import RULE_IDS
from analyzer.rules.integrity import findings as integrity_findings
from analyzer.state import devices, iostatus, iostatus_names, pending, run_state, runstate_names
from analyzer.steps import ACT, NULL, Steps
from analyzer.timefmt import WALL_CLOCK_MIN_NS, iso_utc_array
from analyzer.timewindow import TimeBound, bound
from analyzer.trace import PathArg, Trace, UnitData, load, read_unit
from analyzer.trace.arrow import plain
from analyzer.trace.files import parquet_file, read_row_group, row_keys
from tracer.errors import InputError
from tracer.schema import COLUMN_BY_NAME

#: Columns of the replay view before the per-device columns. The first seventeen are the
#: original view; the rest were added after (additive).
REPLAY_COLUMNS: tuple[str, ...] = (
    "vm", "seq", "ts_ns", "thread", "thread_kind", "kind", "name", "device", "op", "errno",
    "action", "error_id", "value", "runstate", "pending", "findings",
    "time", "src", "runstate_inferred", "iostatus_inferred",
    "observed_runstate", "observed_runstate_seq", "observed_runstate_src", "observed_runstate_time",
)
#: Prefix of the per-device io-status columns (replayed, or inferred: ``iostatus_inferred``).
IOSTATUS_PREFIX = "iostatus:"
#: Prefixes of the per-device columns of the last `query-block` answer: value, seq, src, time.
OBSERVED_PREFIX = "observed:"
OBSERVED_PARTS: tuple[str, ...] = ("observed:", "observed_seq:", "observed_src:", "observed_time:")
#: Steps per chunk of :func:`replay_chunks` (a few ms of work each).
CHUNK_ROWS = 2000

_VIEW_READ = ("seq", "ts_ns", "vm", "thread", "thread_kind", "kind", "device", "op", "errno",
              "policy", "action", "iostatus", "runstate", "prev_runstate", "name", "error_id",
              "cmd_seq", "src_file", "src_line", "host", "run")
#: The columns that tell the VM of a row (`analyzer.identity`).
_IDENTITY = ("vm", "host", "run")

# ---------------------------------------------------------------------------------------------
# Loading (small LRU: a notebook asks many windows of one trace)
# ---------------------------------------------------------------------------------------------

_CACHE: OrderedDict[tuple, object] = OrderedDict()
_CACHE_SIZE = 8


def _cached(key: tuple, make, owner: object = None):
    """A small LRU of loaded traces and read units. `owner` (kept alive with the entry) makes
    keys built from id(owner) safe."""
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is owner:
        _CACHE.move_to_end(key)
        return hit[1]
    value = make()
    _CACHE[key] = (owner, value)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def _paths_key(paths: Sequence[PathArg]) -> tuple:
    out = []
    for p in paths:
        text = os.fspath(p)
        try:
            st = os.stat(text)
            out.append((text, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((text, None, None))
    return tuple(out)


def _trace(paths_or_trace: Trace | PathArg | Sequence[PathArg]) -> Trace:
    if isinstance(paths_or_trace, Trace):
        return paths_or_trace
    paths = [paths_or_trace] if isinstance(paths_or_trace, str | os.PathLike) else list(paths_or_trace)
    return _cached(("trace", _paths_key(paths)), lambda: load(paths))


def _unit_data(trace: Trace, vm: str) -> UnitData:
    unit = trace.unit_of(vm)
    return _cached(("unit", id(trace), vm), lambda: read_unit(trace, unit, columns_for(RULE_IDS), vms=[vm]), trace)


# ---------------------------------------------------------------------------------------------
# What every chunk of a VM shares: its state batch, devices, finding marks
# ---------------------------------------------------------------------------------------------


@dataclass
class _VmState:
    vm: str
    s: Steps
    rows: np.ndarray          # the VM's rows in `s`
    devices: list[int]        # device codes with an io-status, by name
    runstate_rows: bool       # the run state is recorded (else inferred)
    iostatus_rows: bool       # the io-status is recorded (else inferred)
    marked_seq: np.ndarray    # sorted seqs named by findings ...
    marked_ids: np.ndarray    # ... and the rule ids there ("a,b")


def _vm_state(trace: Trace, vm: str) -> _VmState:
    def make() -> _VmState:
        data = _unit_data(trace, vm)
        s = data.steps
        if vm not in s.vm_names:
            return _VmState(vm, s, np.zeros(0, dtype=np.int64), [], False, False,
                            np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object))
        code = s.vm_names.index(vm)
        rows = np.flatnonzero(s.vm == code)
        devs = set(devices(s).get(code, []))
        bioe = (s.vm == code) & s.event("BLOCK_IO_ERROR") & (s.action == ACT["stop"]) & (s.device >= 0)
        devs |= set(np.unique(s.device[bioe]).tolist())
        rs_rows, io_rows = has_state_rows(s, code)
        seqs, ids = _marks(s, data, vm)
        return _VmState(vm, s, rows, sorted(devs, key=lambda c: s.device_names[c]), rs_rows, io_rows,
                        seqs, ids)

    return _cached(("vmstate", id(trace), vm), make, trace)


def _marks(s: Steps, data: UnitData, vm: str) -> tuple[np.ndarray, np.ndarray]:
    """The seqs the findings of `vm` name (sorted) and the rule ids at each (comma-separated)."""
    vm_code = s.vm_names.index(vm)
    batch = s.take(np.flatnonzero(s.vm == vm_code))
    found = run(batch, RULE_IDS) + integrity_findings(f for f in data.integrity if f.vm == vm)
    by_seq: dict[int, list[str]] = {}
    for f in found:
        for q in f.seq:
            rules = by_seq.setdefault(q, [])
            if f.rule not in rules:
                rules.append(f.rule)
    seqs = np.array(sorted(by_seq), dtype=np.int64)
    return seqs, np.array([",".join(by_seq[int(q)]) for q in seqs], dtype=object)


# ---------------------------------------------------------------------------------------------
# The replay view
# ---------------------------------------------------------------------------------------------


def replay(
    paths_or_trace: Trace | PathArg | Sequence[PathArg],
    *,
    vm: str | None = None,
    device: str | None = None,
    from_seq: int | None = None,
    to_seq: int | None = None,
    since: TimeBound = None,
    until: TimeBound = None,
    host: str | None = None,
    run: str | None = None,
) -> pd.DataFrame:
    """The steps in replay order with the reconstructed state beside each (one frame: for a
    big trace, iterate :func:`replay_chunks` instead).

    Columns: REPLAY_COLUMNS, then per device ``iostatus:<device>`` and the last `query-block`
    answer about it (``observed:``, ``observed_seq:``, ``observed_src:``, ``observed_time:``;
    only `device` when given). `runstate`, `iostatus:*` and `pending` are the state *after*
    the step, recorded or, where ``runstate_inferred`` / ``iostatus_inferred``, inferred from
    the events (`analyzer.observed`); ``observed_runstate*`` the last `query-status` answer.
    `value` is the step's own io-status or run-state change; `findings` the ids of the rules
    whose evidence includes the step; `time` ISO-8601 UTC of wall-clock traces (else None);
    `src` the ``file:line`` an imported step came from. `device` keeps that device's steps and
    the VM-wide ones. `since` / `until` (epoch ns, inclusive) keep the steps whose ts_ns lies
    in the range; the state is still replayed from the VM's start. `host` / `run` choose among
    VMs of the name `vm` on several hosts or in several runs (`analyzer.identity`; an
    `InputError` lists them when `vm` alone is ambiguous); the `vm` column then names the host
    and run beside the VM (``vm0 (host h1)``).
    """
    parts = [c for c in replay_chunks(paths_or_trace, vm=vm, device=device, from_seq=from_seq,
                                      to_seq=to_seq, since=since, until=until, host=host, run=run)
             if len(c)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in REPLAY_COLUMNS})
    frame = pd.concat(parts, ignore_index=True)
    return frame[_ordered(frame.columns)]


def _ordered(columns: Sequence[str]) -> list[str]:
    devs = sorted({c.split(":", 1)[1] for c in columns if c.startswith(IOSTATUS_PREFIX)})
    return [*REPLAY_COLUMNS, *(p + d for d in devs for p in (IOSTATUS_PREFIX, *OBSERVED_PARTS)
                               if p + d in columns)]


def replay_chunks(
    paths_or_trace: Trace | PathArg | Sequence[PathArg],
    *,
    vm: str | None = None,
    device: str | None = None,
    from_seq: int | None = None,
    to_seq: int | None = None,
    since: TimeBound = None,
    until: TimeBound = None,
    host: str | None = None,
    run: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    """The frames of :func:`replay`, VM by VM, :data:`CHUNK_ROWS` steps at a time (lazily: a
    chunk is read and computed when asked for). Chunk boundaries depend only on the steps, not
    on the files' layout. All chunks of one VM have the same columns."""
    trace = _trace(paths_or_trace)
    try:
        since, until = bound(since), bound(until)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    for v in vm_keys(trace, vm, host, run):
        state = _vm_state(trace, v)
        for table in _vm_tables(trace, v, from_seq, to_seq, since, until, chunk_rows):
            if device is not None:
                dev = table.column("device")
                table = table.filter(pc.or_kleene(pc.is_null(dev), pc.equal(dev, device)))
            if table.num_rows:
                yield _frame(state, table, device)


def vm_keys(trace: Trace, vm: str | None, host: str | None = None, run: str | None = None) -> list[str]:
    """The identity keys of the VMs to replay: the one VM `vm` (on `host`, in `run`), else
    every VM of `host` / `run` when given, else every VM of the trace."""
    if vm is not None:
        return [identity.resolve(trace.vms, vm, host, run)]
    if host is None and run is None:
        return list(trace.vms)
    return [k for k in trace.vms if (host is None or (identity.split(k).host or "") == host)
            and (run is None or (identity.split(k).run or "") == run)]


def _rows_of(trace: Trace, rg, t: pa.Table, key: str) -> np.ndarray:
    """Mask of the rows of `t` (read from row group `rg`) that belong to the VM `key`."""
    idx, keys = row_keys(t, trace.files[rg.file].run)
    return idx == (keys.index(key) if key in keys else -1)


def _stats(trace: Trace, rg, column: str) -> tuple[int, int] | None:
    """(min, max) of `column` over the row group(s) of `rg`, None when the statistics do not
    tell."""
    md = parquet_file(trace.files[rg.file].path).metadata
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    if column not in names:
        return None
    col = names.index(column)
    lo = hi = None
    for index in range(rg.index, rg.index + rg.count):
        st = md.row_group(index).column(col).statistics
        if st is None or not st.has_min_max:
            return None
        try:
            a, b = int(st.min), int(st.max)
        except (TypeError, ValueError):
            return None
        lo = a if lo is None else min(lo, a)
        hi = b if hi is None else max(hi, b)
    return None if lo is None else (lo, hi)


def _outside(bounds: tuple[int, int] | None, lo: int | None, hi: int | None) -> bool:
    return bounds is not None and ((lo is not None and bounds[1] < lo) or (hi is not None and bounds[0] > hi))


def _vm_tables(trace: Trace, vm: str, from_seq: int | None, to_seq: int | None, since: int | None,
               until: int | None, chunk_rows: int) -> Iterator[pa.Table]:
    """`vm`'s steps in [from_seq, to_seq] and [since, until], in seq order, `chunk_rows` at a
    time. Row groups are read one cluster at a time (a cluster: row groups whose seq ranges
    overlap, or of unknown range); one wholly outside the seq or time range is never read —
    safe, since the state comes from the whole VM's batch, not from the rows shown."""
    groups = []
    for rg in trace.unit_of(vm).row_groups:
        if vm not in rg.vms:
            continue
        seq = _stats(trace, rg, "seq")
        if _outside(seq, from_seq, to_seq) or _outside(_stats(trace, rg, "ts_ns"), since, until):
            continue
        groups.append((seq, rg))
    if any(seq is None for seq, _ in groups):
        clusters = [[rg for _, rg in groups]] if groups else []
    else:
        groups.sort(key=lambda g: g[0])
        clusters, hi = [], None
        for seq, rg in groups:
            if hi is not None and seq[0] <= hi:
                clusters[-1].append(rg)
                hi = max(hi, seq[1])
            else:
                clusters.append([rg])
                hi = seq[1]
    pending_parts: list[pa.Table] = []
    held = 0
    for cluster in clusters:
        parts = []
        for rg in cluster:
            t = read_row_group(trace.files[rg.file], rg.index, _VIEW_READ, rg.count)
            mask = pa.array(_rows_of(trace, rg, t, vm)) if len(rg.vms) > 1 else None
            for column, op, limit in (("seq", pc.greater_equal, from_seq), ("seq", pc.less_equal, to_seq),
                                      ("ts_ns", pc.greater_equal, since), ("ts_ns", pc.less_equal, until)):
                if limit is not None:
                    m = op(t.column(column), limit)
                    mask = m if mask is None else pc.and_(mask, m)
            if mask is not None:
                t = t.filter(mask)
            parts.append(_complete(plain(t)))
        table = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
        table = table.take(pc.sort_indices(table, sort_keys=[("seq", "ascending"), ("ts_ns", "ascending")]))
        pending_parts.append(table)
        held += table.num_rows
        while held >= chunk_rows:
            whole = pa.concat_tables(pending_parts, promote_options="permissive")
            yield whole.slice(0, chunk_rows)
            rest = whole.slice(chunk_rows)
            pending_parts, held = [rest], rest.num_rows
    if held:
        yield pa.concat_tables(pending_parts, promote_options="permissive")


def _complete(t: pa.Table) -> pa.Table:
    """Every column of the view (all null where a file lacks one), in _VIEW_READ order."""
    for c in _VIEW_READ:
        if c not in t.column_names:
            spec = COLUMN_BY_NAME[c]
            t = t.append_column(c, pa.nulls(t.num_rows, pa.string() if spec.is_string else spec.type))
        elif pa.types.is_dictionary(t.column(c).type):
            t = t.set_column(t.column_names.index(c), c, t.column(c).cast(pa.string()))
    return t.select(list(_VIEW_READ))


def _strs(table: pa.Table, col: str) -> np.ndarray:
    return np.asarray(table.column(col).cast(pa.string()).to_pylist(), dtype=object)


def _ints(table: pa.Table, col: str) -> pd.arrays.IntegerArray:
    c = table.column(col)
    valid = np.asarray(pc.is_valid(c).to_numpy(zero_copy_only=False), dtype=bool)
    values = np.asarray(pc.fill_null(c, 0).to_numpy(), dtype=np.int64)
    return pd.arrays.IntegerArray(values, ~valid)


def _time(ts: np.ndarray) -> np.ndarray:
    """ISO-8601 UTC where `ts` is wall-clock time, None elsewhere."""
    out = np.full(len(ts), None, dtype=object)
    wall = ts >= WALL_CLOCK_MIN_NS
    if wall.any():
        out[wall] = iso_utc_array(ts[wall]).astype(object)
    return out


def _src(files: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """``file:line`` (or ``file``) per row, None where no source is named."""
    out = np.full(len(files), None, dtype=object)
    has = pd.notna(files)
    if has.any():
        f = files[has].astype(str)
        ln = lines[has]
        out[has] = np.where(pd.notna(ln), np.char.add(np.char.add(f, ":"), ln.astype(str)), f).astype(object)
    return out


def _values(table: pa.Table) -> np.ndarray:
    """The step's own state value: io-status set/read, or a run-state change ("a -> b")."""
    rs, prev = table.column("runstate"), table.column("prev_runstate")
    change = pc.binary_join_element_wise(prev, rs, " -> ")
    value = pc.if_else(pc.is_valid(rs), pc.coalesce(change, rs), table.column("iostatus"))
    return np.asarray(value.to_pylist(), dtype=object)


def _frame(st: _VmState, table: pa.Table, device: str | None) -> pd.DataFrame:
    s = st.s
    n = table.num_rows
    seq = np.asarray(table.column("seq").to_numpy(), dtype=np.int64)
    ts = np.asarray(table.column("ts_ns").to_numpy(), dtype=np.int64)
    # State after each shown step = state after the last batch step at or before it.
    if len(st.rows):
        at = np.searchsorted(s.seq[st.rows], seq, side="right") - 1
        at_row = np.where(at >= 0, st.rows[np.maximum(at, 0)], NULL)
    else:
        at_row = np.full(n, NULL, dtype=np.int64)
    known = at_row >= 0
    after = at_row[known]
    frame = pd.DataFrame({
        "vm": identity.label(st.vm),
        "seq": seq,
        "ts_ns": ts,
        **{c: _strs(table, c) for c in ("thread", "thread_kind", "kind", "name", "device", "op")},
        "errno": _ints(table, "errno"),
        "action": _strs(table, "action"),
        "error_id": _ints(table, "error_id"),
        "value": _values(table),
    })
    codes = run_state(s, after) if st.runstate_rows else inferred_runstate(s, after)
    frame["runstate"] = _fill(known, runstate_names(codes), None)
    pend = _fill(known, pending(s, after), NULL)
    frame["pending"] = pd.arrays.IntegerArray(np.where(pend >= 0, pend, 0), pend < 0)
    if len(st.marked_seq):
        pos = np.minimum(np.searchsorted(st.marked_seq, seq), len(st.marked_seq) - 1)
        frame["findings"] = np.where(st.marked_seq[pos] == seq, st.marked_ids[pos], "").astype(object)
    else:
        frame["findings"] = np.full(n, "", dtype=object)
    frame["time"] = _time(ts)
    frame["src"] = _src(_strs(table, "src_file"), np.asarray(table.column("src_line").to_pylist(), dtype=object))
    frame["runstate_inferred"] = not st.runstate_rows
    frame["iostatus_inferred"] = not st.iostatus_rows
    obs = _fill(known, observed_runstate(s, after), NULL)
    _observed(frame, s, obs, "observed_runstate", "observed_runstate_seq", "observed_runstate_src",
              "observed_runstate_time", runstate=True)
    for code in st.devices:
        name = s.device_names[code]
        if device is not None and name != device:
            continue
        if st.iostatus_rows:
            io = iostatus(s, code, after, observed=False)
        else:
            io = inferred_iostatus(s, code, after)
        frame[IOSTATUS_PREFIX + name] = iostatus_names(_fill(known, io, NULL))
        row = _fill(known, observed_iostatus(s, code, after), NULL)
        _observed(frame, s, row, *(p + name for p in OBSERVED_PARTS), runstate=False)
    return frame


def _observed(frame: pd.DataFrame, s: Steps, row: np.ndarray, value: str, seq: str, src: str,
              time: str, *, runstate: bool) -> None:
    """The answer at batch row `row` (-1: none yet) as four columns of `frame`."""
    ok = row >= 0
    r = np.maximum(row, 0)
    if runstate:
        frame[value] = np.where(ok, runstate_names(s.runstate[r]) if len(s) else None, None)
    else:
        frame[value] = np.where(ok, iostatus_names(s.iostatus[r]) if len(s) else None, None)
    frame[seq] = pd.arrays.IntegerArray(np.where(ok, s.seq[r] if len(s) else 0, 0), ~ok)
    if len(s):
        names = np.array([*s.src_names, None], dtype=object)
        files = names[np.where(s.src_file[r] >= 0, s.src_file[r], len(s.src_names))]
        lines = np.where(s.src_line[r] >= 0, s.src_line[r], None).astype(object)
        frame[src] = np.where(ok, _src(files, lines), None)
        frame[time] = np.where(ok, _time(s.ts[r]), None)
    else:
        frame[src] = None
        frame[time] = None


def _fill(known: np.ndarray, values: np.ndarray, default: object) -> np.ndarray:
    """`values` at the `known` positions, `default` elsewhere."""
    out = np.full(len(known), default, dtype=values.dtype)
    out[known] = values
    return out


# ---------------------------------------------------------------------------------------------
# Windows: around a step, an episode, the Kth occurrence of an event
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A seq range of one VM to replay: `first`..`last`, and `origin_ns`, the time relative
    times are counted from (the centre step, or the episode's first milestone)."""

    vm: str
    first: int
    last: int
    origin_ns: int | None = None


def steps_around(
    paths_or_trace: Trace | PathArg | Sequence[PathArg], vm: str, seq: int, context: int = 10,
    *, host: str | None = None, run: str | None = None,
) -> pd.DataFrame:
    """The replay view of `context` steps before and after step `seq` of `vm` (by position in
    the VM's replay order, so gaps in seq do not shrink the window); `host` / `run` as for
    `replay`."""
    trace = _trace(paths_or_trace)
    key = identity.resolve(trace.vms, vm, host, run)
    bounds = _cached(("window", id(trace), key, seq, context), lambda: _window(trace, key, seq, context), trace)
    ident = identity.split(key)
    lo, hi = (seq, seq) if bounds is None else bounds
    return replay(trace, vm=ident.vm, host=ident.host or "", run=ident.run or "", from_seq=lo, to_seq=hi)


def around_window(trace: Trace, vm: str, seq: int, context: int) -> Window:
    """The window of `context` steps either side of step `seq` of `vm`. Raises InputError when
    the VM has no step `seq` (naming the range it has)."""
    found = _window(trace, vm, seq, context, exact=True)
    if found is None:
        lo, hi = seq_range(trace, vm)
        span = f"its steps run from seq {lo} to {hi}" if lo is not None else "it has no steps"
        raise InputError(f"--around {seq}: {identity.label(vm)} has no step with seq {seq} ({span})")
    return Window(vm, found[0], found[1])


def seq_range(trace: Trace, vm: str) -> tuple[int | None, int | None]:
    """First and last seq of `vm` (from the row groups' statistics where they tell)."""
    lo = hi = None
    for rg in trace.unit_of(vm).row_groups:
        if vm not in rg.vms:
            continue
        b = _stats(trace, rg, "seq")
        if b is None:
            t = read_row_group(trace.files[rg.file], rg.index, ["seq"], rg.count)
            if not t.num_rows:
                continue
            mm = pc.min_max(t.column("seq"))
            b = (int(mm["min"].as_py()), int(mm["max"].as_py()))
        lo = b[0] if lo is None else min(lo, b[0])
        hi = b[1] if hi is None else max(hi, b[1])
    return lo, hi


def vm_devices(trace: Trace, vm: str) -> list[str]:
    """The devices `vm`'s steps name (those the state columns and errors name), sorted."""
    s = _vm_state(trace, vm).s
    if vm not in s.vm_names:
        return []
    code = s.vm_names.index(vm)
    used = np.unique(s.device[(s.vm == code) & (s.device >= 0)])
    return sorted(s.device_names[c] for c in used.tolist())


def episode_window(trace: Trace, vm: str, number: int, context: int) -> Window:
    """The window of `vm`'s `number`-th error episode (1-based, in the order of the episodes
    table): from `context` steps before its first milestone to `context` after its last.
    Raises InputError when there is no such episode."""
    data = _unit_data(trace, vm)
    table = episodes(data.steps)
    ident = identity.split(vm)
    mine = table["vm"] == ident.vm
    for col, part in (("host", ident.host), ("run", ident.run)):
        if col in table.columns:
            mine &= table[col].fillna("") == (part or "")
    table = table[mine].reset_index(drop=True)
    if number < 1 or number > len(table):
        have = f"{len(table)} error episode(s)" if len(table) else "no error episode"
        raise InputError(f"--episode {number}: {identity.label(vm)} has {have}")
    row = table.iloc[number - 1]
    seqs = [int(row[f"seq_{m}"]) for m in MILESTONES if pd.notna(row[f"seq_{m}"])]
    times = [int(row[f"ts_{m}"]) for m in MILESTONES if pd.notna(row[f"ts_{m}"])]
    first = _window(trace, vm, min(seqs), context)
    last = _window(trace, vm, max(seqs), context)
    assert first is not None and last is not None
    return Window(vm, first[0], last[1], min(times) if times else None)


def event_names(trace: Trace, vm: str) -> list[str]:
    """The names of the QMP events `vm`'s steps carry, sorted."""
    s = _unit_data(trace, vm).steps
    if vm not in s.vm_names:
        return []
    code = s.vm_names.index(vm)
    used = np.unique(s.name[(s.vm == code) & s.is_kind("qmp_event") & (s.name >= 0)])
    return sorted(s.names[c] for c in used.tolist())


def event_window(trace: Trace, vm: str, name: str, nth: int, context: int) -> Window:
    """The window of `context` steps either side of the `nth` (1-based) QMP event `name` of
    `vm`, in replay order. Raises InputError when there is no such event or occurrence."""
    s = _unit_data(trace, vm).steps
    names = event_names(trace, vm)
    if name not in names:
        raise InputError(f"--event {name}: {identity.label(vm)} has no such event (its events: {', '.join(names) or 'none'})")
    code = s.vm_names.index(vm)
    rows = np.flatnonzero((s.vm == code) & s.event(name))
    if nth < 1 or nth > len(rows):
        raise InputError(f"--nth {nth}: {identity.label(vm)} has {len(rows)} {name} event(s)")
    seq = int(s.seq[rows[nth - 1]])
    found = _window(trace, vm, seq, context)
    assert found is not None
    return Window(vm, found[0], found[1])


def _extreme(values: np.ndarray, k: int, *, largest: bool) -> np.ndarray:
    """The `k` largest (or smallest) distinct `values`, sorted: a partition, then a unique of
    the few left (a unique of a million seqs per row group costs seconds)."""
    n = len(values)
    if n > k:
        part = np.partition(values, n - k)[n - k:] if largest else np.partition(values, k - 1)[:k]
        out = np.unique(part)
        if len(out) < k:  # repeated seqs among them: decide over all values
            out = np.unique(values)
    else:
        out = np.unique(values)
    return out[-k:] if largest else out[:k]


def _window(trace: Trace, vm: str, seq: int, context: int, *, exact: bool = False) -> tuple[int, int] | None:
    """(first, last) seq of the window of `context` steps either side of `seq` in `vm`'s replay
    order, or None when the VM has no steps (with `exact`: no step `seq`).

    Streams the VM's `seq` column row group by row group, keeping only the `context` largest
    seqs below `seq` and the `context` + 1 smallest from `seq` on: memory is one row group's
    seqs, never the VM's (20 M steps would otherwise be materialized to show 21)."""
    unit = trace.unit_of(vm)
    below = np.zeros(0, dtype=np.int64)
    above = np.zeros(0, dtype=np.int64)
    for rg in unit.row_groups:
        if vm not in rg.vms:
            continue
        shared = len(rg.vms) > 1
        t = read_row_group(trace.files[rg.file], rg.index, ["seq", *_IDENTITY] if shared else ["seq"],
                           rg.count)
        s = np.asarray(t.column("seq").to_numpy(), dtype=np.int64)
        if shared:
            s = s[_rows_of(trace, rg, t, vm)]
        del t
        if context:
            below = _extreme(np.concatenate([below, s[s < seq]]), context, largest=True)
        above = _extreme(np.concatenate([above, s[s >= seq]]), context + 1, largest=False)
    if exact and not (len(above) and above[0] == seq):
        return None
    if not len(below) and not len(above):
        return None
    lo = int(below[0]) if len(below) else int(above[0])
    hi = int(above[-1]) if len(above) else int(below[-1])
    return lo, hi


__all__ = [
    "CHUNK_ROWS",
    "EPISODE_COLUMNS",
    "IOSTATUS_PREFIX",
    "LATENCIES",
    "MILESTONES",
    "OBSERVED_PARTS",
    "OBSERVED_PREFIX",
    "REPLAY_COLUMNS",
    "Window",
    "around_window",
    "episode_window",
    "episodes",
    "event_names",
    "event_window",
    "replay",
    "replay_chunks",
    "seq_range",
    "start_ns",
    "steps_around",
    "vm_devices",
    "vm_keys",
]


def start_ns(trace: Trace, vm: str) -> int | None:
    """The earliest ts_ns of `vm`'s steps (from the row groups' statistics where they tell, so
    a row group shared with other VMs may give an earlier time); None without steps."""
    lo = None
    for rg in trace.unit_of(vm).row_groups:
        if vm not in rg.vms:
            continue
        b = _stats(trace, rg, "ts_ns")
        if b is None:
            t = read_row_group(trace.files[rg.file], rg.index, ["ts_ns"], rg.count)
            if not t.num_rows:
                continue
            b = (int(pc.min(t.column("ts_ns")).as_py()), 0)
        lo = b[0] if lo is None else min(lo, b[0])
    return lo
