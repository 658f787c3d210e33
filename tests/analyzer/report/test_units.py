"""A report reads the trace unit by unit (issue #13: memory follows one unit, not the trace):
the per-unit statistics must merge into exactly the whole-trace ones, and the report must be
byte-identical however the trace splits into units."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from analyzer.check import check
from analyzer.report import render, source, stats
from analyzer.report.build import assemble_report, build_report, trace_units
from analyzer.report.context import context_windows
from analyzer.report.source import as_steps, read_steps, read_unit_steps, state_rows
from analyzer.trace import load
from tests.analyzer.report.fixtures import TraceBuilder
from tracer.sim import SimConfig, record
from tracer.tracedir import write_table


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A failing simulated fleet of more VMs than the timeline draws, one file per VM (so
    that the VMs can be units of their own)."""
    base = tmp_path_factory.mktemp("fleet")
    record(SimConfig(variant="sync-stop", seed=3, vms=10, duration_s=0.05, error_rate=0.01),
           base / "sim")
    table = pq.read_table(base / "sim" / "seg-000000.parquet")
    vm = table.column("vm").cast(pa.string())
    paths = []
    for name in sorted(set(vm.to_pylist()), reverse=True):
        paths.append(base / f"{name}.parquet")
        write_table(table.filter(pc.equal(vm, name)), paths[-1])
    return paths


@pytest.fixture(scope="module")
def hurt(tmp_path_factory):
    """Three VMs in three files, each with seq gaps and clocks going back, one with an open stop."""
    base = tmp_path_factory.mktemp("hurt")
    paths = []
    for i, vm in enumerate(("vm-c", "vm-a", "vm-b")):
        b = TraceBuilder()
        b.start(vm)
        b.error_cycle(vm, "drive0", 1)
        b.skip_seq(vm, 3 + i)
        b.step(vm, "io_submit", "vcpu0", device="drive0", op="read")
        b.step(vm, "io_complete", "vcpu0", gap=-5_000 * (i + 1), device="drive0", op="read")
        b.error_cycle(vm, "drive1", 2, stop=i != 1)
        b.skip_seq(vm, 1)
        b.error_cycle(vm, "drive0", 3)
        paths.append(b.write(base / f"{vm}.parquet"))
    return paths


def _facts_equal(a: stats.StepFacts, b: stats.StepFacts) -> None:
    for name in ("ts", "events", "gaps", "clock"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_index_type=False)


@pytest.mark.parametrize("case", ["fleet", "hurt"])
def test_per_unit_facts_merge_into_the_whole_trace_facts(case, request):
    paths = request.getfixturevalue(case)
    trace = load(paths, unit_rows=1)  # every VM its own unit
    assert len(trace.units) >= 3
    whole = read_steps(trace)
    parts = [read_unit_steps(trace, u) for u in trace.units]
    assert sum(len(p) for p in parts) == len(whole) == trace.rows
    merged = stats.merge_facts([stats.step_facts(p) for p in parts])
    _facts_equal(merged, stats.step_facts(whole))
    result = check(trace)
    pd.testing.assert_frame_equal(stats.vm_summary(result.episodes, merged),
                                  stats.vm_summary(result.episodes, whole))
    pd.testing.assert_frame_equal(stats.integrity_summary(merged), stats.integrity_summary(whole))
    if case == "hurt":  # the facts are there to be merged, not vacuous
        assert len(merged.gaps) == 6 and len(merged.clock) == 3
        assert merged.vms == ["vm-a", "vm-b", "vm-c"]


def test_unit_rows_are_the_whole_trace_rows_of_the_unit(hurt):
    trace = load(hurt, unit_rows=1)
    whole = read_steps(trace).astype(object)
    got = pd.concat([read_unit_steps(trace, u) for u in trace.units], ignore_index=True).astype(object)
    pd.testing.assert_frame_equal(got, whole)
    only = read_unit_steps(trace, trace.unit_of("vm-b"), vms=["vm-b"]).astype(object)
    pd.testing.assert_frame_equal(only, whole[whole["vm"] == "vm-b"].reset_index(drop=True))


@pytest.mark.parametrize("case", ["fleet", "hurt"])
@pytest.mark.parametrize("fmt", ["md", "json", "html"])
def test_report_bytes_do_not_depend_on_the_units(case, fmt, request):
    paths = request.getfixturevalue(case)
    one = load(paths, unit_rows=10**12)  # everything in one unit
    many = load(paths, unit_rows=1)
    assert len(one.units) == 1 and len(many.units) >= 3
    result = check(one)
    assert result.findings  # windows, timeline and integrity all have something to show
    reports = [
        assemble_report(result, read_steps(one), max_findings=4, command="c"),
        assemble_report(result, trace_units(one), max_findings=4, command="c"),
        assemble_report(result, trace_units(many), max_findings=4, command="c"),
    ]
    data = [render(r, fmt) for r in reports]
    assert data[0] == data[1] == data[2]
    assert sum(s.listed[0].context is not None for s in reports[2].rules if s.listed) > 0


def test_each_phase_reports_progress_to_its_end(fleet, monkeypatch):
    calls: dict[str, list] = {"check": [], "statistics": [], "timeline": []}
    read_rows: list[int] = []
    original = source.read_unit_steps

    def counting(*args, **kwargs):
        steps = original(*args, **kwargs)
        read_rows.append(len(steps))
        return steps

    monkeypatch.setattr(source, "read_unit_steps", counting)
    rep = build_report(fleet, progress=lambda d, t: calls["check"].append((d, t)),
                       statistics_progress=lambda d, t: calls["statistics"].append((d, t)),
                       timeline_progress=lambda d, t: calls["timeline"].append((d, t)))
    rows = load(fleet).rows
    assert calls["check"][-1] == (rows, rows)
    # The statistics are gathered while the check reads the trace; only the VMs of listed
    # findings are read again (for their context windows), the timeline has no pass of its own.
    listed = {lf.finding.vm for s in rep.rules for lf in s.listed}
    again = int(rep.stats.vms.set_index("vm").loc[sorted(listed), "steps"].sum())
    assert 0 < again < rows
    assert calls["statistics"][0] == (0, again) and calls["statistics"][-1] == (again, again)
    assert sum(read_rows) == again and rep.timeline.vms and not rep.timeline.intervals.empty
    assert calls["timeline"] == [(0, 0)]
    for seen in calls.values():
        done = [d for d, _ in seen]
        assert done == sorted(done)


def test_state_of_the_state_rows_alone_is_the_state_of_every_row(fleet):
    """The report replays only the rows a state can depend on (successful I/O left out); the
    windows and run-state intervals must be those of a batch of every row."""
    trace = load(fleet)
    steps = read_steps(trace)
    rows = state_rows(steps)
    assert 0 < len(rows) < len(steps)  # the fleet has successful I/O to leave out
    result = check(trace)
    listed = [f for f in result.findings if f.seq][:12]
    order = [r.id for r in result.rules]
    full = context_windows(steps, as_steps(steps), listed, result.findings, order)
    part = context_windows(steps, as_steps(steps.iloc[rows]), listed, result.findings, order, rows=rows)
    assert full == part and all(w is not None for w in part)
    facts = stats.step_facts(steps)
    pd.testing.assert_frame_equal(
        stats.runstate_intervals(as_steps(steps.iloc[rows]), result.episodes, bounds=facts.ts),
        stats.runstate_intervals(as_steps(steps), result.episodes))


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    """One VM's rows dealt alternately into two files: its unit is not in (vm, seq) order
    across row groups, so the check reads it again sorted (and tells the report so)."""
    base = tmp_path_factory.mktemp("shuffled")
    b = TraceBuilder()
    b.start("vm1")
    for i in range(3):
        b.error_cycle("vm1", "drive0", i + 1, stop=i != 1)
    table = b.table()
    even = pc.equal(pc.bit_wise_and(table.column("seq"), 1), 0)
    pq.write_table(table.filter(even), base / "a.parquet")
    pq.write_table(table.filter(pc.invert(even)), base / "b.parquet")
    return [base / "a.parquet", base / "b.parquet"]


def test_an_observer_runs_with_the_local_engine_only(fleet):
    from analyzer.report.build import StatsObserver
    from tracer.errors import InputError

    with pytest.raises(InputError, match="local engine"):
        check(fleet, engine="dask", observe=StatsObserver(load(fleet)))


@pytest.mark.parametrize("case", ["fleet", "hurt", "shuffled"])
def test_statistics_gathered_during_the_check_are_those_read_after_it(case, request):
    """`build_report` gathers the statistics while the check reads the trace (one read); the
    report is the same bytes as one whose statistics are read unit by unit afterwards."""
    paths = request.getfixturevalue(case)
    once = build_report(paths, max_findings=4, command="c")
    trace = load(paths, unit_rows=1)
    after = assemble_report(check(trace), trace_units(trace), max_findings=4, command="c")
    for fmt in ("html", "md", "json"):
        assert render(once, fmt) == render(after, fmt)
