"""Captures of real QEMU behaviour that the positional (no error id) rule forms must not call
violations: BLOCK_IO_ERROR throttling (QEMU >= 9.2) and a capture that is only one of several
monitors (libvirt's `stop` / `cont` on its own monitor are invisible; their events are not).

Each capture is a QMP transcript built here, line by line, in the capture client's layout
(`{"t", "dir", "line"}`), so a finding's `src` names the exact lines. Each no-violation case has
a converse that keeps the same shape but shows a real violation (or a known old QEMU), so the
excuse cannot be a blanket one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from analyzer import check
from analyzer.importers import import_traces

QOM = "/machine/peripheral/vblk0/virtio-backend"


def greeting(major: int, minor: int, micro: int = 0) -> dict:
    return {"QMP": {"version": {"qemu": {"micro": micro, "minor": minor, "major": major},
                                "package": ""}, "capabilities": ["oob"]}}


def event(name: str, at: float, **data) -> dict:
    sec = int(at)
    msg: dict = {"timestamp": {"seconds": sec, "microseconds": round((at - sec) * 1e6)}, "event": name}
    if data:
        msg["data"] = data
    return msg


def bie(at: float, *, qom: bool = True) -> dict:
    data = {"device": "drive0", "node-name": "n0", "nospace": False, "reason": "Input/output error",
            "operation": "write", "action": "stop"}
    if qom:
        data["qom-path"] = QOM
    return event("BLOCK_IO_ERROR", at, **data)


def block(status: str) -> list[dict]:
    return [{"device": "drive0", "qdev": QOM, "io-status": status, "locked": False, "removable": False}]


class Capture:
    """A transcript being written: `recv`/`send` append a line and return its number."""

    def __init__(self, version: tuple[int, int, int] | None) -> None:
        self.records: list[tuple[float, str, dict]] = []
        self.t = 100.0
        self.ids = 0
        if version is not None:
            self.recv(greeting(*version))

    def _add(self, direction: str, msg: dict, t: float | None) -> int:
        self.t = max(self.t + 0.0001, t) if t is not None else self.t + 0.0001
        self.records.append((self.t, direction, msg))
        return len(self.records)

    def recv(self, msg: dict, t: float | None = None) -> int:
        return self._add("recv", msg, t)

    def send(self, command: str, t: float | None = None) -> tuple[int, int]:
        self.ids += 1
        return self._add("send", {"execute": command, "id": self.ids}, t), self.ids

    def reply(self, ident: int, ret, t: float | None = None) -> int:
        return self._add("recv", {"return": ret, "id": ident}, t)

    def write(self, path: Path) -> Path:
        path.write_text("".join(json.dumps({"t": round(t, 6), "dir": d, "line": json.dumps(m)}) + "\n"
                                for t, d, m in self.records))
        return path


def audit(capture: Capture, tmp_path: Path, name: str = "capture.jsonl"):
    path = capture.write(tmp_path / name)
    out = tmp_path / f"{name}.parquet"
    import_traces([path], out)
    return path, out, check([out])


def errors(result) -> list:
    return [f for f in result.findings if f.severity == "error"]


def refs(path: Path, *lines: int) -> set[str]:
    return {f"{path}:{n}" for n in lines}


# --------------------------------------------------------------------------------- throttling


def late_bie_after_stop(version: tuple[int, int, int] | None) -> tuple[Capture, dict[str, int]]:
    """An error stop, cont, the retried write fails again: its BLOCK_IO_ERROR (emitted before
    the second STOP) is throttled and delivered 0.7 s later, after that STOP."""
    c = Capture(version)
    at = {"bie1": c.recv(bie(100.0001)), "stop1": c.recv(event("STOP", 100.0002))}
    cmd, ident = c.send("cont", 100.3)
    at["cont"] = cmd
    at["resume"] = c.recv(event("RESUME", 100.30005))
    c.reply(ident, {})
    at["stop2"] = c.recv(event("STOP", 100.3002))
    at["bie2"] = c.recv(bie(100.3001), 101.0002)
    return c, at


def test_throttled_bie_after_its_stop_is_no_violation_on_qemu_9_2(tmp_path):
    capture, _ = late_bie_after_stop((9, 2, 0))
    _, out, result = audit(capture, tmp_path)
    assert errors(result) == []
    assert result.verdict == "pass"
    table = pq.read_table(out)
    assert table.schema.metadata[b"blkreplay.qemu_version"] == b"9.2.0"
    events = table.filter(pc.equal(table["name"], "BLOCK_IO_ERROR"))
    assert events["event_ts_ns"].to_pylist() == [100_000_100_000, 100_300_100_000]


def test_same_wire_order_from_qemu_7_2_is_flagged(tmp_path):
    capture, at = late_bie_after_stop((7, 2, 22))
    path, _, result = audit(capture, tmp_path)
    found = errors(result)
    assert [f.rule for f in found] == ["event-before-stop"]
    assert set(found[0].src) == refs(path, at["stop2"], at["bie2"])
    assert result.verdict == "fail"


def test_unknown_version_may_throttle(tmp_path):
    capture, _ = late_bie_after_stop(None)
    _, _, result = audit(capture, tmp_path)
    assert errors(result) == []


def late_bie_after_resume(version: tuple[int, int, int]) -> tuple[Capture, dict[str, int]]:
    """The retried write's throttled BLOCK_IO_ERROR arrives after the *next* cont's RESUME;
    query-block then (correctly) shows ok: that cont reset the io-status."""
    c, at = Capture(version), {}
    c.recv(bie(100.0001))
    c.recv(event("STOP", 100.0002))
    _, ident = c.send("cont", 100.3)
    c.recv(event("RESUME", 100.30005))
    c.reply(ident, {})
    c.recv(event("STOP", 100.3002))  # caused by the retry's error, whose event is late
    at["cont"], ident = c.send("cont", 100.6)
    at["resume"] = c.recv(event("RESUME", 100.6001))
    c.reply(ident, {})
    at["bie2"] = c.recv(bie(100.3001), 101.0002)
    at["qb"], ident = c.send("query-block", 101.1)
    at["qb_reply"] = c.reply(ident, block("ok"))
    return c, at


def test_throttled_bie_after_the_next_resume_is_no_violation_on_qemu_9_2(tmp_path):
    capture, _ = late_bie_after_resume((9, 2, 1))
    _, _, result = audit(capture, tmp_path)
    assert result.findings == []
    assert result.verdict == "pass"


def test_bie_after_resume_from_qemu_7_2_is_flagged(tmp_path):
    capture, at = late_bie_after_resume((7, 2, 22))
    path, _, result = audit(capture, tmp_path)
    found = {f.rule: f for f in result.findings}
    assert set(found) >= {"query-matches-events"}
    assert set(found["query-matches-events"].src) == refs(path, at["bie2"], at["qb"], at["qb_reply"])


# --------------------------------------------------------------------------------- other monitors


def suspend_then_error(with_status: bool) -> tuple[Capture, dict[str, int]]:
    """`virsh suspend` (libvirt's `stop`, invisible here) pauses the VM; an in-flight write then
    fails while paused: its BLOCK_IO_ERROR(stop) comes after a STOP it did not cause."""
    c, at = Capture((7, 2, 22)), {}
    at["stop"] = c.recv(event("STOP", 100.1))
    if with_status:
        _, ident = c.send("query-status")
        c.reply(ident, {"status": "paused", "singlestep": False, "running": False})
    at["bie"] = c.recv(bie(100.2, qom=False))
    c.recv(event("RESUME", 101.0))  # virsh resume
    return c, at


def test_error_while_suspended_by_another_monitor_is_no_violation(tmp_path):
    _, _, result = audit(suspend_then_error(with_status=True)[0], tmp_path)
    assert errors(result) == []


def test_error_after_an_unexplained_stop_is_still_flagged(tmp_path):
    capture, at = suspend_then_error(with_status=False)
    path, _, result = audit(capture, tmp_path)
    found = errors(result)
    assert [f.rule for f in found] == ["event-before-stop"]
    assert set(found[0].src) == refs(path, at["stop"], at["bie"])


def query_block_across_foreign_cont(resume: bool) -> tuple[Capture, dict[str, int]]:
    """Our query-block is sent after an error stop; before QEMU answers it, libvirt's `cont`
    (on its monitor) resets every io-status and emits RESUME; the reply says ok."""
    c, at = Capture((7, 2, 22)), {}
    at["bie"] = c.recv(bie(100.0001, qom=False))
    c.recv(event("STOP", 100.0002))
    at["qb"], ident = c.send("query-block", 100.5)
    if resume:
        c.recv(event("RESUME", 100.5001))
    at["qb_reply"] = c.reply(ident, block("ok"))
    return c, at


def test_query_block_answered_after_a_foreign_cont_is_no_violation(tmp_path):
    _, _, result = audit(query_block_across_foreign_cont(resume=True)[0], tmp_path)
    assert result.findings == []


def test_query_block_ok_with_no_cont_before_its_reply_is_flagged(tmp_path):
    capture, at = query_block_across_foreign_cont(resume=False)
    path, _, result = audit(capture, tmp_path)
    found = errors(result)
    assert [f.rule for f in found] == ["query-matches-events"]
    assert set(found[0].src) == refs(path, at["bie"], at["qb"], at["qb_reply"])


def test_query_status_then_query_block_across_a_foreign_cont_is_no_violation(tmp_path):
    c = Capture((7, 2, 22))
    c.recv(bie(100.0001, qom=False))
    c.recv(event("STOP", 100.0002))
    _, ident = c.send("query-status", 100.5)
    c.reply(ident, {"status": "io-error", "singlestep": False, "running": False})
    _, ident = c.send("query-block")
    c.recv(event("RESUME", 100.6))  # libvirt's cont, processed before our query-block
    c.reply(ident, block("ok"))
    _, _, result = audit(c, tmp_path)
    assert result.findings == []


def test_suspend_after_our_cont_is_not_a_late_resume(tmp_path):
    """Our cont while an in-flight write fails (paused), RESUME, then `virsh suspend`: the STOP
    after the RESUME is a pause (query-status says so), not the retried error's stop."""
    c = Capture((7, 2, 22))
    c.recv(bie(100.0001, qom=False))
    c.recv(event("STOP", 100.0002))
    _, cont = c.send("cont", 100.5)
    late = c.recv(bie(100.5001, qom=False))  # failed while paused, before our cont ran
    resume = c.recv(event("RESUME", 100.5002))
    c.reply(cont, {})
    stop = c.recv(event("STOP", 101.0))
    _, ident = c.send("query-status")
    c.reply(ident, {"status": "paused", "singlestep": False, "running": False})
    _, _, result = audit(c, tmp_path)
    assert errors(result) == []
    # Without the status answer the same STOP is judged as the retried error's: flagged.
    c.records = c.records[:stop]
    path, _, result = audit(c, tmp_path, "no-status.jsonl")
    found = errors(result)
    assert [f.rule for f in found] == ["resume-before-retry-error"]
    assert set(found[0].src) == refs(path, late, resume, stop)


def test_capture_started_while_paused(tmp_path):
    """The capture connects while the VM is paused (its STOP came before): an in-flight write's
    BLOCK_IO_ERROR(stop) gives no STOP; the first event we see is the RESUME of a cont."""
    c = Capture((7, 2, 22))
    c.recv(bie(100.0001, qom=False))
    c.recv(event("RESUME", 100.5))
    _, _, result = audit(c, tmp_path)
    assert errors(result) == []


def test_raw_stream_event_without_time_has_no_event_ts(tmp_path):
    """QEMU's -1/-1 timestamp ("no time") gives a null event_ts_ns, never a negative one."""
    path = tmp_path / "raw.jsonl"
    path.write_text(json.dumps({"timestamp": {"seconds": -1, "microseconds": -1}, "event": "STOP"}) + "\n"
                    + json.dumps({"timestamp": {"seconds": 5, "microseconds": 7}, "event": "RESUME"}) + "\n")
    out = tmp_path / "raw.parquet"
    import_traces([path], out)
    assert pq.read_table(out)["event_ts_ns"].to_pylist() == [None, 5_000_007_000]
