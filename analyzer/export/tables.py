"""Parquet tables of a check for DuckDB, Polars and Grafana: episodes, incidents, findings and
the replayed state of every VM.

The findings document is for machines that know blkreplay; a table is for everyone else's
SQL. ``-o DIR`` writes::

    DIR/episodes.parquet   one row per error action (`analyzer.episodes`), with its host, run
    DIR/incidents.parquet  one row per incident (`analyzer.outage.Incident`)
    DIR/findings.parquet   one row per finding (`analyzer.result.Finding`), with host, run
    DIR/state.parquet      one row per state change of each VM: ts_ns, time, seq, vm, host,
                           run, kind and name of the step, runstate after it, and for a
                           device's io-status change, device and iostatus after it

A VM is its identity (`analyzer.identity`): every table names it by (vm, host, run), null
where the trace names no host or run, so that vm0 of two hosts is two groups of rows.

The state rows are those that tell a VM's run state or a device's io-status (the rows
`analyzer.state` replays from), with the state *after* each, as `blkreplay replay` shows it.
They are made per unit and streamed to a `pyarrow.parquet.ParquetWriter` in VM order, in row
groups of a fixed size (`analyzer.export.spool`): bounded memory, and the same bytes whatever
the input layout. ``time`` is the UTC timestamp of wall-clock traces (`analyzer.timefmt`),
null on a simulator's or monotonic clock, so Grafana plots real traces on real time.

The directory is built beside the target and renamed into place when complete
(`analyzer.outputs.output_dir`): a reader never sees half a table set.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from analyzer import outputs
from analyzer.episodes import EPISODE_COLUMNS
from analyzer.export.source import (
    ExportSource,
    VmSpan,
    all_inputs,
    input_paths,
    resolve,
    scan_vms,
    vm_rows,
    vm_spans,
)
from analyzer.export.spool import Spool
from analyzer.export.summary import ExportSummary
from analyzer.result import CheckResult
from analyzer.state import (
    iostatus,
    iostatus_names,
    iostatus_rows,
    run_state,
    runstate_names,
    runstate_sources,
)
from analyzer.steps import VOCABULARIES, Steps
from analyzer.timefmt import WALL_CLOCK_MIN_NS
from tracer.errors import OutputError

#: Rows per row group of the state table.
STATE_ROW_GROUP = 65_536

TABLES = ("episodes", "incidents", "findings", "state")

_TIME = pa.timestamp("ns", tz="UTC")

STATE_SCHEMA = pa.schema([
    ("ts_ns", pa.int64()),
    ("time", _TIME),
    ("seq", pa.int64()),
    ("vm", pa.string()),
    ("host", pa.string()),
    ("run", pa.string()),
    ("kind", pa.string()),
    ("name", pa.string()),
    ("runstate", pa.string()),
    ("device", pa.string()),
    ("iostatus", pa.string()),
])

FINDINGS_SCHEMA = pa.schema([
    ("rule", pa.string()),
    ("severity", pa.string()),
    ("vm", pa.string()),
    ("host", pa.string()),
    ("run", pa.string()),
    ("device", pa.string()),
    ("error_id", pa.int64()),
    ("seq", pa.list_(pa.int64())),
    ("ts_ns", pa.int64()),
    ("time", _TIME),
    ("thread", pa.string()),
    ("message", pa.string()),
    ("src", pa.list_(pa.string())),
])

INCIDENTS_SCHEMA = pa.schema([
    ("id", pa.int64()),
    ("start_ns", pa.int64()),
    ("end_ns", pa.int64()),
    ("start_time", _TIME),
    ("end_time", _TIME),
    ("vms", pa.list_(pa.struct([("host", pa.string()), ("vm", pa.string())]))),
    ("hosts", pa.list_(pa.string())),
    ("devices", pa.list_(pa.string())),
    ("errnos", pa.list_(pa.int64())),
    ("episodes", pa.int64()),
    ("paused_p50_ns", pa.int64()),
    ("paused_p95_ns", pa.int64()),
    ("paused_max_ns", pa.int64()),
    ("still_paused", pa.int64()),
])


def _times(ts: pa.Array | np.ndarray | list) -> pa.Array:
    """ts_ns as UTC timestamps where they are wall-clock time, null elsewhere."""
    arr = pa.array(ts, pa.int64())
    values = arr.to_numpy(zero_copy_only=False) if arr.null_count == 0 else \
        np.asarray(arr.fill_null(0).to_numpy(), dtype=np.int64)
    valid = (values >= WALL_CLOCK_MIN_NS) & ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False))
    return pa.array(values, _TIME, mask=~valid)


def episodes_table(result: CheckResult) -> pa.Table:
    """The episodes (`EPISODE_COLUMNS` first: vm, host, run, ...), NA as null."""
    eps = result.episodes
    cols: dict[str, pa.Array] = {}
    for c in dict.fromkeys([*EPISODE_COLUMNS, *eps.columns]):
        series = eps[c] if c in eps.columns else pd.Series([None] * len(eps), dtype=object)
        typ = pa.int64() if pd.api.types.is_integer_dtype(series.dtype) else pa.string()
        cols[c] = pa.array(series.astype(object).where(series.notna(), None).tolist(), typ)
    return pa.table(cols)


def findings_table(result: CheckResult) -> pa.Table:
    fs = result.findings
    ts = [f.ts_ns for f in fs]
    return pa.table({
        "rule": [f.rule for f in fs],
        "severity": [f.severity for f in fs],
        "vm": [f.vm for f in fs],
        "host": [f.host for f in fs],
        "run": [f.run for f in fs],
        "device": [f.device for f in fs],
        "error_id": [f.error_id for f in fs],
        "seq": [list(f.seq) for f in fs],
        "ts_ns": ts,
        "time": _times(ts),
        "thread": [f.thread for f in fs],
        "message": [f.message for f in fs],
        "src": [list(f.src) for f in fs],
    }, schema=FINDINGS_SCHEMA)


def incidents_table(result: CheckResult) -> pa.Table:
    inc = sorted(result.incidents, key=lambda i: i.id)
    return pa.table({
        "id": [i.id for i in inc],
        "start_ns": [i.start_ns for i in inc],
        "end_ns": [i.end_ns for i in inc],
        "start_time": _times([i.start_ns for i in inc]),
        "end_time": _times([i.end_ns for i in inc]),
        "vms": [[{"host": h, "vm": v} for h, v in i.vms] for i in inc],
        "hosts": [list(i.hosts) for i in inc],
        "devices": [list(i.devices) for i in inc],
        "errnos": [list(i.errnos) for i in inc],
        "episodes": [i.episodes for i in inc],
        "paused_p50_ns": [i.paused_p50_ns for i in inc],
        "paused_p95_ns": [i.paused_p95_ns for i in inc],
        "paused_max_ns": [i.paused_max_ns for i in inc],
        "still_paused": [i.still_paused for i in inc],
    }, schema=INCIDENTS_SCHEMA)


_KINDS = np.array([*VOCABULARIES["kind"], None], dtype=object)


def state_rows(s: Steps, spans: dict[str, VmSpan]) -> Iterator[tuple[str, pa.Table]]:
    """Per VM (identity key) of a batch: its state-change rows (STATE_SCHEMA), vectorized over
    the batch; vm, host and run from the VM's span."""
    told, _ = runstate_sources(s)
    ios = (iostatus_rows(s) | (s.reply("query-block") & (s.iostatus >= 0))) & (s.device >= 0)
    rows = np.flatnonzero(told | ios)
    if not len(rows):
        return
    has_dev = ios[rows]
    dev = s.device[rows].astype(np.int64)
    io = iostatus_names(np.where(has_dev, iostatus(s, np.maximum(dev, 0), rows), -1))
    device_names = np.array([*s.device_names, None], dtype=object)
    names = np.array([*s.names, None], dtype=object)
    kind = s.kind[rows].astype(np.int64)
    name = s.name[rows].astype(np.int64)
    columns = {
        "ts_ns": s.ts[rows],
        "seq": s.seq[rows],
        "kind": _KINDS[np.where(kind >= 0, kind, len(_KINDS) - 1)],
        "name": names[np.where(name >= 0, name, len(names) - 1)],
        "runstate": runstate_names(run_state(s, rows)),
        "device": device_names[np.where(has_dev & (dev >= 0), dev, len(device_names) - 1)],
        "iostatus": io,
    }
    for key, part in vm_rows(s):  # rows are sorted: each VM's are one slice of them
        sel = slice(np.searchsorted(rows, part.start), np.searchsorted(rows, part.stop))
        if sel.start == sel.stop:
            continue
        ts = columns["ts_ns"][sel]
        span = spans[key]
        n = len(ts)
        yield key, pa.table({
            "ts_ns": pa.array(ts, pa.int64()),
            "time": _times(ts),
            "seq": pa.array(columns["seq"][sel], pa.int64()),
            "vm": pa.array([span.vm] * n, pa.string()),
            "host": pa.array([span.host] * n, pa.string()),
            "run": pa.array([span.run] * n, pa.string()),
            **{c: pa.array(columns[c][sel].tolist(), pa.string())
               for c in ("kind", "name", "runstate", "device", "iostatus")},
        }, schema=STATE_SCHEMA)


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def _write(path: Path, table: pa.Table) -> None:
    try:
        pq.write_table(table, path)
    except (OSError, pa.ArrowException) as exc:
        raise OutputError(f"cannot write it ({exc})", path=path) from None


def tables(
    source: ExportSource,
    out_dir: outputs.PathArg,
    *,
    parents: bool = False,
    replace: bool = False,
) -> ExportSummary:
    """Write DIR/{episodes,incidents,findings,state}.parquet for `source` (paths, a `Trace` or
    a `CheckResult`) into the new directory `out_dir`, as a whole or not at all; an existing
    `out_dir` is refused unless `replace`. Returns the rows per table."""
    inputs = input_paths(source)
    outputs.check_output_dir(out_dir, inputs=inputs, parents=parents, replace=replace)
    src = resolve(source, need_trace=True)
    trace = src.require_trace()
    spans = vm_spans(trace)
    counts: dict[str, int] = {}
    every_input = all_inputs(inputs, src)
    with Spool() as spool:
        for key, table in scan_vms(trace, lambda s: list(state_rows(s, spans))):
            spool.add(key, _ipc(table))  # type: ignore[arg-type]
        with outputs.output_dir(out_dir, inputs=every_input, parents=parents, replace=replace) as work:
            for name, table in (("episodes", episodes_table(src.result)),
                                ("incidents", incidents_table(src.result)),
                                ("findings", findings_table(src.result))):
                _write(work / f"{name}.parquet", table)
                counts[name] = table.num_rows
            counts["state"] = _write_state(work / "state.parquet", spool)
    return ExportSummary("parquet", str(out_dir), counts)


def _write_state(path: Path, spool: Spool) -> int:
    """The spooled state rows in VM order, in row groups of STATE_ROW_GROUP rows."""
    total = 0
    try:
        with pq.ParquetWriter(path, STATE_SCHEMA) as writer:
            pending: list[pa.Table] = []
            held = 0
            for _, data in spool.pieces():
                t = ipc.open_stream(data).read_all()
                pending.append(t)
                held += t.num_rows
                while held >= STATE_ROW_GROUP:
                    buf = pa.concat_tables(pending)
                    writer.write_table(buf.slice(0, STATE_ROW_GROUP), row_group_size=STATE_ROW_GROUP)
                    rest = buf.slice(STATE_ROW_GROUP)
                    pending, held = [rest], rest.num_rows
                total += t.num_rows
            if held:
                writer.write_table(pa.concat_tables(pending), row_group_size=STATE_ROW_GROUP)
    except (OSError, pa.ArrowException) as exc:
        raise OutputError(f"cannot write it ({exc})", path=path) from None
    return total
