"""Exports (`analyzer.export`): what Perfetto, DuckDB/Polars and Prometheus would read back.

The Perfetto trace is decoded with the `perfetto` package's own protos (its TraceProcessor
downloads a binary at run time, which a test cannot); the OpenMetrics text goes through
prometheus_client's strict OpenMetrics parser and its Prometheus-text parser (what
node-exporter's textfile collector speaks); the tables are read back with pyarrow.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import analyzer
import analyzer.export as export
from analyzer.export.perfetto import PROTOS
from analyzer.export.tables import TABLES
from analyzer.importers import import_traces
from analyzer.outage import Incident
from analyzer.timefmt import WALL_CLOCK_MIN_NS
from tests.analyzer.builders import TraceBuilder, write_dir
from tests.analyzer.trace.test_load import broken_trace
from tracer import tracedir
from tracer.errors import InputError, OutputError
from tracer.schema import from_pylist

pb = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2")
om_parser = pytest.importorskip("prometheus_client.openmetrics.parser")
prom_parser = pytest.importorskip("prometheus_client.parser")

TRACES = Path(__file__).resolve().parents[2] / "traces"

HOSTILE_VM = 'vm"\\q\nx\x1b[31m\u202eevil'
HOSTILE_HOST = 'h"\n\x1b]0;t\x07\u2066'


# ---------------------------------------------------------------------------------------------
# Traces
# ---------------------------------------------------------------------------------------------


def fleet(tmp_path: Path, *, vm_a: str = "vm-a", host: str = "h1") -> tuple[Path, dict]:
    """Three VMs: vm-a on `host` pauses on an error and resumes; vm-b on `host` pauses and
    never resumes (I/O goes on after); vm-c has no host and no error."""
    a = TraceBuilder(vm_a)
    a.start()
    a.io(n=2)
    sa = a.error(1)
    sa.update(a.main_loop())
    sa["cont"] = a.cont()
    a.io(n=2)
    b = TraceBuilder("vm-b")
    b.start()
    sb = b.error(1)
    sb.update(b.main_loop())
    b.io(n=3)
    c = TraceBuilder("vm-c")
    c.start()
    c.io(n=2)
    rows = [{**r, "host": host} for r in a.rows + b.rows] + c.rows
    path = tmp_path / "fleet.parquet"
    tracedir.write_table(from_pylist(rows, "sim"), path)
    ts = {
        "a_bie": sa["event"] * 1000, "a_stop": sa["stop"] * 1000, "a_resume": sa["cont"]["resume"] * 1000,
        "b_bie": sb["event"] * 1000, "b_stop": sb["stop"] * 1000, "b_end": (len(b.rows) - 1) * 1000,
        "a_rows": a.rows, "b_rows": b.rows,
    }
    return path, ts


def decode(path: Path):
    trace = pb.Trace()
    trace.ParseFromString(path.read_bytes())
    return list(trace.packet)


def tracks(packets) -> tuple[dict[int, str], dict[int, tuple[str, int]], dict[int, int]]:
    """(process name by pid, (thread name, pid) by track uuid, pid by process track uuid)."""
    procs, threads, proc_uuid = {}, {}, {}
    for p in packets:
        if p.HasField("track_descriptor"):
            d = p.track_descriptor
            if d.HasField("process"):
                procs[d.process.pid] = d.process.process_name
                proc_uuid[d.uuid] = d.process.pid
            if d.HasField("thread"):
                threads[d.uuid] = (d.thread.thread_name, d.thread.pid)
                assert proc_uuid[d.parent_uuid] == d.thread.pid
    return procs, threads, proc_uuid


def events(packets, thread_uuid: int):
    T = pb.TrackEvent.Type
    out = []
    for p in packets:
        if p.HasField("track_event") and p.track_event.track_uuid == thread_uuid:
            e = p.track_event
            kind = {T.TYPE_INSTANT: "I", T.TYPE_SLICE_BEGIN: "B", T.TYPE_SLICE_END: "E"}[e.type]
            out.append((kind, e.name, p.timestamp, list(e.flow_ids), list(e.terminating_flow_ids)))
    return out


def by_name(threads: dict[int, tuple[str, int]]) -> dict[str, int]:
    return {name: uuid for uuid, (name, _) in threads.items()}


# ---------------------------------------------------------------------------------------------
# Perfetto
# ---------------------------------------------------------------------------------------------


def test_perfetto_hosts_are_processes_vms_tracks_pauses_slices_errors_flow_to_their_stop(tmp_path):
    path, ts = fleet(tmp_path)
    out = tmp_path / "fleet.pftrace"
    summary = export.perfetto([path], out)
    packets = decode(out)
    procs, threads, _ = tracks(packets)
    assert sorted(procs.values()) == ["h1", "no host"]
    pid = {name: p for p, name in procs.items()}
    assert sorted((n, procs[p]) for n, p in threads.values()) == [
        ("vm-a", "h1"), ("vm-b", "h1"), ("vm-c", "no host")]
    uuid = by_name(threads)

    a = events(packets, uuid["vm-a"])
    instants = [(n, t) for k, n, t, _, _ in a if k == "I"]
    assert ("BLOCK_IO_ERROR", ts["a_bie"]) in instants and ("STOP", ts["a_stop"]) in instants
    assert ("RESUME", ts["a_resume"]) in instants
    assert [(k, n, t) for k, n, t, _, _ in a if k in "BE"] == [
        ("B", "paused", ts["a_stop"]), ("E", "", ts["a_resume"])]
    (flow,) = next(f for k, n, _, f, _ in a if n == "BLOCK_IO_ERROR")
    assert next(t for k, n, _, _, t in a if n == "STOP" and k == "I") == [flow]

    # vm-b never resumes: its pause lasts until its last step (I/O after the STOP).
    b = events(packets, uuid["vm-b"])
    assert [(k, t) for k, n, t, _, _ in b if k in "BE"] == [("B", ts["b_stop"]), ("E", ts["b_end"])]
    assert not [e for e in events(packets, uuid["vm-c"]) if e[0] in "BE"]
    assert summary.counts["pauses"] == 2 and summary.counts["flows"] == 2
    assert pid["h1"] != pid["no host"]


def test_perfetto_of_the_sample_holds_every_stop_resume_and_error_of_the_trace(tmp_path):
    out = tmp_path / "sample.pftrace"
    export.perfetto(TRACES / "sample", out)
    packets = decode(out)
    _, threads, _ = tracks(packets)
    table = analyzer.load(TRACES / "sample").table(columns=["vm", "kind", "name", "ts_ns"])
    names = ("BLOCK_IO_ERROR", "STOP", "RESUME")
    for vm, uuid in by_name(threads).items():
        mine = table.filter(pc.and_(pc.equal(table["vm"], vm), pc.equal(table["kind"], "qmp_event")))
        want = sorted((n, t) for n, t in zip(mine["name"].to_pylist(), mine["ts_ns"].to_pylist(),
                                                strict=True) if n in names)
        got = events(packets, uuid)
        assert sorted((n, t) for k, n, t, _, _ in got if k == "I") == want
        begins = [e for e in got if e[0] == "B"]
        assert len(begins) == len([e for e in got if e[0] == "E"]) > 0
    assert sorted(n for n, _ in threads.values()) == ["vm0", "vm1", "vm2"]


def test_perfetto_is_the_same_bytes_whatever_the_file_layout(tmp_path):
    table = analyzer.load(TRACES / "sample").table()
    shuffled = table.take(pa.array(list(reversed(range(table.num_rows)))))
    write_dir(from_pylist(shuffled.to_pylist(), "sim"), tmp_path / "many", segment_rows=777)
    export.perfetto(TRACES / "sample", tmp_path / "a.pftrace")
    export.perfetto(tmp_path / "many", tmp_path / "b.pftrace")
    assert (tmp_path / "a.pftrace").read_bytes() == (tmp_path / "b.pftrace").read_bytes()


def test_perfetto_of_a_real_import_is_on_wall_clock_time_with_a_realtime_snapshot(samples_dir, tmp_path):
    capture = samples_dir / "qemu-10.0" / "a-stop-eio-dataplane"
    trace = tmp_path / "real.parquet"
    import_traces([capture / "qmp-transcript.jsonl", capture / "trace.log"], trace)
    out = tmp_path / "real.pftrace"
    export.perfetto(trace, out)
    packets = decode(out)
    snap = packets[0].clock_snapshot
    clocks = {c.clock_id: c.timestamp for c in snap.clocks}
    assert clocks[pb.BuiltinClock.BUILTIN_CLOCK_REALTIME] == clocks[pb.BuiltinClock.BUILTIN_CLOCK_BOOTTIME]
    assert clocks[pb.BuiltinClock.BUILTIN_CLOCK_REALTIME] >= WALL_CLOCK_MIN_NS
    _, threads, _ = tracks(packets)
    (uuid,) = threads
    got = events(packets, uuid)
    # The README of the capture: 6 errors, 6 STOP, 6 RESUME.
    assert [sum(1 for e in got if e[:2] == ("I", n)) for n in ("BLOCK_IO_ERROR", "STOP", "RESUME")] == [6, 6, 6]
    assert len([e for e in got if e[0] == "B"]) == 6
    assert all(e[2] >= WALL_CLOCK_MIN_NS for e in got)
    assert sum(len(e[3]) for e in got) >= 1  # errors flow to the STOP that served them


def test_hostile_names_are_harmless_text_in_perfetto(tmp_path):
    path, _ = fleet(tmp_path, vm_a=HOSTILE_VM, host=HOSTILE_HOST)
    out = tmp_path / "h.pftrace"
    export.perfetto(path, out)
    procs, threads, _ = tracks(decode(out))
    shown = [*procs.values(), *(n for n, _ in threads.values())]
    for name in shown:
        assert not re.search(r"[\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]", name), name
    assert 'vm"\\q\\nx\\x1b[31m\\u202eevil' in shown
    assert 'h"\\n\\x1b]0;t\\x07\\u2066' in shown


def test_a_missing_export_extra_is_one_readable_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, PROTOS, None)  # what an import finds without the package
    with pytest.raises(InputError, match=r"^the perfetto export needs the 'export' extra: pip install 'blkreplay\[export\]'$"):
        export.perfetto(TRACES / "fixed", tmp_path / "x.pftrace")
    assert not (tmp_path / "x.pftrace").exists()


# ---------------------------------------------------------------------------------------------
# Parquet tables
# ---------------------------------------------------------------------------------------------


def test_tables_read_back_with_the_episodes_findings_and_replayed_state(tmp_path):
    path, ts = fleet(tmp_path)
    summary = export.tables(path, tmp_path / "tables")
    d = tmp_path / "tables"
    assert sorted(p.name for p in d.iterdir()) == [
        "episodes.parquet", "findings.parquet", "incidents.parquet", "state.parquet"]
    result = analyzer.check([path])
    eps = pq.read_table(d / "episodes.parquet")
    assert eps.num_rows == len(result.episodes) == 2
    assert eps.column_names[:2] == ["vm", "host"]
    assert sorted(zip(eps["vm"].to_pylist(), eps["host"].to_pylist(), strict=True)) == [
        ("vm-a", "h1"), ("vm-b", "h1")]
    assert eps.column("ts_stop").to_pylist() == [ts["a_stop"], ts["b_stop"]]
    findings = pq.read_table(d / "findings.parquet")
    assert findings.num_rows == len(result.findings)
    assert pq.read_table(d / "incidents.parquet").num_rows == 0

    state = pq.read_table(d / "state.parquet")
    assert summary.counts["state"] == state.num_rows
    a = state.filter(pc.equal(state["vm"], "vm-a")).to_pylist()
    assert {r["host"] for r in a} == {"h1"}
    # The run state after each run-state row, and the io-status after each change.
    assert [r["runstate"] for r in a if r["kind"] == "runstate"] == ["running", "io-error", "running"]
    assert [(r["device"], r["iostatus"]) for r in a if r["kind"].startswith("iostatus")] == [
        ("drive0", "failed"), ("drive0", "ok")]
    assert all(r["time"] is None for r in a)  # a simulator's clock is not wall-clock time
    c = state.filter(pc.equal(state["vm"], "vm-c")).to_pylist()
    assert {r["host"] for r in c} == {None}
    # Rows are in (run, host, vm, seq) order (identities as everywhere, no host or run first):
    # a reader gets each VM's history in order.
    keys = [(r["run"] or "", r["host"] or "", r["vm"], r["seq"]) for r in state.to_pylist()]
    assert keys == sorted(keys)
    assert {r["run"] for r in state.to_pylist()} == {None}


def test_state_table_agrees_with_replay_and_is_the_same_bytes_whatever_the_layout(tmp_path):
    table = analyzer.load(TRACES / "sample").table()
    shuffled = table.take(pa.array(list(reversed(range(table.num_rows)))))
    write_dir(from_pylist(shuffled.to_pylist(), "sim"), tmp_path / "many", segment_rows=500)
    export.tables(TRACES / "sample", tmp_path / "a")
    export.tables(tmp_path / "many", tmp_path / "b")
    for name in TABLES:
        assert (tmp_path / "a" / f"{name}.parquet").read_bytes() == (tmp_path / "b" / f"{name}.parquet").read_bytes()
    state = pq.read_table(tmp_path / "a" / "state.parquet")
    view = analyzer.replay(TRACES / "sample", vm="vm1").set_index("seq")
    mine = state.filter(pc.equal(state["vm"], "vm1")).to_pylist()
    assert len(mine) > 10
    for row in mine:  # the state after each step, as `blkreplay replay` shows it
        assert view.loc[row["seq"], "runstate"] == row["runstate"]
        if row["device"] is not None:
            assert view.loc[row["seq"], f"iostatus:{row['device']}"] == row["iostatus"]


def test_incidents_and_findings_of_a_result_are_exported_as_given(tmp_path):
    result = analyzer.check([TRACES / "lost-stop"])
    assert result.findings
    incident = Incident(id=1, start_ns=2 * 10**18, end_ns=2 * 10**18 + 5, vms=((None, "vm0"),), hosts=(),
                        devices=("drive0",), errnos=(5,), episodes=3, paused_p50_ns=10,
                        paused_p95_ns=20, paused_max_ns=30, still_paused=1)
    result = dataclasses.replace(result, incidents=[incident])
    export.tables(result, tmp_path / "t")
    (row,) = pq.read_table(tmp_path / "t" / "incidents.parquet").to_pylist()
    assert row["vms"] == [{"host": None, "vm": "vm0"}] and row["paused_max_ns"] == 30
    assert str(row["start_time"]).startswith("2033-05-18 03:33:20")
    f = pq.read_table(tmp_path / "t" / "findings.parquet").to_pylist()
    assert [(r["rule"], r["seq"]) for r in f] == [(x.rule, list(x.seq)) for x in result.findings]
    text = (export.openmetrics(result, tmp_path / "m.prom"), (tmp_path / "m.prom").read_text())[1]
    assert 'blkreplay_incident_paused_max_seconds{incident="1"} 3e-08' in text
    assert "blkreplay_incidents 1" in text


# ---------------------------------------------------------------------------------------------
# OpenMetrics
# ---------------------------------------------------------------------------------------------


def samples(text: str, parser) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in parser.text_string_to_metric_families(text):
        assert fam.name.startswith("blkreplay_")
        assert fam.type == "gauge"
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_openmetrics_passes_the_strict_parser_and_counts_errors_pauses_and_time_paused(tmp_path):
    path, ts = fleet(tmp_path)
    out = tmp_path / "blkreplay.prom"
    export.openmetrics(path, out)
    text = out.read_text()
    assert text.endswith("# EOF\n")
    got = samples(text, om_parser)
    assert samples(text.replace("# EOF\n", ""), prom_parser) == got  # the textfile collector's format
    a = (("host", "h1"), ("vm", "vm-a"))
    b = (("host", "h1"), ("vm", "vm-b"))
    c = (("host", ""), ("vm", "vm-c"))
    assert got[("blkreplay_vm_io_errors", a)] == got[("blkreplay_vm_io_errors", b)] == 1
    assert got[("blkreplay_vm_io_errors", c)] == 0
    assert got[("blkreplay_vm_pauses", a)] == 1
    assert got[("blkreplay_vm_paused_seconds", a)] == pytest.approx((ts["a_resume"] - ts["a_stop"]) / 1e9)
    assert (got[("blkreplay_vm_paused", a)], got[("blkreplay_vm_paused", b)]) == (0, 1)
    assert got[("blkreplay_host_io_errors", (("host", "h1"),))] == 2
    assert got[("blkreplay_host_vms_paused", (("host", "h1"),))] == 1
    assert got[("blkreplay_incidents", ())] == 0
    # Families HELP/TYPE'd once each, in a fixed order; same check, same bytes.
    assert len(re.findall(r"^# TYPE ", text, re.M)) == len(re.findall(r"^# HELP ", text, re.M))
    export.openmetrics(analyzer.check([path]), tmp_path / "again.prom")
    assert (tmp_path / "again.prom").read_text() == text


def test_hostile_label_values_are_escaped_per_openmetrics(tmp_path):
    path, _ = fleet(tmp_path, vm_a=HOSTILE_VM, host=HOSTILE_HOST)
    out = tmp_path / "h.prom"
    export.openmetrics(path, out)
    text = out.read_text()
    assert "\x1b" not in text and "\u202e" not in text and "\u2066" not in text and "\x07" not in text
    lines = text.splitlines()
    assert all(not line or line.startswith(("#", "blkreplay_")) for line in lines)  # no raw newline
    got = samples(text, om_parser)
    vm_value = next(dict(k[1])["vm"] for k in got if k[0] == "blkreplay_vm_io_errors" and
                    dict(k[1])["vm"] not in ("vm-b", "vm-c"))
    # Parsed back: the quote, backslash and newline are themselves; control/bidi shown as escapes.
    assert vm_value == 'vm"\\q\nx\\x1b[31m\\u202eevil'
    host_value = next(dict(k[1])["host"] for k in got if k[0] == "blkreplay_host_io_errors")
    assert host_value == 'h"\n\\x1b]0;t\\x07\\u2066'
    assert 'vm="vm\\"\\\\q\\nx\\\\x1b[31m\\\\u202eevil"' in text


def test_the_label_escaping_itself():
    from analyzer.export.openmetrics import escape_label

    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert escape_label(None) == ""


# ---------------------------------------------------------------------------------------------
# VM identity: vm0 of two hosts, or of two recordings, is two VMs in every export
# ---------------------------------------------------------------------------------------------


def _vm0(io_before: int, *, resume: bool) -> TraceBuilder:
    """vm0 that pauses on an error after `io_before` I/Os, and resumes when `resume`."""
    b = TraceBuilder("vm0")
    b.start()
    b.io(n=io_before)
    b.error(1)
    b.main_loop()
    if resume:
        b.cont()
    b.io(n=2)
    return b


def two_hosts(tmp_path: Path) -> Path:
    """vm0 on h1 (pauses and resumes) and vm0 on h2 (pauses later, never resumes), one file."""
    rows = ([{**r, "host": "h1"} for r in _vm0(1, resume=True).rows]
            + [{**r, "host": "h2"} for r in _vm0(4, resume=False).rows])
    path = tmp_path / "two-hosts.parquet"
    tracedir.write_table(from_pylist(rows, "sim"), path)
    return path


def two_runs(tmp_path: Path) -> list[Path]:
    """Two recorder directories of vm0 (no host): two runs, named by their directories."""
    dirs = [tmp_path / "run1", tmp_path / "run2"]
    write_dir(_vm0(1, resume=True).table(), dirs[0], segment_rows=7)
    write_dir(_vm0(4, resume=False).table(), dirs[1], segment_rows=7)
    return dirs


def _pauses(packets, uuid: int) -> list[tuple[str, int]]:
    return [(k, t) for k, _, t, _, _ in events(packets, uuid) if k in "BE"]


def test_perfetto_vm0_of_two_hosts_is_a_track_under_each_host_with_its_own_flow(tmp_path):
    out = tmp_path / "t.pftrace"
    summary = export.perfetto(two_hosts(tmp_path), out)
    packets = decode(out)
    procs, threads, _ = tracks(packets)
    assert sorted((n, procs[p]) for n, p in threads.values()) == [("vm0", "h1"), ("vm0", "h2")]
    uuid = {procs[p]: u for u, (_, p) in threads.items()}
    h1, h2 = _pauses(packets, uuid["h1"]), _pauses(packets, uuid["h2"])
    assert [k for k, _ in h1] == [k for k, _ in h2] == ["B", "E"]
    assert h1 != h2  # each host's own pause, not one VM's pauses merged
    flows = [[f for _, n, _, f, _ in events(packets, uuid[h]) if n == "BLOCK_IO_ERROR"] for h in ("h1", "h2")]
    assert len(flows[0]) == len(flows[1]) == 1 and flows[0] != flows[1]
    for h, (fid,) in zip(("h1", "h2"), flows, strict=True):  # each error flows to its own STOP
        assert next(t for k, n, _, _, t in events(packets, uuid[h]) if (k, n) == ("I", "STOP")) == fid
    assert (summary.counts["hosts"], summary.counts["vms"], summary.counts["pauses"]) == (2, 2, 2)
    # The same fleet as host=/vm= partitions (files without those columns): the same bytes.
    table = pq.read_table(tmp_path / "two-hosts.parquet")
    for host in ("h1", "h2"):
        mine = table.filter(pc.equal(table["host"], host)).drop_columns(["vm", "host"])
        part = tmp_path / "ds" / f"host={host}" / "vm=vm0" / "part-0.parquet"
        part.parent.mkdir(parents=True)
        tracedir.write_table(mine, part, row_group_size=5)
    export.perfetto(tmp_path / "ds", tmp_path / "hive.pftrace")
    assert (tmp_path / "hive.pftrace").read_bytes() == out.read_bytes()


def test_perfetto_two_runs_of_vm0_are_two_tracks_named_with_their_run(tmp_path):
    dirs = two_runs(tmp_path)
    out = tmp_path / "t.pftrace"
    export.perfetto(dirs, out)
    packets = decode(out)  # a raw key (a lone surrogate) would not even serialize
    procs, threads, _ = tracks(packets)
    assert sorted(threads.values()) == [(f"vm0 (run {d})", 1) for d in dirs] and procs == {1: "no host"}
    uuid = by_name(threads)
    assert _pauses(packets, uuid[f"vm0 (run {dirs[0]})"]) != _pauses(packets, uuid[f"vm0 (run {dirs[1]})"])
    export.perfetto(list(reversed(dirs)), tmp_path / "again.pftrace")
    assert (tmp_path / "again.pftrace").read_bytes() == out.read_bytes()


def test_a_hostile_run_name_is_harmless_text_in_the_track_name_and_the_run_label(tmp_path):
    rows = [{**r, "run": run} for run, b in ((HOSTILE_HOST, _vm0(1, resume=True)), ("r2", _vm0(2, resume=True)))
            for r in b.rows]
    path = tmp_path / "runs.parquet"
    tracedir.write_table(from_pylist(rows, "sim"), path)
    export.perfetto(path, tmp_path / "t.pftrace")
    _, threads, _ = tracks(decode(tmp_path / "t.pftrace"))
    assert sorted(n for n, _ in threads.values()) == ['vm0 (run h"\\n\\x1b]0;t\\x07\\u2066)', "vm0 (run r2)"]
    export.openmetrics(path, tmp_path / "m.prom")
    text = (tmp_path / "m.prom").read_text()
    assert "\x1b" not in text and "\u2066" not in text
    runs = {dict(k[1])["run"] for k in samples(text, om_parser) if k[0] == "blkreplay_vm_paused"}
    assert runs == {'h"\n\\x1b]0;t\\x07\\u2066', "r2"}


def test_openmetrics_vm0_of_two_hosts_is_two_series_and_two_runs_get_a_run_label(tmp_path):
    out = tmp_path / "hosts.prom"
    export.openmetrics(two_hosts(tmp_path), out)
    text = out.read_text()
    got = samples(text, om_parser)
    assert samples(text.replace("# EOF\n", ""), prom_parser) == got
    vm_paused = {k[1]: v for k, v in got.items() if k[0] == "blkreplay_vm_paused"}
    assert vm_paused == {(("host", "h1"), ("vm", "vm0")): 0, (("host", "h2"), ("vm", "vm0")): 1}
    assert 'run="' not in text  # no runs in the trace: no run label
    assert got[("blkreplay_vm_io_errors", (("host", "h2"), ("vm", "vm0")))] == 1
    assert got[("blkreplay_host_vms_paused", (("host", "h2"),))] == 1

    dirs = two_runs(tmp_path)
    export.openmetrics(dirs, tmp_path / "runs.prom")
    got = samples((tmp_path / "runs.prom").read_text(), om_parser)
    vm_paused = {k[1]: v for k, v in got.items() if k[0] == "blkreplay_vm_paused"}
    assert vm_paused == {(("host", ""), ("run", str(dirs[0])), ("vm", "vm0")): 0,
                         (("host", ""), ("run", str(dirs[1])), ("vm", "vm0")): 1}


def test_tables_vm0_of_two_hosts_and_of_two_runs_are_separate_groups(tmp_path):
    export.tables(two_hosts(tmp_path), tmp_path / "hosts")
    state = pq.read_table(tmp_path / "hosts" / "state.parquet")
    assert state.column_names[3:6] == ["vm", "host", "run"]
    by_host = {h: [r["runstate"] for r in state.to_pylist() if r["host"] == h and r["kind"] == "runstate"]
               for h in ("h1", "h2")}
    assert by_host == {"h1": ["running", "io-error", "running"], "h2": ["running", "io-error"]}
    for h in ("h1", "h2"):  # each host's vm0 history in seq order, not two interleaved
        seqs = [r["seq"] for r in state.to_pylist() if r["host"] == h]
        assert seqs == sorted(seqs)
    eps = pq.read_table(tmp_path / "hosts" / "episodes.parquet")
    assert eps.column_names[:3] == ["vm", "host", "run"]
    assert sorted(zip(eps["vm"].to_pylist(), eps["host"].to_pylist(), strict=True)) == [("vm0", "h1"), ("vm0", "h2")]

    dirs = two_runs(tmp_path)
    export.tables(dirs, tmp_path / "runs")
    state = pq.read_table(tmp_path / "runs" / "state.parquet")
    runs = {r: [x["runstate"] for x in state.to_pylist() if x["run"] == r and x["kind"] == "runstate"]
            for r in map(str, dirs)}
    assert runs == {str(dirs[0]): ["running", "io-error", "running"], str(dirs[1]): ["running", "io-error"]}
    assert set(state["host"].to_pylist()) == {None}
    eps = pq.read_table(tmp_path / "runs" / "episodes.parquet")
    assert sorted(eps["run"].to_pylist()) == sorted(map(str, dirs))
    broken = [write_dir(broken_trace().table(), tmp_path / f"broken{i}") for i in (1, 2)]
    export.tables(broken, tmp_path / "broken")
    findings = pq.read_table(tmp_path / "broken" / "findings.parquet")
    assert findings.num_rows and set(findings["run"].to_pylist()) == set(map(str, broken))


@pytest.mark.parametrize("fmt, name", [("perfetto", "x.pftrace"), ("openmetrics", "x.prom"),
                                       ("parquet", "tables")])
def test_a_result_never_writes_into_the_recording_it_came_from(fmt, name, tmp_path):
    rec = tmp_path / "rec"
    shutil.copytree(TRACES / "fixed", rec)
    before = sorted(p.name for p in rec.iterdir())
    with pytest.raises(OutputError, match="input"):
        export.export(analyzer.check([rec]), rec / name, to=fmt)
    assert sorted(p.name for p in rec.iterdir()) == before
