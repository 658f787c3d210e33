"""The operational pattern rules (analyzer/rules/patterns.py): each caught on the simulated
scenario that shows it, silent on a healthy fleet and on every shipped trace, pinned on the real
captures (whose faults are deliberate), and steered by its parameters."""

from __future__ import annotations

import pytest

from analyzer import check
from analyzer.importers import import_traces
from analyzer.rules.catalogue import PATTERN_RULES, resolve_params, rule
from tests.analyzer.pattern_scenarios import EPOCH_NS, checked, trace
from tests.analyzer.rules.test_catalogue import ROOT
from tracer.errors import InputError
from tracer.sim.config import FaultRule

S = 10**9


def _pattern_findings(result) -> list[tuple[str, str]]:
    return sorted((f.rule, f.vm) for f in result.findings if f.rule in PATTERN_RULES)


def test_a_flapping_vm_is_a_pause_storm_and_its_healthy_neighbours_are_silent():
    result = checked("flapping-backend")
    storms = [f for f in result.findings if f.rule == "pause-storm"]
    assert [f.vm for f in storms] == ["vm0", "vm1"]
    assert all(f.severity == "warning" for f in result.findings) and result.verdict == "pass"
    assert "VM paused 7 times (2026-05-28T20:27:00." in storms[0].message
    assert "threshold 5 within 60 s" in storms[0].message
    assert {f.vm for f in result.findings} == {"vm0", "vm1"}


def test_management_resuming_into_the_outage_is_flagged_on_every_vm_of_the_fleet():
    result = checked("fleet-outage")
    early = [f for f in result.findings if f.rule == "resume-before-storage-back"]
    assert len(early) == 200 and len({f.vm for f in early}) == 200
    assert "before its storage was back for good" in early[0].message
    assert result.verdict == "pass" and {f.severity for f in result.findings} == {"warning"}


def test_the_slow_enospc_extender_is_an_enospc_pause_loop():
    result = checked("enospc-extender")
    [loop] = [f for f in result.findings if f.rule == "enospc-pause-loop"]
    assert (loop.vm, loop.device) == ("vm0", "drive0") and loop.error_id is not None
    assert loop.message.startswith("9 ENOSPC pauses of the device (2026-05-28T20:27:10.")
    assert loop.ts_ns >= EPOCH_NS + 30 * S


def test_report_policies_and_a_throttled_event_flood_are_flagged():
    result = checked("report-storm")
    assert _pattern_findings(result) == [("error-policy-not-stop", "vm0"), ("io-error-event-storm", "vm0")]
    policy = next(f for f in result.findings if f.rule == "error-policy-not-stop")
    assert "error policy report on a write" in policy.message
    assert "BLOCK_IO_ERROR action report on a read" in policy.message
    storm = next(f for f in result.findings if f.rule == "io-error-event-storm")
    assert "QEMU >= 9.2 throttles them" in storm.message and "management saw about 5 of them" in storm.message


def test_a_vm_paused_longer_than_the_slo_is_flagged_once():
    # management waits 300-900 s before resuming (a slow storage team)
    result = checked("fleet-outage", vms=3, hosts=0, duration_s=1200.0, cont_delay_ms=600_000.0,
                     faults=(FaultRule(start_s=10.0, end_s=20.0),))
    slo = [f for f in result.findings if f.rule == "paused-over-slo"]
    longest = result.episodes.groupby("vm")["paused_ns"].max()
    assert [f.vm for f in slo] == sorted(v for v, p in longest.items() if p > 300 * S)
    assert slo and all("longer than the SLO (300 s)" in f.message for f in slo)
    relaxed = check([trace("fleet-outage", vms=3, hosts=0, duration_s=1200.0, cont_delay_ms=600_000.0,
                           faults=(FaultRule(start_s=10.0, end_s=20.0),))],
                    params={"paused-over-slo.slo_s": 1000})
    assert not [f for f in relaxed.findings if f.rule == "paused-over-slo"]


def test_a_healthy_fleet_gives_no_pattern_finding():
    assert checked("fleet-outage", faults=()).findings == []


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "traces").iterdir()
                                        if (p / "manifest.json").exists()))
def test_no_shipped_trace_shows_a_pattern(name):
    # the simulator's own clock (not wall-clock time): time windows are not judged there
    result = check([ROOT / "traces" / name])
    assert _pattern_findings(result) == [] and result.incidents == []


#: The real captures' deliberate faults (blkdebug failing writes five times in a row, a client
#: resuming 0.2-1.5 s after each stop; `report` policies) are what the patterns warn about.
QEMU_FILES = ("qmp-transcript.jsonl", "trace.log", "cmdline.txt")
LIBVIRT_FILES = ("libvirtd.log", "virsh-events.log")
REAL = {
    "qemu-7.2/a-stop-eio-dataplane": (QEMU_FILES, ["pause-storm", "resume-before-storage-back"]),
    "qemu-10.0/a-stop-eio-dataplane": (QEMU_FILES, ["pause-storm", "resume-before-storage-back"]),
    # one per name the command line gives the disk (-drive id, -device id)
    "qemu-7.2/c-report": (QEMU_FILES, ["error-policy-not-stop"] * 2),
    "qemu-10.0/c-report": (QEMU_FILES, ["error-policy-not-stop"] * 2),
    "libvirt-9.0/a-stop-eio": (LIBVIRT_FILES, ["pause-storm", "resume-before-storage-back"]),
    "libvirt-11.3/a-stop-eio": (LIBVIRT_FILES, ["pause-storm", "resume-before-storage-back"]),
}


@pytest.mark.parametrize("folder", sorted(REAL))
def test_the_real_captures_warn_only_about_their_deliberate_faults(samples_dir, tmp_path, folder):
    names, _ = REAL[folder]
    import_traces([samples_dir / folder / n for n in names], tmp_path / "t.parquet")
    result = check([tmp_path / "t.parquet"])
    assert [r for r, _ in _pattern_findings(result)] == REAL[folder][1]
    assert result.verdict == "pass" and result.incidents == []


def test_parameters_steer_the_rules():
    path = trace("flapping-backend")
    strict = check([path], params={"pause-storm.min_pauses": 8})
    assert not [f for f in strict.findings if f.rule == "pause-storm"]
    # within 1 s: only vm0's one resume 1.5 s into a 2 s failure, not those 6-7 s before the next
    short = check([path], params={"resume-before-storage-back.within_s": 1, "pause-storm.window_s": "20"})
    [early] = short.findings
    assert (early.rule, early.vm) == ("resume-before-storage-back", "vm0")
    assert early.message.startswith("management resumed the VM once before")
    reported = check([trace("report-storm")], params={"error-policy-not-stop.policies": "ignore"})
    assert "error-policy-not-stop" not in {f.rule for f in reported.findings}


@pytest.mark.parametrize(("params", "message"), [
    ({"nosuch.x": 1}, "unknown parameter 'nosuch.x': use RULE.KEY, RULE one of pause-storm, "),
    ({"pause-storm.nosuch": 1}, "unknown parameter 'pause-storm.nosuch': pause-storm has window_s, min_pauses"),
    ({"pause-storm.min_pauses": 1}, "parameter pause-storm.min_pauses: 1 is not an integer >= 2"),
    ({"pause-storm.min_pauses": 2.5}, "parameter pause-storm.min_pauses: 2.5 is not an integer >= 2"),
    ({"pause-storm.window_s": "soon"}, "parameter pause-storm.window_s: 'soon' is not a number >= 0"),
    ({"pause-storm.window_s": "nan"}, "parameter pause-storm.window_s: 'nan' is not a number >= 0"),
    ({"error-policy-not-stop.policies": "stopp"},
     "parameter error-policy-not-stop.policies: 'stopp' is not a comma list of report, ignore, enospc, auto"),
    ({"vm-stop-thread.x": 1}, "unknown parameter 'vm-stop-thread.x': vm-stop-thread has no parameters"),
])
def test_bad_parameters_are_one_line_input_errors(params, message):
    with pytest.raises(InputError) as exc:
        resolve_params(params)
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)


def test_every_pattern_rule_is_a_warning_with_parameters_and_defaults():
    defaults = resolve_params(None)
    for rid in PATTERN_RULES:
        decl = rule(rid)
        assert decl.severity == "warning" and decl.guarantee == "pattern" and decl.params
        assert defaults[rid] == {p.key: p.default for p in decl.params}
    assert defaults["incidents"] == {"window_s": 30.0, "min_vms": 2}


def test_patterns_are_judged_per_vm_whatever_the_unit_layout(tmp_path):
    one = check([trace("flapping-backend")], workers=1)
    many = check([trace("flapping-backend")], workers=2)
    assert one.findings == many.findings and one.incidents == many.incidents

