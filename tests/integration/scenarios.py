"""The real-QEMU scenarios and what each must show, for every QEMU version the rig runs.

`BOTH` run on QEMU 7.2 and 10.0 (the original rig scenarios); `QEMU10` are the QEMU 10.0
scenarios issue #11 asks for, whose captures are also kept in `tests/data/real/qemu-10.0/`
(`make_real_data.py` writes them):

- `fast-cont`: `cont` 150 ms after each I/O-error stop, a write failing 4 times and a read
  failing twice: the retried requests fail again within QEMU's 1-second BLOCK_IO_ERROR throttle
  window, so events are held (sent after the next RESUME, with their original timestamp) and
  replaced (never sent);
- `numbers-only`: one error per round, rounds 1.2 s apart (no throttling), traced with
  `monitor_protocol_event_*` alone: the trace log names QMP events by QAPIEvent number only.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.integration.qemu_rig import (
    TRACE_EVENTS_NUMBERS_ONLY,
    TRACE_EVENTS_SMALL,
    Inject,
    Scenario,
)

EIO, ENOSPC = 5, 28

#: QAPIEvent numbers in `monitor_protocol_event_* event=N` trace lines, per QEMU version
#: (qapi/ of v7.2.0 and v10.0.0; ../shared/docs/qemu-10.md).
QAPI_EVENT_NUMBERS = {
    "7.2": {"SHUTDOWN": 0, "STOP": 3, "RESUME": 4, "BLOCK_IO_ERROR": 15},
    "10.0": {"SHUTDOWN": 0, "STOP": 3, "RESUME": 4, "BLOCK_IO_ERROR": 17},
}

#: QEMU versions whose BLOCK_IO_ERROR is rate-limited (>= 9.2, commit 2155d2dd7f).
THROTTLED = {"10.0"}


@dataclass(frozen=True)
class Expect:
    scenario: Scenario
    #: I/O-error stops (each resumed by the capture's cont); one per failed request.
    stop_cycles: int
    #: BLOCK_IO_ERROR with action report (no stop).
    reported: int
    #: io-status that query-block shows while stopped on an error.
    stopped_iostatus: str
    nospace: bool

    @property
    def errors(self) -> int:
        """Failed requests, each raising one BLOCK_IO_ERROR (sent or, throttled, not)."""
        return self.stop_cycles + self.reported


BOTH = {
    # werror/rerror=stop, EIO: a write failing 3 times (2 retries fail), another failing twice,
    # one failed read: 6 stop/cont cycles, all retried successfully.
    "eio-stop-iothread": Expect(
        Scenario(
            "eio-stop-iothread",
            werror="stop",
            rerror="stop",
            injects=(
                *(Inject("write", EIO, 3),) * 3,
                *(Inject("write", EIO, 4),) * 2,
                Inject("read", EIO, 5),
            ),
        ),
        stop_cycles=6,
        reported=0,
        stopped_iostatus="failed",
        nospace=False,
    ),
    # werror=enospc: ENOSPC stops (3 cycles), EIO is reported to the guest without a stop.
    "enospc": Expect(
        Scenario(
            "enospc",
            werror="enospc",
            rerror="report",
            injects=(*(Inject("write", ENOSPC, 3),) * 3, Inject("write", EIO, 4)),
        ),
        stop_cycles=3,
        reported=1,
        stopped_iostatus="nospace",
        nospace=True,
    ),
}

QEMU10 = {
    "fast-cont": Expect(
        Scenario(
            "fast-cont",
            werror="stop",
            rerror="stop",
            injects=(*(Inject("write", EIO, 2),) * 4, *(Inject("read", EIO, 3),) * 2),
            rounds=3,
            auto_cont_ms=150,
            poll_ms=1000,
            request_bytes=64 * 1024,
            trace_events=TRACE_EVENTS_SMALL,
        ),
        stop_cycles=6,
        reported=0,
        stopped_iostatus="failed",
        nospace=False,
    ),
    "numbers-only": Expect(
        Scenario(
            "numbers-only",
            werror="stop",
            rerror="stop",
            injects=(Inject("write", EIO, 2), Inject("write", EIO, 3), Inject("read", EIO, 4)),
            rounds=4,
            auto_cont_ms=300,
            poll_ms=1000,
            request_bytes=64 * 1024,
            round_pause_s=1.2,
            trace_events=TRACE_EVENTS_NUMBERS_ONLY,
        ),
        stop_cycles=3,
        reported=0,
        stopped_iostatus="failed",
        nospace=False,
    ),
}
