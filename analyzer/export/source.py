"""What every export reads: the trace, its check result, each VM's host and time span, and a
per-VM stream of its state-carrying steps.

An export is a view of the same facts `check` and `replay` establish, in another tool's
format, so it takes them from there: the check result (`analyzer.check`) for findings,
episodes and incidents, and the rule-relevant steps of each unit (`analyzer.trace.scan_unit`)
for the events and replayed state (`analyzer.state`). Memory follows one unit of work.

Every VM is its identity (`analyzer.identity`: run, host, vm), keyed as `Steps.vm_names` key
it: vm0 of two hosts or of two recordings is two VMs, two tracks, two metric series. Two facts
the `Steps` batches do not carry come from a light pass over the identity columns and `ts_ns`
per row group: the host and run of each VM (a Perfetto process, a metric label) and the VM's
last timestamp (a pause without RESUME lasts until the VM's trace ends; successful
I/O, which the batches drop, may come after the last kept step).

Units pack VMs by file layout, so results are produced per VM and put in VM order by the
writers (`analyzer.export.spool`): the output is the same bytes whatever the layout.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from analyzer import identity
from analyzer.check import check
from analyzer.result import CheckResult
from analyzer.rules import RULE_IDS, columns_for
from analyzer.steps import Steps
from analyzer.trace import PathArg, Trace, load, release_footers, scan_unit
from analyzer.trace.files import IDENTITY_COLUMNS, read_row_group, row_keys
from tracer import tracedir

#: What an export accepts: a check result (its inputs are read again where the export needs
#: the steps), a loaded trace, or paths as `analyzer.load` takes them.
ExportSource = CheckResult | Trace | PathArg | Sequence[PathArg]

#: The Perfetto process (and Parquet/metric value shown) of a VM whose trace names no host.
NO_HOST = "no host"


@dataclass(frozen=True)
class VmSpan:
    """One VM's host (None where the trace has no `host` for it), first / last ts_ns, name and
    run (None where the trace names none)."""

    host: str | None
    first_ns: int
    last_ns: int
    vm: str = ""
    run: str | None = None


@dataclass
class Source:
    """A resolved export input: the trace (None when the result alone suffices) and its check."""

    result: CheckResult
    trace: Trace | None
    paths: list[str]

    def require_trace(self) -> Trace:
        if self.trace is None:
            self.trace = load(self.paths)
        return self.trace


def resolve(source: ExportSource, *, need_trace: bool) -> Source:
    """`source` as a check result and (when `need_trace`) the loaded trace.

    A CheckResult is used as it is; its trace is loaded from its inputs' paths when needed.
    Raises :class:`tracer.errors.InputError` for unusable input."""
    if isinstance(source, CheckResult):
        paths = [i.path for i in source.inputs]
        out = Source(source, None, paths)
        if need_trace:
            out.require_trace()
        return out
    if isinstance(source, Trace):
        trace = source
        paths = [f.path for f in trace.files]
    else:
        given = [source] if isinstance(source, str | os.PathLike) else list(source)
        paths = [os.fspath(p) for p in given]
        trace = load(paths)
    return Source(check(trace), trace, paths)


def all_inputs(given: list[str], src: Source) -> list[str]:
    """What the final write is checked against: the inputs as given, every file read and
    the recording directories holding them (a CheckResult names only the files)."""
    recordings = list(src.trace.recordings) if src.trace is not None else []
    return [*given, *(i.path for i in src.result.inputs), *recordings]


def input_paths(source: ExportSource) -> list[str]:
    """The paths an output must never be (or lie inside): the inputs as given."""
    if isinstance(source, CheckResult):  # its files, and the recordings that hold them
        files = [i.path for i in source.inputs]
        dirs = sorted({os.path.dirname(p) for p in files
                       if os.path.lexists(os.path.join(os.path.dirname(p), tracedir.MANIFEST_NAME))})
        return [*files, *dirs]
    if isinstance(source, Trace):
        return [f.path for f in source.files] + list(source.recordings)
    given = [source] if isinstance(source, str | os.PathLike) else list(source)
    return [os.fspath(p) for p in given]


def vm_spans(trace: Trace) -> dict[str, VmSpan]:
    """Per VM identity key (`analyzer.identity`, as `Steps.vm_names` hold them), in key order:
    its name, host, run and the span of its timestamps, from the `vm`, `host`, `run` and
    `ts_ns` columns, one row group at a time. The rows' keys come from
    `analyzer.trace.files.row_keys` (the file's run for rows without one) and are grouped in
    Arrow: no Python per row. vm0 of two hosts (or two runs) is two spans."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    try:
        for unit in trace.units:
            for rg in unit.row_groups:
                tf = trace.files[rg.file]
                t = read_row_group(tf, rg.index, [*IDENTITY_COLUMNS, "ts_ns"], rg.count)
                idx, keys = row_keys(t, tf.run)
                g = pa.table({"k": pa.array(idx, pa.int32()), "ts": t.column("ts_ns")}).group_by(
                    "k").aggregate([("ts", "min"), ("ts", "max")])
                for k, lo, hi in zip(g.column("k").to_pylist(), g.column("ts_min").to_pylist(),
                                     g.column("ts_max").to_pylist(), strict=True):
                    key = keys[k]
                    first[key] = min(first.get(key, lo), lo)
                    last[key] = max(last.get(key, hi), hi)
    finally:
        release_footers()
    out: dict[str, VmSpan] = {}
    for key in sorted(first, key=identity.sort_key):
        ident = identity.split(key)
        out[key] = VmSpan(ident.host, first[key], last[key], ident.vm, ident.run)
    return out


def scan_vms(trace: Trace, judge: Callable[[Steps], list[tuple[str, object]]]) -> Iterator[tuple[str, object]]:
    """`judge` over every batch of whole VMs (the rule-relevant steps, as `check` reads them),
    unit after unit: yields what it returns, (vm, result) pairs. Memory: one unit."""
    columns = columns_for(RULE_IDS)
    try:
        for unit in trace.units:
            for part in scan_unit(trace, unit, columns, lambda batch: judge(batch.steps)):
                yield from part
    finally:
        release_footers()


def vm_rows(s: Steps) -> Iterator[tuple[str, slice]]:
    """(identity key, slice of its rows) for each VM of a batch (rows are in (vm, seq) order;
    the key is one of `vm_spans`'s)."""
    if not len(s):
        return
    starts = [0, *(np.flatnonzero(s.vm[1:] != s.vm[:-1]) + 1).tolist()]
    for a, b in zip(starts, [*starts[1:], len(s)], strict=True):
        yield s.vm_names[int(s.vm[a])], slice(a, b)
