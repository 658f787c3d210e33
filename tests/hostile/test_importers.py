"""Every importer is a door for hostile input: one line naming the file and line, exit 2.

Per importer (QMP transcript, raw QMP / events stream, QEMU trace log, libvirt log, several
inputs merged) the inputs that broke it (issue #12: RecursionError on deep JSON, overflow on
huge numbers, TypeError on a list where a string belongs, a month 13, a lone surrogate, ...)
and the resources they could exhaust (a file of zeros, ``/dev/zero``, a pipe that never ends a
line, a line of 17 MiB). Each case runs ``blkreplay import`` in-process and asserts what the
user sees: exit 2 with exactly one stderr line naming the input and its line, no traceback,
nothing written; or, where the input is acceptable, a trace that ``blkreplay check`` accepts.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from tests.hostile.conftest import assert_contract, run_cli

DEEP = "[" * 100_000 + "]" * 100_000
EVENT = '{"timestamp": {"seconds": 1795625380, "microseconds": 545036}, "event": "STOP"}'
BIE = (
    '{"timestamp": {"seconds": 1795625380, "microseconds": 545036}, "event": "BLOCK_IO_ERROR", '
    '"data": {"device": "drive0", "nospace": false, "reason": "Input/output error", '
    '"operation": %s, "action": "stop"}}'
)
GREETING = '{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": []}}'
RUNNING = "11542@1796188106.745659:runstate_set current_run_state 6 (prelaunch) new_state 9 (running)\n"
LV = "2026-11-25 16:55:38.378+0000: 13349: info : qemuMonitorIOProcess:447 : "
LV_EVENT = LV + "QEMU_MONITOR_RECV_EVENT: mon=0x7ffb2c004460 event=" + EVENT + "\n"


def rec(line: str, t: float | str = 1795625380.5, direction: str = "recv") -> str:
    """One transcript record (`t` as JSON text when a str: numbers json.dumps cannot write)."""
    t_text = t if isinstance(t, str) else json.dumps(t)
    return '{"t": ' + t_text + ', "dir": "' + direction + '", "line": ' + json.dumps(line) + "}\n"


def respond(json_text: str) -> str:
    return "11542@1796188106.745724:monitor_qmp_respond mon 0x562a22148ae0 resp: " + json_text + "\n"


STATUS = rec('{"execute": "query-status", "id": 7}', direction="send")

#: (id, file name, content, line the error names); every one must be refused.
REFUSED: list[tuple[str, str, str | bytes, int]] = [
    # -- QMP transcript ------------------------------------------------------------------
    ("transcript-deep-line", "t.jsonl", rec(EVENT) + rec(DEEP), 2),
    ("transcript-deep-reply", "t.jsonl", rec(EVENT) + rec('{"return": ' + DEEP + ', "id": 1}'), 2),
    ("transcript-deep-record", "t.jsonl", rec(EVENT) + '{"t": 1, "dir": "recv", "line": "x", "k": ' + DEEP + "}\n", 2),
    ("transcript-t-1e20", "t.jsonl", rec(EVENT) + rec(EVENT, "1e20"), 2),
    ("transcript-t-1e400", "t.jsonl", rec(EVENT) + rec(EVENT, "1e400"), 2),
    ("transcript-t-1e999999999", "t.jsonl", rec(EVENT) + rec(EVENT, "1e999999999"), 2),
    ("transcript-t-2^70", "t.jsonl", rec(EVENT) + rec(EVENT, str(2**70)), 2),
    ("transcript-t-NaN", "t.jsonl", rec(EVENT) + rec(EVENT, "NaN"), 2),
    ("transcript-t-string", "t.jsonl", rec(EVENT) + rec(EVENT, '"soon"'), 2),
    ("transcript-lone-surrogate", "t.jsonl", rec(EVENT) + rec(EVENT.replace("STOP", "ST\\ud800OP")), 2),
    ("transcript-record-surrogate", "t.jsonl", rec(EVENT) + '{"t": 1, "dir": "recv", "line": "{\\"event\\": \\"\\udc80\\"}"}\n', 2),
    ("transcript-status-list", "t.jsonl", STATUS + rec('{"return": {"status": ["running"], "running": true}, "id": 7}'), 2),
    ("transcript-operation-object", "t.jsonl", rec(EVENT) + rec(BIE % '{"op": "write"}'), 2),
    ("transcript-greeting-QMP-5", "t.jsonl", rec('{"QMP": 5}'), 1),
    ("transcript-event-seconds-2^70", "t.jsonl", rec(EVENT) + rec(EVENT.replace("1795625380", str(2**70))), 2),
    ("transcript-event-name-list", "t.jsonl", rec(EVENT) + rec(EVENT.replace('"STOP"', '["STOP"]')), 2),
    ("transcript-execute-object", "t.jsonl", rec(EVENT) + rec('{"execute": {"x": 1}, "id": 1}', direction="send"), 2),
    ("transcript-5000-digit-id-of-a-known-reply", "t.jsonl",
     STATUS + rec('{"return": {}, "id": 7}') + rec('{"return": {}, "id": ' + "9" * 5000 + "}"), 3),
    ("transcript-5000-digit-return", "t.jsonl", rec(EVENT) + rec('{"return": ' + "9" * 5000 + ', "id": 1}'), 2),
    ("transcript-iothread-tid-2^70", "t.jsonl",
     rec('{"execute": "query-iothreads", "id": 3}', direction="send")
     + rec('{"return": [{"id": "io0", "thread-id": ' + str(2**70) + '}], "id": 3}'), 2),
    # -- raw QMP stream / events.jsonl ---------------------------------------------------------
    ("events-deep", "events.jsonl", EVENT + "\n" + '{"event": "X", "data": ' + DEEP + "}\n", 2),
    ("events-deep-first", "events.jsonl", '{"event": "X", "data": ' + DEEP + "}\n", 1),
    ("events-1e400-microseconds", "events.jsonl", EVENT + "\n" + EVENT.replace("545036", "1e400") + "\n", 2),
    ("events-microseconds-2^62", "events.jsonl", EVENT + "\n" + EVENT.replace("545036", str(2**62)) + "\n", 2),
    ("events-lone-surrogate", "events.jsonl", EVENT + "\n" + EVENT.replace("STOP", "\\udfff") + "\n", 2),
    ("events-operation-object", "events.jsonl", EVENT + "\n" + BIE % '{"a": 1}' + "\n", 2),
    ("events-action-list", "events.jsonl", EVENT + "\n" + (BIE % '"write"').replace('"stop"}', '["stop"]}') + "\n", 2),
    ("events-nospace-string", "events.jsonl", EVENT + "\n" + (BIE % '"write"').replace("false", '"no"') + "\n", 2),
    ("events-greeting-QMP-5", "events.jsonl", '{"QMP": 5}\n', 1),
    ("events-data-list", "events.jsonl", EVENT + "\n" + EVENT.replace('"STOP"}', '"STOP", "data": [1]}') + "\n", 2),
    # -- QEMU trace log ------------------------------------------------------------------------
    ("trace-respond-deep", "trace.log", RUNNING + respond('{"return": ' + DEEP + ', "id": 1}'), 2),
    ("trace-respond-event-deep", "trace.log", RUNNING + respond('{"event": "X", "data": ' + DEEP + "}"), 2),
    ("trace-respond-surrogate", "trace.log", RUNNING + respond(EVENT.replace("STOP", "\\ud834")), 2),
    ("trace-respond-event-1e400", "trace.log", RUNNING + respond(EVENT.replace("545036", "1e400")), 2),
    ("trace-respond-event-name-list", "trace.log", RUNNING + respond(EVENT.replace('"STOP"', '["STOP"]')), 2),
    ("trace-respond-operation-object", "trace.log", RUNNING + respond(BIE % "{}"), 2),
    ("trace-tid-2^70", "trace.log", RUNNING + RUNNING.replace("11542", str(2**70)), 2),
    ("trace-seconds-2^70", "trace.log", RUNNING + RUNNING.replace("1796188106", str(2**70)), 2),
    ("trace-ret-beyond-int32", "trace.log",
     RUNNING + f"11544@1796188107.1:virtio_blk_rw_complete vdev 0x1 req 0x2 ret -{2**40}\n", 2),
    ("trace-req-beyond-64-bits", "trace.log",
     RUNNING + f"11544@1796188107.1:virtio_blk_rw_complete vdev 0x1 req {2**70:#x} ret -5\n", 2),
    ("trace-runstate-5000-digits", "trace.log",
     RUNNING + RUNNING.replace("state 6 ", "state " + "9" * 5000 + " "), 2),
    ("trace-runstate-old-5000-digits", "trace.log", RUNNING + "11542@1796188107.1:runstate_set new state " + "9" * 5000 + "\n", 2),
    ("trace-ret-5000-digits", "trace.log",
     RUNNING + "11544@1796188107.1:virtio_blk_rw_complete vdev 0x1 req 0x2 ret -" + "9" * 5000 + "\n", 2),
    ("trace-latin1", "trace.log", RUNNING.encode() + b"11542@1796188107.0:blk_co_preadv file caf\xe9\n", 2),
    # -- libvirt debug log ---------------------------------------------------------------------
    ("libvirt-month-13", "libvirtd.log", LV_EVENT + LV_EVENT.replace("2026-11-25", "2026-13-25"), 2),
    ("libvirt-february-30", "libvirtd.log", LV_EVENT + LV_EVENT.replace("2026-11-25", "2026-02-30"), 2),
    ("libvirt-year-0", "libvirtd.log", LV_EVENT + LV_EVENT.replace("2026-11-25", "0000-11-25"), 2),
    ("libvirt-year-9999", "libvirtd.log", LV_EVENT + LV_EVENT.replace("2026-11-25", "9999-11-25"), 2),
    ("libvirt-offset-99h", "libvirtd.log", LV_EVENT + LV_EVENT.replace("+0000", "+9900"), 2),
    ("libvirt-reply-deep", "libvirtd.log",
     LV_EVENT + LV + "QEMU_MONITOR_RECV_REPLY: mon=0x7ffb2c004460 reply={\"return\": " + DEEP + "}\n", 2),
    ("libvirt-event-deep", "libvirtd.log", LV_EVENT + LV + "QEMU_MONITOR_RECV_EVENT: mon=0x1 event=" + DEEP + "\n", 2),
    ("libvirt-event-surrogate", "libvirtd.log", LV_EVENT + LV_EVENT.replace("STOP", "\\ud800"), 2),
    ("libvirt-event-operation-object", "libvirtd.log",
     LV_EVENT + LV + "QEMU_MONITOR_RECV_EVENT: mon=0x1 event=" + BIE % "[1]" + "\n", 2),
    ("libvirt-io-process-deep", "libvirtd.log",
     LV + "QEMU_MONITOR_IO_PROCESS: mon=0x1 buf=" + EVENT + "\r\n" + DEEP + "\r\n len=5\n", 2),
    ("libvirt-latin1-name", "libvirtd.log", LV_EVENT.encode() + LV.encode() + b"vm=0x2 name=caf\xe9\n", 2),
]


def _write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    return path


@pytest.mark.parametrize(("name", "content", "line"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_hostile_line_is_one_error_naming_file_and_line(tmp_path: Path, name: str, content: str | bytes, line: int):
    path = _write(tmp_path / name, content)
    out = tmp_path / "out.parquet"
    outcome = run_cli(["import", path, "-o", out, "-q"])
    assert outcome.code == 2, f"exit {outcome.code}: {outcome.err or outcome.crash}"
    assert_contract(outcome, names=path, line=line)
    assert not out.exists()


@pytest.mark.parametrize(("name", "content", "line"), [c[1:] for c in REFUSED if c[3] > 1],
                         ids=[c[0] for c in REFUSED if c[3] > 1])
def test_skip_bad_skips_the_hostile_line_and_imports_the_rest(tmp_path: Path, name: str, content: str | bytes, line: int):
    path = _write(tmp_path / name, content)
    out = tmp_path / "out.parquet"
    outcome = run_cli(["import", path, "-o", out, "-q", "--skip-bad"])
    assert_contract(outcome, names=path)
    if outcome.code == 0:  # a line is skipped: the rest is a trace check accepts
        assert_contract(run_cli(["check", out]))
        assert run_cli(["check", out]).code in (0, 1)


#: Inputs that are odd but valid: imported, and `check` accepts what was written.
ACCEPTED: list[tuple[str, str, str]] = [
    ("trace-ret-minus-0-is-success", "trace.log",
     RUNNING + "11544@1796188107.1:virtio_blk_rw_complete vdev 0x1 req 0x2 ret -0\n"),
    ("trace-req-top-bit-set", "trace.log",
     RUNNING + "11544@1796188107.1:virtio_blk_handle_write vdev 0x1 req 0xffff888000000000 sector 0 nsectors 8\n"
     "11544@1796188107.2:virtio_blk_rw_complete vdev 0x1 req 0xffff888000000000 ret -5\n"),
    ("transcript-negative-t", "t.jsonl", rec(EVENT, -5)),
    ("transcript-status-unknown-string", "t.jsonl", STATUS + rec('{"return": {"status": "dancing", "running": true}, "id": 7}')),
    ("events-no-time", "events.jsonl", EVENT.replace("1795625380", "-1").replace("545036", "-1") + "\n"),
    ("transcript-greeting", "t.jsonl", rec(GREETING) + rec(EVENT)),
    ("libvirt-leap-second", "libvirtd.log", LV_EVENT.replace("38.378", "60.378")),
    ("trace-event-number-5000-digits", "trace.log",
     RUNNING + "11542@1796188107.1:monitor_protocol_event_queue event=" + "9" * 5000 + " data=0x1 rate=0\n"
     + '11542@1796188107.2:monitor_protocol_event event=' + "9" * 5000 + ' name "STOP"\n'),
    ("trace-runstate-2^64", "trace.log",
     f"11542@1796188106.7:runstate_set current_run_state {2**64} (x) new_state {2**64} (running)\n"),
    # a request QEMU traced as received, twice: no valid command either time (was a crash)
    ("trace-request-exec-oob-number", "trace.log",
     RUNNING + "".join(f'11542@1796188107.{i}:handle_qmp_command mon 0x1 req: {{"execute": "cont", '
                       f'"exec-oob": 5, "id": {i}}}\n' for i in (1, 2))),
]


@pytest.mark.parametrize(("name", "content"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_odd_but_valid_input_imports_to_a_trace_check_accepts(tmp_path: Path, name: str, content: str):
    path = _write(tmp_path / name, content)
    out = tmp_path / "out.parquet"
    outcome = run_cli(["import", path, "-o", out, "-q"])
    assert outcome.code == 0, outcome.err or outcome.crash
    checked = run_cli(["check", out])
    assert_contract(checked)
    assert checked.code in (0, 1), checked.err


def test_ret_minus_0_is_no_failed_completion(tmp_path: Path):
    import pyarrow.parquet as pq

    path = _write(tmp_path / "trace.log", ACCEPTED[0][2])
    assert run_cli(["import", path, "-o", tmp_path / "o.parquet", "-q"]).code == 0
    table = pq.read_table(tmp_path / "o.parquet")
    assert "io_complete" not in table.column("kind").to_pylist()
    assert table.column("errno").null_count == table.num_rows


@pytest.mark.parametrize(("name", "line"), [
    ("t.jsonl", lambda i: rec(f'{{"execute": 5, "id": {i}}}', direction="send")),
    ("libvirtd.log", lambda i: LV.replace("qemuMonitorIOProcess:447", "qemuMonitorSend:861")
     + f'QEMU_MONITOR_SEND_MSG: mon=0x7ffb2c004460 msg={{"execute":5,"id":"libvirt-{i}"}} fd=-1\n'),
], ids=["transcript", "libvirt-log"])
def test_every_copy_of_a_bad_command_is_a_bad_line(tmp_path: Path, name: str, line):
    """A command QMP would refuse, sent three times with new ids: three bad lines, however
    the importer remembers messages it saw before."""
    import pyarrow.parquet as pq

    content = (LV_EVENT if name == "libvirtd.log" else rec(EVENT)) + "".join(line(i) for i in (1, 2, 3))
    path = _write(tmp_path / name, content)
    first = run_cli(["import", path, "-o", tmp_path / "refused.parquet", "-q"])
    assert first.code == 2 and f"{path}, line 2:" in first.err and "is a number, expected a string" in first.err
    out = tmp_path / "o.parquet"
    skipped = run_cli(["import", path, "-o", out, "--skip-bad"])
    assert skipped.code == 0, skipped.err or skipped.crash
    assert "3 skipped" in skipped.out + skipped.err
    assert "qmp_command" not in pq.read_table(out).column("kind").to_pylist()


def test_merged_inputs_name_the_bad_one(tmp_path: Path):
    good = _write(tmp_path / "trace.log", RUNNING)
    bad = _write(tmp_path / "t.jsonl", rec(EVENT) + rec(EVENT, "1e400"))
    outcome = run_cli(["import", good, bad, "-o", tmp_path / "o.parquet", "-q"])
    assert outcome.code == 2
    assert_contract(outcome, names=bad, line=2)
    assert "trace.log" not in outcome.err


# ---------------------------------------------------------------------------------------------
# Resources: bounded prefix, bounded lines, non-regular files
# ---------------------------------------------------------------------------------------------


def test_a_2_gb_file_of_zeros_is_refused_at_its_first_line(tmp_path: Path):
    zeros = tmp_path / "zeros.bin"
    with zeros.open("wb") as f:
        f.truncate(2 << 30)  # sparse: costs no disk
    outcome = run_cli(["import", zeros, "-o", tmp_path / "o.parquet", "-q"])
    assert outcome.code == 2
    assert_contract(outcome, names=zeros, line=1)
    assert "longer than 16 MiB" in outcome.err


def test_a_line_beyond_16_mib_is_named(tmp_path: Path):
    path = _write(tmp_path / "t.jsonl", rec(EVENT) + rec(EVENT) + rec("x" * (17 << 20)) + rec(EVENT))
    outcome = run_cli(["import", path, "-o", tmp_path / "o.parquet", "-q"])
    assert outcome.code == 2
    assert_contract(outcome, names=path, line=3)
    assert "longer than 16 MiB" in outcome.err


def test_a_long_but_bounded_line_is_imported(tmp_path: Path):
    big = '{"return": [' + ", ".join(['{"device": "d' + str(i) + '", "io-status": "ok"}' for i in range(60_000)]) + '], "id": 7}'
    path = _write(tmp_path / "t.jsonl", STATUS + rec(big))  # about 2 MiB on one line
    outcome = run_cli(["import", path, "-o", tmp_path / "o.parquet", "-q"])
    assert outcome.code == 0, outcome.err


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_character_devices_are_refused(tmp_path: Path, device: str):
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    outcome = run_cli(["import", device, "-o", tmp_path / "o.parquet", "-q"])
    assert outcome.code == 2
    assert_contract(outcome, names=device)
    assert "character device" in outcome.err


def _fifo_writer(fifo: Path, chunks) -> threading.Thread:
    def write() -> None:
        try:
            with fifo.open("wb") as f:
                for chunk in chunks:
                    f.write(chunk)
        except BrokenPipeError:
            pass

    t = threading.Thread(target=write, daemon=True)
    t.start()
    return t


def test_a_pipe_is_imported(tmp_path: Path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = _fifo_writer(fifo, [RUNNING.encode()] * 3)
    outcome = run_cli(["import", fifo, "-o", tmp_path / "o.parquet", "-q"])
    writer.join(5)
    assert outcome.code == 0, outcome.err


def test_a_pipe_of_endless_zeros_is_refused_at_line_1(tmp_path: Path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = _fifo_writer(fifo, (b"\0" * (1 << 20) for _ in range(1 << 20)))  # 1 TiB if read whole
    outcome = run_cli(["import", fifo, "-o", tmp_path / "o.parquet", "-q"])
    writer.join(5)
    assert outcome.code == 2
    assert_contract(outcome, names=fifo, line=1)


def test_a_huge_prefix_of_junk_is_refused_from_its_start(tmp_path: Path):
    path = _write(tmp_path / "junk.log", (" " * 4095 + "\n") * (10 << 10) + RUNNING)  # 40 MiB of blank lines
    outcome = run_cli(["import", path, "-o", tmp_path / "o.parquet", "-q"])
    assert outcome.code == 2
    assert_contract(outcome, names=path)
    assert "first 32 MiB" in outcome.err


def test_non_utf8_skipped_with_skip_bad(tmp_path: Path):
    path = _write(tmp_path / "trace.log", RUNNING.encode() + b"11542@1796188107.0:blk_co_preadv caf\xe9\n" + RUNNING.encode())
    outcome = run_cli(["import", path, "-o", tmp_path / "o.parquet", "--skip-bad"])
    assert outcome.code == 0, outcome.err
    assert "1 skipped" in outcome.out
