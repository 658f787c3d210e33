"""Scenario files: the shipped ones load and run; bad ones fail with one precise line."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.tracer.sim.test_oracle import read_rows
from tracer.errors import FieldError, ScenarioError
from tracer.sim import SimConfig, load_scenario, record

SCENARIOS = Path(__file__).resolve().parents[3] / "traces" / "scenarios"


def test_the_shipped_scenarios_load():
    names = {p.stem: load_scenario(p) for p in sorted(SCENARIOS.glob("*.toml"))}
    assert {"one-vm-eio", "enospc", "fleet", "cont-race"} <= set(names)
    assert (names["fleet"].vms, names["fleet"].devices) == (50, 4)
    assert names["enospc"].werror == "enospc" and names["enospc"].errno == "ENOSPC"
    assert names["cont-race"].cont_delay_ms < 0.1 and names["cont-race"].fast_cont_prob > 0.5
    assert names["one-vm-eio"].name == "one-vm-eio"


@pytest.mark.parametrize("name", ["one-vm-eio", "enospc", "cont-race"])
def test_a_shipped_scenario_runs_and_errors(tmp_path, name):
    config = load_scenario(SCENARIOS / f"{name}.toml")
    summary = record(config.replace(duration_s=min(config.duration_s, 0.1)), tmp_path / "t")
    assert summary.errors > 0 and summary.stops > 0 and summary.truth["broken"] == []


def test_enospc_scenario_stops_on_enospc_and_reports_eio(tmp_path):
    record(load_scenario(SCENARIOS / "enospc.toml"), tmp_path / "t")
    rows = read_rows(tmp_path / "t")["vm0"]
    by = Counter((r["errno"], r["action"]) for r in rows if r["kind"] == "error_action")
    assert by[(28, "stop")] and by[(5, "report")] and not by[(5, "stop")]
    assert {r["iostatus"] for r in rows if r["kind"] == "iostatus_set"} == {"nospace"}


def test_fleet_scenario_shape(tmp_path):
    config = load_scenario(SCENARIOS / "fleet.toml").replace(duration_s=0.002)
    summary = record(config, tmp_path / "t")
    rows = read_rows(tmp_path / "t")
    assert summary.vms == 50 and len(rows) == 50
    assert {r["device"] for r in rows["vm49"] if r["device"]} == {"drive0", "drive1", "drive2", "drive3"}
    threads = {r["thread"]: r["device"] for r in rows["vm7"] if r["kind"] == "io_complete"}
    assert {"iothread0", "iothread1", "main"} <= set(threads)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("vms = 0\n", "key 'vms': must be between 1 and 100000, got 0"),
        ("vms = 'two'\n", "key 'vms': expected an integer, got 'two'"),
        ("error_rate = 1.5\n", "key 'error_rate': must be at least 0 and at most 1, got 1.5"),
        ("rerror = 'enospc'\n", "key 'rerror': expected one of report, ignore, stop (QEMU rejects rerror=enospc)"),
        ("werror = 'pause'\n", "key 'werror'"),
        ("errno = 'EWHAT'\n", "key 'errno': expected an errno name"),
        ("variant = 'broken'\n", "key 'variant': expected one of fixed, sync-stop"),
        ("vsm = 3\n", "unknown key 'vsm' (did you mean 'vms'?)"),
        ("vms = \n", "not valid TOML"),
        ("[[fault]]\nop = 'trim'\n", "key 'fault[0].op'"),
        ("[[fault]]\nrate = 0.1\n", "key 'fault[0].rate': unknown key"),
        ("[[fault]]\nerror_rate = -1\n", "key 'fault[0].error_rate'"),
        ("fault = 3\n", "key 'fault': expected [[fault]] tables"),
        ("read_fraction = 0.8\nflush_fraction = 0.5\n", "key 'flush_fraction'"),
    ],
)
def test_bad_scenarios_name_the_file_and_key(tmp_path, text, needle):
    path = _write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and needle in message
    assert "\n" not in message


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ScenarioError, match="scenario file not found"):
        load_scenario(tmp_path / "nope.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ScenarioError, match="cannot read scenario file"):
        load_scenario(tmp_path / "bin.toml")


def test_replace_validates_and_ignores_none():
    base = SimConfig(seed=3, vms=2)
    assert base.replace(vms=None, seed=4) == SimConfig(seed=4, vms=2)
    with pytest.raises(FieldError) as info:
        base.replace(devices=0)
    assert info.value.field == "devices"
    with pytest.raises(FieldError, match="unknown setting"):
        base.replace(disks=3)
    assert SimConfig(errno=28).errno == "ENOSPC"  # errno numbers are accepted and named
