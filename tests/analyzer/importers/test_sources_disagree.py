"""Sources that disagree: when a VM's inputs contradict each other (an event's data, the order
of events, an event one shows inside the time the other covers and the other lacks), the
import marks it and `sources-disagree` names both places; the real captures, merged every way,
disagree nowhere. A trace line of an interpreted event in no known format is counted, not
kept, and `trace-lines-unknown` says so."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from analyzer.importers import import_traces
from tests.analyzer.guarantees import check_guarantees as check

CAPTURES = [f"{v}/{c}" for v in ("qemu-7.2", "qemu-10.0") for c in ("a-stop-eio-dataplane", "c-report")]
FILES = ("trace.log", "qmp-transcript.jsonl", "events.jsonl")
RULES = ("sources-disagree", "trace-lines-unknown")


def _found(result, rule="sources-disagree"):
    return [f for f in result.findings if f.rule == rule]


def _import_check(tmp_path: Path, inputs: list[Path], name: str = "o"):
    out = tmp_path / f"{name}.parquet"
    summary = import_traces(inputs, out)
    return summary, check([out]), out


@pytest.mark.parametrize("capture", CAPTURES)
@pytest.mark.parametrize("combo", [c for n in (2, 3) for c in itertools.combinations(FILES, n)],
                         ids=lambda c: "+".join(f.split(".")[0] for f in c))
def test_the_real_captures_merged_every_way_disagree_nowhere(samples_dir, tmp_path, capture, combo):
    _, result, out = _import_check(tmp_path, [samples_dir / capture / f for f in combo])
    assert [f for f in result.findings if f.rule in RULES] == []
    assert "sources-disagree" not in result.not_applicable
    names = set(pq.read_table(out, columns=["name"])["name"].to_pylist())
    assert not {n for n in names if n and n.startswith("blkreplay:")}


def _transcript(samples_dir: Path, capture: str) -> list[str]:
    return (samples_dir / capture / "qmp-transcript.jsonl").read_text().splitlines(keepends=True)


def _events(lines: list[str], name: str | None = None) -> list[int]:
    return [i for i, line in enumerate(lines)
            if '\\"event\\"' in line and (name is None or f'\\"{name}\\"' in line)]


def _with(tmp_path: Path, samples_dir: Path, capture: str, lines: list[str], name: str):
    edited = tmp_path / name / "qmp-transcript.jsonl"
    edited.parent.mkdir()
    edited.write_text("".join(lines))
    trace = samples_dir / capture / "trace.log"
    _, result, out = _import_check(tmp_path, [trace, edited], name)
    return trace, edited, result, out


@pytest.mark.parametrize("capture", CAPTURES[:1] + CAPTURES[2:3])
def test_an_event_whose_data_differ_names_both_places(samples_dir, tmp_path, capture):
    lines = _transcript(samples_dir, capture)
    k = _events(lines, "BLOCK_IO_ERROR")[1]
    assert '\\"action\\": \\"stop\\"' in lines[k]
    lines[k] = lines[k].replace('\\"action\\": \\"stop\\"', '\\"action\\": \\"report\\"')
    trace, edited, result, out = _with(tmp_path, samples_dir, capture, lines, "content")
    [f] = _found(result)
    assert f.severity == "warning" and "BLOCK_IO_ERROR differs between the inputs (action)" in f.message
    assert f"{edited}:{k + 1}" in f.src and any(s.startswith(f"{trace}:") for s in f.src)
    assert f"{edited}:{k + 1}" in f.message
    # the rows still merge: one BLOCK_IO_ERROR per event, the trace log's values kept
    t = pq.read_table(out)
    marker = t.filter(pc.starts_with(pc.cast(t["name"], pa.string()), "blkreplay:sources-disagree"))
    assert marker.num_rows == 1
    payload = json.loads(marker["payload"][0].as_py())
    assert payload["fields"] == {"action": ["stop", "report"]} and payload["disagreement"] == "content"


@pytest.mark.parametrize("capture", CAPTURES[:1] + CAPTURES[2:3])
def test_an_event_one_input_lacks_inside_its_time_names_both_places(samples_dir, tmp_path, capture):
    lines = _transcript(samples_dir, capture)
    k = _events(lines, "RESUME")[1]
    del lines[k]
    trace, edited, result, _ = _with(tmp_path, samples_dir, capture, lines, "missing")
    [f] = _found(result)
    assert f.message.startswith("RESUME at ") and "is missing from that input" in f.message
    assert any(s.startswith(f"{trace}:") for s in f.src) and any(s.startswith(f"{edited}:") for s in f.src)


@pytest.mark.parametrize("capture", CAPTURES[:1] + CAPTURES[2:3])
def test_events_in_another_order_name_both_places(samples_dir, tmp_path, capture):
    lines = _transcript(samples_dir, capture)
    ev = _events(lines)
    a, b = ev[4], ev[5]
    lines[a], lines[b] = lines[b], lines[a]
    trace, edited, result, _ = _with(tmp_path, samples_dir, capture, lines, "order")
    found = _found(result)
    assert len(found) == 1 and "comes in another order" in found[0].message
    assert any(s.startswith(f"{edited}:") for s in found[0].src)
    assert any(s.startswith(f"{trace}:") for s in found[0].src)


def test_events_before_or_after_the_other_inputs_time_are_not_missing(samples_dir, tmp_path):
    """A transcript that starts late and ends early lacks the first and last events: outside
    its time, so nothing is missing."""
    capture = CAPTURES[0]
    lines = _transcript(samples_dir, capture)
    ev = _events(lines)
    kept = lines[: ev[0]] + lines[ev[1]: ev[-1]]
    _, _, result, _ = _with(tmp_path, samples_dir, capture, kept, "shorter")
    assert _found(result) == []


@pytest.mark.parametrize("capture", CAPTURES)
def test_trace_lines_of_no_known_format_are_counted_not_kept(samples_dir, tmp_path, capture):
    src = (samples_dir / capture / "trace.log").read_text().splitlines(keepends=True)
    queue = [i for i, line in enumerate(src) if ":monitor_protocol_event_queue event=" in line][:2]
    for i in queue:
        src[i] = src[i].replace("monitor_protocol_event_queue event=", "monitor_protocol_event_queue evt=")
    trace = tmp_path / "trace.log"
    trace.write_text("".join(src))
    summary, result, out = _import_check(tmp_path, [trace, samples_dir / capture / "qmp-transcript.jsonl"])
    assert summary.inputs[0].unknown_lines == 2 and summary.inputs[1].unknown_lines == 0
    meta = pq.read_schema(out).metadata
    assert meta[b"blkreplay.unknown_lines"] == b"2"
    assert json.loads(meta[b"blkreplay.inputs"])[0]["unknown_lines"] == 2
    [f] = _found(result, "trace-lines-unknown")
    assert f.severity == "warning" and f.message.startswith("2 lines of this trace log")
    assert f.src == (f"{trace}:{queue[0] + 1}",)
    t = pq.read_table(out)
    at = set(t.filter(pc.equal(t["src_file"], str(trace)))["src_line"].to_pylist())
    assert queue[1] + 1 not in at  # not kept as an event (the first holds only the marker)
    assert _found(result) == []


@pytest.mark.parametrize("capture", CAPTURES[:1] + CAPTURES[2:3])
def test_an_answer_whose_data_differ_names_both_places(samples_dir, tmp_path, capture):
    """A query-block answer the trace log and the transcript both show, with another io-status
    in the transcript: the answer's rows merge, the disagreement is named."""
    lines = _transcript(samples_dir, capture)
    k = [i for i, line in enumerate(lines) if '\\"io-status\\": \\"ok\\"' in line and '\\"return\\"' in line][3]
    lines[k] = lines[k].replace('\\"io-status\\": \\"ok\\"', '\\"io-status\\": \\"nospace\\"', 1)
    trace, edited, result, _ = _with(tmp_path, samples_dir, capture, lines, "answer")
    [f] = _found(result)
    assert f.message.startswith("query-block differs between the inputs (iostatus)")
    assert f"{edited}:{k + 1}" in f.src and any(s.startswith(f"{trace}:") for s in f.src)


def test_two_monitors_of_one_vm_in_one_log_are_not_two_views(tmp_path):
    """A domain migrated within the host (or restarted) has two QEMU processes in one libvirt
    log, their monitors open at once: each sees its own events (the source's STOP, the
    destination's RESUME). They are two runs, not two sources of one run: nothing disagrees."""
    head = "2026-11-25 10:00:{s:02d}.000+0000: 4242: info : "

    def event(s: int, mon: str, name: str) -> str:
        payload = json.dumps({"timestamp": {"seconds": 1795600800 + s, "microseconds": 0}, "event": name})
        return head.format(s=s) + f"qemuMonitorJSONIOProcessLine:208 : QEMU_MONITOR_RECV_EVENT: mon={mon} event={payload}"

    lines = [
        head.format(s=0) + "qemuMonitorOpenInternal:250 : QEMU_MONITOR_NEW: mon=0x7f01 refs=2 fd=30",
        head.format(s=0) + "qemuDomainObjEnterMonitorInternal:6000 : Entering monitor (mon=0x7f01 vm=0x5501 name=vm-a)",
        event(1, "0x7f01", "RESUME"),
        head.format(s=2) + "qemuMonitorOpenInternal:250 : QEMU_MONITOR_NEW: mon=0x7f02 refs=2 fd=31",
        head.format(s=2) + "qemuDomainObjEnterMonitorInternal:6000 : Entering monitor (mon=0x7f02 vm=0x5502 name=vm-a)",
        event(3, "0x7f01", "STOP"),
        event(4, "0x7f02", "RESUME"),
        event(5, "0x7f01", "SHUTDOWN"),
        event(6, "0x7f02", "STOP"),
        event(7, "0x7f02", "RESUME"),
    ]
    log = tmp_path / "libvirtd.log"
    log.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o.parquet"
    import_traces([log], out)
    names = set(pq.read_table(out, columns=["name"])["name"].to_pylist())
    assert {"RESUME", "STOP", "SHUTDOWN"} <= names
    assert not {n for n in names if n and n.startswith("blkreplay:")}
    assert _found(check([out])) == []
