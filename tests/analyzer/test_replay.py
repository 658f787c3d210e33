"""Replay: the state after every step (what "info block" / "info status" said), episodes and
the context window of a step."""

from __future__ import annotations

import importlib
from pathlib import Path

import pandas as pd
import pytest

from analyzer import load, replay, steps_around
from analyzer.replay import (
    EPISODE_COLUMNS,
    IOSTATUS_PREFIX,
    OBSERVED_PARTS,
    REPLAY_COLUMNS,
    around_window,
    episode_window,
    event_window,
    replay_chunks,
)
from analyzer.timefmt import iso_utc
from tests.analyzer.builders import TraceBuilder, check_rows, write_dir
from tests.analyzer.rules.test_ordering import imported
from tracer import tracedir
from tracer.errors import InputError
from tracer.schema import from_pylist

replay_module = importlib.import_module("analyzer.replay")


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


# ---------------------------------------------------------------------------------------------
# Imports: what was observed, apart from what the events imply (a real QEMU 10.0 capture)
# ---------------------------------------------------------------------------------------------

REAL10 = Path(__file__).resolve().parents[1] / "data" / "real" / "qemu-10.0"


@pytest.fixture(scope="module")
def fast_cont(tmp_path_factory) -> Path:
    """The QMP transcript of the real QEMU 10.0 `fast-cont` capture, imported."""
    from analyzer.importers.pipeline import import_traces

    out = tmp_path_factory.mktemp("real10") / "fast-cont.parquet"
    import_traces([str(REAL10 / "fast-cont" / "qmp-transcript.jsonl")], str(out))
    return out


def test_real_import_shows_inferred_state_apart_from_observed_answers(fast_cont: Path) -> None:
    view = replay(fast_cont)
    assert view["runstate_inferred"].all() and view["iostatus_inferred"].all()
    at = view.set_index("seq")
    bioe = view.loc[view["name"] == "BLOCK_IO_ERROR", "seq"].tolist()
    stops = view.loc[view["name"] == "STOP", "seq"].tolist()
    conts = view.loc[(view["kind"] == "qmp_command") & (view["name"] == "cont"), "seq"].tolist()
    first = bioe[0]
    # At the first BLOCK_IO_ERROR(stop): the io-status QEMU set before raising it is failed,
    # while the last query-block answer (given before the error) still said ok.
    assert at.loc[first, "iostatus:drive0"] == "failed"
    assert at.loc[first, "observed:drive0"] == "ok"
    assert at.loc[first, "observed_seq:drive0"] < first
    # The STOP that follows is an I/O-error stop (virsh domstate --reason: paused (I/O error)),
    # while the last query-status answer still says running.
    stop = next(s for s in stops if s > first)
    assert at.loc[stop, "runstate"] == "io-error"
    assert at.loc[stop, "observed_runstate"] == "running"
    # cont resets the io-status: inferred ok at once, the last answer still failed.
    cont = next(c for c in conts if c > stop)
    assert at.loc[cont, "iostatus:drive0"] == "ok"
    assert at.loc[cont, "observed:drive0"] == "failed"
    # Every later STOP is one of an I/O error too (the errors' events were held or replaced,
    # but the stops are what QEMU does for werror=stop), never a bare "stopped".
    assert set(at.loc[stops, "runstate"]) <= {"io-error", "stopped"}
    # Where and when each observed answer was given: the reply's own line of the transcript.
    row = at.loc[cont]
    answer = at.loc[int(row["observed_seq:drive0"])]
    assert row["observed_src:drive0"] == answer["src"]
    assert row["observed_src:drive0"].endswith(f"qmp-transcript.jsonl:{answer['src'].rsplit(':', 1)[1]}")
    assert row["observed_time:drive0"] == answer["time"]


def test_real_import_shows_iso_utc_time(fast_cont: Path) -> None:
    view = replay(fast_cont)
    first = view.iloc[0]
    assert first["time"] == iso_utc(int(first["ts_ns"]))
    assert first["time"].startswith("20") and first["time"].endswith("Z")


def test_since_until_keep_the_steps_in_range_with_the_state_of_the_whole_trace(fast_cont: Path) -> None:
    full = replay(fast_cont)
    stop = int(full.loc[full["name"] == "STOP", "ts_ns"].iloc[0])
    later = int(full["ts_ns"].iloc[len(full) // 2])
    part = replay(fast_cont, since=stop, until=iso_utc(later))  # ns, or ISO-8601 text
    assert len(part) and part["ts_ns"].between(stop, later - later % 1000 + 999).all()
    assert len(part) < len(full)
    # The state after each kept step is that of the whole replay (no cut context).
    merged_state = full.set_index("seq").loc[part["seq"], ["runstate", "iostatus:drive0"]]
    assert merged_state.reset_index(drop=True).equals(part[["runstate", "iostatus:drive0"]])
    assert part.iloc[0]["runstate"] == "io-error"


def test_windows_of_an_episode_and_of_the_kth_event(fast_cont: Path) -> None:
    trace = load([fast_cont])
    vm = trace.vms[0]
    stop2 = event_window(trace, vm, "STOP", 2, 1)
    stops = replay(trace)
    stops = stops.loc[stops["name"] == "STOP", "seq"].tolist()
    view = replay(trace, from_seq=stop2.first, to_seq=stop2.last)
    assert view["seq"].tolist() == [stops[1] - 1, stops[1], stops[1] + 1]
    ep = episode_window(trace, vm, 1, 0)
    assert ep.origin_ns is not None and ep.first <= ep.last


@pytest.mark.parametrize("call,message", [
    (lambda t: around_window(t, "vm0", 999999, 3), "--around 999999: vm0 has no step with seq 999999"),
    (lambda t: episode_window(t, "vm0", 99, 3), "--episode 99: vm0 has"),
    (lambda t: event_window(t, "vm0", "NOPE", 1, 3), "--event NOPE: vm0 has no such event (its events: "),
    (lambda t: event_window(t, "vm0", "STOP", 99, 3), "--nth 99: vm0 has "),
])
def test_a_window_beyond_the_trace_is_an_input_error(fast_cont: Path, call, message: str) -> None:
    trace = load([fast_cont])
    assert trace.vms == ["vm0"]
    with pytest.raises(InputError) as exc:
        call(trace)
    assert str(exc.value).startswith(message)


# ---------------------------------------------------------------------------------------------
# Streaming: chunks are computed when asked for, and do not depend on the files' layout
# ---------------------------------------------------------------------------------------------


def _many_row_groups(tmp_path: Path, rows: list[dict], size: int) -> Path:
    """`rows` as a recorder-style directory of segments of `size` rows (a row group each)."""
    return write_dir(from_pylist(rows, "sim"), tmp_path / f"seg{size}", segment_rows=size)


def test_replay_chunks_are_lazy(tmp_path: Path, monkeypatch) -> None:
    b, _ = episode_trace()
    b.io(n=400)
    path = _many_row_groups(tmp_path, b.rows, 50)
    trace = load([path])
    list(replay_chunks(trace, chunk_rows=10))  # warm: the state batch is read once per VM
    reads: list[int] = []
    real = replay_module.read_row_group

    def counting(tf, index, columns, count=1):
        reads.append(index)
        return real(tf, index, columns, count)

    monkeypatch.setattr(replay_module, "read_row_group", counting)
    chunks = replay_chunks(trace, chunk_rows=10)
    assert reads == []  # nothing is read before the first chunk is asked for
    first = next(chunks)
    assert first["seq"].tolist() == list(range(10))
    assert len(reads) == 1  # one row group of the many, not the trace
    rest = list(chunks)
    assert len(reads) == len(trace.units[0].row_groups) > 1
    assert sum(len(c) for c in rest) + 10 == len(b.rows)


def test_chunk_boundaries_do_not_depend_on_the_layout(tmp_path: Path) -> None:
    b, _ = episode_trace()
    b.io(n=100)
    sizes = []
    for size in (7, 64, 1000):
        chunks = list(replay_chunks(_many_row_groups(tmp_path, b.rows, size), chunk_rows=25))
        sizes.append([c["seq"].tolist() for c in chunks])
    assert sizes[0] == sizes[1] == sizes[2]
    assert [len(c) for c in sizes[0]][:-1] == [25] * (len(sizes[0]) - 1)


def test_a_held_event_delivered_after_its_stop_still_explains_it(samples_dir: Path, tmp_path: Path) -> None:
    """QEMU 10 held a BLOCK_IO_ERROR (rate limit) and sent it after the STOP it caused, with
    its original timestamp (samples/qemu-10.0/a-stop-eio-dataplane: `... <cont STOP BIOE`)."""
    from analyzer.importers.pipeline import import_traces

    out = tmp_path / "a.parquet"
    import_traces([str(samples_dir / "qemu-10.0" / "a-stop-eio-dataplane" / "qmp-transcript.jsonl")], str(out))
    view = replay(out)
    assert view["time"].str.fullmatch(r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z").all()
    names = view["name"].tolist()

    def unexplained_on_arrival(i: int) -> bool:  # a STOP with no BLOCK_IO_ERROR since the RESUME
        resumes = [j for j in range(i) if names[j] == "RESUME"]
        return names[i] == "STOP" and bool(resumes) and "BLOCK_IO_ERROR" not in names[resumes[-1]:i]

    late = next(i for i in range(len(names)) if unexplained_on_arrival(i))
    assert "BLOCK_IO_ERROR" in names[late:names.index("RESUME", late)]  # its event came after it
    stop = view.iloc[late]
    assert stop["runstate"] == "io-error"          # explained by the event that came later
    assert stop["iostatus:drive0"] == "failed"     # set where the error was raised
    assert view.iloc[late - 1]["iostatus:drive0"] == "ok"  # after cont, before the retry failed
