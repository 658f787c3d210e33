"""The built-in rules restated in the language (analyzer/lang/builtin.yaml) give exactly the
hand-written findings -- rule, severity, vm, device, error id, evidence, time, thread, message,
sources -- on every shipped trace, the real captures, simulator runs of every variant, and the
generated traces the reference checker is held to."""

from __future__ import annotations

import os
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from analyzer import check
from analyzer.importers import import_traces
from analyzer.lang import compile_builtin
from analyzer.lang.ruleset import BUILTIN_NAME
from analyzer.rules import RULE_IDS
from tests.analyzer.rules.test_reference_agreement import as_import, build, ops
from tracer import tracedir
from tracer.schema import from_pylist
from tracer.sim import VARIANTS, SimConfig, record
from tracer.sim.variants import VARIANT_TABLE

REPO = Path(__file__).resolve().parents[3]
BUILTIN = REPO / "analyzer" / "lang" / BUILTIN_NAME
TRACES = sorted(p for p in (REPO / "traces").iterdir() if (p / "manifest.json").exists())
RESTATED = tuple(r.id for r in compile_builtin().rules)

REAL = {
    "qemu-7.2-dataplane": ("qemu-7.2/a-stop-eio-dataplane", ["qmp-transcript.jsonl", "trace.log"]),
    "qemu-7.2-report": ("qemu-7.2/c-report", ["qmp-transcript.jsonl", "trace.log"]),
    "qemu-10.0-dataplane": ("qemu-10.0/a-stop-eio-dataplane", ["qmp-transcript.jsonl", "trace.log"]),
    "qemu-10.0-report": ("qemu-10.0/c-report", ["qmp-transcript.jsonl", "trace.log"]),
    "qemu-10.0-events": ("qemu-10.0/a-stop-eio-dataplane", ["events.jsonl"]),
    "libvirt-9.0": ("libvirt-9.0/a-stop-eio", ["libvirtd.log"]),
    "libvirt-11.3": ("libvirt-11.3/a-stop-eio", ["libvirtd.log"]),
}


def assert_same(paths) -> int:
    hand = check([str(p) for p in paths], rules=list(RESTATED))
    lang = check([str(p) for p in paths], rule_files=[str(BUILTIN)], only_files=True)
    assert [r.id for r in lang.rules] == list(RESTATED)
    assert lang.not_applicable == hand.not_applicable
    assert lang.findings == hand.findings
    assert lang.to_dict() == hand.to_dict()
    return len(hand.findings)


def test_builtin_restates_only_built_in_rules_in_catalogue_order():
    assert set(RESTATED) <= set(RULE_IDS)
    assert list(RESTATED) == [r for r in RULE_IDS if r in RESTATED]
    assert RESTATED == ("iostatus-before-event", "iostatus-before-stop", "vm-stop-thread")


@pytest.mark.parametrize("trace", TRACES, ids=[t.name for t in TRACES])
def test_same_findings_on_every_shipped_trace(trace):
    assert_same([trace])


def test_the_shipped_traces_exercise_every_restated_rule():
    found = check([str(t) for t in TRACES], rule_files=[str(BUILTIN)], only_files=True)
    assert {f.rule for f in found.findings} == set(RESTATED)


@pytest.mark.parametrize("sample", sorted(REAL))
def test_same_findings_on_the_real_captures(samples_dir, tmp_path, sample):
    folder, names = REAL[sample]
    out = tmp_path / "t.parquet"
    import_traces([samples_dir / folder / n for n in names], out)
    assert_same([out])


@pytest.mark.parametrize("variant", VARIANTS)
def test_same_findings_on_simulator_runs(tmp_path, variant):
    for seed in (1, 2):
        out = tmp_path / f"{variant}-{seed}"
        qemu = VARIANT_TABLE[variant].only_qemu or "7.2"  # qom-path-swap exists in 9.2 only
        record(SimConfig(seed=seed, variant=variant, mode="sim", vms=2, devices=2, iothreads=1,
                         duration_s=0.05, qemu=qemu), out)
        assert_same([out])


@pytest.mark.parametrize("qemu", ["9.2", "10.0"])
@pytest.mark.parametrize("variant", ["event-first", "sync-stop"])
def test_same_findings_on_throttled_simulator_runs(tmp_path, qemu, variant):
    """QEMU >= 9.2: held, late and replaced BLOCK_IO_ERRORs are judged at their raise by the
    restated rules as by the built-ins (both break I1 at the raise, whatever the delivery)."""
    for seed in (1, 2):
        out = tmp_path / f"{variant}-{seed}"
        record(SimConfig(seed=seed, variant=variant, vms=1, devices=2, iothreads=1, qemu=qemu,
                         event_throttle_ms=(5.0, 1000.0)[seed % 2]), out)
        assert_same([out])


@settings(
    max_examples=int(os.environ.get("BLKREPLAY_EXAMPLES", "60")),
    derandomize=os.environ.get("CI") == "true",
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(program=st.lists(ops, min_size=1, max_size=25), imported=st.booleans(),
       qmp_only=st.booleans(), dataplane=st.booleans())
def test_same_findings_on_generated_traces(tmp_path, program, imported, qmp_only, dataplane):
    rows = build(program, {"drive0": "iothread0" if dataplane else None, "drive1": None})
    if imported:
        rows = as_import(rows, qmp_only)
    path = tmp_path / "t.parquet"
    tracedir.write_table(from_pylist(rows, "sim"), path)
    assert_same([path])


def _sweep():
    import importlib.util

    spec = importlib.util.spec_from_file_location("accuracy_sweep", REPO / "benchmarks" / "accuracy_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_sweeps_restated_mode_compares_and_would_see_a_difference(tmp_path, monkeypatch):
    sweep = _sweep()
    trace = TRACES[[t.name for t in TRACES].index("sync-stop")]
    result = check([str(trace)])
    compared, diffs = sweep.restated_diff(trace, result)
    assert compared > 0 and diffs == []
    # A restatement that drifts (here: one word of a message) is reported finding by finding.
    drifted = tmp_path / "drift.yaml"
    drifted.write_text(BUILTIN.read_text(encoding="utf-8").replace("only the main\n      loop", "only the\n      loop"),
                       encoding="utf-8")
    monkeypatch.setattr(sweep, "BUILTIN_RULES", drifted)
    compared, diffs = sweep.restated_diff(trace, result)
    assert diffs and all("restated vm-stop-thread" in d for d in diffs)
