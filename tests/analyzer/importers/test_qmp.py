"""QMP transcripts and raw streams: what each message becomes."""

from __future__ import annotations

import json

from analyzer.importers import read_input

T0 = 1795625380


def rows(table):
    return table.to_pylist()


def test_transcript_sample_rows_kinds_and_threads(dataplane):
    table = read_input(dataplane / "qmp-transcript.jsonl")
    got = rows(table)
    kinds = {}
    for r in got:
        kinds[(r["kind"], r["thread"], r["thread_kind"])] = kinds.get((r["kind"], r["thread"], r["thread_kind"]), 0) + 1
    assert kinds == {
        ("trace_event", "qemu", "unknown"): 1,  # the greeting
        ("qmp_command", "mgmt", "mgmt"): 96,
        ("qmp_reply", "main", "main"): 96,
        ("qmp_event", "qemu", "unknown"): 19,
    }
    assert [r["seq"] for r in got] == list(range(212))
    assert [r["src_line"] for r in got] == list(range(1, 213))
    assert {r["src_file"] for r in got} == {str(dataplane / "qmp-transcript.jsonl")}


def test_transcript_times_are_the_lines_t_exactly(dataplane):
    got = rows(read_input(dataplane / "qmp-transcript.jsonl"))
    # line 34: {"t": 1795625380.545163, ... BLOCK_IO_ERROR with QMP timestamp .545036}
    bie = got[33]
    assert bie["name"] == "BLOCK_IO_ERROR"
    assert bie["ts_ns"] == 1795625380_545163000
    # the event keeps its own QMP timestamp in the payload
    assert json.loads(bie["payload"])["timestamp"] == {"seconds": T0, "microseconds": 545036}


def test_block_io_error_fields(dataplane, report_sample):
    got = rows(read_input(dataplane / "qmp-transcript.jsonl"))
    bies = [r for r in got if r["name"] == "BLOCK_IO_ERROR"]
    assert len(bies) == 6
    assert {(r["device"], r["action"], r["errno"], r["iostatus"]) for r in bies} == {("drive0", "stop", 5, None)}
    assert [r["op"] for r in bies] == ["write"] * 5 + ["read"]
    # c-report: report action; the ENOSPC error has no `nospace` (iostatus disabled) and its
    # reason text is not parsed, so its errno is unknown
    got = rows(read_input(report_sample / "qmp-transcript.jsonl"))
    bies = [r for r in got if r["name"] == "BLOCK_IO_ERROR"]
    assert [(r["op"], r["action"], r["errno"]) for r in bies] == [
        ("write", "report", 5),
        ("write", "report", None),
        ("read", "report", 5),
    ]


def test_replies_point_at_their_command_and_carry_state(dataplane):
    got = rows(read_input(dataplane / "qmp-transcript.jsonl"))
    by_seq = {r["seq"]: r for r in got}
    replies = [r for r in got if r["kind"] == "qmp_reply"]
    for r in replies:
        cmd = by_seq[r["cmd_seq"]]
        assert cmd["kind"] == "qmp_command"
        assert cmd["name"] == r["name"]
        assert json.loads(cmd["payload"])["id"] == json.loads(r["payload"])["id"]
    blocks = [r for r in replies if r["name"] == "query-block"]
    assert {r["device"] for r in blocks} == {"drive0"}
    # io-status over the capture: ok, then failed while stopped, ok after the last cont
    seq_status = [r["iostatus"] for r in blocks]
    assert seq_status[0] == "ok" and "failed" in seq_status and seq_status[-1] == "ok"
    statuses = {r["runstate"] for r in replies if r["name"] == "query-status"}
    assert statuses == {"running", "io-error"}
    assert {r["name"] for r in got if r["kind"] == "qmp_command"} >= {"cont", "query-block", "query-status"}


def test_raw_event_stream_uses_qmp_timestamps(dataplane):
    got = rows(read_input(dataplane / "events.jsonl"))
    assert [r["name"] for r in got[:3]] == ["BLOCK_IO_ERROR", "STOP", "RESUME"]
    assert got[0]["ts_ns"] == 1795625380_545036000
    assert got[-1]["name"] == "SHUTDOWN"


def test_raw_stream_replies_carry_the_last_event_time_and_map_node_names(write):
    stream = "\n".join(
        json.dumps(m)
        for m in [
            {"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 9}}, "capabilities": []}},
            {"execute": "query-block", "id": "a"},
            {"return": [{"device": "", "qdev": "/machine/peripheral/virtio-disk0/virtio-backend",
                         "io-status": "ok", "inserted": {"node-name": "libvirt-1-format"}}], "id": "a"},
            {"timestamp": {"seconds": 100, "microseconds": 5}, "event": "BLOCK_IO_ERROR",
             "data": {"device": "", "node-name": "libvirt-1-format", "operation": "write",
                      "action": "stop", "nospace": True, "reason": "No space left on device"}},
            {"timestamp": {"seconds": 100, "microseconds": 9}, "event": "STOP"},
            {"execute": "query-status"},
            {"return": {"status": "io-error", "running": False}},
        ]
    ) + "\n"
    got = rows(read_input(write("raw.jsonl", stream)))
    assert [r["kind"] for r in got] == [
        "trace_event", "qmp_command", "qmp_reply", "qmp_event", "qmp_event", "qmp_command", "qmp_reply",
    ]
    # before the first event: its time; after: the last event's
    assert [r["ts_ns"] for r in got] == [100_000_005_000] * 4 + [100_000_009_000] * 3
    block, bie = got[2], got[3]
    assert (block["device"], block["iostatus"], block["cmd_seq"]) == ("virtio-disk0", "ok", 1)
    assert (bie["device"], bie["errno"], bie["action"]) == ("virtio-disk0", 28, "stop")
    # a reply without id answers the oldest command without id
    assert (got[6]["name"], got[6]["runstate"], got[6]["cmd_seq"]) == ("query-status", "io-error", 5)


def test_query_block_gives_one_row_per_device_and_error_replies_one_row(write):
    lines = [
        {"t": 1.5, "dir": "send", "line": json.dumps({"execute": "query-block", "id": 1})},
        {"t": 2, "dir": "recv", "line": json.dumps({"return": [
            {"device": "d0", "qdev": "q0", "io-status": "failed"},
            {"device": "d1", "qdev": "q1"},
        ], "id": 1})},
        {"t": 3.000000001, "dir": "send", "line": json.dumps({"execute": "cont", "id": 2})},
        {"t": 4, "dir": "recv", "line": json.dumps({"error": {"class": "GenericError", "desc": "x"}, "id": 2})},
    ]
    got = rows(read_input(write("t.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")))
    assert [(r["kind"], r["name"], r["device"], r["iostatus"], r["cmd_seq"]) for r in got] == [
        ("qmp_command", "query-block", None, None, None),
        ("qmp_reply", "query-block", "d0", "failed", 0),
        ("qmp_reply", "query-block", "d1", None, 0),
        ("qmp_command", "cont", None, None, None),
        ("qmp_reply", "cont", None, None, 3),
    ]
    assert [r["ts_ns"] for r in got] == [1_500_000_000, 2_000_000_000, 2_000_000_000, 3_000_000_001, 4_000_000_000]
    assert got[1]["src_line"] == got[2]["src_line"] == 2


def test_vm_named_by_query_name_reply(write):
    lines = [
        json.dumps({"execute": "query-name", "id": 1}),
        json.dumps({"return": {"name": "guest-42"}, "id": 1}),
    ]
    table = read_input(write("s.jsonl", "\n".join(lines) + "\n"))
    assert table.column("vm").to_pylist() == ["guest-42", "guest-42"]
    table = read_input(write("s2.jsonl", "\n".join(lines) + "\n"), vm="other")
    assert set(table.column("vm").to_pylist()) == {"other"}


def test_qemu_version_from_the_greeting_then_query_version(write):
    """The release the greeting announces is the trace's; a query-version reply updates it;
    an announcement without micro gives major.minor, one without major/minor none."""

    def version_of(*messages):
        text = "\n".join(json.dumps(m) for m in messages) + "\n"
        return read_input(write("v.jsonl", text)).schema.metadata.get(b"blkreplay.qemu_version")

    greeting = {"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7},
                                    "package": " Debian 1:7.2+dfsg-7+deb12u7 "}, "capabilities": []}}
    assert version_of(greeting) == b"7.2.22"
    reply = {"return": {"qemu": {"micro": 1, "minor": 0, "major": 10}, "package": ""}, "id": 1}
    assert version_of(greeting, {"execute": "query-version", "id": 1}, reply) == b"10.0.1"
    no_micro = {"QMP": {"version": {"qemu": {"minor": 2, "major": 9}}, "capabilities": []}}
    assert version_of(no_micro) == b"9.2"
    no_minor = {"QMP": {"version": {"qemu": {"major": 9, "micro": 0}}, "capabilities": []}}
    assert version_of(no_minor) is None
