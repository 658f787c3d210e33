"""The plan of a trace: its validated files, and the *units* of work they split into.

`load` validates every file and groups its row groups into units, sets of whole VMs (a VM is
never split between units), so that every VM's replay is independent and memory is bounded by
a unit (one VM's share of the trace, or a few small VMs packed together). A `Trace` is only
paths and numbers: cheap to keep, to pickle, and to send to the workers of a cluster, each of
which reads its own units (`analyzer.trace.scan`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analyzer import identity
from analyzer.result import InputInfo
from analyzer.trace.arrow import plain
from analyzer.trace.files import (
    IDENTITY_COLUMNS,
    RowGroup,
    TraceFile,
    may_hold,
    open_trace_file,
    read_row_group,
    row_keys,
    sha256,
    shared_parquet,
)
from analyzer.trace.integrity import EmptyTrace, RecordingProblem, TruncatedInput
from analyzer.trace.sources import PathArg, SourceFile, expand
from tracer import tracedir
from tracer.errors import InputError, TraceSchemaError
from tracer.schema import COLUMN_BY_NAME, COLUMNS, describe_type, wrong_type

#: Target rows per unit when packing small VMs together (bounds memory and per-unit overhead).
UNIT_ROWS = 4_000_000


#: A component of VMs spread over shared row groups (a file sorted by time) is split for the
#: workers only from this many on: each piece reads the whole component, and on 2 cores two
#: pieces took longer than one (its read-ahead thread already overlaps reading and judging).
SPREAD_PARTS = 3


@dataclass(frozen=True)
class Unit:
    """Whole VMs and every row group holding their steps."""

    vms: tuple[str, ...]
    #: Every row group holding their steps; one holding other VMs too (`shared`) is read
    #: keeping only this unit's rows.
    row_groups: tuple[RowGroup, ...]
    #: Rows of these VMs (estimated where they share row groups with other VMs' rows).
    rows: int

    @cached_property
    def vm_set(self) -> frozenset[str]:
        return frozenset(self.vms)

    def shared(self, rg: RowGroup) -> bool:
        """Whether row group `rg` also holds rows of VMs outside this unit."""
        return not (rg.vms[0] in self.vm_set if len(rg.vms) == 1 else self.vm_set.issuperset(rg.vms))


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
    #: The recorder directories among the inputs (each verified against its manifest).
    recordings: tuple[str, ...] = ()
    #: Every row group of the inputs, for planning again (`split`).
    row_groups: tuple[RowGroup, ...] = field(default=(), repr=False, compare=False)
    unit_rows: int = UNIT_ROWS

    def split(self, parts: int) -> list[Unit]:
        """The units for `parts` workers: `units` unless a component of VMs spread over
        shared row groups (a file sorted by time) is better read by `parts` units at once."""
        if parts <= 1 or not self.row_groups:
            return self.units
        return pack_units(list(self.row_groups), self.unit_rows, parts)

    @property
    def inputs(self) -> list[InputInfo]:
        if self._digests is None:
            return [f.info for f in self.files]
        return [replace(f.info, sha256=d.result()) for f, d in zip(self.files, self._digests, strict=True)]

    def without_digests(self) -> Trace:
        """This trace without its pending input digests (its `inputs` then have no sha256): what
        a worker needs, and it pickles without waiting for the hashing."""
        return replace(self, _digests=None)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self._digests is not None:  # futures do not travel: hand over the digests
            state["files"] = [replace(f, info=i) for f, i in zip(self.files, self.inputs, strict=True)]
        state["_digests"] = None
        return state

    @property
    def truncated(self) -> list[TruncatedInput]:
        """(input, VMs it holds) for every input without a completion mark, sorted."""
        groups: dict[str, set[str]] = {}
        interrupted: set[str] = set()
        incomplete = {fi for fi, f in enumerate(self.files) if not f.complete}
        for fi in incomplete:
            f = self.files[fi]
            groups.setdefault(f.group, set())
            if f.interrupted:
                interrupted.add(f.group)
        for u in self.units:
            for rg in u.row_groups:
                if rg.file in incomplete:
                    groups[self.files[rg.file].group].update(rg.vms)
        return [TruncatedInput(g, tuple(sorted(v)), g in interrupted) for g, v in sorted(groups.items())]

    @property
    def empty(self) -> list[EmptyTrace]:
        """[EmptyTrace(inputs)] when the trace holds no step at all, else []."""
        if self.rows:
            return []
        return [EmptyTrace(tuple(sorted({f.group for f in self.files})))]

    def recording_problems(self) -> list[RecordingProblem]:
        """How each recorder directory among the inputs differs from its manifest (missing,
        altered, unlisted or outside segments, row counts), in directory order; [] when every
        one matches. The SHA-256 of each segment is the one hashed for the inputs' provenance
        (`inputs`), so verifying costs no second read of the data."""
        if not self.recordings:
            return []
        digest_of = {f.path: i.sha256 for f, i in zip(self.files, self.inputs, strict=True)}
        rows_of = {f.path: f.rows for f in self.files}
        out: list[RecordingProblem] = []
        for d in self.recordings:
            names = {os.path.basename(p): p for p in digest_of if os.path.dirname(p) == d}
            problems = tracedir.verify_trace_dir(
                d, digests={n: digest_of[p] for n, p in names.items() if digest_of[p]},
                rows={n: rows_of[p] for n, p in names.items()},
            )
            out.extend(RecordingProblem(d, p.kind, p.segment, p.detail) for p in problems)
        return out

    def unit_of(self, vm: str) -> Unit:
        """The unit of the VM whose identity key (`analyzer.identity`) is `vm`."""
        for u in self.units:
            if vm in u.vms:
                return u
        shown = ", ".join(identity.label(k) for k in self.vms[:10])
        raise InputError(f"no VM named {identity.label(vm)!r} in the trace (VMs: {shown}"
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
        read = list(dict.fromkeys([*cols, *IDENTITY_COLUMNS, "seq", "ts_ns"]))
        units = [self.unit_of(vm)] if vm is not None else self.units
        parts = []
        for u in units:
            for rg in u.row_groups:
                if vm is not None and vm not in rg.vms:
                    continue
                if not may_hold(self.files[rg.file], rg, from_seq, to_seq):
                    continue
                t = read_row_group(self.files[rg.file], rg.index, read, rg.count)
                mask = None
                if vm is not None and len(rg.vms) > 1:
                    idx, keys = row_keys(t, self.files[rg.file].run)
                    mask = pa.array(idx == (keys.index(vm) if vm in keys else -1))
                elif vm is None and u.shared(rg):
                    idx, keys = row_keys(t, self.files[rg.file].run)
                    lut = np.array([k in u.vm_set for k in keys] + [False], dtype=bool)
                    mask = pa.array(lut[idx])
                for op, bound in ((pc.greater_equal, from_seq), (pc.less_equal, to_seq)):
                    if bound is not None:
                        m = op(t.column("seq"), bound)
                        mask = m if mask is None else pc.and_(mask, m)
                if mask is not None:
                    t = t.filter(mask)
                parts.append(plain(t))
        if not parts:
            return pa.table({c: pa.array([], _plain_type(c)) for c in cols})
        table = pa.concat_tables(parts, promote_options="permissive")
        by = [c for c in ("run", "host") if c in table.column_names]  # (run, host, vm) order
        order = pc.sort_indices(table, sort_keys=[(c, "ascending") for c in (*by, "vm", "seq", "ts_ns")])
        table = table.take(order)
        for c in cols:  # an optional column no file has (device, cmd_seq, ...): all null
            if c not in table.column_names:
                table = table.append_column(c, pa.nulls(table.num_rows, _plain_type(c)))
        return table.select(cols)


def _plain_type(column: str) -> pa.DataType:
    spec = COLUMN_BY_NAME[column]
    return pa.string() if spec.is_string else spec.type


def load(paths: PathArg | Sequence[PathArg], *, unit_rows: int = UNIT_ROWS) -> Trace:
    """Validate and plan the trace at `paths` (files, directories, globs).

    Raises :class:`~tracer.errors.InputError` (a subclass naming the file and the problem) for
    anything unusable. A trace of no steps at all is usable (an import of a log without QEMU
    events writes one) but never a silent PASS: `Trace.empty` is the fact a check words as a
    `trace-empty` warning. Reads only Parquet footers and, where the statistics do not tell, the
    `vm` column; the steps themselves are read by :func:`analyzer.trace.read_unit`.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    files: list[TraceFile] = []
    groups: list[RowGroup] = []
    recordings: set[str] = set()
    sources = expand(paths)
    types: dict[str, tuple[pa.DataType, str]] = {}
    opened = []
    for source in sources:
        _same_types(source, types)
        opened.append(open_trace_file(source, len(opened)))
    # Recorder directories that hold the same VM are runs of it (`analyzer.identity`): each is
    # then a run, named by its directory. Directories of different VMs (one recorder per VM)
    # and a trace of one recording name no run, and read as they always did.
    runs = _colliding_recordings(opened)
    for source, (tf, rgs) in zip(sources, opened, strict=True):
        if tf.group in runs:
            tf, rgs = open_trace_file(source, len(files), tf.group)
        files.append(tf)
        groups.extend(rgs)
        if tf.group != tf.path:  # a segment of a recorder directory
            recordings.add(tf.group)
    rows = sum(f.rows for f in files)
    units = pack_units(groups, unit_rows)
    vms = sorted({v for u in units for v in u.vms})
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blkreplay-sha256")
    digests = [hasher.submit(sha256, f.path) for f in files]
    hasher.shutdown(wait=False)
    with_manifest = tuple(sorted(d for d in recordings
                                 if os.path.lexists(os.path.join(d, tracedir.MANIFEST_NAME))))
    return Trace(files, units, vms, rows, digests, with_manifest, tuple(groups), unit_rows)


def _colliding_recordings(opened: list[tuple[TraceFile, list[RowGroup]]]) -> set[str]:
    """The recorder directories holding a VM (a run-less identity key) that another recorder
    directory holds too."""
    owners: dict[str, set[str]] = {}
    for tf, rgs in opened:
        if tf.group == tf.path:
            continue
        for rg in rgs:
            for key in rg.vms:
                owners.setdefault(key, set()).add(tf.group)
    return {g for groups in owners.values() if len(groups) > 1 for g in groups}


def _same_types(source: SourceFile, seen: dict[str, tuple[pa.DataType, str]]) -> None:
    """The error when `source` holds a schema column of a type the schema rejects while an
    earlier file of the dataset holds it as it should (naming both files); `seen` maps column
    -> (type, first file holding it with an accepted type)."""
    schema = shared_parquet(str(source.path))[1].schema_arrow
    for name, typ in zip(schema.names, schema.types, strict=True):
        problem = wrong_type(name, typ)
        if problem is None:
            if name in COLUMN_BY_NAME:
                seen.setdefault(name, (typ, str(source.path)))
            continue
        if name in seen:
            first_type, first = seen[name]
            raise TraceSchemaError(
                f"column '{name}': {problem}, but {first} of the same trace has "
                f"{describe_type(first_type)}: "
                f"the files of one trace must agree on each column's type", path=source.path)


def pack_units(groups: list[RowGroup], unit_rows: int, parts: int = 1) -> list[Unit]:
    """Units of whole VMs over `groups`, whatever the layout.

    A VM's rows are estimated per row group (a group's rows shared evenly among its VMs). The
    VMs sharing row groups (connected components) are split into pieces of about `unit_rows`
    rows, VMs taken in order of their first row group, and a piece lists every row group
    holding one of its VMs: a row group shared by two pieces is read by both, each keeping
    only its own VMs' rows (`analyzer.trace.scan`). A file sorted by (vm, seq) with big row
    groups thus splits at its row groups, re-reading only the groups at the cuts (and in one
    process not even those: the next unit takes the table just read, `files._SharedReads`). Where that
    would re-read much (a file sorted by time, every VM in every row group), a component is
    split into `parts` pieces only, and only for `SPREAD_PARTS` workers or more (each piece
    reads the whole component, keeping its share; the memory of a piece is its kept rows). Small pieces are then packed,
    in order of their first VM, up to about `unit_rows` rows a unit."""
    share: dict[str, int] = {}
    touch: dict[str, list[int]] = {}
    parent: dict[str, str] = {}

    def find(v: str) -> str:
        while parent.setdefault(v, v) != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for gi, g in enumerate(groups):
        base, extra = divmod(g.rows, len(g.vms))
        for j, v in enumerate(g.vms):
            share[v] = share.get(v, 0) + base + (j < extra)
            touch.setdefault(v, []).append(gi)
        roots = [find(v) for v in g.vms]
        for r in roots[1:]:
            a, b = sorted((find(roots[0]), find(r)))
            if a != b:
                parent[b] = a
    components: dict[str, list[str]] = {}
    for v in sorted(touch, key=lambda v: (touch[v][0], v)):
        components.setdefault(find(v), []).append(v)
    pieces: list[tuple[list[str], set[int], int]] = []
    for vms in components.values():
        rows = sum(share[v] for v in vms)
        split = _split(vms, share, touch, unit_rows)
        if len(split) > 1 and sum(sum(groups[i].rows for i in p[1]) for p in split) > 1.5 * rows:
            ways = parts if parts >= SPREAD_PARTS else 1
            split = _split(vms, share, touch, max(unit_rows, -(-rows // ways)))
        pieces.extend(split)
    units: list[Unit] = []
    cur_vms: list[str] = []
    cur_groups: set[int] = set()
    cur_rows = 0
    for vms, gis, rows in sorted(pieces, key=lambda p: min(p[0])):
        if cur_groups and cur_rows + rows > unit_rows:
            units.append(_unit(cur_vms, cur_groups, cur_rows, groups))
            cur_vms, cur_groups, cur_rows = [], set(), 0
        cur_vms.extend(vms)
        cur_groups |= gis
        cur_rows += rows
    if cur_groups:
        units.append(_unit(cur_vms, cur_groups, cur_rows, groups))
    return units


def _split(vms: list[str], share: dict[str, int], touch: dict[str, list[int]],
           target: int) -> list[tuple[list[str], set[int], int]]:
    """`vms` (in order of their first row group) cut into runs of about `target` rows:
    (VMs, indices of the row groups holding them, rows) each."""
    out: list[tuple[list[str], set[int], int]] = []
    cur: list[str] = []
    gis: set[int] = set()
    rows = 0
    for v in vms:
        cur.append(v)
        gis.update(touch[v])
        rows += share[v]
        if rows >= target:
            out.append((cur, gis, rows))
            cur, gis, rows = [], set(), 0
    if cur:
        out.append((cur, gis, rows))
    return out


def _unit(vms: list[str], gis: set[int], rows: int, groups: list[RowGroup]) -> Unit:
    return Unit(tuple(sorted(vms)), tuple(groups[i] for i in sorted(gis)), rows)


