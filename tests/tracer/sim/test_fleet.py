"""The simulator's fleet settings: hosts, a wall clock (epoch_s), fault windows over a range of
VMs (a shared outage, a flapping backend, a full volume), and the patterns' ground truth."""

from __future__ import annotations

import pytest

from tests.tracer.sim.test_oracle import read_rows
from tracer.errors import FieldError, ScenarioError
from tracer.sim import SimConfig, record
from tracer.sim.config import FaultRule, scenario_from_dict
from tracer.sim.truth import pattern_truth

S = 10**9
BASE = dict(vms=4, devices=1, vcpus=1, duration_s=10.0, error_rate=0.0, io_think_us=100_000.0,
            poll_interval_ms=5000.0, cont_delay_ms=500.0, fast_cont_prob=0.0, stop_prob=0.0)


def _errors(rows: list[dict]) -> list[int]:
    return [r["ts_ns"] for r in rows if r["kind"] == "error_action"]


def test_a_fault_window_fails_only_its_vms_and_only_within_it(tmp_path):
    cfg = SimConfig(**BASE, faults=(FaultRule(vms="1-2", start_s=3.0, end_s=4.0),))
    summary = record(cfg, tmp_path / "t")
    rows = read_rows(tmp_path / "t")
    assert _errors(rows["vm0"]) == [] and _errors(rows["vm3"]) == []
    for vm in ("vm1", "vm2"):
        errors = _errors(rows[vm])
        assert errors and all(3 * S <= t < 4 * S + S // 10 for t in errors)
    assert summary.truth["broken"] == [] and "patterns" not in summary.truth


def test_hosts_and_the_wall_clock_are_written_and_truth_gets_the_patterns(tmp_path):
    epoch = 1_780_000_000
    cfg = SimConfig(**BASE, hosts=2, epoch_s=float(epoch),
                    faults=(FaultRule(start_s=2.0, end_s=3.0),))
    summary = record(cfg, tmp_path / "t")
    rows = read_rows(tmp_path / "t")
    assert {vm: {r["host"] for r in rs} for vm, rs in rows.items()} == {
        "vm0": {"host00"}, "vm1": {"host01"}, "vm2": {"host00"}, "vm3": {"host01"}}
    assert min(r["ts_ns"] for rs in rows.values() for r in rs) >= epoch * S
    stamped = [r for rs in rows.values() for r in rs if r["event_ts_ns"] is not None]
    assert all(r["event_ts_ns"] >= epoch * S for r in stamped)
    assert summary.truth["patterns"] == {"pause-storm": [], "incidents": [["vm0", "vm1", "vm2", "vm3"]]}


def test_without_the_fleet_settings_a_run_is_what_it_always_was(tmp_path):
    # (the shipped traces are byte-identical too: tests/tracer/sim/test_determinism.py)
    plain = SimConfig(**{**BASE, "error_rate": 0.01})
    summary = record(plain, tmp_path / "a")
    assert "hosts" not in plain.to_dict() and "epoch_s" not in plain.to_dict()
    rows = read_rows(tmp_path / "a")
    assert all(r["host"] is None for rs in rows.values() for r in rs)
    assert summary.errors and min(r["ts_ns"] for rs in rows.values() for r in rs) < S
    assert "patterns" not in summary.truth


def test_pattern_truth_counts_storms_and_chains_incidents():
    stops = {"a": [(k * 10 * S, True) for k in range(5)], "b": [(5 * S, True)], "c": [(500 * S, True)],
             "d": [(k * 20 * S, False) for k in range(5)]}
    assert pattern_truth(stops) == {"pause-storm": ["a"], "incidents": [["a", "b"]]}


@pytest.mark.parametrize(("table", "needle"), [
    ({"vms": "x"}, "key 'fault[0].vms': expected '*' or an index range like '0-99', got 'x'"),
    ({"start_s": 5.0, "end_s": 4.0}, "key 'fault[0].end_s': must be after start_s"),
    ({"start_s": -1.0}, "key 'fault[0].start_s': must be at least 0"),
])
def test_bad_fault_windows_name_the_key(table, needle):
    with pytest.raises(ScenarioError) as exc:
        scenario_from_dict({"fault": [table]}, source="s.toml")
    assert str(exc.value).startswith(f"s.toml: {needle}")


def test_bad_fleet_settings_name_the_field():
    with pytest.raises(FieldError, match="epoch_s"):
        SimConfig(epoch_s=5.0)
    with pytest.raises(FieldError, match="hosts"):
        SimConfig(hosts=-1)
