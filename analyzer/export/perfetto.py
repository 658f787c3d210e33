"""A Perfetto trace of the fleet (open it at ui.perfetto.dev): where VMs paused, and why.

A check says *that* an error path misbehaved; the timeline says *when*, across the fleet: an
SRE opens one file and sees every host, every VM under it, the pauses as bars and the errors
that caused them as arrows. Perfetto is the timeline viewer the kernel and Chrome folks
already use, it opens multi-gigabyte traces, and it needs no server.

The mapping:

* a host is a process (``no host`` where the trace names none), a VM a thread-like track
  under it, one per identity (`analyzer.identity`): vm0 of two hosts is a track under each,
  vm0 of two runs two tracks named ``vm0 (run R)``. A track is named by the VM's name (and
  run), never by its key, which may hold a lone surrogate that protobuf cannot encode;
* a pause (STOP until the next RESUME, or until the VM's trace ends) is a slice ``paused``;
* every BLOCK_IO_ERROR, STOP and RESUME is an instant event, with device, errno, error id and
  seq as arguments;
* an error episode's BLOCK_IO_ERROR -> STOP (`analyzer.episodes`) is a flow (an arrow).

Timestamps are the trace's ns. A wall-clock trace (`analyzer.timefmt`) also gets a clock
snapshot that maps the trace clock to REALTIME one to one, so the UI can show UTC.

Bounded: a Perfetto file is a `Trace` message whose packets are a repeated, length-delimited
field, so serialized packets can be appended. Each VM's packets are made from one unit's
batch, serialized in chunks into a spool and written in VM order; no message ever holds the
whole trace. Names from the trace pass through `analyzer.text.printable` (no control or
bidi character reaches the viewer). The protos are the `perfetto` package's (extra
``export``); without it the export is a one-line error.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from analyzer import identity, outputs
from analyzer.episodes import episodes
from analyzer.export.source import (
    NO_HOST,
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
from analyzer.steps import Steps
from analyzer.text import printable
from analyzer.timefmt import is_wall_clock
from tracer.errors import InputError

#: The sequence every packet is on (one writer, no interned data).
SEQUENCE_ID = 1
#: Packets per serialized chunk (one chunk is what memory holds while writing).
CHUNK_PACKETS = 4096
#: A flow's id: the VM's index (its identity's place in key order) above these bits, its
#: error's seq + 1 below.
_FLOW_VM_SHIFT = 40

#: The module of the `perfetto` package's generated Trace protos.
PROTOS = "perfetto.protos.perfetto.trace.perfetto_trace_pb2"
NEEDS_EXTRA = "the perfetto export needs the 'export' extra: pip install 'blkreplay[export]'"


def _protos() -> Any:
    try:
        return importlib.import_module(PROTOS)
    except ImportError:
        raise InputError(NEEDS_EXTRA) from None


def available() -> bool:
    """Whether the `perfetto` package (extra ``export``) is installed."""
    try:
        _protos()
    except InputError:
        return False
    return True


def perfetto(
    source: ExportSource,
    out: outputs.PathArg,
    *,
    parents: bool = False,
) -> ExportSummary:
    """Write the Perfetto trace of `source` (paths, a `Trace` or a `CheckResult`) to `out`,
    atomically (`analyzer.outputs`; never over an input).

    Raises :class:`tracer.errors.InputError` for unusable input or a missing ``export``
    extra, :class:`tracer.errors.OutputError` for an output that cannot be written."""
    pb = _protos()
    inputs = input_paths(source)
    outputs.check_output(out, inputs=inputs, kind="report", parents=parents)
    src = resolve(source, need_trace=True)
    trace = src.require_trace()
    spans = vm_spans(trace)
    hosts = sorted({s.host for s in spans.values()}, key=lambda h: (h is None, h or ""))
    host_pid = {h: i + 1 for i, h in enumerate(hosts)}
    vm_index = {key: i for i, key in enumerate(spans)}
    counts = {"hosts": len(hosts), "vms": len(spans), "pauses": 0, "instants": 0, "flows": 0,
              "packets": 0}

    def judge(s: Steps) -> list[tuple[str, object]]:
        return list(_vm_pieces(pb, s, spans, vm_index, host_pid, len(hosts)))

    with Spool() as spool:
        for key, (data, tally) in scan_vms(trace, judge):  # type: ignore[misc]
            spool.add(key, data)
            for k, v in tally.items():
                counts[k] += v
        counts["packets"] += 1 + len(hosts) + len(spans)  # the header: start, hosts, VMs
        every_input = all_inputs(inputs, src)
        with outputs.open_output(out, inputs=every_input, kind="report", parents=parents) as f:
            for chunk in _chunks(pb, _header(pb, spans, hosts, host_pid, vm_index)):
                f.write(chunk)
            for _, data in spool.pieces():
                f.write(data)
    return ExportSummary("perfetto", str(out), counts)


def _chunks(pb: Any, packets: Iterable[Any]) -> Iterator[bytes]:
    trace = pb.Trace()
    for p in packets:
        trace.packet.append(p)
        if len(trace.packet) >= CHUNK_PACKETS:
            yield trace.SerializeToString(deterministic=True)
            trace = pb.Trace()
    if len(trace.packet):
        yield trace.SerializeToString(deterministic=True)


def _packet(pb: Any, ts: int | None = None) -> Any:
    p = pb.TracePacket()
    p.trusted_packet_sequence_id = SEQUENCE_ID
    if ts is not None:
        p.timestamp = max(int(ts), 0)
    return p


# Track uuids: hosts from 1 (uuid = pid), VMs after them (uuid = tid), both in sorted order.


def _host_uuid(pid: int) -> int:
    return pid


def _vm_uuid(n_hosts: int, index: int) -> int:
    return n_hosts + 1 + index


def _header(pb: Any, spans: dict[str, VmSpan], hosts: list[str | None],
            host_pid: dict[str | None, int], vm_index: dict[str, int]) -> Iterator[Any]:
    """The first packets: the sequence start, the clock snapshot (wall-clock traces), one
    process track per host and one thread track per VM identity, under its host."""
    first = _packet(pb)
    first.sequence_flags = pb.TracePacket.SequenceFlags.SEQ_INCREMENTAL_STATE_CLEARED
    first.first_packet_on_sequence = True
    start = min((s.first_ns for s in spans.values()), default=0)
    if is_wall_clock(start):
        snap = first.clock_snapshot
        for clock in (pb.BuiltinClock.BUILTIN_CLOCK_BOOTTIME, pb.BuiltinClock.BUILTIN_CLOCK_REALTIME):
            c = snap.clocks.add()
            c.clock_id = clock
            c.timestamp = start
        snap.primary_trace_clock = pb.BuiltinClock.BUILTIN_CLOCK_BOOTTIME
        first.timestamp = start
    yield first
    for h in hosts:
        p = _packet(pb)
        d = p.track_descriptor
        d.uuid = _host_uuid(host_pid[h])
        d.process.pid = host_pid[h]
        d.process.process_name = NO_HOST if h is None else printable(h)
        yield p
    n_hosts = len(hosts)
    for key, span in spans.items():
        p = _packet(pb)
        d = p.track_descriptor
        d.uuid = _vm_uuid(n_hosts, vm_index[key])
        d.parent_uuid = _host_uuid(host_pid[span.host])
        d.thread.pid = host_pid[span.host]
        d.thread.tid = _vm_uuid(n_hosts, vm_index[key])
        d.thread.thread_name = track_name(span)
        yield p


def track_name(span: VmSpan) -> str:
    """A VM's track name: its name, and its run where it has one (the host is the process)."""
    name = printable(span.vm)
    return name if span.run is None else f"{name} (run {printable(span.run)})"


#: Order of packets at the same timestamp on one track: a slice ends, instants, a slice begins.
_END, _INSTANT, _BEGIN = 0, 1, 2


def _vm_pieces(pb: Any, s: Steps, spans: dict[str, VmSpan], vm_index: dict[str, int],
               host_pid: dict[str | None, int], n_hosts: int) -> Iterator[tuple[str, tuple[bytes, dict]]]:
    """Per VM (identity key) of a batch: its serialized event packets and their counts."""
    bie, stop, resume = s.event("BLOCK_IO_ERROR"), s.event("STOP"), s.event("RESUME")
    instants = np.flatnonzero(bie | stop | resume)
    # A pause starts at a STOP not already inside one, and ends at the next RESUME.
    stops = np.flatnonzero(stop)
    before = s.prev(stop | resume, stops)
    starts = stops[(before < 0) | ~stop[np.maximum(before, 0)]]
    ends = s.next(resume, starts)
    # Flows: each episode's BLOCK_IO_ERROR -> its STOP, keyed by (identity key, seq).
    eps = episodes(s)
    linked = eps[eps["seq_event"].notna() & eps["seq_stop"].notna()]
    flow_from: dict[tuple[str, int], list[int]] = {}
    flow_to: dict[tuple[str, int], list[int]] = {}
    for vm, host, run, se, ss in zip(linked["vm"].tolist(), linked["host"].tolist(),
                                     linked["run"].tolist(), linked["seq_event"].tolist(),
                                     linked["seq_stop"].tolist(), strict=True):  # per episode
        key = identity.make(vm, _part(host), _part(run))
        fid = (vm_index[key] << _FLOW_VM_SHIFT) + int(se) + 1
        if fid not in flow_from.setdefault((key, int(se)), []):
            flow_from[(key, int(se))].append(fid)
            flow_to.setdefault((key, int(ss)), []).append(fid)
    names = {"BLOCK_IO_ERROR": bie, "STOP": stop, "RESUME": resume}
    for key, rows in vm_rows(s):
        uuid = _vm_uuid(n_hosts, vm_index[key])
        lo, hi = rows.start, rows.stop
        mine = instants[np.searchsorted(instants, lo):np.searchsorted(instants, hi)]
        items: list[tuple[int, int, int, Any]] = []
        flows = 0
        for r in mine.tolist():
            seq, ts = int(s.seq[r]), int(s.ts[r])
            name = next(n for n, m in names.items() if m[r])
            p = _packet(pb, ts)
            e = p.track_event
            e.type = pb.TrackEvent.Type.TYPE_INSTANT
            e.track_uuid = uuid
            e.name = name
            e.categories.append("qmp")
            _args(e, {"seq": seq, "device": s.text("device", r),
                      "errno": int(s.errno[r]) if s.errno[r] > 0 else None,
                      "error_id": int(s.eid[r]) if s.has_eid[r] else None,
                      "action": s.text("action", r)})
            for fid in flow_from.get((key, seq), []):
                e.flow_ids.append(fid)
                flows += 1
            for fid in flow_to.get((key, seq), []):
                e.terminating_flow_ids.append(fid)
            items.append((ts, _INSTANT, seq, p))
        pauses = 0
        sel = slice(np.searchsorted(starts, lo), np.searchsorted(starts, hi))
        for a, b in zip(starts[sel].tolist(), ends[sel].tolist(), strict=True):
            t0 = int(s.ts[a])
            # never before its start, even where the trace's clock goes back (late events)
            t1 = max(int(s.ts[b]) if b >= 0 else spans[key].last_ns, t0)
            begin = _packet(pb, t0)
            e = begin.track_event
            e.type = pb.TrackEvent.Type.TYPE_SLICE_BEGIN
            e.track_uuid = uuid
            e.name = "paused"
            e.categories.append("vm")
            _args(e, {"stop_seq": int(s.seq[a]),
                      "until": "RESUME" if b >= 0 else "end of trace",
                      "resume_seq": int(s.seq[b]) if b >= 0 else None})
            end = _packet(pb, t1)
            end.track_event.type = pb.TrackEvent.Type.TYPE_SLICE_END
            end.track_event.track_uuid = uuid
            items.append((t0, _BEGIN, int(s.seq[a]), begin))
            items.append((t1, _END, int(s.seq[b]) if b >= 0 else int(s.seq[hi - 1]) + 1, end))
            pauses += 1
        if not items:
            continue
        items.sort(key=lambda it: it[:3])
        data = b"".join(_chunks(pb, (it[3] for it in items)))
        yield key, (data, {"pauses": pauses, "instants": len(mine), "flows": flows,
                          "packets": len(items)})


def _part(value: object) -> str | None:
    """A host / run cell of the episodes frame as `identity.make` takes it (NA: none)."""
    return value if isinstance(value, str) else None


def _args(event: Any, values: dict[str, object]) -> None:
    for key, value in values.items():
        if value is None:
            continue
        a = event.debug_annotations.add()
        a.name = key
        if isinstance(value, int):
            a.int_value = value
        else:
            a.string_value = printable(value)
