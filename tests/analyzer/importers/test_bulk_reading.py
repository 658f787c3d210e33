"""Reading in bulk is only ever a faster way to the same rows.

The QEMU trace-log parser reads the plain lines of a block with numpy and Arrow
(`trace_block`), the libvirt log parser passes over the lines it has nothing to do with
(`libvirt_log._relevant`), and the transcript parser takes apart the records of polls in
bulk and makes their rows at the end (`transcript_block`, `qmp_messages`); each must give exactly what reading every line one by one gives,
on any mix of lines: generated here, in blocks of a few lines (so that requests, failures and
command entries fall in different blocks), with and without CRLF line ends.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from analyzer.importers import libvirt_log, qemu_log, qmp
from analyzer.importers import lines as lines_module
from analyzer.importers.lines import LinePolicy, read_text
from analyzer.importers.merge import build_rows
from analyzer.importers.message_cache import MessageCache
from analyzer.importers.pipeline import _check_ranges
from tracer.errors import ImportFormatError


class _LinesOnly:
    """An input seen only through its lines: the parsers' one-by-one reading."""

    def __init__(self, text) -> None:
        self._text = text

    def __getattr__(self, name):
        return getattr(self._text, name)


def _parse(parser, path, fmt: str, *, bulk: bool):
    text = read_text(path)
    try:
        policy = LinePolicy(text, fmt, skip_bad=True)
        parsed = parser(text if bulk else _LinesOnly(text), policy)
    finally:
        text.close()
    facts = [(p.vm, p.host, p.qemu_version, p.throttles, p.node_map) for p in parsed.parts]
    try:
        _check_ranges(parsed)  # (as the import does before building: a time beyond int64 ns)
    except ImportFormatError as exc:
        return [], parsed.skipped, parsed.unknown_lines, facts, str(exc)
    tables = [build_rows([part], part.vm or "vm", host=part.host, source=fmt).to_table() for part in parsed.parts]
    return tables, parsed.skipped, parsed.unknown_lines, facts, None


def _same_both_ways(parser, path, fmt: str) -> list[pa.Table]:
    bulk = _parse(parser, path, fmt, bulk=True)
    one_by_one = _parse(parser, path, fmt, bulk=False)
    assert bulk[1:] == one_by_one[1:]
    assert len(bulk[0]) == len(one_by_one[0])
    for a, b in zip(bulk[0], one_by_one[0], strict=True):
        assert a.equals(b, check_metadata=True), (a.to_pylist(), b.to_pylist())
    return bulk[0]


# Mostly the shape read in bulk (`trace_block`), sometimes one just outside it.
_TIDS = st.sampled_from(["9676"] * 6 + ["1", "12345678", "123456789", "0009"])
_SECONDS = st.sampled_from(["1795625377"] * 7 + ["179562537", "9300000000", "17956253770"])
_MICROS = st.sampled_from(["538604"] * 4 + ["5386", "000001"])
_NAMES = st.sampled_from([
    "blk_co_preadv", "virtio_blk_handle_write", "virtio_blk_handle_read", "virtio_blk_rw_complete",
    "qmp_enter_query_block", "qmp_exit_query_status", "monitor_suspend", "x", "a_very_long_event_name_of_forty_chars_x",
    "runstate_set", "n\u00e9", "9bad", "handle_qmp_command", "monitor_qmp_respond",
    "monitor_protocol_event_queue", "monitor_protocol_event_emit",
])
_ARGS = st.sampled_from([
    "", "blk 0x562f03047020 bs 0x562f03047370 offset 0 bytes 512 flags 0x0",
    "vdev 0x5 req 0x7fcc ret 0", "vdev 0x5 req 0x7fcc ret -5", "vdev 0x5 req 0x7fcd ret -0",
    "vdev 0x5 req 0x7fcc sector 8 nsectors 1", "req ",
    # (a second request, read one by one where a tab is in its line: ops of both kinds of
    # reading, in and across blocks, decide a failed completion's)
    "vdev 0x5 req 0x7fcd sector 8\tnsectors 1", "vdev 0x5 req 0x7fcd sector 16 nsectors 1", "vdev 0x5 req 0x7fcd ret -5", 'ret {"status": "running", "running": true}',
    "back\\slash", "tab\there", "caf\u00e9 \u202e bidi", "current_run_state 9 (running) new_state 4 (paused)",
    'mon 0x1 req: {"execute": "query-status", "id": 3}', 'mon 0x1 resp: {"return": {"status": "running"}, "id": 3}',
    'mon 0x1 resp: {"timestamp": {"seconds": 1795625377, "microseconds": 2}, "event": "STOP"}',
    "event=4 data=0x5 rate=0", "event=4 data=0x5",
    'mon 0x1 req: {"execute": "query-block", "id": 12}', 'mon 0x1 resp: {"error": {"class": "GenericError", "desc": "x"}, "id": 12}',
    'mon 0x1 resp: {"return": [{"device": 5, "qdev": "d", "io-status": "ok"}], "id": 012}',
    'mon 0x1 resp: {"return": [{"device": 5, "qdev": "d", "io-status": "ok"}], "id": 12}',
])


@st.composite
def _trace_line(draw) -> str:
    form = draw(st.integers(0, 9))
    name, args = draw(_NAMES), draw(_ARGS)
    if form == 0:
        return f"{name} {args}".rstrip()
    if form == 1:
        return draw(st.sampled_from(["", "qemu-system-x86_64: terminating on signal 15", "  ", "junk@line"]))
    sep = draw(st.sampled_from([" ", " ", " ", ""]))
    return f"{draw(_TIDS)}@{draw(_SECONDS)}.{draw(_MICROS)}:{name}{sep}{args if sep else ''}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_trace_line(), min_size=1, max_size=60), st.booleans(), st.integers(16, 400))
# A line without a time takes that of the nearest line before it in the log, whatever order
# the parser added its row in (the unknown-lines marker is added last).
@example(["monitor_protocol_event_queue", "9676@1795625377.538604:x ", "9676@1795625377.5386:x "], False, 16)
def test_trace_log_bulk_reading_gives_the_rows_of_line_by_line(tmp_path, monkeypatch, lines, crlf, chunk):
    monkeypatch.setattr(lines_module, "CHUNK_BYTES", chunk)
    path = tmp_path / "trace.log"
    path.write_bytes(("\r\n" if crlf else "\n").join(lines).encode() + b"\n")
    _same_both_ways(qemu_log.parse, path, "qemu-log")


def test_trace_log_bulk_rows_are_the_plain_events(tmp_path, monkeypatch):
    """A requests' op reaches its failure blocks later; command entries become commands when
    the log never traced handle_qmp_command; quotes are escaped, tabs read one by one."""
    monkeypatch.setattr(lines_module, "CHUNK_BYTES", 64)
    path = tmp_path / "trace.log"
    path.write_text(
        "9676@1795625377.000001:virtio_blk_handle_write vdev 0x5 req 0x7fcc sector 8\n"
        "9676@1795625377.000002:qmp_enter_query_block \n"
        '9676@1795625377.000003:qmp_exit_query_status {"status": "running"} 0\n'
        "9676@1795625377.000004:blk_co_preadv blk\t0x1\n"
        "9678@1795625377.000005:virtio_blk_rw_complete vdev 0x5 req 0x7fcc ret -5\n"
    )
    (table,) = _same_both_ways(qemu_log.parse, path, "qemu-log")
    got = [(r["kind"], r["name"], r["op"], r["payload"]) for r in table.to_pylist()]
    assert got == [
        ("trace_event", "virtio_blk_handle_write", None, '{"args": "vdev 0x5 req 0x7fcc sector 8"}'),
        ("qmp_command", "query-block", None, '{"args": ""}'),
        ("trace_event", "qmp_exit_query_status", None, '{"args": "{\\"status\\": \\"running\\"} 0"}'),
        ("trace_event", "blk_co_preadv", None, '{"args": "blk\\t0x1"}'),
        ("io_complete", "virtio_blk_rw_complete", "write", '{"args": "vdev 0x5 req 0x7fcc ret -5"}'),
    ]


@pytest.mark.parametrize("chunk", [16, 200, 1024, 1 << 20])  # (1024: lines 1-7 in the first block)
def test_a_failed_completion_takes_the_op_of_the_last_request_before_it(tmp_path, monkeypatch, chunk):
    """Requests of one pointer read in bulk and one by one (a tab in the line), in one block
    or many: the last one before a failure, in line order, gives its op (of several in an
    earlier block, that block's last); a pointer never requested gives none."""
    monkeypatch.setattr(lines_module, "CHUNK_BYTES", chunk)
    path = tmp_path / "trace.log"
    path.write_text(
        "9676@1795625377.000001:virtio_blk_handle_read vdev 0x5 req 0xa sector 8 nsectors 1\n"
        "9676@1795625377.000002:virtio_blk_handle_write vdev 0x5 req 0xa sector 8\tnsectors 1\n"
        "9676@1795625377.000003:virtio_blk_rw_complete vdev 0x5 req 0xa ret -5\n"
        "9676@1795625377.000004:virtio_blk_handle_read vdev 0x5 req 0xa sector 16 nsectors 1\n"
        "9676@1795625377.000005:virtio_blk_handle_write vdev 0x5 req 0xb sector 24 nsectors 1\n"
        "9676@1795625377.000006:virtio_blk_rw_complete vdev 0x5 req 0xa ret -5\n"
        "9676@1795625377.000007:virtio_blk_handle_read vdev 0x5 req 0xa sector 40 nsectors 1\n"
        + "".join(f"9676@1795625377.{8 + i:06d}:blk_co_preadv blk 0x1 offset {i}\n" for i in range(20))
        + "9676@1795625377.000030:virtio_blk_handle_read vdev 0x5 req 0xb sector 8\tnsectors 1\n"
        "9676@1795625377.000031:virtio_blk_handle_write vdev 0x5 req 0xb sector 32 nsectors 1\n"
        "9676@1795625377.000032:virtio_blk_rw_complete vdev 0x5 req 0xb ret -5\n"
        "9676@1795625377.000033:virtio_blk_rw_complete vdev 0x5 req 0xc ret -5\n"
        "9676@1795625377.000034:virtio_blk_rw_complete vdev 0x5 req 0xa ret -5\n"
    )
    (table,) = _same_both_ways(qemu_log.parse, path, "qemu-log")
    failed = [(r["src_line"], r["op"]) for r in table.to_pylist() if r["kind"] == "io_complete"]
    assert failed == [(3, "write"), (6, "read"), (30, "write"), (31, None), (32, "read")]


_HEAD = "2026-11-25 10:00:0@S.123+0000: 4242: debug : "
_LIBVIRT = st.sampled_from([
    _HEAD + "virEventPollRunOnce:100 : Poll got 1 event(s)",
    _HEAD + "qemuMonitorOpenInternal:250 : QEMU_MONITOR_NEW: mon=0x7f01 refs=2 fd=30",
    _HEAD + "qemuDomainObjEnterMonitorInternal:6000 : Entering monitor (mon=0x7f01 vm=0x5501 name=vm-a)",
    _HEAD + 'qemuMonitorSend:900 : QEMU_MONITOR_SEND_MSG: mon=0x7f01 msg={"execute":"query-status","id":"libvirt-1"}\r',
    " fd=-1",
    _HEAD + 'qemuMonitorJSONIOProcessLine:200 : QEMU_MONITOR_RECV_REPLY: mon=0x7f01 reply={"return": {"status": "running", "running": true}, "id": "libvirt-1"}',
    _HEAD + 'qemuMonitorJSONIOProcessLine:200 : QEMU_MONITOR_RECV_EVENT: mon=0x7f01 event={"timestamp": {"seconds": 1795625377, "microseconds": 5}, "event": "STOP"}',
    _HEAD + "qemuMonitorClose:300 : QEMU_MONITOR_CLOSE: mon=0x7f01 refs=1",
    _HEAD + "qemuMonitorIOWrite:400 : QEMU_MONITOR_IO_WRITE: mon=0x7f01 buf=x len=1 ret=1 errno=0",
    _HEAD + "qemuProcessHandleStop:700 : Transitioned guest vm-a to paused state, reason unknown",
    _HEAD + "virHostnameLog:10 : hostname: host-7",
    "2026-13-25 10:00:00.123+0000: 4242: debug : qemuMonitorSend:900 : QEMU_MONITOR_SEND_MSG: mon=0x7f01 msg={}",
    "2026-11-25 10:00:00.123+0000: abc: debug : nothing here",
    '{"t": 1.0, "dir": "recv", "line": "{}"}',
    "12@1795625377.000001:blk_co_preadv blk 0x1",
    "",
])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_LIBVIRT, st.integers(0, 9)), min_size=1, max_size=50), st.integers(16, 400))
def test_libvirt_log_bulk_reading_gives_the_rows_of_line_by_line(tmp_path, monkeypatch, picked, chunk):
    monkeypatch.setattr(lines_module, "CHUNK_BYTES", chunk)
    path = tmp_path / "libvirtd.log"
    path.write_text("\n".join(line.replace("@S", str(s)) for line, s in picked) + "\n")
    _same_both_ways(libvirt_log.parse, path, "libvirt-log")


@pytest.mark.parametrize("crlf", [False, True])
def test_libvirt_real_sample_same_both_ways(samples_dir, crlf, tmp_path):
    source = samples_dir / "libvirt-11.3" / "a-stop-eio" / "libvirtd.log"
    path = tmp_path / "libvirtd.log"
    data = source.read_bytes()
    path.write_bytes(data.replace(b"\n", b"\r\n") if crlf else data)
    tables = _same_both_ways(libvirt_log.parse, path, "libvirt-log")
    assert sum(t.num_rows for t in tables) > 100


# -- QMP transcripts ----------------------------------------------------------------------

_BLOCK_REPLY = (
    '{"return": [{"device": "drive0", "qdev": "/machine/peripheral/disk0/virtio-backend", "io-status": "ok",'
    ' "inserted": {"node-name": "node0"}}, {"device": "", "qdev": "disk1", "io-status": "failed"}], "id": @ID}'
)
_MESSAGES = st.sampled_from([
    '{"execute": "query-status", "id": @ID}',
    '{"execute": "query-block", "id": @ID}',
    '{"execute": "query-iothreads", "id": @ID}',
    '{"execute": "query-name", "id": @ID}',
    '{"execute": "query-version", "id": @ID}',
    '{"execute": "cont", "id": @ID}',
    '{"exec-oob": "migrate-pause", "id": @ID}',
    '{"execute": 5, "id": @ID}',
    '{"execute": "query-status"}',
    '{"return": {"status": "running", "running": true}, "id": @ID}',
    '{"return": {"status": "paused", "running": false}, "id": @ID}',
    '{"return": {"status": 5}, "id": @ID}',
    _BLOCK_REPLY,
    '{"return": [{"device": 7}], "id": @ID}',
    '{"return": {}, "id": @ID}',
    '{"error": {"class": "GenericError", "desc": "no"}, "id": @ID}',
    '{"return": [{"poll-max-ns": 32768, "thread-id": 9678, "id": "iothread0"}], "id": @ID}',
    '{"return": {"name": "vm-x"}, "id": @ID}',
    '{"return": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "id": @ID}',
    '{"return": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "id": @ID}',
    '{"timestamp": {"seconds": 1795625377, "microseconds": @ID}, "event": "STOP"}',
    '{"timestamp": {"seconds": @ID, "microseconds": 5}, "event": "RESUME"}',
    '{"timestamp": {"seconds": 1795625377, "microseconds": @ID}, "event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}',
    '{"timestamp": {"seconds": 1795625377, "microseconds": @ID}, "event": 5}',
    '{"timestamp": {"seconds": 1795625377, "microseconds": 5}, "event": "BLOCK_IO_ERROR", "data": {"device": "",'
    ' "node-name": "node0", "operation": "write", "action": "stop", "nospace": false, "reason": "Input/output error"}}',
    '{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}',
    '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 1, "major": 9}, "package": ""}, "capabilities": []}}',
    '{"return": "caf\u00e9 \\\\ \\" \u202e", "id": @ID}',
    '{"return": {}, "id": @ID, "extra": 1}',
    '{"return": {}, "id": @ID}}',
    "not json",
])
_IDS = st.sampled_from(["1", "1", "2", "2", "3", "0", "07", '"libvirt-1"', '"s"', "12345678901234567", "123456789012345678901", "-4", "1.5", "999999", "1000000"])
_TIMES = st.sampled_from(["1795625377.5", "1795625377.57185", "1795625377", "1795625378.123456789", "9300000000.1",
                          "17956253770", "1795625379.0000000001"])


@st.composite
def _transcript_line(draw) -> str:
    form = draw(st.integers(0, 12))
    message = draw(_MESSAGES).replace("@ID", draw(_IDS))
    if form == 0:
        return draw(st.sampled_from(["", "  ", "junk", '{"event": "STOP"}', "[1]", '{"t": 1, "dir": "up", "line": "{}"}']))
    record = {"t": 0, "dir": draw(st.sampled_from(["send", "recv"])), "line": message}
    text = json.dumps(record).replace('"t": 0', f'"t": {draw(_TIMES)}', 1)
    if form == 1:
        return " " + text + "\r"
    if form == 2:
        return json.dumps({"dir": record["dir"], "line": message, "t": 1795625377.25})
    return text


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_transcript_line(), min_size=1, max_size=50), st.integers(40, 1200), st.sampled_from([1, 3, 4096]))
def test_transcript_bulk_reading_gives_the_rows_of_line_by_line(tmp_path, monkeypatch, lines, chunk, limit):
    monkeypatch.setattr(lines_module, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(MessageCache, "LIMIT", limit)  # (what is remembered starts over)
    path = tmp_path / "qmp-transcript.jsonl"
    path.write_text('{"t": 1795625377.0, "dir": "recv", "line": "{}"}\n' + "\n".join(lines) + "\n")
    _same_both_ways(qmp.parse, path, "qmp")
    bulk, one_by_one = (_first_error(path, bulk=b) for b in (True, False))
    assert bulk == one_by_one
    assert _message_keys(path, bulk=True) == _message_keys(path, bulk=False)


def _first_error(path, *, bulk: bool) -> str | None:
    text = read_text(path)
    try:
        qmp.parse(text if bulk else _LinesOnly(text), LinePolicy(text, "qmp", skip_bad=False))
    except ImportFormatError as exc:
        return str(exc)
    finally:
        text.close()
    return None


def test_transcript_bulk_rows_pair_replies_and_teach_what_replies_teach(tmp_path, monkeypatch):
    """Replies answer the oldest command of their id across blocks, a query-block reply gives
    a row per device, and what replies teach (version, name, IOThreads) comes in line order."""
    monkeypatch.setattr(lines_module, "CHUNK_BYTES", 200)
    messages = [
        '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}',
        '{"execute": "query-block", "id": 1}', '{"execute": "query-status", "id": 1}',
        _BLOCK_REPLY.replace("@ID", "1"), '{"return": {"status": "paused", "running": false}, "id": 1}',
        '{"execute": "query-name", "id": 2}', '{"return": {"name": "vm-x"}, "id": 2}',
        '{"execute": "query-version", "id": 3}',
        '{"return": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "id": 3}',
        '{"return": {}, "id": 9}',
    ]
    path = tmp_path / "qmp-transcript.jsonl"
    path.write_text("".join(json.dumps({"t": 1795625377 + i, "dir": "recv", "line": m}) + "\n" for i, m in enumerate(messages)))
    (table,) = _same_both_ways(qmp.parse, path, "qmp")
    rows = [(r["kind"], r["name"], r["device"], r["iostatus"], r["runstate"], r["cmd_seq"], r["thread"]) for r in table.to_pylist()]
    assert rows == [
        ("trace_event", "qmp_greeting", None, None, None, None, "qemu"),
        ("qmp_command", "query-block", None, None, None, None, "mgmt"),
        ("qmp_command", "query-status", None, None, None, None, "mgmt"),
        ("qmp_reply", "query-block", "drive0", "ok", None, 1, "main"),
        ("qmp_reply", "query-block", "disk1", "failed", None, 1, "main"),
        ("qmp_reply", "query-status", None, None, "paused", 2, "main"),
        ("qmp_command", "query-name", None, None, None, None, "mgmt"),
        ("qmp_reply", "query-name", None, None, None, 6, "main"),
        ("qmp_command", "query-version", None, None, None, None, "mgmt"),
        ("qmp_reply", "query-version", None, None, None, 8, "main"),
        ("qmp_reply", None, None, None, None, None, "main"),
    ]
    text = read_text(path)
    try:
        parsed = qmp.parse(text, LinePolicy(text, "qmp", skip_bad=False))
    finally:
        text.close()
    (part,) = parsed.parts
    assert (part.vm, part.qemu_version, part.node_map) == ("vm-x", "10.0.2", {"node0": "drive0", "/machine/peripheral/disk0/virtio-backend": "drive0", "disk1": "disk1"})


def test_transcript_merged_with_its_trace_log_same_both_ways(samples_dir):
    """Merging reads a transcript's bulk rows one by one (`Rows.materialize`): the same VM."""
    sample = samples_dir / "qemu-7.2" / "a-stop-eio-dataplane"

    def merged(bulk: bool) -> pa.Table:
        parts = []
        for parser, name, fmt in ((qemu_log.parse, "trace.log", "qemu-log"), (qmp.parse, "qmp-transcript.jsonl", "qmp")):
            text = read_text(sample / name)
            try:
                parts += parser(text if bulk else _LinesOnly(text), LinePolicy(text, fmt, skip_bad=False)).parts
            finally:
                text.close()
        return build_rows(parts, "vm", host=None, source="import").to_table()

    bulk, one_by_one = merged(True), merged(False)
    assert bulk.num_rows > 1000
    assert bulk.equals(one_by_one, check_metadata=True)


def test_transcript_records_just_outside_the_bulk_shape_are_read_one_by_one(tmp_path, monkeypatch):
    """After a poll's head is known, the same head with an id JSON refuses (07), one of 17
    digits, a string or a negative id, spaces or a CR around the record, or a time the layout
    does not allow, is read one by one; a reply that is a bad line only for the command it
    answers (a query-status reply with a numeric status) is never read in bulk; nor is an
    event whose timestamp JSON refuses (07) or QMP's range does not hold."""
    monkeypatch.setattr(lines_module, "CHUNK_BYTES", 4096)
    poll = '{"execute": "query-status", "id": @}'
    odd = '{"return": {"status": 5}, "id": @}'
    stop = '{"timestamp": {"seconds": 1795625377, "microseconds": @}, "event": "STOP"}'

    def record(message: str, ident: str, t: str = "1795625377.5") -> str:
        return json.dumps({"t": 0, "dir": "send", "line": message.replace("@", ident)}).replace('"t": 0', f'"t": {t}')

    lines = [record(poll, "1"), record(poll, "07"), record(poll, "12345678901234567"), record(poll, "-4"),
             record(poll, '"s"'), " " + record(poll, "2"), record(poll, "3") + "\r", record(poll, "4", "1795625377.1234567891"),
             record(poll, "5", "17956253770"), record(poll, "6") + "x", record(poll, "8"), record(odd, "8"), record(odd, "8"),
             record(stop, "5"), record(stop, "07"), record(stop, "1000000"), record(stop.replace("1795625377", "01795625377"), "5"),
             record(stop, "6") + " "]
    path = tmp_path / "qmp-transcript.jsonl"
    path.write_text("\n".join(lines) + "\n")
    (table,) = _same_both_ways(qmp.parse, path, "qmp")
    assert table.num_rows > 5
    bulk, one_by_one = (_first_error(path, bulk=b) for b in (True, False))
    assert bulk == one_by_one and "line 2" in bulk


_POLLS = st.sampled_from([
    ('{"execute": "query-status", "id": @ID}', '{"return": {"status": "running", "running": true}, "id": @ID}'),
    ('{"execute": "query-block", "id": @ID}', _BLOCK_REPLY),
    ('{"execute": "cont", "id": @ID}', '{"error": {"class": "GenericError", "desc": "no"}, "id": @ID}'),
    ('{"execute": "query-name", "id": @ID}', '{"return": {"name": "vm-x"}, "id": @ID}'),
])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_POLLS, st.sampled_from(["1", "2", "3", '"libvirt-1"'])), min_size=1, max_size=40), st.integers(60, 900))
def test_transcript_of_a_client_waiting_for_each_reply_same_both_ways(tmp_path, monkeypatch, polls, chunk):
    """Commands each answered right away (the usual client), ids reused: the counting
    shortcut for such transcripts gives the rows of line-by-line reading."""
    monkeypatch.setattr(lines_module, "CHUNK_BYTES", chunk)
    lines = [json.dumps({"t": 1795625377.25, "dir": d, "line": m.replace("@ID", ident)})
             for (command, reply), ident in polls for d, m in (("send", command), ("recv", reply))]
    path = tmp_path / "qmp-transcript.jsonl"
    path.write_text("\n".join(lines) + "\n")
    _same_both_ways(qmp.parse, path, "qmp")
    assert _message_keys(path, bulk=True) == _message_keys(path, bulk=False)


def _message_keys(path, *, bulk: bool) -> list[tuple]:
    """(line, key) of every row, as merging inputs sees them (`Rows.materialize`)."""
    text = read_text(path)
    try:
        (part,) = qmp.parse(text if bulk else _LinesOnly(text), LinePolicy(text, "qmp", skip_bad=True)).parts
    finally:
        text.close()
    part.rows.materialize()
    return sorted((part.rows.line[i], key) for i, key in part.rows.sparse["key"].items())
