"""The whole chain with a real QEMU: QEMU -> `blkreplay capture` -> import -> check -> report,
on every QEMU version the rig runs (`qemu_rig.QEMU_VERSIONS`: Debian 12's 7.2 and
bookworm-backports' 10.0, unpacked beside it).

Each scenario boots a busybox guest under TCG once per version (module-scoped fixture) whose `dd`
rounds hit blkdebug-injected errors on a virtio-blk disk served by an iothread; `blkreplay
capture --auto-cont` records the extra QMP monitor and resumes every I/O-error stop, then
imports its transcript merged with QEMU's trace log. The tests then judge what a user would
look at: the transcript, the thread each event was queued on, the check verdict, the rendered
report. On QEMU 10.0 BLOCK_IO_ERROR is throttled (one a second per device, QEMU >= 9.2): the
`cont` 300 ms after each stop makes the retried request's event held (sent late, keeping its
original timestamp) or replaced (never sent), so the wire shows fewer events than errors;
the trace log still shows every event queued.

Marked `qemu` (deselect locally with ``-m 'not qemu'``); skipped with the reason when QEMU, the
static busybox or the unpacked kernel are missing (`.ci/install-qemu-rig.sh` installs them),
failed instead under ``BLKREPLAY_REQUIRE_QEMU=1``.
"""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.integration.captures import (
    cont_delays,
    event_lines,
    events,
    messages,
    qmp_ts,
    queued_on,
    replies,
    throttled_events,
)
from tests.integration.conftest import known_false_alarm, rig_tools
from tests.integration.qemu_rig import QEMU_VERSIONS, RigRun, blkreplay_argv, run_scenario
from tests.integration.scenarios import BOTH, QAPI_EVENT_NUMBERS, THROTTLED, Expect

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

CASES = [(version, name) for version in QEMU_VERSIONS for name in sorted(BOTH)]

#: (test, version, scenario) -> why today's rules fail a healthy capture (issue #11; strict
#: xfail: delete the entry when the rules are fixed). They apply to runs where the throttle
#: held or replaced an event (the trace log says; the 300 ms cont makes it likely, a loaded
#: machine can space the errors over 1 s apart), see `known_throttle_false_alarm`.
FALSE_ALARMS: dict[tuple[str, str, str], str] = {}


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def case(request, tmp_path_factory) -> tuple[str, Expect, RigRun]:
    version, name = request.param
    tools = rig_tools(version)
    expect = BOTH[name]
    run = run_scenario(expect.scenario, tmp_path_factory.mktemp(f"{version}-{name}"), tools)
    print(f"\n[qemu rig] {version} {name}: {run.wall_s:.1f} s wall {run.timings}", file=sys.stderr)
    return version, expect, run


# -- helpers -------------------------------------------------------------------------------------


def known_throttle_false_alarm(request, test: str, version: str, run: RigRun, expect: Expect) -> None:
    """Strict-xfail `test` for a FALSE_ALARMS entry when this run's trace log shows a
    BLOCK_IO_ERROR held or replaced by the throttle (what the false alarm needs); a run
    without one must pass."""
    if throttled_events(run.trace_log, QAPI_EVENT_NUMBERS[version]):
        known_false_alarm(request, FALSE_ALARMS, (test, version, expect.scenario.name))


def stop_cycles(run: RigRun) -> list[tuple[dict, float, float, float]]:
    """Each BLOCK_IO_ERROR(stop) -> STOP -> cont sent -> RESUME as received, as (event, t_stop,
    t_cont, t_resume), checking that order on the wire as it goes (QEMU without throttling)."""
    cycles = []
    pending: dict | None = None
    t_stop = t_cont = None
    for t, d, m in messages(run.transcript):
        name = m.get("event")
        if d == "send" and m.get("execute") == "cont":
            assert t_stop is not None, "cont sent without an I/O-error stop"
            t_cont = t
        elif name == "BLOCK_IO_ERROR" and m["data"]["action"] == "stop":
            assert pending is None, "a second BLOCK_IO_ERROR(stop) before the first one's STOP"
            pending = m
        elif name == "STOP":
            assert pending is not None, "STOP without a BLOCK_IO_ERROR before it"
            t_stop = t
        elif name == "RESUME" and pending is None and not cycles and t_stop is None:
            continue  # the start: management's cont of the paused (-S) guest
        elif name == "RESUME":
            assert pending is not None and t_stop is not None and t_cont is not None, "RESUME without stop/cont"
            cycles.append((pending, t_stop, t_cont, t))
            pending = t_stop = t_cont = None
    assert pending is None, "the capture ended inside a stop cycle"
    return cycles



def raising_order(run: RigRun) -> list[str]:
    """Event names sorted by their QMP timestamp (when QEMU raised them; a throttled event is
    delivered late but keeps it), BLOCK_IO_ERROR named with its action."""
    evs = sorted(events(run.transcript), key=qmp_ts)
    return [
        f"BLOCK_IO_ERROR({e['data']['action']})" if e["event"] == "BLOCK_IO_ERROR" else e["event"]
        for e in evs
    ]


def imported(run: RigRun):
    """The imported trace's rows (every Parquet file under the output) as a DataFrame."""
    files = sorted(run.trace_out.rglob("*.parquet"))
    assert files, f"capture imported nothing into {run.trace_out}\n{run.diagnostics()}"
    tables = [pq.read_table(f) for f in files]
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()


# -- the rig ran ---------------------------------------------------------------------------------


def test_guest_ran_every_round_and_powered_off(case) -> None:
    _, expect, run = case
    console = run.console_log.read_text(errors="replace")
    assert run.qemu_rc == 0, run.diagnostics()
    assert f"GUEST: round {expect.scenario.rounds} read rc=" in console, run.diagnostics()
    assert "GUEST: done" in console, run.diagnostics()


def test_capture_ended_on_shutdown_and_resumed_every_stop(case) -> None:
    version, expect, run = case
    assert run.capture_rc == 0, run.diagnostics()
    evs = events(run.transcript)
    names = [e["event"] for e in evs]
    # recording from the start: management's cont of the paused guest, to the guest's poweroff
    assert names[0] == "RESUME"
    assert names[-1] == "SHUTDOWN"
    assert names.count("STOP") == names.count("RESUME") - 1 == expect.stop_cycles, names
    delays = cont_delays(run.transcript)
    assert len(delays) == expect.stop_cycles
    assert all(0.299 <= d < 2.0 for d in delays), delays  # --auto-cont 300 (t rounded to 1 us)
    bies = [e for e in evs if e["event"] == "BLOCK_IO_ERROR"]
    for bie in bies:
        assert bie["data"]["device"] == "drive0"
        # nospace: ENOSPC stops (werror=enospc); the reported EIO is no ENOSPC
        assert bie["data"]["nospace"] is (expect.nospace and bie["data"]["action"] == "stop")
        if version == "10.0":  # since 9.2, the throttle key
            assert bie["data"]["qom-path"] == "/machine/peripheral/vblk0/virtio-backend"
    reported = [e for e in bies if e["data"]["action"] == "report"]
    # QEMU raised one BLOCK_IO_ERROR per failed request (the trace log's queue lines) ...
    queue = [w for _, w, n, _ in event_lines(run.trace_log, QAPI_EVENT_NUMBERS[version]) if n == "BLOCK_IO_ERROR"]
    assert queue.count("queue") == expect.errors
    # ... and in raising order each BLOCK_IO_ERROR(stop) comes right before its STOP
    order = raising_order(run)
    for i, name in enumerate(order):
        if name == "BLOCK_IO_ERROR(stop)":
            assert order[i + 1] == "STOP", order
    if version in THROTTLED:
        # throttled: fewer events on the wire than errors, never more; each one sent once
        assert 1 <= len(bies) <= expect.errors
        assert queue.count("emit") == len(bies)
    else:
        # not throttled: every event sent at once, arrival order is raising order
        assert len(bies) == expect.errors and len(reported) == expect.reported
        assert [e["event"] for e in sorted(evs, key=qmp_ts)] == names
        cycles = stop_cycles(run)
        assert len(cycles) == expect.stop_cycles, names
        for _, t_stop, t_cont, t_resume in cycles:
            assert 0.299 <= t_cont - t_stop < 2.0
            assert t_resume >= t_cont


def test_query_block_shows_the_error_iostatus_while_stopped(case) -> None:
    _, expect, run = case
    seen = [ret[0].get("io-status") for _, ret in replies(run.transcript, "query-block") if ret]
    assert expect.stopped_iostatus in seen
    assert seen[-1] == "ok"  # cont reset it
    status = {ret["status"] for _, ret in replies(run.transcript, "query-status")}
    assert {"running", "io-error"} <= status


def test_block_io_error_is_queued_on_the_iothread_and_stop_on_the_main_loop(case) -> None:
    version, _, run = case
    iothreads = {t["id"]: t["thread-id"] for _, ret in replies(run.transcript, "query-iothreads") for t in ret}
    assert set(iothreads) == {"iothread0"}
    queued = queued_on(run.trace_log, QAPI_EVENT_NUMBERS[version])
    assert queued["BLOCK_IO_ERROR"] == {iothreads["iothread0"]}
    main_loop = {run.qemu_pid}  # the main loop's thread id is QEMU's pid
    assert queued["STOP"] == main_loop
    assert queued["BLOCK_IO_ERROR"].isdisjoint(main_loop)


# -- import, check, report -----------------------------------------------------------------------


def test_imported_trace_attributes_the_event_to_iothread0(case) -> None:
    version, expect, run = case
    rows = imported(run)
    bie = rows[(rows["kind"] == "qmp_event") & (rows["name"] == "BLOCK_IO_ERROR")]
    on_wire = sum(e["event"] == "BLOCK_IO_ERROR" for e in events(run.transcript))
    if version in THROTTLED:  # every event sent; those replaced may be rows too (trace log)
        assert on_wire <= len(bie) <= expect.errors
    else:
        assert len(bie) == on_wire == expect.errors
    assert set(bie["thread"].astype(str)) == {"iothread0"}
    assert set(bie["thread_kind"].astype(str)) == {"iothread"}
    stops = rows[(rows["kind"] == "qmp_event") & (rows["name"] == "STOP")]
    assert set(stops["thread_kind"].astype(str)) == {"main"}
    conts = rows[(rows["kind"] == "qmp_command") & (rows["name"] == "cont")]
    assert len(conts) == expect.stop_cycles + 1  # the capture's, and management's at start


def test_check_passes_and_judged_the_error_path(case, request) -> None:
    import analyzer

    version, expect, run = case
    known_throttle_false_alarm(request, "check", version, run, expect)
    result = analyzer.check([run.trace_out])
    assert result.verdict == "pass", [(f.rule, f.message) for f in result.findings]
    judged = {r.id for r in result.rules} - set(result.not_applicable)
    # a real judgement, not a vacuous pass: the ordering and thread rules applied
    assert {
        "event-before-stop", "stop-follows-error", "resume-before-retry-error", "vm-stop-thread",
        "runstate-transition",
        # applicable thanks to the capture's query-status / query-block polls
        "query-matches-events", "query-matches-runstate", "iostatus-reset-on-cont",
    } <= judged


def test_report_renders(case, request) -> None:
    version, expect, run = case
    known_throttle_false_alarm(request, "report", version, run, expect)
    html = run.workdir / "report.html"
    proc = subprocess.run(
        blkreplay_argv("report", str(run.trace_out), "-o", str(html), "--quiet"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    text = html.read_text(encoding="utf-8")
    assert text.lstrip().lower().startswith("<!doctype html")
    assert "BLOCK_IO_ERROR" in text or "block_io_error" in text.lower()
