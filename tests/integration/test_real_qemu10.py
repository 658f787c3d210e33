"""Issue #11's QEMU 10.0 scenarios (`scenarios.QEMU10`): a `cont` 150 ms after each stop, so
that QEMU's 1-second BLOCK_IO_ERROR throttle holds and replaces events (`fast-cont`), and a
trace log with `monitor_protocol_event_*` alone, naming events by number (`numbers-only`).

Each runs live on the rig's QEMU 10.0 (marked `qemu`; `live-*` ids) and is also read from the
capture kept in `tests/data/real/qemu-10.0/` (`saved-*` ids, no QEMU needed). For each: the
capture shows what the scenario is for (checked against QEMU's own trace log), every input
form it produces (transcript, events, trace log, merged) imports and checks clean (`blkreplay
check` exit 0, PASS), and edited copies that break an ordering guarantee are caught with the
matching rule at the edited line.

Healthy captures that today's rules flag are strict xfails naming the rule and the finding
(`FALSE_ALARMS`): delete an entry once the #11 rules are merged and it passes.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from analyzer.cli import main
from tests.integration.captures import (
    cont_delays,
    event_lines,
    events,
    qmp_ts,
    throttled_events,
    write_events_jsonl,
)
from tests.integration.conftest import known_false_alarm, rig_tools
from tests.integration.qemu_rig import REPO_ROOT, run_scenario
from tests.integration.scenarios import QAPI_EVENT_NUMBERS, QEMU10, Expect

SAVED = REPO_ROOT / "tests" / "data" / "real" / "qemu-10.0"
NUMBERS = QAPI_EVENT_NUMBERS["10.0"]

#: input form -> the files of a capture folder it imports
FORMS = {
    "transcript": ("qmp-transcript.jsonl",),
    "events": ("events.jsonl",),
    "trace": ("trace.log",),
    "merged": ("qmp-transcript.jsonl", "trace.log"),
}


#: (test, scenario, form or edit) -> why today's rules fail it (strict xfail; issue #11).
FALSE_ALARMS: dict[tuple[str, str, str], str] = {}


@dataclass(frozen=True)
class Capture:
    """A folder with a scenario's qmp-transcript.jsonl, events.jsonl and trace.log."""

    source: str  # "live" | "saved"
    name: str
    expect: Expect
    folder: Path

    @property
    def transcript(self) -> Path:
        return self.folder / "qmp-transcript.jsonl"

    @property
    def trace_log(self) -> Path:
        return self.folder / "trace.log"


def _params(edits: dict | None = None) -> list:
    """A capture param per scenario and source (live ones marked `qemu`), with each edit that
    applies to its scenario when `edits` is given."""
    out = []
    for name in sorted(QEMU10):
        for source in ("live", "saved"):
            marks = [pytest.mark.qemu, pytest.mark.slow] if source == "live" else []
            if edits is None:
                out.append(pytest.param((source, name), marks=marks, id=f"{source}-{name}"))
                continue
            for edit, (_, _, applies) in sorted(edits.items()):
                if name in applies:
                    out.append(pytest.param((source, name), edit, marks=marks, id=f"{source}-{name}-{edit}"))
    return out


#: Live runs by scenario: each boots QEMU once per session, whichever tests ask for it (the
#: edit tests parametrize `capture` themselves, which pytest would otherwise set up again).
_LIVE: dict[str, Capture] = {}


@pytest.fixture(scope="module", params=_params())
def capture(request, tmp_path_factory) -> Capture:
    source, name = request.param
    expect = QEMU10[name]
    if source == "saved":
        folder = SAVED / name
        if not (folder / "qmp-transcript.jsonl").is_file():
            pytest.fail(f"the saved capture {folder} is missing (python -m tests.integration.make_real_data)")
        return Capture(source, name, expect, folder)
    if name not in _LIVE:
        _LIVE[name] = _run_live(name, tmp_path_factory)
    return _LIVE[name]


def _run_live(name: str, tmp_path_factory) -> Capture:
    expect = QEMU10[name]
    tools = rig_tools("10.0")
    run = run_scenario(expect.scenario, tmp_path_factory.mktemp(f"10.0-{name}"), tools)
    print(f"\n[qemu rig] 10.0 {name}: {run.wall_s:.1f} s wall {run.timings}", file=sys.stderr)
    console = run.console_log.read_text(errors="replace")
    assert run.qemu_rc == 0 and run.capture_rc == 0 and "GUEST: done" in console, run.diagnostics()
    folder = run.workdir / "files"
    folder.mkdir()
    shutil.copyfile(run.transcript, folder / "qmp-transcript.jsonl")
    shutil.copyfile(run.trace_log, folder / "trace.log")
    write_events_jsonl(folder / "qmp-transcript.jsonl", folder / "events.jsonl")
    return Capture("live", name, expect, folder)


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def audit(inputs: list[Path], tmp_path: Path):
    from analyzer import check
    from analyzer.importers import import_traces

    out = tmp_path / "edited.parquet"
    import_traces(inputs, out)
    return check([out])


# -- the capture shows what the scenario is for ---------------------------------------------------


def test_the_capture_shows_what_the_scenario_is_for(capture) -> None:
    expect = capture.expect
    evs = events(capture.transcript)
    names = [e["event"] for e in evs]
    assert names[0] == "RESUME" and names[-1] == "SHUTDOWN"
    assert names.count("STOP") == names.count("RESUME") - 1 == expect.stop_cycles, names
    lines = event_lines(capture.trace_log, NUMBERS)
    queued = [ptr for _, what, n, ptr in lines if what == "queue" and n == "BLOCK_IO_ERROR"]
    emitted = [ptr for _, what, n, ptr in lines if what == "emit" and n == "BLOCK_IO_ERROR"]
    held = [ptr for _, what, n, ptr in lines if what == "handler" and n == "BLOCK_IO_ERROR" and ptr != "(nil)"]
    bies = [e for e in evs if e["event"] == "BLOCK_IO_ERROR"]
    assert all(e["data"]["qom-path"] == "/machine/peripheral/vblk0/virtio-backend" for e in bies)
    assert len(queued) == expect.errors  # QEMU raised one event per failed request
    assert len(emitted) == len(bies)  # and sent each of those on the wire once
    conts = cont_delays(capture.transcript)
    assert len(conts) == expect.stop_cycles
    if capture.name == "fast-cont":
        # cont 0.1-0.3 s after each stop (150 ms asked; a loaded machine can be late, but
        # always well inside the 1-second window): the throttle holds and replaces events
        assert all(0.1 <= d < 0.8 for d in conts), conts
        assert sorted(conts)[len(conts) // 2] <= 0.3, conts
        assert len(bies) < expect.errors  # some replaced, never sent
        assert throttled_events(capture.trace_log, NUMBERS) >= expect.errors - len(bies)
        late = [
            e for i, e in enumerate(evs)
            if e["event"] == "BLOCK_IO_ERROR"
            and any(s["event"] == "STOP" and qmp_ts(s) > qmp_ts(e) for s in evs[:i])
        ]
        if capture.source == "saved" or held:
            # one held, sent by the main loop when the window closed, after its STOP, keeping
            # its (earlier) original timestamp. A live run on a loaded machine can instead
            # have every later event replaced and QEMU quit before the window closes: the
            # saved capture pins the held case, the live one only what cannot vary.
            assert held and late
    else:
        # numbers only: no monitor_qmp_respond JSON in the trace log, just event numbers
        text = capture.trace_log.read_text(errors="replace")
        assert "monitor_qmp_respond" not in text and '"BLOCK_IO_ERROR"' not in text
        assert f"monitor_protocol_event_queue event={NUMBERS['BLOCK_IO_ERROR']} " in text
        # rounds 1.2 s apart: nothing throttled, arrival order is raising order
        assert not held and len(bies) == expect.errors
        assert throttled_events(capture.trace_log, NUMBERS) == 0
        assert names == [e["event"] for e in sorted(evs, key=qmp_ts)]
        assert all(0.299 <= d < 2.0 for d in conts), conts



# -- every input form checks clean ----------------------------------------------------------------


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_input_form_checks_clean(capture, form, tmp_path, capsys, request) -> None:
    known_false_alarm(request, FALSE_ALARMS, ("clean", capture.name, form))
    out = tmp_path / "trace.parquet"
    inputs = [str(capture.folder / f) for f in FORMS[form]]
    code, _, err = cli(["import", *inputs, "-o", str(out), "-q"], capsys)
    assert code == 0, err
    code, stdout, err = cli(["check", str(out)], capsys)
    verdict = stdout.strip().splitlines()[-1]
    findings = stdout if code else ""
    assert (code, verdict.split(":")[0]) == (0, "PASS"), findings[-3000:] + err


# -- edited copies are caught -----------------------------------------------------------------------


@dataclass(frozen=True)
class Edited:
    path: Path
    #: 1-based lines of the edited file the finding must cite
    lines: tuple[int, ...]


def _records(capture: Capture) -> list[dict]:
    with capture.transcript.open(encoding="ascii") as fh:
        return [json.loads(line) for line in fh]


def _first_error_stop(records: list[dict]) -> tuple[int, int]:
    """Indexes of the first BLOCK_IO_ERROR(stop) on the wire and of the STOP after it."""
    i_bie = next(
        i for i, r in enumerate(records)
        if r["dir"] == "recv" and json.loads(r["line"]).get("event") == "BLOCK_IO_ERROR"
        and json.loads(r["line"])["data"]["action"] == "stop"
    )
    i_stop = next(
        i for i, r in enumerate(records)
        if i > i_bie and r["dir"] == "recv" and json.loads(r["line"]).get("event") == "STOP"
    )
    return i_bie, i_stop


def _write(records: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="ascii")
    return path


def stop_raised_before_its_error(capture: Capture, tmp: Path) -> Edited:
    """The first error's STOP raised 1 ms before its BLOCK_IO_ERROR (its QMP timestamp) and
    received first: the two lines swap messages, each keeping its receive time `t`. (A STOP
    arriving first is normal under throttling; its timestamp says when it was raised.)"""
    records = _records(capture)
    i_bie, i_stop = _first_error_stop(records)
    bie = json.loads(records[i_bie]["line"])
    stop = json.loads(records[i_stop]["line"])
    us = bie["timestamp"]["seconds"] * 1_000_000 + bie["timestamp"]["microseconds"] - 1000
    stop["timestamp"] = {"seconds": us // 1_000_000, "microseconds": us % 1_000_000}
    records[i_bie]["line"], records[i_stop]["line"] = json.dumps(stop), records[i_bie]["line"]
    return Edited(_write(records, tmp / "stop-before-error.qmp-transcript.jsonl"), (i_bie + 1, i_stop + 1))


def stop_removed(capture: Capture, tmp: Path) -> Edited:
    """The STOP after the first BLOCK_IO_ERROR(stop) is removed."""
    records = _records(capture)
    i_bie, i_stop = _first_error_stop(records)
    del records[i_stop]
    return Edited(_write(records, tmp / "stop-removed.qmp-transcript.jsonl"), (i_bie + 1,))


def query_ok_while_stopped(capture: Capture, tmp: Path) -> Edited:
    """The first reply to a query-block sent after the first error's STOP, and before the next
    cont, shows io-status ok instead of failed. (A query sent before the STOP may be answered
    after it: what it shows is no violation, whatever the capture's timing.)"""
    records = _records(capture)
    _, i_stop = _first_error_stop(records)
    names: dict[object, str] = {}
    sent_at: dict[object, int] = {}
    for i, r in enumerate(records):
        if r["dir"] == "send":
            msg = json.loads(r["line"])
            names[msg.get("id")] = msg.get("execute")
            sent_at[msg.get("id")] = i
    for i in range(i_stop + 1, len(records)):
        msg = json.loads(records[i]["line"])
        if records[i]["dir"] == "send" and msg.get("execute") == "cont":
            break
        if names.get(msg.get("id")) == "query-block" and "return" in msg and sent_at[msg.get("id")] > i_stop:
            assert msg["return"][0]["io-status"] == "failed", msg
            msg["return"][0]["io-status"] = "ok"
            records[i]["line"] = json.dumps(msg)
            return Edited(_write(records, tmp / "query-ok.qmp-transcript.jsonl"), (i + 1,))
    raise AssertionError("no query-block sent and answered between the first STOP and its cont")


_TRACE_LINE = re.compile(r"^(\d+)@(\d+)\.(\d+):(\S+) event=(\d+) data=(\S+)")


def _trace_first_error_stop(lines: list[str]) -> tuple[int, list[int]]:
    """Index of the first BLOCK_IO_ERROR's queue line and of the next STOP's queue and emit
    lines in a trace log."""
    bie, stop = str(NUMBERS["BLOCK_IO_ERROR"]), str(NUMBERS["STOP"])
    i_bie = next(
        i for i, line in enumerate(lines)
        if (m := _TRACE_LINE.match(line)) and m[4] == "monitor_protocol_event_queue" and m[5] == bie
    )
    i_stop = next(
        i for i, line in enumerate(lines)
        if i > i_bie and (m := _TRACE_LINE.match(line)) and m[4] == "monitor_protocol_event_queue"
        and m[5] == stop
    )
    ptr = _TRACE_LINE.match(lines[i_stop])[6]
    i_emit = next(
        i for i, line in enumerate(lines)
        if i > i_stop and (m := _TRACE_LINE.match(line)) and m[4] == "monitor_protocol_event_emit"
        and m[5] == stop and m[6] == ptr
    )
    return i_bie, [i_stop, i_emit]


def trace_stop_raised_before_its_error(capture: Capture, tmp: Path) -> Edited:
    """Trace log: the first error's STOP queued (and emitted) 1 ms before its BLOCK_IO_ERROR
    was queued, its lines moved there."""
    lines = capture.trace_log.read_text(errors="replace").splitlines()
    i_bie, stop_lines = _trace_first_error_stop(lines)
    m = _TRACE_LINE.match(lines[i_bie])
    us = int(m[2]) * 1_000_000 + int(m[3]) - 1000
    moved = [
        re.sub(r"@\d+\.\d+:", f"@{us // 1_000_000}.{us % 1_000_000:06d}:", lines[i], count=1)
        for i in stop_lines
    ]
    rest = [line for i, line in enumerate(lines) if i not in stop_lines]
    edited = rest[:i_bie] + moved + rest[i_bie:]
    path = tmp / "stop-before-error.trace.log"
    path.write_text("\n".join(edited) + "\n")
    return Edited(path, (i_bie + 1,))


def trace_stop_removed(capture: Capture, tmp: Path) -> Edited:
    """Trace log: the STOP after the first BLOCK_IO_ERROR is never queued nor emitted."""
    lines = capture.trace_log.read_text(errors="replace").splitlines()
    i_bie, stop_lines = _trace_first_error_stop(lines)
    edited = [line for i, line in enumerate(lines) if i not in stop_lines]
    path = tmp / "stop-removed.trace.log"
    path.write_text("\n".join(edited) + "\n")
    return Edited(path, (i_bie + 1,))


#: edit -> (how, the rule that must catch it, scenarios it applies to)
EDITS: dict[str, tuple[Callable[[Capture, Path], Edited], str, tuple[str, ...]]] = {
    "transcript-stop-before-error": (stop_raised_before_its_error, "event-before-stop", tuple(QEMU10)),
    "transcript-stop-removed": (stop_removed, "stop-follows-error", tuple(QEMU10)),
    "transcript-query-ok-while-stopped": (query_ok_while_stopped, "query-matches-events", tuple(QEMU10)),
    "trace-stop-before-error": (trace_stop_raised_before_its_error, "event-before-stop", ("numbers-only",)),
    "trace-stop-removed": (trace_stop_removed, "stop-follows-error", ("numbers-only",)),
}

MISSED: dict[tuple[str, str], str] = {}


@pytest.mark.parametrize(("capture", "edit"), _params(EDITS), indirect=["capture"])
def test_edited_copy_is_caught_by_the_matching_rule(capture, edit, tmp_path, request) -> None:
    how, rule, _ = EDITS[edit]
    known_false_alarm(request, MISSED, (capture.name, edit))
    edited = how(capture, tmp_path)
    result = audit([edited.path], tmp_path)
    errors = [f for f in result.findings if f.severity == "error"]
    matching = [f for f in errors if f.rule == rule]
    assert matching, [(f.rule, f.message) for f in errors]
    cited = {ref for f in matching for ref in f.src}
    assert {f"{edited.path}:{line}" for line in edited.lines} <= cited, (cited, edited.lines)
    assert result.verdict == "fail"
