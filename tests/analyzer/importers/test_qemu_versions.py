"""What differs between QEMU versions on the import side: the QAPIEvent numbers of trace logs,
and how a BLOCK_IO_ERROR names its disk (device, node-name, qom-path; QEMU 9.2.0's swap)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from analyzer.importers import import_traces
from analyzer.importers.qapi_events import TABLES, EventNumbers
from analyzer.importers.qmp_semantics import block_io_error_fields, swapped_qom_path
from tests.analyzer.guarantees import check_guarantees as check

# -- event numbers ---------------------------------------------------------------------------

#: (SHUTDOWN, STOP, RESUME, BLOCK_IO_ERROR) per series. 7.2 and 10.0 are the numbers seen in
#: the real captures (shared/samples); the others follow QEMU's schema of the release tag.
KNOWN = {
    "7.2": (0, 3, 4, 15), "8.0": (0, 3, 4, 15),
    "8.1": (0, 3, 4, 16), "8.2": (0, 3, 4, 16), "9.0": (0, 3, 4, 16),
    "9.1": (0, 3, 4, 17), "9.2": (0, 3, 4, 17), "10.0": (0, 3, 4, 17), "10.1": (0, 3, 4, 17),
}


@pytest.mark.parametrize("series", sorted(KNOWN))
def test_each_release_names_the_events_the_rules_read(series):
    numbers = EventNumbers(series)
    names = [numbers.name(n) for n in KNOWN[series]]
    assert names == ["SHUTDOWN", "STOP", "RESUME", "BLOCK_IO_ERROR"]


def test_tables_cover_the_production_releases_and_only_names_once():
    assert set(KNOWN) <= set(TABLES)
    for table in TABLES.values():
        assert len(set(table.values())) == len(table)
        assert sorted(table) == list(range(len(table)))


def test_what_the_trace_teaches_wins_and_a_conflict_names_nothing():
    numbers = EventNumbers("10.0")
    numbers.learn(17, "BLOCK_IO_ERROR")
    assert numbers.name(17) == "BLOCK_IO_ERROR"
    numbers.learn(3, "RESUME")  # this trace says otherwise than the table: it wins
    assert numbers.name(3) == "RESUME"
    numbers.learn(3, "STOP")  # and a trace that contradicts itself names nothing
    assert numbers.name(3) is None
    assert EventNumbers(None).name(3) is None and EventNumbers("6.2").name(3) is None


@pytest.mark.parametrize(("qemu", "bie"), [("qemu-7.2", 15), ("qemu-10.0", 17)])
def test_the_real_captures_number_block_io_error_as_the_table_says(samples_dir, qemu, bie):
    text = (samples_dir / qemu / "a-stop-eio-dataplane" / "trace.log").read_text()
    queued = re.findall(r"monitor_protocol_event_queue event=(\d+) data=(0x[0-9a-f]+)", text)
    # the JSON of the event each queue line queued, through its emit line
    series = qemu.split("-")[1]
    seen = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.search(r"monitor_protocol_event_emit event=(\d+)", line)
        if m and i + 1 < len(lines) and "monitor_qmp_respond" in lines[i + 1]:
            seen[int(m.group(1))] = json.loads(lines[i + 1].split(" resp: ", 1)[1])["event"]
    assert queued and seen[bie] == "BLOCK_IO_ERROR"
    assert {n: TABLES[series][n] for n in seen} == seen


# -- device identity -------------------------------------------------------------------------

QOM = "/machine/peripheral/vblk0/virtio-backend"


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        # <= 9.1, -drive: the drive name
        ({"device": "drive0", "node-name": "#block260"}, {"device": "drive0"}),
        # 9.2+ -drive: the drive name (qom-path too)
        ({"device": "drive0", "node-name": "#block260", "qom-path": QOM}, {"device": "drive0"}),
        # libvirt / -blockdev: no drive name; node-name and qom-path to resolve
        ({"device": "", "node-name": "libvirt-1-storage", "qom-path": QOM},
         {"node": "libvirt-1-storage", "qom": QOM}),
        # 9.2.0's swap: the QOM path in device, the drive name in qom-path
        ({"device": QOM, "node-name": "#block260", "qom-path": "drive0"}, {"device": "drive0"}),
        # 9.2.0's swap with -blockdev: the drive name is "", so node-name and QOM path
        ({"device": QOM, "node-name": "libvirt-1-storage", "qom-path": ""},
         {"node": "libvirt-1-storage", "qom": QOM}),
    ],
)
def test_a_block_io_error_names_one_device_whatever_the_version(data, fields):
    got = block_io_error_fields({**data, "operation": "write", "action": "stop"})
    assert {k: v for k, v in got.items() if k in ("device", "node", "qom") and v is not None} == fields
    assert swapped_qom_path(data) == data["device"].startswith("/machine/")


def _swap(line: str) -> str:
    """QEMU 9.2.0's BLOCK_IO_ERROR: device and qom-path exchanged (escaped or raw JSON)."""
    return re.sub(
        r'(\\?"device\\?": \\?")([^"\\]*)(\\?", .*?\\?"qom-path\\?": \\?")([^"\\]*)(\\?")',
        lambda m: m.group(1) + m.group(4) + m.group(3) + m.group(2) + m.group(5),
        line,
    )


def _as_9_2_0(text: str) -> str:
    text = re.sub(r'(\\?"minor\\?": )0(, \\?"major\\?": )10', r"\g<1>2\g<2>9", text)
    return "".join(_swap(x) if "BLOCK_IO_ERROR" in x else x for x in text.splitlines(keepends=True))


def _import(paths: list[Path], out: Path):
    import_traces(paths, out)
    table = pq.read_table(out)
    return table, check([out])


CAPTURES = {
    "transcript": ("qemu-10.0/a-stop-eio-dataplane", ["qmp-transcript.jsonl"]),
    "merged": ("qemu-10.0/a-stop-eio-dataplane", ["qmp-transcript.jsonl", "trace.log"]),
    "libvirt": ("libvirt-11.3/a-stop-eio", ["libvirtd.log"]),
}


@pytest.mark.parametrize("form", sorted(CAPTURES))
def test_qemu_9_2_0s_swapped_fields_are_read_back_and_reported_once(samples_dir, tmp_path, form):
    folder, names = CAPTURES[form]
    originals = [samples_dir / folder / n for n in names]
    swapped = []
    for p in originals:
        path = tmp_path / p.name
        path.write_text(_as_9_2_0(p.read_text()))
        swapped.append(path)
    assert any("/machine/peripheral/" in x for x in re.findall(r'device\\?": \\?"([^"\\]*)', swapped[0].read_text()))
    plain, plain_result = _import(originals, tmp_path / "plain.parquet")
    table, result = _import(swapped, tmp_path / "swapped.parquet")

    def devices(t):
        bie = t.filter(pc.equal(t["name"], "BLOCK_IO_ERROR"))
        return bie["device"].to_pylist()

    # the same disk as the correct fields name it (drive0 / libvirt's virtio-disk0)
    assert devices(table) == devices(plain) and None not in devices(table)
    assert plain_result.findings == []
    [warning] = result.findings
    assert (warning.rule, warning.severity) == ("qom-path-swapped", "warning")
    n = len(devices(table))
    assert f"(and {n - 1} more) carried the QOM path in 'device'" in warning.message
    assert f"read as device '{devices(table)[0]}'" in warning.message
    assert result.verdict == "pass"


# -- throttling seen in a trace log ------------------------------------------------------------


def _late_bie_capture(tmp_path: Path, rate: int) -> list[Path]:
    """QEMU 8.2 by its version, but the trace log shows BLOCK_IO_ERROR (16 in 8.2) queued with
    rate=1 s (a distribution's backport of the throttle): the retried write's event arrives
    0.7 s late, after its STOP, keeping its original timestamp."""
    hello = {"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 8}, "package": ""},
                     "capabilities": ["oob"]}}
    bie = {"device": "drive0", "node-name": "n", "reason": "Input/output error",
           "operation": "write", "action": "stop", "nospace": False}

    def event(name, usec, data=None):
        msg = {"timestamp": {"seconds": 100, "microseconds": usec}, "event": name}
        return json.dumps({**msg, "data": data} if data else msg)

    records = [
        (100.0, "recv", json.dumps(hello)),
        (100.0001, "recv", event("BLOCK_IO_ERROR", 100, bie)),
        (100.0002, "recv", event("STOP", 200)),
        (100.3, "send", json.dumps({"execute": "cont", "id": 1})),
        (100.3001, "recv", event("RESUME", 300050)),
        (100.3002, "recv", json.dumps({"return": {}, "id": 1})),
        (100.3003, "recv", event("STOP", 300200)),
        (101.0002, "recv", event("BLOCK_IO_ERROR", 300100, bie)),
    ]
    transcript = tmp_path / "t.jsonl"
    transcript.write_text("".join(json.dumps({"t": t, "dir": d, "line": m}) + "\n" for t, d, m in records))
    version = '{"qemu": {"micro": 0, "minor": 2, "major": 8}, "package": ""}'
    trace = tmp_path / "trace.log"
    trace.write_text(
        f"10@99.900000:qmp_exit_query_version {version} 1\n"
        f"11@100.000110:monitor_protocol_event_queue event=16 data=0x1 rate={rate}\n"
        "10@100.000210:monitor_protocol_event_queue event=3 data=0x2 rate=0\n"
        "10@100.300060:monitor_protocol_event_queue event=4 data=0x3 rate=0\n"
        f"11@100.300110:monitor_protocol_event_queue event=16 data=0x4 rate={rate}\n"
        "10@100.300210:monitor_protocol_event_queue event=3 data=0x5 rate=0\n"
    )
    return [transcript, trace]


def test_a_trace_log_that_shows_the_throttle_makes_an_older_qemu_throttling(tmp_path):
    from tracer.qemu import throttles

    inputs = _late_bie_capture(tmp_path, 1_000_000_000)
    out = tmp_path / "out.parquet"
    import_traces(inputs[1:], out)
    meta = {k.decode().removeprefix("blkreplay."): v.decode() for k, v in pq.read_schema(out).metadata.items()}
    [vm] = json.loads(meta["qemu_versions"])
    assert meta["qemu_version"] == "8.2.0" and throttles(meta, vm)
    # merged with the transcript: its late BLOCK_IO_ERROR is judged where it was raised
    _, result = _import(inputs, tmp_path / "merged.parquet")
    assert [f.rule for f in result.findings] == []


def test_without_the_throttle_the_same_wire_from_qemu_8_2_is_a_violation(tmp_path):
    from tracer.qemu import throttles

    inputs = _late_bie_capture(tmp_path, 0)
    out = tmp_path / "out.parquet"
    import_traces(inputs[1:], out)
    meta = {k.decode().removeprefix("blkreplay."): v.decode() for k, v in pq.read_schema(out).metadata.items()}
    [vm] = json.loads(meta["qemu_versions"])
    assert "throttled_vms" not in meta and not throttles(meta, vm)
    _, result = _import(inputs[:1], tmp_path / "transcript.parquet")
    assert "event-before-stop" in {f.rule for f in result.findings}
