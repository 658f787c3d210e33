"""libvirt daemon debug logs: monitor traffic, one VM per monitor, times from the log line."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from analyzer.importers import import_traces, read_input
from tracer.errors import ImportFormatError


def rows(table):
    return table.to_pylist()


def test_libvirt_sample(libvirt_log):
    got = rows(read_input(libvirt_log))
    assert {r["vm"] for r in got} == {"vm-a-stop-eio-file"}
    assert {r["host"] for r in got} == {"vm"}  # libvirt's "hostname: vm" line
    counts = {}
    for r in got:
        counts[r["kind"]] = counts.get(r["kind"], 0) + 1
    # mgmt_event: libvirt's own handling (6 qemuProcessHandleIOError, 7 HandleResume lines)
    assert counts == {"qmp_command": 448, "qmp_reply": 448, "qmp_event": 22, "mgmt_event": 13}
    bies = [r for r in got if r["name"] == "BLOCK_IO_ERROR"]
    # libvirt uses -blockdev: device "" in the event, named through query-block's node-name
    assert len(bies) == 6
    assert {(r["device"], r["action"], r["errno"]) for r in bies} == {("virtio-disk0", "stop", 5)}
    first = bies[0]
    assert first["src_line"] == 8488
    assert first["ts_ns"] == 1795625741_637000000  # 2026-11-25 16:55:41.637+0000
    blocks = [r for r in got if r["kind"] == "qmp_reply" and r["name"] == "query-block"]
    assert [r["iostatus"] for r in blocks][:2] == ["ok", "failed"]
    assert {r["device"] for r in blocks} == {"virtio-disk0"}
    by_seq = {r["seq"]: r for r in got}
    conts = [r for r in got if r["kind"] == "qmp_reply" and r["name"] == "cont"]
    assert len(conts) == 7
    for r in conts:
        assert json.loads(by_seq[r["cmd_seq"]]["payload"])["id"] == json.loads(r["payload"])["id"]


def _line(ts, tid, func, msg):
    return f"2026-01-02 03:04:{ts}+0000: {tid}: info : {func} : {msg}"


def two_vm_log():
    return "\n".join([
        _line("05.000", 1, "qemuMonitorOpenInternal:1", "QEMU_MONITOR_NEW: mon=0xa fd=3"),
        _line("05.001", 1, "qemuDomainObjEnterMonitorInternal:2", "Entering monitor (mon=0xa vm=0x1 name=alpha)"),
        _line("05.002", 1, "qemuMonitorSend:3", 'QEMU_MONITOR_SEND_MSG: mon=0xa msg={"execute":"cont","id":"libvirt-1"}\r'),
        " fd=-1",
        _line("05.003", 1, "qemuMonitorOpenInternal:1", "QEMU_MONITOR_NEW: mon=0xb fd=4"),
        _line("05.004", 2, "qemuMonitorJSONIOProcessLine:4", 'QEMU_MONITOR_RECV_EVENT: mon=0xa event={"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESUME"}'),
        _line("05.005", 2, "qemuMonitorJSONIOProcessLine:4", 'QEMU_MONITOR_RECV_REPLY: mon=0xa reply={"return": {}, "id": "libvirt-1"}'),
        _line("05.006", 2, "qemuMonitorJSONIOProcessLine:4", 'QEMU_MONITOR_RECV_EVENT: mon=0xb event={"timestamp": {"seconds": 1, "microseconds": 3}, "event": "STOP"}'),
    ]) + "\n"


def test_one_vm_per_monitor_named_from_the_log(write, tmp_path):
    path = write("libvirtd.log", two_vm_log())
    got = rows(read_input(path))
    assert [(r["vm"], r["seq"], r["kind"], r["name"]) for r in got] == [
        ("alpha", 0, "qmp_command", "cont"),
        ("alpha", 1, "qmp_event", "RESUME"),
        ("alpha", 2, "qmp_reply", "cont"),
        ("mon-0xb", 0, "qmp_event", "STOP"),
    ]
    assert got[2]["cmd_seq"] == 0
    assert got[0]["ts_ns"] == 1767323045_002000000
    # a directory output: one hive-style file per VM
    summary = import_traces([path], tmp_path / "out")
    assert sorted(summary.files) == sorted(
        [str(tmp_path / "out" / "vm=alpha" / "part-0.parquet"), str(tmp_path / "out" / "vm=mon-0xb" / "part-0.parquet")]
    )
    assert pq.read_table(summary.files[0]).column("vm").to_pylist() == ["alpha"] * 3
    assert summary.inputs[0].vms == ("alpha", "mon-0xb")


def test_vm_option_selects_one_vm(write, tmp_path):
    path = write("libvirtd.log", two_vm_log())
    summary = import_traces([path], tmp_path / "one.parquet", vm="alpha")
    assert summary.vm_rows == {"alpha": 3}


def test_old_io_process_buffers(write):
    # libvirt 1.x: no RECV probes; each buffer holds complete messages and maybe a partial one,
    # which libvirt processes again once complete.
    log = "\n".join([
        _line("01.000", 7, "qemuMonitorIOProcess:356", 'QEMU_MONITOR_IO_PROCESS: mon=0x7f buf={"timestamp": {"seconds": 5, "microseconds": 1}, "event": "BLOCK_IO_ERROR", "data": {"device": "drive-virtio-disk0", "operation": "write", "action": "stop"}}\r'),
        '{"timestamp": {"seconds": 5, "microseconds": 2}, "event": "STO len=200',
        _line("01.001", 7, "qemuMonitorIOProcess:356", 'QEMU_MONITOR_IO_PROCESS: mon=0x7f buf={"timestamp": {"seconds": 5, "microseconds": 2}, "event": "STOP"}\r'),
        " len=64",
        _line("01.002", 7, "qemuDomainObjEnterMonitorInternal:1", "Entering monitor (mon=0x7f vm=0x9 name=legacy)"),
    ]) + "\n"
    got = rows(read_input(write("old.log", log)))
    assert [(r["vm"], r["name"], r["src_line"], r["device"], r["action"]) for r in got] == [
        ("legacy", "BLOCK_IO_ERROR", 1, "drive-virtio-disk0", "stop"),
        ("legacy", "STOP", 3, None, None),
    ]


def _bad_reply_log() -> str:
    """A query-status whose reply is bad (its status a number) only for the command it answers,
    then a line that is bad as it stands."""
    return "\n".join([
        _line("05.000", 1, "qemuMonitorOpenInternal:1", "QEMU_MONITOR_NEW: mon=0xa fd=3"),
        _line("05.001", 1, "qemuMonitorSend:3", 'QEMU_MONITOR_SEND_MSG: mon=0xa msg={"execute":"query-status","id":"libvirt-1"}\r'),
        _line("05.002", 2, "qemuMonitorJSONIOProcessLine:4", 'QEMU_MONITOR_RECV_REPLY: mon=0xa reply={"return": {"status": 5, "running": true}, "id": "libvirt-1"}'),
        _line("05.003", 1, "qemuMonitorSend:3", 'QEMU_MONITOR_SEND_MSG: mon=0xa msg={"return": {}, "id": "libvirt-2"}\r'),
        _line("05.004", 2, "qemuMonitorJSONIOProcessLine:4", 'QEMU_MONITOR_RECV_EVENT: mon=0xa event={"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}'),
    ]) + "\n"


def test_a_bad_reply_is_named_before_a_later_bad_line(write):
    # a reply is bad only for the command it answers: the error names it, the first bad line
    with pytest.raises(ImportFormatError) as exc:
        read_input(write("libvirtd.log", _bad_reply_log()))
    assert exc.value.line == 3
    assert "QEMU_MONITOR_RECV_REPLY: query-status reply: status is a number" in str(exc.value)


def test_skipped_bad_lines_keep_no_rows(write):
    # the bad reply and a sent message that is no command are skipped, nothing of them kept
    path = write("libvirtd.log", _bad_reply_log())
    summary = import_traces([path], path.with_suffix(".parquet"), skip_bad=True)
    assert summary.inputs[0].skipped == 2
    got = rows(pq.read_table(path.with_suffix(".parquet")))
    assert [(r["kind"], r["name"], r["src_line"]) for r in got] == [
        ("qmp_command", "query-status", 2), ("qmp_event", "STOP", 5),
    ]
