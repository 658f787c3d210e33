"""Per-VM statistics: error breakdowns, stops and paused time, latency percentiles, integrity
facts and the run-state timeline, on small traces whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analyzer.report import stats
from analyzer.report.source import as_steps
from tests.analyzer.report.fixtures import TraceBuilder


@pytest.fixture
def two_vms() -> TraceBuilder:
    b = TraceBuilder()
    b.start("vm0")
    b.start("vm1")
    for i in range(3):
        b.error_cycle("vm0", "drive0", i + 1, paused_us=100 * (i + 1))
    b.error_cycle("vm1", "drive1", 1, errno=28)
    b.error_cycle("vm1", "drive2", 2, op="read")
    return b


def test_errors_are_counted_by_device_op_errno_and_action(two_vms):
    table = stats.errors_by_kind(two_vms.episodes_frame())
    rows = [tuple(r) for r in table.itertuples(index=False)]
    assert rows == [
        ("vm0", "drive0", "write", 5, "stop", 3),
        ("vm1", "drive1", "write", 28, "stop", 1),
        ("vm1", "drive2", "read", 5, "stop", 1),
    ]


def test_errors_keep_unknown_fields_as_their_own_group():
    ep = pd.DataFrame({"vm": ["a", "a", "a"], "device": ["d", "d", None], "op": [None, None, "read"],
                       "errno": [None, None, 5], "action": ["report"] * 3})
    table = stats.errors_by_kind(ep)
    assert table["errors"].tolist() == [2, 1]
    assert table.loc[0, "op"] is None and pd.isna(table.loc[0, "errno"])


def test_vm_summary_counts_stops_resumes_and_paused_time(two_vms):
    summary = stats.vm_summary(two_vms.episodes_frame(), two_vms.steps()).set_index("vm")
    vm0 = summary.loc["vm0"]
    assert vm0["errors"] == 3 and vm0["errors_stop"] == 3
    assert vm0["stop_events"] == 3
    assert vm0["resume_events"] == 4  # the start RESUME and one per cont
    assert vm0["io_error_stops"] == 3
    # Each pause lasts from STOP to RESUME: the cont delay plus the 3 steps after it.
    assert vm0["paused_ns"] == sum(us * 1_000 + 3 * 1_000 for us in (100, 200, 300))
    assert not vm0["paused_at_end"]
    assert summary.loc["vm1", "errors"] == 2


def test_errors_served_by_one_stop_count_its_pause_once():
    ep = pd.DataFrame({"vm": ["v", "v"], "error_id": [1, 2], "seq_stop": [10, 10],
                       "ts_stop": [1_000, 1_000], "ts_resume": [5_000, 5_000]})
    steps = pd.DataFrame({"vm": ["v"], "seq": [20], "ts_ns": [9_000], "thread": ["main"],
                          "kind": ["qmp_event"], "name": ["RESUME"], "runstate": [None]})
    stops = stats.io_error_stops(ep, steps)
    assert len(stops) == 1 and stops.loc[0, "paused_ns"] == 4_000


def test_a_stop_never_resumed_counts_until_the_end_and_is_flagged():
    b = TraceBuilder()
    b.start("v")
    b.error_cycle("v", "d", 1)
    ep = b.episodes_frame()
    ep.loc[0, "ts_resume"] = pd.NA
    summary = stats.vm_summary(ep, b.steps()).set_index("vm")
    last_ts = max(r["ts_ns"] for r in b.rows)
    assert summary.loc["v", "paused_ns"] == last_ts - ep.loc[0, "ts_stop"]
    assert summary.loc["v", "paused_at_end"]


def test_latency_percentiles_are_nearest_rank_values_per_vm_and_overall():
    ep = pd.DataFrame({"vm": ["a"] * 100 + ["b"] * 4,
                       "error_to_event_ns": [*range(1, 101), 7, 1, 9, 3]})
    table = stats.latency_summary(ep)
    a = table[(table["vm"] == "a")].iloc[0]
    assert (a["count"], a["p50_ns"], a["p95_ns"], a["p99_ns"], a["max_ns"]) == (100, 50, 95, 99, 100)
    b = table[(table["vm"] == "b")].iloc[0]
    assert (b["p50_ns"], b["p95_ns"], b["max_ns"]) == (3, 9, 9)
    overall = table[table["vm"] == stats.ALL_VMS].iloc[0]
    assert overall["count"] == 104 and overall["max_ns"] == 100
    assert table["vm"].tolist() == ["a", "b", stats.ALL_VMS]


def test_latencies_come_from_milestones_when_the_columns_are_absent(two_vms):
    ep = two_vms.episodes_frame().drop(columns=["error_to_event_ns", "event_to_stop_ns"])
    table = stats.latency_summary(ep)
    labels = [label for *_, label in stats.LATENCIES]
    assert set(table["measure"]) == set(labels)
    e2e = table[(table["vm"] == "vm0") & (table["measure"] == labels[0])].iloc[0]
    assert e2e["p50_ns"] == 5_000  # error_action -> 3 steps later, the event (+3 µs gap)


def test_seq_gaps_name_the_hole_and_its_size():
    b = TraceBuilder()
    b.start("v")
    b.skip_seq("v", 5)
    b.step("v", "qmp_event", name="STOP")
    b.step("w", "qmp_event", name="STOP")
    gaps = stats.seq_gaps(b.steps())
    assert gaps.to_dict(orient="records") == [{"vm": "v", "after_seq": 1, "before_seq": 7, "missing": 5}]
    summary = stats.integrity_summary(b.steps()).set_index("vm")
    assert summary.loc["v", "seq_missing"] == 5 and summary.loc["w", "seq_gaps"] == 0


def test_clock_anomalies_are_per_thread():
    b = TraceBuilder()
    b.step("v", "qmp_event", "main", name="RESUME")
    b.step("v", "io_complete", "iothread0", gap=-500)  # earlier than main's step: other thread, fine
    b.step("v", "io_complete", "iothread0", gap=-200)  # earlier than iothread0's last: anomaly
    clock = stats.clock_anomalies(b.steps())
    assert len(clock) == 1
    row = clock.iloc[0]
    assert (row["thread"], row["prev_seq"], row["seq"], row["backwards_ns"]) == ("iothread0", 1, 2, 200)


def test_runstate_intervals_follow_runstate_rows(two_vms):
    iv = stats.runstate_intervals(as_steps(two_vms.steps()), two_vms.episodes_frame())
    vm0 = iv[iv["vm"] == "vm0"]
    assert vm0["state"].tolist() == ["running", "io-error"] * 3 + ["running"]
    io = vm0[vm0["state"] == "io-error"]
    assert (io["end_ns"] > io["start_ns"]).all()
    assert (vm0["start_ns"].iloc[1:].to_numpy() == vm0["end_ns"].iloc[:-1].to_numpy()).all()


def test_without_runstate_rows_stop_and_resume_events_give_the_state(two_vms):
    b = two_vms
    b.step("vm1", "qmp_command", "mgmt", name="stop")
    b.step("vm1", "qmp_event", name="STOP")  # a user's stop: paused, not io-error
    steps = b.steps()
    steps = steps[steps["kind"] != "runstate"]
    iv = stats.runstate_intervals(as_steps(steps), b.episodes_frame())
    vm1 = iv[iv["vm"] == "vm1"]["state"].tolist()
    assert vm1 == ["running", "io-error", "running", "io-error", "running", "paused"]


def test_timeline_markers_and_most_affected_vms(two_vms):
    markers = stats.timeline_markers(two_vms.steps())
    vm0 = markers[markers["vm"] == "vm0"]["marker"].tolist()
    assert vm0 == ["resume"] + ["error", "stop", "resume"] * 3
    summary = stats.vm_summary(two_vms.episodes_frame(), two_vms.steps())
    assert stats.most_affected(summary) == ["vm0", "vm1"]
    assert stats.most_affected(summary, {"vm1": 1}, limit=1) == ["vm1"]


def test_statistics_of_a_large_trace_are_exact():
    """Vectorized paths agree with a direct computation on 200k random steps."""
    rng = np.random.default_rng(7)
    n = 200_000
    vm = rng.choice(["a", "b", "c"], n)
    steps = pd.DataFrame({"vm": vm, "seq": np.arange(n), "ts_ns": np.arange(n) * 10,
                          "thread": rng.choice(["main", "io"], n), "kind": "io_submit",
                          "name": None, "runstate": None})
    steps.loc[1000, "ts_ns"] = 0
    gaps = stats.seq_gaps(steps)
    for v in ("a", "b", "c"):
        seqs = np.sort(steps.loc[steps["vm"] == v, "seq"].to_numpy())
        expect = int((np.diff(np.concatenate([[-1], seqs])) - 1).sum())
        assert gaps.loc[gaps["vm"] == v, "missing"].sum() == expect
    clock = stats.clock_anomalies(steps)
    assert clock["seq"].tolist() == [1000]
    lat = rng.integers(0, 10**6, 50_000)
    table = stats.latency_summary(pd.DataFrame({"vm": "a", "event_to_stop_ns": lat}))
    row = table.iloc[0]
    srt = np.sort(lat)
    assert row["p99_ns"] == srt[int(np.ceil(0.99 * len(srt))) - 1] and row["max_ns"] == srt[-1]
