"""Small traces and hand-built check results for the report and statistics tests.

`TraceBuilder` writes steps the way docs/rules.md says producers record them (seq per VM, ts in
ns) and remembers each error action's milestones, so a test can build the `episodes` table and
the findings it expects without running the analyzer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analyzer.result import CheckResult, Finding, InputInfo, RuleInfo
from tracer.schema import from_pylist
from tracer.tracedir import write_table

HOSTILE_DEVICE = (
    "<script>document.title='pwned';document.body.setAttribute('data-pwned','1')</script>"
    "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"
)
HOSTILE_VM = "vm-[bold red]x[/]\x1b[31m|`*_#"

RULES = [
    RuleInfo("iostatus-before-event", "error", "iostatus is set before BLOCK_IO_ERROR",
             "query-block must never show less than the events said.", "I1", ("iostatus_set",)),
    RuleInfo("event-before-stop", "error", "BLOCK_IO_ERROR comes before its STOP",
             "A management layer learns why the VM stopped before it sees the stop.", "I3"),
    RuleInfo("stop-follows-error", "error", "every BLOCK_IO_ERROR (stop) is followed by STOP",
             "A stop request that is consumed without a STOP leaves the VM running while "
             "management believes it paused.", "I4"),
    RuleInfo("stop-pending-at-end", "warning", "no stop request is pending at the end",
             "The trace ended before the stop request was served.", "I4"),
    RuleInfo("query-matches-events", "error", "query-block agrees with the events",
             "An iostatus shown ok after an error event hides the error.", "I1",
             ("qmp_reply:query-block",)),
    RuleInfo("seq-unique", "error", "seq is unique per VM", "Steps must be orderable.", "integrity"),
    RuleInfo("trace-truncated", "warning", "the trace is complete",
             "A trace without manifest may miss its end.", "integrity"),
]


@dataclass
class TraceBuilder:
    """Appends schema-v1 rows for several VMs; ts advances 1 µs per step unless given."""

    rows: list[dict] = field(default_factory=list)
    episodes: list[dict] = field(default_factory=list)
    _seq: dict[str, int] = field(default_factory=dict)
    _ts: dict[str, int] = field(default_factory=dict)

    def step(self, vm: str, kind: str, thread: str = "main", gap: int = 1_000, **cols) -> tuple[int, int]:
        seq = self._seq.get(vm, 0)
        ts = self._ts.get(vm, 1_000_000) + gap
        self._seq[vm], self._ts[vm] = seq + 1, ts
        kinds = {"main": "main", "iothread0": "iothread", "vcpu0": "vcpu", "mgmt": "mgmt"}
        self.rows.append({"seq": seq, "ts_ns": ts, "vm": vm, "thread": thread,
                          "thread_kind": kinds.get(thread, "unknown"), "kind": kind, **cols})
        return seq, ts

    def skip_seq(self, vm: str, n: int) -> None:
        self._seq[vm] = self._seq.get(vm, 0) + n

    def start(self, vm: str) -> None:
        self.step(vm, "qmp_event", name="RESUME")
        self.step(vm, "runstate", prev_runstate="prelaunch", runstate="running")

    def error_cycle(self, vm: str, device: str, error_id: int, *, stop: bool = True,
                    errno: int = 5, op: str = "write", paused_us: int = 200) -> dict:
        """One error action with policy stop; without `stop`, the main loop consumes the
        request but never emits STOP (a stop-follows-error violation)."""
        t = "iothread0"
        common = {"device": device, "op": op, "errno": errno, "error_id": error_id}
        ep: dict = {"vm": vm, "error_id": error_id, "device": device, "op": op, "errno": errno,
                    "action": "stop"}
        self.step(vm, "io_complete", t, req_id=error_id, device=device, op=op, errno=errno)
        ep["seq_error_action"], ep["ts_error_action"] = self.step(
            vm, "error_action", t, req_id=error_id, policy="stop", action="stop", **common)
        ep["seq_iostatus_set"], _ = self.step(vm, "iostatus_set", t, device=device,
                                              iostatus="nospace" if errno == 28 else "failed",
                                              error_id=error_id)
        self.step(vm, "vmstop_prepare", t, error_id=error_id)
        ep["seq_event"], ep["ts_event"] = self.step(
            vm, "qmp_event", t, gap=3_000, name="BLOCK_IO_ERROR", action="stop", **common)
        self.step(vm, "vmstop_request", t, runstate="io-error", error_id=error_id)
        self.step(vm, "vm_stop", "main", gap=20_000, runstate="io-error", error_id=error_id)
        if stop:
            self.step(vm, "runstate", prev_runstate="running", runstate="io-error", error_id=error_id)
            ep["seq_stop"], ep["ts_stop"] = self.step(vm, "qmp_event", gap=50_000, name="STOP",
                                                      error_id=error_id)
            self.step(vm, "qmp_command", "mgmt", gap=paused_us * 1_000, name="cont")
            self.step(vm, "iostatus_reset", device=device, iostatus="ok")
            self.step(vm, "vm_start", error_id=None)
            ep["seq_resume"], ep["ts_resume"] = self.step(vm, "qmp_event", name="RESUME")
            self.step(vm, "runstate", prev_runstate="io-error", runstate="running")
            self.step(vm, "qmp_reply", "main", name="cont")
        self.episodes.append(ep)
        return ep

    def table(self):
        return from_pylist(self.rows, "sim", {"seed": 1})

    def write(self, path: Path) -> Path:
        write_table(self.table(), path)
        return path

    def steps(self) -> pd.DataFrame:
        return self.table().to_pandas()

    def episodes_frame(self) -> pd.DataFrame:
        ep = pd.DataFrame(self.episodes)
        for start, end, col in (("ts_error_action", "ts_event", "error_to_event_ns"),
                                ("ts_event", "ts_stop", "event_to_stop_ns"),
                                ("ts_stop", "ts_resume", "paused_ns")):
            if start in ep and end in ep:
                ep[col] = (ep[end] - ep[start]).astype("Int64")
        return ep


def input_info(path: Path, rows: int, *, complete: bool = True) -> InputInfo:
    return InputInfo(str(path), "ab" * 32, rows, "1", "sim", complete, {"seed": "1"})


def clean_trace(tmp_path: Path) -> tuple[TraceBuilder, CheckResult, Path]:
    """Two VMs, five well-ordered error/stop/cont cycles: a passing result."""
    b = TraceBuilder()
    for vm in ("vm0", "vm1"):
        b.start(vm)
    for i in range(3):
        b.error_cycle("vm0", "drive0", i + 1, paused_us=200 + 100 * i)
    for i in range(2):
        b.error_cycle("vm1", "drive1", i + 1, errno=28)
    path = b.write(tmp_path / "clean.parquet")
    result = CheckResult([input_info(path, len(b.rows))], RULES, [], ["query-matches-events"],
                         len(b.rows), 2, b.episodes_frame())
    return b, result, path


def failing_trace(tmp_path: Path, *, device: str = HOSTILE_DEVICE, vm: str = "vm0",
                  extra_errors: int = 0) -> tuple[TraceBuilder, CheckResult, Path]:
    """One VM whose second error is never followed by STOP, with a hostile device name; the
    trace is truncated (no manifest). `extra_errors` more violations of the same rule follow."""
    b = TraceBuilder()
    b.start(vm)
    b.error_cycle(vm, device, 1)
    bad = [b.error_cycle(vm, device, 2, stop=False)]
    for i in range(extra_errors):
        bad.append(b.error_cycle(vm, device, 3 + i, stop=False))
    b.error_cycle(vm, device, 100)
    path = b.write(tmp_path / "failing.parquet")
    findings = [
        Finding("stop-follows-error", "error", vm, device, ep["error_id"],
                (ep["seq_event"], ep["seq_event"] + 2), ep["ts_event"], "iothread0",
                f"BLOCK_IO_ERROR (stop) on {device} was consumed without STOP")
        for ep in bad
    ]
    findings.append(Finding("trace-truncated", "warning", vm, None, None, (), None, None,
                            f"{path} has no completion manifest"))
    findings.sort(key=Finding.sort_key)
    result = CheckResult([input_info(path, len(b.rows), complete=False)], RULES, findings,
                         ["query-matches-events"], len(b.rows), 1, b.episodes_frame())
    return b, result, path


#: 2025-12-02T10:00:00Z in ns: a wall-clock origin, so that reports show UTC times.
WALL_T0 = 1_764_669_600 * 10**9


def fleet_trace(tmp_path: Path, vms: int, hosts: int, *, broken_every: int = 7) -> Path:
    """`vms` VMs (vm1..vmN) spread over `hosts` hosts (host01..), wall-clock time: a storage
    outage pauses most VMs within a few seconds (each for a different time), and every
    `broken_every`-th VM's error is never followed by STOP (stop-follows-error findings of one
    shape). Built row by row (a test trace of a few tens of thousands of rows)."""
    b = TraceBuilder()
    host_of = {}
    for i in range(1, vms + 1):
        vm = f"vm{i}"
        host_of[vm] = f"host{(i - 1) % hosts + 1:02d}"
        b._ts[vm] = WALL_T0 + (i % 97) * 37_000_000  # an outage spread over ~3.6 s
        b.start(vm)
        if i % 5 == 0:
            continue  # not on the failing storage: never paused
        b.error_cycle(vm, "drive0", 1, stop=i % broken_every != 0,
                      paused_us=200_000 + (i * 7919) % 3_000_000)
    for row in b.rows:
        row["host"] = host_of[row["vm"]]
    path = tmp_path / f"fleet-{vms}.parquet"
    return b.write(path)
