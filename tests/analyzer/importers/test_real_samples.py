"""Imported real captures through the analyzer: the samples pass, the edited copies fail with
the matching finding, pointing at the edited lines (tests/data/real/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.importers import import_traces
from tests.analyzer.guarantees import GUARANTEE_RULES
from tests.analyzer.importers.conftest import EDITED


def _check():
    try:
        from analyzer import check
    except ImportError:
        pytest.skip("analyzer.check is not built yet")
    return check


def audit(inputs: list[Path], tmp_path: Path):
    out = tmp_path / "trace.parquet"
    import_traces(inputs, out)
    return _check()([out], rules=GUARANTEE_RULES)


SAMPLES = {
    "dataplane-transcript": ("qemu-7.2/a-stop-eio-dataplane", ["qmp-transcript.jsonl"]),
    "dataplane-events": ("qemu-7.2/a-stop-eio-dataplane", ["events.jsonl"]),
    "dataplane-trace": ("qemu-7.2/a-stop-eio-dataplane", ["trace.log"]),
    "dataplane-merged": ("qemu-7.2/a-stop-eio-dataplane", ["qmp-transcript.jsonl", "trace.log"]),
    "report-transcript": ("qemu-7.2/c-report", ["qmp-transcript.jsonl"]),
    "report-trace": ("qemu-7.2/c-report", ["trace.log"]),
    "report-merged": ("qemu-7.2/c-report", ["qmp-transcript.jsonl", "trace.log"]),
    "libvirt": ("libvirt-9.0/a-stop-eio", ["libvirtd.log"]),
}

#: Every real capture in every input form (transcript, events, trace log, merged, libvirt log).
ALL_SAMPLES = {
    **{f"7.2-{k}": v for k, v in SAMPLES.items()},
    "7.2-report-events": ("qemu-7.2/c-report", ["events.jsonl"]),
    **{
        f"10.0-{kind}-{form}": (f"qemu-10.0/{folder}", names)
        for kind, folder in (("dataplane", "a-stop-eio-dataplane"), ("report", "c-report"))
        for form, names in (
            ("transcript", ["qmp-transcript.jsonl"]),
            ("events", ["events.jsonl"]),
            ("trace", ["trace.log"]),
            ("merged", ["qmp-transcript.jsonl", "trace.log"]),
        )
    },
    "libvirt-11.3": ("libvirt-11.3/a-stop-eio", ["libvirtd.log"]),
}


@pytest.mark.parametrize("sample", sorted(ALL_SAMPLES))
def test_real_samples_pass(samples_dir, tmp_path, sample):
    folder, names = ALL_SAMPLES[sample]
    result = audit([samples_dir / folder / n for n in names], tmp_path)
    assert [(f.rule, f.message) for f in result.findings] == []
    assert result.verdict == "pass"


def _numbers_only(trace: Path, out: Path, *, version: bool) -> Path:
    """The trace log as QEMU writes it with only ``monitor_protocol_event_*`` enabled for
    events: no ``monitor_qmp_respond`` JSON (and, without `version`, no query-version)."""
    drop = [":monitor_qmp_respond "] + ([] if version else ["query_version"])
    lines = trace.read_text().splitlines(keepends=True)
    out.write_text("".join(x for x in lines if not any(d in x for d in drop)))
    return out


@pytest.mark.parametrize("qemu", ["qemu-7.2", "qemu-10.0"])
@pytest.mark.parametrize("with_transcript", [False, True])
def test_event_numbers_only_pass_named_by_the_version_table(samples_dir, tmp_path, qemu, with_transcript):
    folder = samples_dir / qemu / "a-stop-eio-dataplane"
    trace = _numbers_only(folder / "trace.log", tmp_path / "numbers.log", version=True)
    inputs = [trace, *([folder / "qmp-transcript.jsonl"] if with_transcript else [])]
    result = audit(inputs, tmp_path)
    assert [(f.rule, f.message) for f in result.findings] == []
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "trace.parquet")
    events = table.filter(pc.equal(table["kind"], "qmp_event"))["name"].to_pylist()
    # named (7.2: BLOCK_IO_ERROR 15, 10.0: 17), and merged with the transcript's: no doubles
    assert {n: events.count(n) for n in set(events)} == {
        "RESUME": 7, "BLOCK_IO_ERROR": 6, "STOP": 6, "SHUTDOWN": 1,
    }


@pytest.mark.parametrize("qemu", ["qemu-7.2", "qemu-10.0"])
def test_event_numbers_of_an_unknown_qemu_are_one_warning_not_false_findings(samples_dir, tmp_path, qemu):
    folder = samples_dir / qemu / "a-stop-eio-dataplane"
    trace = _numbers_only(folder / "trace.log", tmp_path / "numbers.log", version=False)
    result = audit([trace], tmp_path)
    bie = "15" if qemu == "qemu-7.2" else "17"
    [warning] = result.findings
    assert warning.rule == "event-names-unknown" and warning.severity == "warning"
    assert f"20 events of this trace log are numbers only (QAPIEvent 0, 3, 4, {bie})" in warning.message
    assert result.verdict == "pass"
    # with the transcript beside it the numbers are matched to its events and named
    merged = audit([trace, folder / "qmp-transcript.jsonl"], tmp_path)
    assert merged.findings == []


#: rule -> (edited lines the finding must point at, other rules the same edit also breaks).
EDITS = {
    "event-before-stop": ([34, 35], set()),
    "stop-follows-error": ([34], set()),
    # io-status ok (line 39) right after query-status said io-error (line 37): the VM would be
    # paused for an I/O error with no failed device, which query-matches-runstate reports
    "query-matches-events": ([34, 38, 39], {"query-matches-runstate"}),
    "resume-before-retry-error": ([43, 45, 47], set()),
}


@pytest.mark.parametrize("rule", sorted(EDITS))
def test_edited_captures_give_the_matching_finding(tmp_path, rule):
    path = EDITED / f"{rule}.qmp-transcript.jsonl"
    lines, also = EDITS[rule]
    result = audit([path], tmp_path)
    errors = [f for f in result.findings if f.severity == "error"]
    assert {f.rule for f in errors} == {rule} | also
    matching = [f for f in errors if f.rule == rule]
    assert len(matching) == 1
    assert set(matching[0].src) >= {f"{path}:{line}" for line in lines}
    assert result.verdict == "fail"


def _throttled_capture(path: Path, major: int, minor: int) -> Path:
    """QEMU >= 9.2: BLOCK_IO_ERROR is throttled per qom-path (one a second); the retried
    write's event is delivered 0.7 s late, after its STOP, keeping its original timestamp.
    The greeting says which QEMU sent it (line 1)."""
    import json

    def event(name, sec, usec, data=None):
        msg = {"timestamp": {"seconds": sec, "microseconds": usec}, "event": name}
        return json.dumps({**msg, "data": data} if data else msg)

    hello = {"QMP": {"version": {"qemu": {"micro": 0, "minor": minor, "major": major}, "package": ""},
                     "capabilities": ["oob"]}}
    bie = {"device": "drive0", "node-name": "n", "qom-path": "/machine/peripheral/vblk0/virtio-backend",
           "nospace": False, "reason": "Input/output error", "operation": "write", "action": "stop"}
    records = [
        (100.0, "recv", json.dumps(hello)),
        (100.0001, "recv", event("BLOCK_IO_ERROR", 100, 100, bie)),
        (100.0002, "recv", event("STOP", 100, 200)),
        (100.3, "send", json.dumps({"execute": "cont", "id": 1})),
        (100.3001, "recv", event("RESUME", 100, 300050)),
        (100.3002, "recv", json.dumps({"return": {}, "id": 1})),
        (100.3003, "recv", event("STOP", 100, 300200)),
        (101.0002, "recv", event("BLOCK_IO_ERROR", 100, 300100, bie)),
    ]
    path.write_text("".join(json.dumps({"t": t, "dir": d, "line": m}) + "\n" for t, d, m in records))
    return path


def test_throttled_block_io_error_is_no_violation(tmp_path):
    """QEMU 9.2: the late BLOCK_IO_ERROR's timestamp (<= the STOP's) says it came first."""
    result = audit([_throttled_capture(tmp_path / "throttled.jsonl", 9, 2)], tmp_path)
    assert [f.rule for f in result.findings if f.severity == "error"] == []
    assert result.verdict == "pass"


def test_the_same_wire_order_from_qemu_7_2_is_a_violation(tmp_path):
    """QEMU 7.2 does not throttle: arrival order is emission order, the STOP came first."""
    path = _throttled_capture(tmp_path / "unthrottled.jsonl", 7, 2)
    result = audit([path], tmp_path)
    found = [f for f in result.findings if f.severity == "error"]
    assert [f.rule for f in found] == ["event-before-stop"]
    assert set(found[0].src) == {f"{path}:7", f"{path}:8"}
    assert result.verdict == "fail"


@pytest.mark.parametrize("sample", sorted(s for s in SAMPLES if not s.startswith("report-")))
def test_events_carry_their_qmp_time_and_the_trace_its_qemu_version(samples_dir, tmp_path, sample):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    folder, names = SAMPLES[sample]
    out = tmp_path / "trace.parquet"
    import_traces([samples_dir / folder / n for n in names], out)
    table = pq.read_table(out)
    # events.jsonl holds events only: no greeting, so no version (throttling then assumed)
    expected = None if sample == "dataplane-events" else b"7.2.22"
    assert table.schema.metadata.get(b"blkreplay.qemu_version") == expected

    events = table.filter(pc.equal(table["kind"], "qmp_event"))
    assert events.num_rows and events["event_ts_ns"].null_count == 0
    others = table.filter(pc.not_equal(table["kind"], "qmp_event"))
    assert others["event_ts_ns"].null_count == others.num_rows


@pytest.mark.parametrize(("folder", "name"), [
    ("qemu-10.0/a-stop-eio-dataplane", "qmp-transcript.jsonl"),
    ("qemu-10.0/a-stop-eio-dataplane", "trace.log"),
    ("libvirt-11.3/a-stop-eio", "libvirtd.log"),
])
def test_qemu_10_inputs_record_their_version(samples_dir, tmp_path, folder, name):
    import pyarrow.parquet as pq

    out = tmp_path / "trace.parquet"
    import_traces([samples_dir / folder / name], out)
    metadata = pq.read_schema(out).metadata
    assert metadata.get(b"blkreplay.qemu_version") == b"10.0.2"
    # a trace log shows the throttle itself (rate=1000000000 on BLOCK_IO_ERROR)
    assert (b"blkreplay.throttled_vms" in metadata) == (name == "trace.log")
