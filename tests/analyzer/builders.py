"""Hand-written traces for the analyzer's tests, following docs/rules.md §1.

`TraceBuilder` records steps the way a correct ("fixed") QEMU does by default, keeping the
same state QEMU keeps (run state, io-status per device, the single stop-request slot). Tests
make a trace wrong on purpose with the low-level `step` or the keyword switches.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from tracer import tracedir
from tracer.schema import from_pylist


class TraceBuilder:
    def __init__(
        self,
        vm: str = "vm0",
        *,
        iothreads: dict[str, str | None] | None = None,
        iostatus_enabled: tuple[str, ...] | None = None,
        ts_step: int = 1000,
        source: str = "sim",
    ) -> None:
        self.vm = vm
        #: device -> its iothread (None: completes on main).
        self.iothreads = iothreads if iothreads is not None else {"drive0": "iothread0"}
        self.enabled = iostatus_enabled if iostatus_enabled is not None else tuple(self.iothreads)
        self.rows: list[dict] = []
        self.seq = 0
        self.ts_step = ts_step
        self.source = source
        self.running = False
        self.runstate = "prelaunch"
        self.iostatus = {d: "ok" for d in self.enabled}
        self.slot: int | None = None
        self.req = 0

    # ------------------------------------------------------------------ raw steps

    def step(self, kind: str, thread: str = "main", thread_kind: str | None = None, **cols) -> int:
        if thread_kind is None:
            thread_kind = (
                "iothread" if thread.startswith("iothread") else
                "vcpu" if thread.startswith("vcpu") else
                "mgmt" if thread == "mgmt" else "main"
            )
        seq = cols.pop("seq", self.seq)
        row = {"seq": seq, "ts_ns": cols.pop("ts_ns", seq * self.ts_step), "vm": self.vm,
               "thread": thread, "thread_kind": thread_kind, "kind": kind, **cols}
        self.rows.append(row)
        self.seq = max(self.seq, seq + 1)
        return seq

    def event(self, name: str, thread: str = "main", **cols) -> int:
        return self.step("qmp_event", thread, name=name, **cols)

    def runstate_row(self, new: str, error_id: int | None = None, prev: str | None = None) -> int:
        prev = self.runstate if prev is None else prev
        self.runstate = new
        self.running = new == "running"
        return self.step("runstate", "main", prev_runstate=prev, runstate=new, error_id=error_id)

    # ------------------------------------------------------------------ QEMU behaviour

    def start(self) -> TraceBuilder:
        self.event("RESUME")
        self.runstate_row("running")
        return self

    def io(self, device: str = "drive0", op: str = "write", n: int = 1) -> TraceBuilder:
        thread = self.iothreads.get(device) or "main"
        for _ in range(n):
            self.req += 1
            self.step("io_submit", "vcpu0", device=device, req_id=self.req, op=op)
            self.step("io_complete", thread, device=device, req_id=self.req, op=op)
        return self

    def error(
        self,
        error_id: int,
        device: str = "drive0",
        *,
        op: str = "write",
        errno: int = 5,
        policy: str = "stop",
        action: str | None = None,
        thread: str | None = None,
        iostatus: bool = True,
        event: bool = True,
        request: bool = True,
    ) -> dict[str, int]:
        """The error path of §1 on the device's completing thread. Returns the seqs by step."""
        thread = thread or self.iothreads.get(device) or "main"
        if action is None:
            action = {"stop": "stop", "report": "report", "ignore": "ignore"}.get(
                policy, "stop" if errno == 28 else "report"
            )
        self.req += 1
        seqs = {}
        seqs["io_complete"] = self.step("io_complete", thread, device=device, req_id=self.req, op=op, errno=errno)
        seqs["error_action"] = self.step("error_action", thread, device=device, req_id=self.req, op=op,
                                         errno=errno, policy=policy, action=action, error_id=error_id)
        if action == "stop":
            if iostatus:
                seqs["iostatus_set"] = self.set_iostatus(error_id, device, errno, thread)
            seqs["vmstop_prepare"] = self.step("vmstop_prepare", thread, error_id=error_id)
        if event:
            seqs["event"] = self.bie(error_id, device, op=op, errno=errno, action=action, thread=thread)
        if action == "stop" and request:
            seqs["vmstop_request"] = self.step("vmstop_request", thread, runstate="io-error", error_id=error_id)
            self.slot = error_id
        return seqs

    def set_iostatus(self, error_id: int, device: str, errno: int = 5, thread: str | None = None) -> int:
        thread = thread or self.iothreads.get(device) or "main"
        if self.iostatus.get(device, "ok") == "ok":
            self.iostatus[device] = "nospace" if errno == 28 else "failed"
        return self.step("iostatus_set", thread, device=device, iostatus=self.iostatus[device], error_id=error_id)

    def bie(self, error_id: int | None, device: str = "drive0", *, op: str = "write", errno: int = 5,
            action: str = "stop", thread: str | None = None) -> int:
        thread = thread or self.iothreads.get(device) or "main"
        payload = json.dumps({"device": device, "operation": op, "action": action})
        return self.event("BLOCK_IO_ERROR", thread, device=device, op=op, errno=errno, action=action,
                          error_id=error_id, payload=payload)

    def main_loop(self, *, stop_event: bool = True, thread: str = "main") -> dict[str, int]:
        """The main loop consuming the pending request (if any)."""
        seqs: dict[str, int] = {}
        if self.slot is None:
            return seqs
        x, self.slot = self.slot, None
        seqs["vm_stop"] = self.step("vm_stop", thread, runstate="io-error", error_id=x)
        if self.running:
            seqs["runstate"] = self.runstate_row("io-error", error_id=x)
            if stop_event:
                seqs["stop"] = self.event("STOP", error_id=x)
        return seqs

    def cont(self, *, reset: bool = True, reply_first: bool = False, retry: list[dict] | None = None,
             resume_after_retry: bool = False) -> dict[str, int]:
        """QMP cont: reset io-status, vm_start, events; `retry` errors re-fail after RESUME (or
        before it with `resume_after_retry`, the 2.1-2.12 bug)."""
        seqs: dict[str, int] = {}
        cmd = seqs["command"] = self.step("qmp_command", "mgmt", name="cont")
        if reset:
            for d in self.enabled:
                self.iostatus[d] = "ok"
                self.step("iostatus_reset", "main", device=d, iostatus="ok")
        x, self.slot = self.slot, None
        seqs["vm_start"] = self.step("vm_start", "main", error_id=x)
        if reply_first:
            seqs["reply"] = self.step("qmp_reply", "mgmt", name="cont", cmd_seq=cmd)
        if self.running:
            if x is not None:
                seqs["stop"] = self.event("STOP", error_id=x)
                seqs["resume"] = self.event("RESUME", error_id=x)
        else:
            if not resume_after_retry:
                seqs["resume"] = self.event("RESUME")
            self.runstate_row("running")
            for r in retry or []:
                self.error(**r)
            if resume_after_retry:
                seqs["resume"] = self.event("RESUME")
        if not reply_first:
            seqs["reply"] = self.step("qmp_reply", "mgmt", name="cont", cmd_seq=cmd)
        return seqs

    def stop_command(self) -> dict[str, int]:
        seqs = {"command": self.step("qmp_command", "mgmt", name="stop")}
        seqs["vm_stop"] = self.step("vm_stop", "main", runstate="paused")
        if self.running:
            self.runstate_row("paused")
            seqs["stop"] = self.event("STOP")
        seqs["reply"] = self.step("qmp_reply", "mgmt", name="stop", cmd_seq=seqs["command"])
        return seqs

    def query_block(self, shown: dict[str, str | None] | None = None) -> dict[str, int]:
        cmd = self.step("qmp_command", "mgmt", name="query-block")
        seqs = {"command": cmd}
        values = dict(self.iostatus) if shown is None else shown
        for d in sorted(set(self.iothreads) | set(values)):
            seqs[d] = self.step("qmp_reply", "mgmt", name="query-block", cmd_seq=cmd, device=d,
                                iostatus=values.get(d))
        return seqs

    def query_status(self, shown: str | None = None) -> dict[str, int]:
        cmd = self.step("qmp_command", "mgmt", name="query-status")
        reply = self.step("qmp_reply", "mgmt", name="query-status", cmd_seq=cmd,
                          runstate=shown or self.runstate)
        return {"command": cmd, "reply": reply}

    # ------------------------------------------------------------------ output

    def table(self, extra: dict | None = None) -> pa.Table:
        return from_pylist(self.rows, self.source, extra)

    def write(self, path: Path, *, extra: dict | None = None) -> Path:
        tracedir.write_table(self.table(extra), path)
        return path


def merged(*builders: TraceBuilder, source: str = "sim") -> pa.Table:
    rows = [r for b in builders for r in b.rows]
    return from_pylist(rows, source)


def write_dir(table: pa.Table, out: Path, *, segment_rows: int = 10, manifest: bool = True) -> Path:
    """Write `table` as a recorder-style trace directory (segments, manifest when `manifest`)."""
    out.mkdir(parents=True, exist_ok=True)
    segments = []
    for i, start in enumerate(range(0, max(table.num_rows, 1), segment_rows)):
        part = table.slice(start, segment_rows)
        name = tracedir.segment_name(i)
        rows, digest = tracedir.write_table(part, out / name)
        segments.append(tracedir.Segment(name, rows, digest))
    if manifest:
        m = tracedir.Manifest(rows=table.num_rows, source="sim", segments=tuple(segments))
        tracedir.atomic_write_text(out / tracedir.MANIFEST_NAME, m.to_json())
    return out


def check_rows(rows: list[dict], tmp: Path, name: str = "t.parquet", *, qemu: str | None = None,
               **kwargs):
    """Write `rows` as one Parquet file under `tmp` and check it (analyzer.check); `qemu`: the
    QEMU release the file's metadata records (``blkreplay.qemu_version``; None: unknown)."""
    from analyzer import check

    path = tmp / name
    tracedir.write_table(from_pylist(rows, "sim", {"qemu_version": qemu} if qemu else None), path)
    return check([path], **kwargs)


def by_rule(result, rule: str) -> list:
    return [f for f in result.findings if f.rule == rule]
