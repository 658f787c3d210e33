"""Reading in bulk is only ever a faster way to the same rows.

The QEMU trace-log parser reads the plain lines of a block with numpy and Arrow
(`trace_block`) and the libvirt log parser passes over the lines it has nothing to do with
(`libvirt_log._relevant`); both must give exactly what reading every line one by one gives,
on any mix of lines: generated here, in blocks of a few lines (so that requests, failures and
command entries fall in different blocks), with and without CRLF line ends.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.importers import libvirt_log, qemu_log
from analyzer.importers import lines as lines_module
from analyzer.importers.lines import LinePolicy, read_text
from analyzer.importers.merge import build_rows


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
    tables = [build_rows([part], part.vm or "vm", host=part.host, source=fmt).to_table() for part in parsed.parts]
    return tables, parsed.skipped, parsed.unknown_lines, facts


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
    "runstate_set", "n\u00e9", "9bad",
])
_ARGS = st.sampled_from([
    "", "blk 0x562f03047020 bs 0x562f03047370 offset 0 bytes 512 flags 0x0",
    "vdev 0x5 req 0x7fcc ret 0", "vdev 0x5 req 0x7fcc ret -5", "vdev 0x5 req 0x7fcd ret -0",
    "vdev 0x5 req 0x7fcc sector 8 nsectors 1", "req ", 'ret {"status": "running", "running": true}',
    "back\\slash", "tab\there", "caf\u00e9 \u202e bidi", "current_run_state 9 (running) new_state 4 (paused)",
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
