"""Replay: the state after every step (what "info block" / "info status" said), episodes and
the context window of a step."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analyzer import replay, steps_around
from analyzer.replay import EPISODE_COLUMNS, IOSTATUS_PREFIX, OBSERVED_PARTS, REPLAY_COLUMNS
from tests.analyzer.builders import TraceBuilder, check_rows
from tests.analyzer.rules.test_ordering import imported
from tracer import tracedir
from tracer.schema import from_pylist


def episode_trace() -> tuple[TraceBuilder, dict]:
    b = TraceBuilder(iothreads={"drive0": "iothread0", "drive1": None})
    b.start()
    b.io(n=2)
    seqs = b.error(1)
    seqs.update(b.main_loop())
    seqs["query"] = b.query_block()
    seqs["cont"] = b.cont()
    b.io(n=2)
    return b, seqs


def write(rows: list[dict], path: Path) -> Path:
    tracedir.write_table(from_pylist(rows, "sim"), path)
    return path


def test_state_after_every_step(tmp_path: Path) -> None:
    b, seqs = episode_trace()
    view = replay(write(b.rows, tmp_path / "t.parquet"))
    per_device = [p + d for d in ("drive0", "drive1") for p in (IOSTATUS_PREFIX, *OBSERVED_PARTS)]
    assert list(view.columns) == [*REPLAY_COLUMNS, *per_device]
    assert not view["runstate_inferred"].any() and not view["iostatus_inferred"].any()
    assert list(view["seq"]) == list(range(len(b.rows)))
    at = view.set_index("seq")
    # Before the error: running, everything ok, nothing pending.
    assert at.loc[seqs["io_complete"] - 1, "runstate"] == "running"
    assert at.loc[seqs["iostatus_set"], IOSTATUS_PREFIX + "drive0"] == "failed"
    assert at.loc[seqs["iostatus_set"] - 1, IOSTATUS_PREFIX + "drive0"] == "ok"
    assert at.loc[seqs["vmstop_request"], "pending"] == 1
    assert pd.isna(at.loc[seqs["vmstop_request"] - 1, "pending"])
    assert pd.isna(at.loc[seqs["vm_stop"], "pending"])
    assert at.loc[seqs["runstate"], "runstate"] == "io-error"
    assert at.loc[seqs["runstate"], "value"] == "running -> io-error"
    # What query-block answered is the replayed state at the reply.
    reply = seqs["query"]["drive0"]
    assert at.loc[reply, "value"] == at.loc[reply, IOSTATUS_PREFIX + "drive0"] == "failed"
    # cont resets the io-status and the VM runs again.
    assert at.loc[seqs["cont"]["reply"], IOSTATUS_PREFIX + "drive0"] == "ok"
    assert at.loc[seqs["cont"]["reply"], "runstate"] == "running"
    assert (view["findings"] == "").all()


def test_device_and_range_filters_and_marked_findings(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    seqs = b.error(1, iostatus=False)
    late = b.set_iostatus(1, "drive0")
    b.main_loop()
    path = write(b.rows, tmp_path / "t.parquet")
    view = replay(path, vm="vm0", device="drive0", from_seq=seqs["event"], to_seq=late)
    assert list(view["seq"]) == list(range(seqs["event"], late + 1))
    marks = view.set_index("seq")["findings"]
    assert "iostatus-before-event" in marks[seqs["event"]].split(",")
    assert "iostatus-before-event" in marks[late].split(",")
    assert [c for c in view.columns if c.startswith(IOSTATUS_PREFIX)] == [IOSTATUS_PREFIX + "drive0"]


def test_steps_around_gives_a_window_by_position(tmp_path: Path) -> None:
    b, seqs = episode_trace()
    rows = [r for r in b.rows if r["seq"] % 2 == 0 or r["seq"] == seqs["event"]]  # gaps in seq
    path = write(rows, tmp_path / "t.parquet")
    window = steps_around([path], "vm0", seqs["event"], context=3)
    kept = sorted(r["seq"] for r in rows)
    at = kept.index(seqs["event"])
    assert list(window["seq"]) == kept[at - 3:at + 4]
    assert {"runstate", "pending", "thread", "kind", "name", "device", "op", "errno", "action"} <= set(window.columns)


def test_without_runstate_or_iostatus_rows_the_state_is_inferred_and_answers_shown_apart(tmp_path: Path) -> None:
    b, seqs = episode_trace()
    view = replay(write(imported(b.rows), tmp_path / "t.parquet")).set_index("seq")
    assert view["runstate_inferred"].all() and view["iostatus_inferred"].all()
    # The STOP that serves a BLOCK_IO_ERROR(stop) is an io-error stop, as QEMU would say.
    assert view.loc[seqs["stop"], "runstate"] == "io-error"
    assert view.loc[seqs["cont"]["resume"], "runstate"] == "running"
    # Inferred io-status: failed from the event on (never mind that nobody asked yet) ...
    assert view.loc[seqs["event"], IOSTATUS_PREFIX + "drive0"] == "failed"
    assert pd.isna(view.loc[seqs["event"], "observed:drive0"])  # ... while nothing was observed
    reply = seqs["query"]["drive0"]
    assert view.loc[reply, "observed:drive0"] == "failed"
    assert view.loc[reply, "observed_seq:drive0"] == reply
    # ... and ok again from cont on, while the last answer still says failed.
    assert view.loc[seqs["cont"]["resume"], IOSTATUS_PREFIX + "drive0"] == "ok"
    assert view.loc[seqs["cont"]["resume"], "observed:drive0"] == "failed"


def test_episode_milestones_and_latencies(tmp_path: Path) -> None:
    b, seqs = episode_trace()
    result = check_rows(b.rows, tmp_path)
    assert list(result.episodes.columns) == list(EPISODE_COLUMNS)
    [ep] = result.episodes.to_dict("records")
    expected = {
        "error_action": seqs["error_action"], "iostatus_set": seqs["iostatus_set"],
        "event": seqs["event"], "vmstop_request": seqs["vmstop_request"],
        "vm_stop": seqs["vm_stop"], "stop": seqs["stop"], "cont": seqs["cont"]["command"],
        "resume": seqs["cont"]["resume"],
    }
    for milestone, seq in expected.items():
        assert ep[f"seq_{milestone}"] == seq, milestone
        assert ep[f"ts_{milestone}"] == seq * 1000
    assert ep["seq_iostatus_reset"] == seqs["cont"]["command"] + 1
    assert (ep["vm"], ep["error_id"], ep["device"], ep["op"], ep["errno"], ep["policy"], ep["action"]) == (
        "vm0", 1, "drive0", "write", 5, "stop", "stop")
    assert ep["error_to_event_ns"] == (seqs["event"] - seqs["error_action"]) * 1000
    assert ep["event_to_stop_ns"] == (seqs["stop"] - seqs["event"]) * 1000
    assert ep["paused_ns"] == (seqs["cont"]["resume"] - seqs["stop"]) * 1000


def test_episodes_without_error_ids_are_correlated_by_device(tmp_path: Path) -> None:
    b, seqs = episode_trace()
    result = check_rows(imported(b.rows, drop=()), tmp_path)
    [ep] = result.episodes.to_dict("records")
    assert ep["error_id"] is None  # to_dict turns NA into None
    assert ep["seq_error_action"] == seqs["io_complete"]  # the failed request
    assert ep["seq_stop"] == seqs["stop"] and ep["seq_resume"] == seqs["cont"]["resume"]
    assert ep["device"] == "drive0" and ep["action"] == "stop"
