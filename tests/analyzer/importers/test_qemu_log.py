"""QEMU trace logs (log backend): mapped events, threads, and every other event kept."""

from __future__ import annotations

import json
import re

from analyzer.importers import read_input


def rows(table):
    return table.to_pylist()


def typed(got):
    return [r for r in got if r["kind"] != "trace_event"]


def test_dataplane_trace_threads_come_from_qemus_own_replies(dataplane):
    got = rows(read_input(dataplane / "trace.log"))
    bies = [r for r in got if r["name"] == "BLOCK_IO_ERROR"]
    stops = [r for r in got if r["kind"] == "qmp_event" and r["name"] == "STOP"]
    assert len(bies) == 6 and len(stops) == 6
    # queued on the IOThread (query-iothreads: thread-id 9678 is iothread0), STOP on the main loop
    assert {(r["thread"], r["thread_kind"], r["tid"]) for r in bies} == {("iothread0", "iothread", 9678)}
    assert {(r["thread"], r["thread_kind"], r["tid"]) for r in stops} == {("main", "main", 9676)}
    assert {(r["thread"], r["thread_kind"]) for r in got if r["kind"] == "qmp_command"} == {("monitor", "worker")}
    assert {(r["thread"], r["thread_kind"]) for r in got if r["kind"] == "vm_stop"} == {("main", "main")}
    # the vCPU (query-cpus-fast thread-id 9680) started dataplane
    assert {r["thread"] for r in got if r["tid"] == 9680} == {"vcpu0"}


def test_first_error_cycle_in_order(dataplane):
    got = rows(read_input(dataplane / "trace.log"))
    window = [r for r in typed(got) if 170 <= r["src_line"] <= 180]
    assert [(r["kind"], r["name"], r["src_line"]) for r in window] == [
        ("io_complete", "virtio_blk_rw_complete", 170),
        ("qmp_event", "BLOCK_IO_ERROR", 173),
        ("runstate", "runstate_set", 174),
        ("qmp_event", "STOP", 179),
        ("vm_stop", "vm_stop_flush_all", 180),
    ]
    io, bie, runstate, stop, _ = window
    assert (io["errno"], io["op"], io["req_id"]) == (5, "write", 0x7FCCE00039B0)
    # the event takes the time of monitor_protocol_event_queue (line 171), its JSON from line 173
    assert bie["ts_ns"] == 1795625380_545062000
    assert json.loads(bie["payload"])["timestamp"]["microseconds"] == 545036
    assert (bie["device"], bie["op"], bie["action"], bie["errno"]) == ("drive0", "write", "stop", 5)
    assert (runstate["prev_runstate"], runstate["runstate"]) == ("running", "io-error")
    assert stop["ts_ns"] == 1795625380_545655000


def test_every_other_event_is_kept_with_its_arguments(dataplane):
    got = rows(read_input(dataplane / "trace.log"))
    lines = (dataplane / "trace.log").read_text().splitlines()
    kept = [r for r in got if r["kind"] == "trace_event" and r["name"] != "qmp_greeting"]
    assert {"virtio_blk_req_complete", "monitor_suspend", "blk_co_pwritev", "qmp_enter_cont"} <= {r["name"] for r in kept}
    for r in kept[:50]:
        line = lines[r["src_line"] - 1]
        assert line.split(":", 1)[1].startswith(r["name"])
        assert line.endswith(json.loads(r["payload"])["args"])
    # 1777 lines = 1757 rows + 20 monitor_protocol_event_queue lines folded into their event
    assert len(got) == 1757 and len(lines) == 1777


def test_replies_and_commands_from_the_trace(dataplane):
    got = rows(read_input(dataplane / "trace.log"))
    by_seq = {r["seq"]: r for r in got}
    replies = [r for r in got if r["kind"] == "qmp_reply"]
    assert len(replies) == 96
    for r in replies:
        assert by_seq[r["cmd_seq"]]["name"] == r["name"]
    blocks = [r for r in replies if r["name"] == "query-block"]
    assert {r["iostatus"] for r in blocks} == {"ok", "failed"}


def test_without_timestamps(dataplane, write):
    plain = re.sub(r"(?m)^\d+@\d+\.\d+:", "", (dataplane / "trace.log").read_text())
    got = rows(read_input(write("plain.log", plain)))
    assert len(got) == 1757
    assert {r["tid"] for r in got} == {None}
    assert {(r["thread"], r["thread_kind"]) for r in got} == {("qemu", "unknown")}
    bie = next(r for r in got if r["name"] == "BLOCK_IO_ERROR")
    assert bie["ts_ns"] == 1795625380_545036000  # its QMP timestamp
    # rows take the last event's time: never decreasing, in file order
    ts = [r["ts_ns"] for r in got]
    assert ts == sorted(ts)
    assert [r["src_line"] for r in got] == sorted(r["src_line"] for r in got)


def test_events_from_queue_lines_alone_are_named_by_the_version_table(dataplane, write):
    text = (dataplane / "trace.log").read_text()
    only_queue = "\n".join(x for x in text.splitlines() if "monitor_qmp_respond" not in x) + "\n"
    got = rows(read_input(write("q.log", only_queue)))
    events = [r for r in got if r["kind"] == "qmp_event"]
    # QEMU 7.2 from qmp_exit_query_version: 0 SHUTDOWN, 3 STOP, 4 RESUME, 15 BLOCK_IO_ERROR
    assert [r["name"] for r in events[:4]] == ["RESUME", "BLOCK_IO_ERROR", "STOP", "RESUME"]
    assert events[-1]["name"] == "SHUTDOWN"
    assert {r["thread"] for r in events if r["name"] == "BLOCK_IO_ERROR"} == {"iothread0"}
    # beyond the name only this: a BLOCK_IO_ERROR the next run-state change of which enters
    # io-error (no RESUME between) was action stop; the others' action stays unknown
    bies = [r for r in events if r["name"] == "BLOCK_IO_ERROR"]
    assert [r["action"] for r in bies] == ["stop"] * len(bies)
    assert {r["action"] for r in events if r["name"] != "BLOCK_IO_ERROR"} == {None}


def test_event_numbers_without_a_version_stay_numbers(write):
    # no version known: the number is never guessed into a name, but it is a raised event
    log = "10@1.000001:monitor_protocol_event_queue event=77 data=0x1 rate=0\n10@1.000002:runstate_set current_run_state 9 (running) new_state 4 (paused)\n"
    got = rows(read_input(write("u.log", log)))
    assert [(r["kind"], r["name"]) for r in got] == [("qmp_event", "#77"), ("runstate", "runstate_set")]
    assert json.loads(got[0]["payload"]) == {"args": "event=77 data=0x1 rate=0"}


def test_event_numbers_beyond_the_version_table_stay_trace_events(write):
    # QEMU 10.0 is known: 17 is BLOCK_IO_ERROR, 77 is an event no rule reads (not in the table)
    log = (
        '10@1.000000:qmp_exit_query_version {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""} 1\n'
        "10@1.000001:monitor_protocol_event_queue event=77 data=0x1 rate=0\n"
        "11@1.000002:monitor_protocol_event_queue event=17 data=0x2 rate=1000000000\n"
    )
    got = rows(read_input(write("k.log", log)))
    assert [(r["kind"], r["name"]) for r in got[1:]] == [
        ("trace_event", "monitor_protocol_event_queue"),
        ("qmp_event", "BLOCK_IO_ERROR"),
    ]


THROTTLED = """\
100@10.000000:runstate_set current_run_state 6 (prelaunch) new_state 9 (running)
101@10.100000:monitor_protocol_event_queue event=37 data=0xaa rate=1000000000
101@10.100001:monitor_protocol_event_emit event=37 data=0xaa
101@10.100002:monitor_qmp_respond mon 0x1 resp: {"timestamp": {"seconds": 10, "microseconds": 100000}, "event": "BLOCK_IO_ERROR", "data": {"device": "d0", "node-name": "n0", "qom-path": "/machine/peripheral/vblk0/virtio-backend", "reason": "Input/output error", "operation": "write", "action": "report"}}
101@10.200000:monitor_protocol_event_queue event=37 data=0xbb rate=1000000000
101@10.300000:monitor_protocol_event_queue event=37 data=0xcc rate=1000000000
100@11.100000:monitor_protocol_event_handler event=37 data=0xcc
100@11.100001:monitor_protocol_event_emit event=37 data=0xcc
100@11.100002:monitor_qmp_respond mon 0x1 resp: {"timestamp": {"seconds": 10, "microseconds": 300000}, "event": "BLOCK_IO_ERROR", "data": {"device": "d0", "node-name": "n0", "qom-path": "/machine/peripheral/vblk0/virtio-backend", "reason": "Input/output error", "operation": "write", "action": "report"}}
100@11.100003:monitor_qmp_respond mon 0x2 resp: {"timestamp": {"seconds": 10, "microseconds": 300000}, "event": "BLOCK_IO_ERROR", "data": {"device": "d0", "node-name": "n0", "qom-path": "/machine/peripheral/vblk0/virtio-backend", "reason": "Input/output error", "operation": "write", "action": "report"}}
"""


def test_throttled_event_keeps_the_queueing_thread_and_time(write):
    got = rows(read_input(write("t.log", THROTTLED)))
    events = [r for r in got if r["kind"] == "qmp_event"]
    # two events: the first, and the last of the window (sent a second later by the main loop,
    # to two monitors); both attributed to thread 101 that queued them, at queueing time
    assert [(r["tid"], r["ts_ns"], r["src_line"]) for r in events] == [
        (101, 10_100_000_000, 4),
        (101, 10_300_000_000, 9),
    ]
    assert {r["thread_kind"] for r in events} == {"unknown"}  # 101 is no thread QEMU named
    # the replaced event (queued, never sent) stays visible, named from the learnt number
    dropped = [r for r in got if r["name"] == "monitor_protocol_event_queue"]
    assert len(dropped) == 1 and dropped[0]["src_line"] == 5
    assert json.loads(dropped[0]["payload"])["event"] == "BLOCK_IO_ERROR"
    # the copy sent to the second monitor is no second event
    assert got[-1]["kind"] == "trace_event" and got[-1]["src_line"] == 10


def test_qemu_messages_and_old_formats(write):
    log = "\n".join([
        "qemu-system-x86_64: -drive file=x: warning: something",
        "2026-11-25T16:55:38.123456Z qemu-system-x86_64: terminating on signal 15",
        "runstate_set new state 3",
        'monitor_protocol_event event=3 name "STOP" data 0x1',
        'handle_qmp_command mon 0x1 cmd_name "cont"',
        "virtio_blk_rw_complete req 0x7f00 ret -28",
    ]) + "\n"
    got = rows(read_input(write("old.log", log)))
    assert [(r["kind"], r["name"]) for r in got] == [
        ("trace_event", "qemu_message"),
        ("trace_event", "qemu_message"),
        ("runstate", "runstate_set"),
        ("qmp_event", "STOP"),
        ("qmp_command", "cont"),
        ("io_complete", "virtio_blk_rw_complete"),
    ]
    assert (got[2]["prev_runstate"], got[2]["runstate"]) == (None, "io-error")
    assert (got[5]["errno"], got[5]["req_id"]) == (28, 0x7F00)


def test_commands_from_qmp_enter_when_handle_qmp_command_is_not_traced(write):
    log = "5@1.0:qmp_enter_cont {}\n5@1.1:qmp_enter_query_block {}\n5@1.2:qmp_enter_qmp_capabilities {}\n"
    got = rows(read_input(write("e.log", log)))
    assert [(r["kind"], r["name"]) for r in got] == [
        ("qmp_command", "cont"), ("qmp_command", "query-block"), ("qmp_command", "qmp_capabilities"),
    ]
    assert [r["ts_ns"] for r in got] == [1_000_000_000, 1_100_000_000, 1_200_000_000]


def test_a_reply_its_command_makes_unreadable_is_kept_as_the_trace_event_it_is(write):
    """A query-block reply whose device is no string is a bad reply only because of the
    command it answers: the same reply to query-status is a reply; either way the commands
    stay commands, each reply answers its own, and no line is refused."""
    bad = '{"return": [{"device": 5, "qdev": "disk0", "io-status": "ok"}], "id": @}'
    log = write("trace.log", "".join([
        '9679@1795625377.000001:handle_qmp_command mon 0x1 req: {"execute": "query-block", "id": 1}\n',
        "9676@1795625377.000002:monitor_qmp_respond mon 0x1 resp: " + bad.replace("@", "1") + "\n",
        '9679@1795625377.000003:handle_qmp_command mon 0x1 req: {"execute": "query-status", "id": 2}\n',
        "9676@1795625377.000004:monitor_qmp_respond mon 0x1 resp: " + bad.replace("@", "2") + "\n",
        '9679@1795625377.000005:handle_qmp_command mon 0x1 req: {"execute": "query-block", "id": 3}\n',
        "9676@1795625377.000006:monitor_qmp_respond mon 0x1 resp: " + bad.replace("@", "3") + "\n",
    ]))
    got = rows(read_input(log))
    assert [(r["kind"], r["name"], r["cmd_seq"], r["tid"]) for r in got] == [
        ("qmp_command", "query-block", None, 9679),
        ("trace_event", "monitor_qmp_respond", None, 9676),
        ("qmp_command", "query-status", None, 9679),
        ("qmp_reply", "query-status", 2, 9676),
        ("qmp_command", "query-block", None, 9679),
        ("trace_event", "monitor_qmp_respond", None, 9676),
    ]
    assert json.loads(got[1]["payload"]) == {"args": "mon 0x1 resp: " + bad.replace("@", "1")}
