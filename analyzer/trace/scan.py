"""Reading a unit: streaming its row groups into `Steps` batches and integrity facts.

This is the hot path of a check: every row of the trace passes through here once. Each row
group is decoded (`analyzer.trace.decode`), its order and timestamps are checked over every row
with column diffs, and only the rows a rule reads are kept: successful I/O, the bulk of a
trace, is dropped by a vectorized mask right after the read. A batch of VMs is handed to the
caller as soon as the last row group holding them has been read, so memory holds one row group
plus the kept rows of the VMs still being read.

A row group of interleaved VMs (a recorder of several VMs, a fleet's stream sorted by time) is
put in (vm, seq) order by a stable sort on the VM alone, for the seq checks; its timestamps are
checked in that order too, unless it was read in time order, where no thread's clock can go back
and each thread's last step is carried from the rows as read.

A unit whose rows are not already in (vm, seq) order across row groups (shuffled files,
duplicated steps) is read again and sorted as a whole; the result is the same whatever the file
order, row-group size or partitioning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analyzer.steps import VOCABULARIES, K, Steps
from analyzer.trace.arrow import source_location
from analyzer.trace.decode import RowGroupDecoder, UnitCodes, vm_keys
from analyzer.trace.files import RowGroup, parquet_file, read_row_group, read_shared_row_group
from analyzer.trace.integrity import (
    ClockBackwards,
    RepeatedSeq,
    StepFact,
    clock_back,
    repeated_runs,
    repeated_within_a_file,
    seq_runs,
)
from analyzer.trace.plan import Trace, Unit
from tracer.errors import TraceSchemaError
from tracer.schema import REQUIRED_COLUMNS

R = TypeVar("R")

#: VMs read to their end are judged together once the kept rows reach this many (or the unit
#: ends): a batch costs its rules' and episodes' fixed overhead once, not once per row group.
BATCH_ROWS = 100_000


@dataclass
class UnitData:
    """What reading one unit gives: the rule-relevant steps, integrity facts, counts."""

    steps: Steps
    #: Repeated seqs and clocks going back, in the order reading met them.
    integrity: list[StepFact]
    rows: int
    #: Step kinds and "kind:name" entries present (for rule applicability).
    present: set[str] = field(default_factory=set)


def scan_unit(
    trace: Trace,
    unit: Unit,
    columns: Sequence[str],
    judge: Callable[[UnitData], R],
    *,
    progress: Callable[[int], None] | None = None,
    observe: Callable[[RowGroup | None, pa.Table | None], None] | None = None,
) -> list[R]:
    """Stream one unit and `judge` its VMs in batches, a batch once the last row group holding
    its VMs has been read and about `BATCH_ROWS` kept rows are waiting: memory holds one row
    group plus the kept rows of the VMs still being read or waiting. A unit not in (vm, seq)
    order is judged once, sorted as a whole..

    `observe(rg, table)` sees every row group as read (every row of the unit's VMs, not only
    those kept), so that another consumer of the rows (a report's statistics) needs no read of
    its own; it is called with ``(None, None)`` when the unit is read again from the start
    (rows out of order)."""
    reader = RowGroupDecoder(trace, unit, columns)
    state = _Streaming(reader)
    last_group: dict[str, int] = {}
    for i, rg in enumerate(unit.row_groups):
        for vm in rg.vms:
            if vm in unit.vm_set:
                last_group[vm] = i
    done_after: dict[int, list[int]] = {}
    for vm, i in last_group.items():
        done_after.setdefault(i, []).append(reader.enc.vm.codes[vm])
        state.last_group[reader.enc.vm.codes[vm]] = i
    results: list[R] = []
    done: list[int] = []  # VMs read to their end, not yet judged
    groups = unit.row_groups
    reported = 0

    def read(i: int) -> tuple[RowGroup, pa.Table, dict[str, np.ndarray]]:
        rg, table = read_own(trace, unit, groups[i], reader.columns)
        return rg, table, reader.core(rg, table)

    # Read the next row group and decode its core columns while this one is checked (Parquet
    # decoding and most of `core` release the GIL; `core` runs in row-group order, in this one
    # thread, so the codes it gives threads are the same as when the main thread ran it, and its
    # errors come at the same row group).
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = pool.submit(read, 0) if groups else None
        try:
            for i, rg in enumerate(groups):
                assert ahead is not None
                rg, table, core = ahead.result()
                ahead = pool.submit(read, i + 1) if i + 1 < len(groups) else None
                state.index = i
                state.add(rg, table, core)
                if observe is not None:
                    observe(rg, table)
                del table
                done.extend(done_after.get(i, ()))
                if done and (i + 1 == len(groups) or state.kept_rows() >= BATCH_ROWS):
                    results.append(judge(state.flush(np.array(sorted(done), dtype=np.int32))))
                    done = []
                if progress is not None:
                    progress(rg.rows)
                    reported += rg.rows
            if progress is not None and reported < unit.rows:  # unit.rows was an estimate
                progress(unit.rows - reported)
            return results
        except _Unordered:
            if ahead is not None:
                ahead.cancel()
    if observe is not None:
        observe(None, None)
    result = judge(_read_sorted(trace, unit, columns, observe))
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


def read_own(trace: Trace, unit: Unit, rg: RowGroup, columns: Sequence[str]) -> tuple[RowGroup, pa.Table]:
    """Row group `rg` as `unit` sees it: all of it, or, when it also holds other units' VMs,
    only the rows of the unit's VMs (with `rg` saying so: its VMs and rows the kept ones, its
    `rows_of` where they lie in the row group, for naming a row in an error)."""
    wanted = _not_all_null(trace, rg, columns)
    if not unit.shared(rg):
        return rg, read_row_group(trace.files[rg.file], rg.index, wanted, rg.count)
    table = read_shared_row_group(trace.files[rg.file], rg, wanted)
    idx, keys = vm_keys(table, trace.files[rg.file].run)
    lut = np.array([k in unit.vm_set for k in keys] + [False], dtype=bool)
    rows = np.flatnonzero(lut[idx])
    mine = tuple(v for v in rg.vms if v in unit.vm_set)
    rg = replace(rg, rows=len(rows), vms=mine, rows_of=rows)
    if len(rows) and int(rows[-1]) - int(rows[0]) + 1 == len(rows):  # one stretch (a file sorted by VM)
        return rg, table.slice(int(rows[0]), len(rows))
    return rg, table.take(pa.array(rows))


def _not_all_null(trace: Trace, rg: RowGroup, columns: Sequence[str]) -> list[str]:
    """`columns` without the optional ones that the footer's statistics say are null in every
    row of `rg` (a trace without source locations, a recorder's mostly-empty columns): an
    absent optional column decodes as all null, and decoding a million nulls costs as much as
    a column of values. Required columns are always read (their nulls are errors)."""
    md = parquet_file(trace.files[rg.file].path).metadata
    names = {md.schema.column(i).name: i for i in range(md.num_columns)}
    out = []
    for c in columns:
        j = names.get(c)
        if c not in REQUIRED_COLUMNS and j is not None and all(
                _all_null(md.row_group(g).column(j), md.row_group(g).num_rows)
                for g in range(rg.index, rg.index + rg.count)):
            continue
        out.append(c)
    return out


def _all_null(chunk: pq.ColumnChunkMetaData, rows: int) -> bool:
    stats = chunk.statistics
    return stats is not None and stats.null_count == rows


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

    def __init__(self, reader: RowGroupDecoder) -> None:
        self.reader = reader
        n_vm = len(reader.unit.vms)
        self.last_seq = np.zeros(n_vm, dtype=np.int64)
        self.seen = np.zeros(n_vm, dtype=bool)
        #: (vm, thread) -> (seq, ts, src) of its last step so far.
        self.carry: dict[tuple[int, int], tuple[int, int, str | None]] = {}
        self.vm_max_ts = np.zeros(n_vm, dtype=np.int64)
        self.seen_ts = np.zeros(n_vm, dtype=bool)
        self.kept: list[_Kept] = []
        self.integrity: list[StepFact] = []
        self.rows = 0
        self.present: set[str] = set()
        #: The latest timestamp of any VM so far (None: none yet).
        self.max_ts: int | None = None
        #: Per VM, the index of the last row group holding its rows; the group being added.
        self.last_group = np.full(n_vm, np.iinfo(np.int64).max, dtype=np.int64)
        self.index = 0

    def add(self, rg: RowGroup, table: pa.Table, core: dict[str, np.ndarray]) -> None:
        """Check one row group's order and timestamps, keep the rows the rules read. `core`:
        its `RowGroupDecoder.core` (decoded by the read-ahead thread)."""
        n = table.num_rows
        self.rows += n
        if not n:
            return
        seq, ts, thr = core["seq"], core["ts_ns"], core["thread"]
        pos: np.ndarray | None = None
        change: np.ndarray | None = None
        contiguous = True  # VM after VM, each in seq order (checked first: no sort needed)
        in_time = False  # read in time order (see `_in_time`)
        if len(rg.vms) == 1:
            starts = np.zeros(1, dtype=np.int64)
        else:
            change = core["vm"][1:] != core["vm"][:-1]
            contiguous = np.count_nonzero(change) + 1 == len(rg.vms)  # else VMs interleave
            starts = np.concatenate([[0], np.flatnonzero(change) + 1]) if contiguous else np.zeros(0, dtype=np.int64)
        if not contiguous or not np.all((seq[1:] > seq[:-1]) if change is None else
                                        (seq[1:] > seq[:-1]) | change):
            # Not VM after VM in seq order: sort this group (a recorder of several VMs
            # interleaves them); duplicates or overlaps still need the whole-unit sort.
            vm_unit = self.reader.unit_codes(core, "vm")
            in_time = self._in_time(core, ts)
            reading_seq, reading_vm = seq, vm_unit
            by_vm = _by_vm(vm_unit, seq)
            if by_vm is None:
                in_time = False
                pos = np.lexsort((seq, vm_unit))
                seq, vm_unit = seq[pos], vm_unit[pos]
            else:
                pos, seq, vm_unit = by_vm
            if in_time:
                # Read in time order (a fleet's event stream sorted by time), each VM's rows in
                # seq order: no thread's clock goes back here, and ts and thread stay as read.
                self._carry_in_time(table, core, reading_seq, ts, thr, reading_vm)
            else:
                ts, thr = ts[pos], thr[pos]
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
        if not in_time:
            self._timestamps(table, core, seq, ts, thr, starts, block_vm, change, pos)
        self.keep_rows(rg, table, core, np.flatnonzero(core["keep"]))

    def _in_time(self, core: dict[str, np.ndarray], ts: np.ndarray) -> bool:
        """Whether a row group's timestamps never decrease as read, from no lower than every
        VM's latest so far (and its (vm, thread) keys are few enough to count densely)."""
        dense = len(self.seen) * max(len(core["thread_map"]), 1)
        return (dense <= 4 * len(ts) + 65_536 and bool(np.all(ts[1:] >= ts[:-1]))
                and (self.max_ts is None or int(ts[0]) >= self.max_ts))

    def _carry_in_time(self, table: pa.Table, core: dict[str, np.ndarray], seq: np.ndarray,
                       ts: np.ndarray, thr: np.ndarray, vm: np.ndarray) -> None:
        """The carry of a row group `_in_time`, rows as read: each VM's latest timestamp and
        the last step of each (vm, thread), with no reordering of the rows."""
        n_thr = max(len(core["thread_map"]), 1)
        last = np.full(len(self.seen) * n_thr, -1, dtype=np.int64)
        np.maximum.at(last, vm.astype(np.int64) * n_thr + thr, _arange(len(ts)))
        keys = np.flatnonzero(last >= 0)
        rows = last[keys]
        vms = keys // n_thr
        latest = np.full(len(self.seen), -1, dtype=np.int64)
        np.maximum.at(latest, vms, rows)
        present = np.flatnonzero(latest >= 0)
        self.vm_max_ts[present] = ts[latest[present]]  # (no lower than any carried: `_in_time`)
        self.seen_ts[present] = True
        self.max_ts = int(ts[-1])
        self._remember(table, core, rows, vms, thr[rows], seq, ts, None)

    def _remember(self, table: pa.Table, core: dict[str, np.ndarray], rows: np.ndarray,
                  vms: np.ndarray, threads: np.ndarray, seq: np.ndarray, ts: np.ndarray,
                  pos: np.ndarray | None) -> None:
        """Carry `rows` (each the last of its (vm, thread) here) as those threads' last steps."""
        if _has_sources(table):
            at = rows if pos is None else pos[rows]
            src: list[str | None] = [source_location(table, i) for i in at.tolist()]
        else:
            src = [None] * len(rows)
        keys = zip(vms.tolist(), core["thread_map"][threads].tolist(), strict=True)
        self.carry.update(zip(keys, zip(seq[rows].tolist(), ts[rows].tolist(), src, strict=True), strict=True))

    def _timestamps(self, table: pa.Table, core: dict[str, np.ndarray],
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
        # Only the VMs with rows in later row groups need a carry (none in a recorder's
        # segments of whole VMs, the one at the cut in a file sorted by VM).
        going_on = np.flatnonzero(self.last_group[block_vm] > self.index)
        if fast and not len(going_on):
            return
        sizes = np.diff(np.append(starts, n))
        # Rows are keyed by (block, thread); on the fast path only the blocks going on are.
        whole = not fast or len(going_on) == nb
        block: np.ndarray | None = None
        if whole and nb > 1:
            block = np.repeat(np.arange(nb), sizes)
        key = (thr.astype(np.int64) if block is None else block * n_thr + thr) if whole else None
        has_src = _has_sources(table)
        enc = self.reader.enc

        def src(i: int) -> str | None:
            return source_location(table, int(pos[i]) if pos is not None else i) if has_src else None

        def thread_code(i: int) -> int:
            return int(core["thread_map"][thr[i]])

        def vm_code(i: int) -> int:
            return int(block_vm[0 if nb == 1 else int(np.searchsorted(starts, i, side="right")) - 1])

        if not fast:
            earlier, later, first = clock_back(key, ts)
            found: list[tuple[int, int, int, str | None]] = []  # (row, prev seq, prev ts, prev src)
            for a, i in zip(earlier.tolist(), later.tolist(), strict=True):
                found.append((i, int(seq[a]), int(ts[a]), src(a)))
            for i in first:  # a thread's first row here: after its carried last step
                c = self.carry.get((vm_code(int(i)), thread_code(int(i))))
                if c is not None and ts[i] < c[1]:
                    found.append((int(i), c[0], c[1], c[2]))
            for i, prev_seq, prev_ts, prev_src in sorted(found):
                self.integrity.append(ClockBackwards(
                    vm=enc.vm.names[vm_code(i)], thread=enc.thread.names[thread_code(i)],
                    prev_seq=prev_seq, prev_ts=prev_ts, seq=int(seq[i]), ts=int(ts[i]),
                    src=tuple(x for x in (prev_src, src(i)) if x is not None),
                ))
        # Carry: each VM's latest timestamp, and the last step of every (vm, thread).
        block_max = np.maximum.reduceat(ts, starts)
        seen = self.seen_ts[block_vm]
        self.vm_max_ts[block_vm] = np.where(seen, np.maximum(self.vm_max_ts[block_vm], block_max), block_max)
        self.seen_ts[block_vm] = True
        top = int(block_max.max())
        self.max_ts = top if self.max_ts is None else max(self.max_ts, top)
        last = np.full(nb * n_thr, -1, dtype=np.int64)
        if key is not None and len(going_on) == nb:
            np.maximum.at(last, key, _arange(n))
        elif len(going_on):
            rows = np.concatenate([_arange(n)[starts[b]:starts[b] + sizes[b]] for b in going_on])
            blocks = np.repeat(going_on, sizes[going_on])
            np.maximum.at(last, blocks * n_thr + thr[rows], rows)
        keys = np.flatnonzero(last >= 0)
        self._remember(table, core, last[keys], block_vm[keys // n_thr], keys % n_thr, seq, ts, pos)

    def keep_rows(self, rg: RowGroup, table: pa.Table, core: dict[str, np.ndarray], keep: np.ndarray) -> None:
        kinds = VOCABULARIES["kind"]
        for index, k in enumerate(core["kind_map"].tolist()):  # a kind new here, if any row has it
            if k >= 0 and kinds[k] not in self.present and bool(np.any(core["kind"] == index)):
                self.present.add(kinds[k])
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

    def kept_rows(self) -> int:
        return sum(len(k.core["seq"]) for k in self.kept)

    def flush(self, vms: np.ndarray) -> UnitData:
        """Hand over the VMs `vms` (codes), whose rows have all been read: their kept rows,
        the integrity facts and row counts gathered since the last flush."""
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


def _has_sources(table: pa.Table) -> bool:
    """Whether a row group names where its rows came from (an imported trace's src_file)."""
    return "src_file" in table.column_names and table.column("src_file").null_count < table.num_rows


def _by_vm(vm: np.ndarray, seq: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The order of rows by (vm, seq) when each VM's rows come in increasing seq order (VMs
    interleaved in time), and `seq` and `vm` in that order; else None. A stable sort by vm
    alone gives it then (Arrow's, a counting sort for a small range of codes: linear, and
    3-4x faster than numpy's radix sort); rows out of seq order or repeated need the sort by
    every key. (The columns in order come along: gathering a row group's column in another
    order is what this costs most.)"""
    pos = np.asarray(pc.array_sort_indices(pa.array(vm)).to_numpy(), dtype=np.int64)
    s = seq[pos]
    # each code as many times as it occurs, in order: `vm[pos]` without its random reads
    v = np.repeat(np.arange(int(vm.max()) + 1 if len(vm) else 0, dtype=vm.dtype), np.bincount(vm))
    if np.all((s[1:] > s[:-1]) | (v[1:] != v[:-1])):
        return pos, s, v
    return None


def _in_order(vm: np.ndarray, seq: np.ndarray) -> bool:
    """Whether rows are in strictly increasing (vm, seq) order already."""
    return bool(np.all((vm[1:] > vm[:-1]) | ((vm[1:] == vm[:-1]) & (seq[1:] > seq[:-1]))))


def _named_kinds(steps: Steps) -> set[str]:
    """"kind:name" entries for the QMP rows of a batch (replies named after their command) and the
    management layer's (mgmt_event: libvirt's event and handler names)."""
    out: set[str] = set()
    for kind in ("qmp_event", "qmp_command", "qmp_reply", "mgmt_event"):
        mask = steps.kind == K[kind]
        names = steps.reply_name[mask] if kind == "qmp_reply" else steps.name[mask]
        for code in np.unique(names):
            if code >= 0:
                out.add(f"{kind}:{steps.names[code]}")
    return out


def _build_steps(enc: UnitCodes, kept: list[_Kept]) -> Steps:
    if not kept:
        steps = Steps.empty()
    else:
        def cat(part: str, col: str) -> np.ndarray:
            return np.concatenate([getattr(k, part)[col] for k in kept])

        vm, seq, ts = cat("core", "vm"), cat("core", "seq"), cat("core", "ts_ns")
        kind, thread = cat("core", "kind"), cat("core", "thread")
        d = {c: cat("detail", c) for c in kept[0].detail}
        # Order by (vm, seq, ts, thread, kind); where (vm, seq) is unique (always, but for
        # repeated steps across files) the later keys break no tie.
        in_order = _in_order(vm, seq)
        by_vm = None if in_order else _by_vm(vm, seq)
        order = None if by_vm is None else by_vm[0]
        if order is None and not in_order:
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
        )
        if order is not None:
            steps = steps.take(order)
    steps.vm_names = enc.vm.names
    steps.thread_names = enc.thread.names
    steps.device_names = enc.device.names
    steps.names = enc.name.names
    steps.src_names = enc.src_file.names
    return steps


_ARANGE = np.arange(0, dtype=np.int64)


def _arange(n: int) -> np.ndarray:
    """np.arange(n) from a cached buffer (one allocation per process, not per row group)."""
    global _ARANGE
    if len(_ARANGE) < n:
        _ARANGE = np.arange(max(n, 2 * len(_ARANGE)), dtype=np.int64)
    return _ARANGE[:n]


def _rank(names: list[str]) -> np.ndarray:
    """rank[code] = position of names[code] in sorted order (deterministic tie-breaks)."""
    order = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    return rank


@dataclass
class _Sorted:
    """A whole unit's rows sorted by (vm, seq), as unit codes, with where each row came from:
    `which` (index into `tables`) and `local` (row within that table)."""

    tables: list[tuple[RowGroup, pa.Table]]
    vm: np.ndarray
    seq: np.ndarray
    ts: np.ndarray
    thread: np.ndarray
    which: np.ndarray
    local: np.ndarray

    def src(self, row: int) -> str | None:
        return source_location(self.tables[int(self.which[row])][1], int(self.local[row]))


def _read_sorted(trace: Trace, unit: Unit, columns: Sequence[str],
                 observe: Callable[[RowGroup | None, pa.Table | None], None] | None = None) -> UnitData:
    """The slow path: read the whole unit, sort it by (vm, seq), report duplicated seqs."""
    reader = RowGroupDecoder(trace, unit, columns)
    state = _Streaming(reader)
    tables, cores = [], []
    for whole in unit.row_groups:
        rg, table = read_own(trace, unit, whole, reader.columns)
        if observe is not None:
            observe(rg, table)
        tables.append((rg, table))
        cores.append(reader.core(rg, table))
    seq, ts = (np.concatenate([c[k] for c in cores]) for k in ("seq", "ts_ns"))
    vm, thread, kind = (np.concatenate([reader.unit_codes(c, k) for c in cores])
                        for k in ("vm", "thread", "kind"))
    which = np.concatenate([np.full(len(c["seq"]), i, dtype=np.int64) for i, c in enumerate(cores)])
    local = np.concatenate([np.arange(len(c["seq"]), dtype=np.int64) for c in cores])
    thread_rank = _rank(reader.enc.thread.names)[thread] if len(thread) else thread
    order = np.lexsort((kind, thread_rank, ts, seq, vm))
    rows = _Sorted(tables, *(a[order] for a in (vm, seq, ts, thread, which, local)))
    repeated, copied = _repeated_seqs(trace, reader.enc, rows)
    clock = _clock_backwards_sorted(reader.enc, rows, copied)
    state.integrity.extend(_fold_clock_backs(reader.enc, repeated, clock))
    again = _second_copies(rows, copied)
    for i, ((rg, table), core) in enumerate(zip(tables, cores, strict=True)):
        keep = core["keep"]
        if again is not None:  # a step recorded twice is judged once (its seq-unique says so)
            keep = keep.copy()
            keep[rows.local[again[rows.which[again] == i]]] = False
        state.keep_rows(rg, table, core, np.flatnonzero(keep))
    state.rows = len(seq)
    return state.finish()


def _clock_backwards_sorted(enc: UnitCodes, rows: _Sorted, copied: np.ndarray | None = None
                            ) -> list[ClockBackwards | int]:
    """ts-monotonic-per-thread over a whole unit already sorted by (vm, seq). A step going back
    from or to a row whose seq is repeated in another file (`copied`) is only the interleaving
    of two copies: it is counted (an int per VM code, folded into the seq-unique fact), not
    reported on its own."""
    n_thr = len(enc.thread.names) + 1
    earlier, later, _ = clock_back(rows.vm.astype(np.int64) * n_thr + rows.thread, rows.ts)
    out: list[ClockBackwards | int] = []
    if copied is not None and len(earlier):
        echo = copied[earlier] | copied[later]
        out.extend(int(v) for v in rows.vm[later[echo]])
        earlier, later = earlier[~echo], later[~echo]
    for a, c in zip(earlier.tolist(), later.tolist(), strict=True):
        out.append(ClockBackwards(
            vm=enc.vm.names[int(rows.vm[c])], thread=enc.thread.names[int(rows.thread[c])],
            prev_seq=int(rows.seq[a]), prev_ts=int(rows.ts[a]), seq=int(rows.seq[c]),
            ts=int(rows.ts[c]), src=tuple(x for x in (rows.src(a), rows.src(c)) if x is not None),
        ))
    return out


def _second_copies(rows: _Sorted, copied: np.ndarray | None) -> np.ndarray | None:
    """Positions (in `rows`' order) of every occurrence of a repeated (vm, seq) but its first
    in replay order (ties: the file first by path), None when no seq is repeated."""
    if copied is None:
        return None
    first = np.concatenate([[True], (rows.vm[1:] != rows.vm[:-1]) | (rows.seq[1:] != rows.seq[:-1])])
    return np.flatnonzero(copied & ~first)


def _fold_clock_backs(enc: UnitCodes, repeated: list[RepeatedSeq],
                      clock: list[ClockBackwards | int]) -> list[StepFact]:
    """The facts of a sorted unit: clock steps that only echo repeated seqs (ints: their VM's
    code) are counted into that VM's first seq-unique fact."""
    echoes: dict[str, int] = {}
    for c in clock:
        if isinstance(c, int):
            echoes[enc.vm.names[c]] = echoes.get(enc.vm.names[c], 0) + 1
    out: list[StepFact] = []
    for r in repeated:
        n = echoes.pop(r.vm, 0)
        out.append(replace(r, clock_backs=n) if n else r)
    out.extend(c for c in clock if not isinstance(c, int))
    return out


def _repeated_seqs(trace: Trace, enc: UnitCodes, rows: _Sorted) -> tuple[list[RepeatedSeq], np.ndarray | None]:
    """The repeated (vm, seq)s of a whole unit sorted by (vm, seq), one fact per (VM, set of
    files holding them), and which rows hold a repeated seq (None: none); a seq repeated inside
    one file is a schema error (exit 2), as `tracer.schema.validate` says."""
    start, length = seq_runs(rows.vm, rows.seq)
    repeated = length > 1
    if not repeated.any():
        return [], None
    file_of = np.array([rg.file for rg, _ in rows.tables], dtype=np.int64)[rows.which]
    m = repeated_within_a_file(start, length, file_of)
    if m is not None:
        rg = rows.tables[int(rows.which[m])][0]
        raise TraceSchemaError(
            f"column 'seq': duplicate seq {int(rows.seq[m])} within vm '{enc.vm.names[int(rows.vm[m])]}'",
            path=trace.files[rg.file].path, row=rg.row(rows.local[m]),
        )
    group, sets = repeated_runs(start, length, file_of, rows.vm)
    runs = np.flatnonzero(group >= 0)
    by_group = runs[np.argsort(group[runs], kind="stable")]  # each group's runs in (vm, seq) order
    bounds = np.flatnonzero(np.concatenate([[True], np.diff(group[by_group]) != 0]))
    out: list[RepeatedSeq] = []
    for b, e in zip(bounds.tolist(), [*bounds[1:].tolist(), len(by_group)], strict=True):
        first, last = int(start[by_group[b]]), int(start[by_group[e - 1]])
        out.append(RepeatedSeq(
            vm=enc.vm.names[int(rows.vm[first])], seq=int(rows.seq[first]), ts=int(rows.ts[first]),
            thread=enc.thread.names[int(rows.thread[first])], count=int(length[by_group[b]]),
            paths=tuple(sorted({trace.files[f].path for f in sets[int(group[by_group[b]])]})),
            last=int(rows.seq[last]), seqs=e - b,
        ))
    out.sort(key=lambda r: (r.vm, r.seq))
    copied = np.repeat(repeated, length)
    return out, copied
