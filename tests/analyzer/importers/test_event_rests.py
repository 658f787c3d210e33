"""Events read from their rest (`event_rests.EventRests`) mean what parsing each in full means,
and the trace-log and libvirt imports give the same rows and the same errors with them."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from analyzer.importers import event_rests, import_traces
from analyzer.importers.event_rests import EventRests
from analyzer.importers.json_scan import parse_json
from analyzer.importers.qmp_semantics import EventMeaning
from analyzer.importers.qmp_types import check_event, check_event_time
from tracer.errors import ImportFormatError

_SECONDS = st.sampled_from(["1795625377", "0", "1", "01", "-1", "9999999999999999", "99999999999999999", "1e3"])
_MICROS = st.sampled_from(["558656", "0", "999999", "1000000", "-1", "007", "2"])
_RESTS = st.sampled_from([
    '"event": "STOP"}', '"event": "RESUME"}', '"event": 5}', '"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}',
    '"event": "BLOCK_IO_ERROR", "data": {"device": "drive0", "node-name": "n0", "operation": "write", "action": "stop", "nospace": false, "reason": "Input/output error"}}',
    '"event": "BLOCK_IO_ERROR", "data": {"device": "", "node-name": "n0", "qom-path": "/machine/peripheral/vd0/virtio-backend", "operation": "read", "action": "report"}}',
    '"event": "BLOCK_IO_ERROR", "data": 7}', '"event": "STOP"', '"data": {}, "event": "SHUTDOWN"}', '"event": "STOP"} ',
])


def _text(seconds: str, micros: str, rest: str, extra: str = "") -> str:
    return f'{{"timestamp": {{"seconds": {seconds}, "microseconds": {micros}{extra}}}, {rest}'


def _full(text: str) -> tuple[EventMeaning, int, int] | str:
    """What parsing `text` in full means, or why it is refused."""
    try:
        msg = parse_json(text)
        check_event(msg)
    except ValueError as exc:
        return str(exc)
    stamp = msg["timestamp"]
    return EventMeaning.of(msg), stamp["seconds"], stamp["microseconds"]


_OWN_STAMP = '"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}'


@settings(max_examples=200, deadline=None)
@example([("1", "2", _OWN_STAMP, ""), ("1795625377", "558656", _OWN_STAMP, "")])  # (its own timestamp wins)
@given(st.lists(st.tuples(_SECONDS, _MICROS, _RESTS, st.sampled_from(["", ', "x": 1'])), min_size=1, max_size=12))
def test_an_event_read_from_its_rest_means_what_its_full_parse_means(events):
    rests = EventRests()
    for seconds, micros, rest, extra in events:
        text = _text(seconds, micros, rest, extra)
        got = rests.read(text)
        if got is None:
            continue  # (the caller parses it in full, as before)
        meaning, sec, usec = got
        full = _full(text)
        try:
            check_event_time(meaning.name or "", sec, usec)
        except ValueError as exc:
            assert full == str(exc)
            continue
        assert full == (meaning, sec, usec)


def test_the_usual_events_are_read_from_their_rest():
    rests = EventRests()
    texts = [_text(str(1795625377 + k), str(k), '"event": "STOP"}') for k in range(3)]
    assert [rests.read(t)[1:] for t in texts] == [(1795625377 + k, k) for k in range(3)]
    assert rests.read(_text("01", "2", '"event": "STOP"}')) is None  # (JSON refuses it: the caller says so)


def _logs(tmp_path):
    stamps = [("1795625377", "558656"), ("1795625378", "1"), ("1795625379", "999999")]
    events = [_text(s, u, rest) for s, u in stamps for rest in ('"event": "STOP"}', '"event": "RESUME"}')]
    events.append(_text("1795625380", "5", '"event": "BLOCK_IO_ERROR", "data": {"device": "drive0", '
                        '"node-name": "n0", "operation": "write", "action": "stop", "nospace": false, "reason": "EIO"}}'))
    trace = tmp_path / "trace.log"
    trace.write_text("".join(
        f"9676@1795625377.{k:06d}:monitor_qmp_respond mon 0x5562 resp: {e}\n" for k, e in enumerate(events)
    ))
    libvirt = tmp_path / "libvirtd.log"
    libvirt.write_text("".join(
        f"2026-11-25 16:55:38.{k:03d}+0000: 13451: info : qemuMonitorJSONIOProcessLine:203 : "
        f"QEMU_MONITOR_RECV_EVENT: mon=0x7ffb2c004460 event={e}\n" for k, e in enumerate(events)
    ))
    return trace, libvirt


@pytest.mark.parametrize("which", [0, 1])
def test_imports_are_the_same_with_and_without_reading_events_from_their_rest(tmp_path, monkeypatch, which):
    path = _logs(tmp_path)[which]
    with_rests = pq.read_table(import_traces([path], tmp_path / "a.parquet").files[0])
    monkeypatch.setattr(event_rests.EventRests, "read", lambda self, text: None)
    without = pq.read_table(import_traces([path], tmp_path / "b.parquet").files[0])
    assert with_rests.num_rows > 0 and with_rests.equals(without)


@pytest.mark.parametrize("which", [0, 1])
def test_an_event_out_of_range_is_the_same_bad_line(tmp_path, monkeypatch, which):
    path = _logs(tmp_path)[which]
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines) + lines[0].replace('"microseconds": 558656', '"microseconds": 1000000'))
    errors = []
    for read in (EventRests.read, lambda self, text: None):
        monkeypatch.setattr(event_rests.EventRests, "read", read)
        with pytest.raises(ImportFormatError) as exc:
            import_traces([path], tmp_path / "c.parquet")
        errors.append((exc.value.line, str(exc.value)))
    assert errors[0] == errors[1] and errors[0][0] == len(lines) + 1 and "out of range" in errors[0][1]
