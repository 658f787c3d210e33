"""Several inputs of one VM: one row per step, both pieces of knowledge, a deterministic order."""

from __future__ import annotations

import gc
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from analyzer.importers import import_traces, read_input, spill
from analyzer.importers.merge import (
    _coalesce,
    _output_order,
    _Placement,
    _Taken,
    _Writes,
    first_appearance,
)
from analyzer.importers.rows import _values
from tracer.errors import ImportFormatError
from tracer.schema import read_metadata, validate


def test_transcript_and_trace_log_merge_into_one_trace(dataplane, tmp_path):
    transcript, trace = dataplane / "qmp-transcript.jsonl", dataplane / "trace.log"
    summary = import_traces([transcript, trace], tmp_path / "m.parquet")
    assert [(i.format, i.lines, i.rows) for i in summary.inputs] == [("qmp", 212, 212), ("qemu-log", 1777, 1757)]
    table = pq.read_table(tmp_path / "m.parquet")
    assert validate(table) == []
    got = table.to_pylist()
    # every message of the transcript was also in the trace log: no step twice
    assert len(got) == 1757 == summary.rows
    events = [r for r in got if r["kind"] == "qmp_event"]
    keys = [(r["name"], json.dumps(json.loads(r["payload"]).get("timestamp"))) for r in events]
    assert len(keys) == len(set(keys)) == 20
    # the merged BLOCK_IO_ERROR: QMP data, and the thread/time of the trace log
    bie = next(r for r in events if r["name"] == "BLOCK_IO_ERROR")
    assert (bie["device"], bie["action"], bie["errno"], bie["thread"], bie["tid"]) == ("drive0", "stop", 5, "iothread0", 9678)
    assert (bie["src_file"], bie["src_line"]) == (str(trace), 173)
    by_seq = {r["seq"]: r for r in got}
    for r in got:
        if r["kind"] == "qmp_reply":
            assert by_seq[r["cmd_seq"]]["kind"] == "qmp_command"
    meta = read_metadata(table.schema)
    assert meta["source"] == "merged" and meta["skipped_lines"] == "0" and "truncated" not in meta
    inputs = json.loads(meta["inputs"])
    assert [(i["path"], i["format"], i["lines"], i["skipped"]) for i in inputs] == [
        (str(trace), "qemu-log", 1777, 0),
        (str(transcript), "qmp", 212, 0),
    ]
    assert all(len(i["sha256"]) == 64 for i in inputs)


def test_rows_only_one_input_has_are_kept(dataplane, write, tmp_path):
    # the trace log cut before the capture client connected ... and the transcript after its
    # first error: each adds what the other lacks
    trace_lines = (dataplane / "trace.log").read_text().splitlines()
    transcript_lines = (dataplane / "qmp-transcript.jsonl").read_text().splitlines()
    trace = write("trace.log", "\n".join(trace_lines[:100]) + "\n")
    transcript = write("t.jsonl", "\n".join(transcript_lines[:40]) + "\n")
    alone = read_input(trace).num_rows + read_input(transcript).num_rows
    merged = pq.read_table(import_traces([trace, transcript], tmp_path / "m.parquet").files[0]).to_pylist()
    assert len(merged) < alone
    assert {r["src_file"] for r in merged} == {str(trace), str(transcript)}
    assert [r["seq"] for r in merged] == list(range(len(merged)))
    ts = [r["ts_ns"] for r in merged]
    assert ts == sorted(ts)
    bie = next(r for r in merged if r["name"] == "BLOCK_IO_ERROR")
    assert (bie["src_file"], bie["thread"]) == (str(transcript), "qemu")  # only the transcript has it


def test_same_bytes_whatever_the_input_order(dataplane, tmp_path):
    a = import_traces([dataplane / "qmp-transcript.jsonl", dataplane / "trace.log"], tmp_path / "a.parquet")
    b = import_traces([dataplane / "trace.log", dataplane / "qmp-transcript.jsonl"], tmp_path / "b.parquet")
    c = import_traces([dataplane / "trace.log", dataplane / "qmp-transcript.jsonl"], tmp_path / "c.parquet")
    data = [Path(s.files[0]).read_bytes() for s in (a, b, c)]
    assert data[0] == data[1] == data[2]


def test_trace_log_merges_with_the_libvirt_vm_it_shares_events_with(write, tmp_path):
    def line(ts, msg):
        return f"2026-01-02 03:04:{ts}+0000: 1: info : f:1 : {msg}"

    stop = '{"timestamp": {"seconds": 7, "microseconds": 1}, "event": "STOP"}'
    libvirt = write("libvirtd.log", "\n".join([
        line("05.000", "Entering monitor (mon=0xa vm=0x1 name=alpha)"),
        line("05.001", "Entering monitor (mon=0xb vm=0x2 name=beta)"),
        line("05.002", f"QEMU_MONITOR_RECV_EVENT: mon=0xb event={stop}"),
        line("05.003", 'QEMU_MONITOR_RECV_EVENT: mon=0xa event={"timestamp": {"seconds": 9, "microseconds": 1}, "event": "RESUME"}'),
    ]) + "\n")
    trace = write("trace.log", f"42@7.000001:monitor_qmp_respond mon 0x1 resp: {stop}\n")
    summary = import_traces([libvirt, trace], tmp_path / "out.parquet")
    assert summary.vm_rows == {"alpha": 1, "beta": 1}
    beta = [r for r in pq.read_table(summary.files[0]).to_pylist() if r["vm"] == "beta"]
    assert (beta[0]["tid"], beta[0]["src_file"], beta[0]["ts_ns"]) == (42, str(trace), 7_000_001_000)


def test_thread_names_can_come_from_the_other_input(dataplane, write, tmp_path):
    # a trace log that never saw the query-iothreads reply: the IOThread is only a TID ...
    text = (dataplane / "trace.log").read_text().splitlines()
    trace = write("trace.log", "\n".join(x for x in text if '"thread-id": 9678' not in x) + "\n")
    alone = read_input(trace).to_pylist()
    bie = next(r for r in alone if r["name"] == "BLOCK_IO_ERROR")
    assert (bie["thread"], bie["thread_kind"]) == ("tid9678", "unknown")
    # ... until the transcript's reply names it
    summary = import_traces([trace, dataplane / "qmp-transcript.jsonl"], tmp_path / "m.parquet")
    merged = pq.read_table(summary.files[0]).to_pylist()
    bie = next(r for r in merged if r["name"] == "BLOCK_IO_ERROR")
    assert (bie["thread"], bie["thread_kind"], bie["tid"]) == ("iothread0", "iothread", 9678)


def test_progress_reports_bytes_up_to_the_total(dataplane, tmp_path):
    calls = []
    import_traces(
        [dataplane / "trace.log", dataplane / "qmp-transcript.jsonl"], tmp_path / "p.parquet",
        progress=lambda done, total: calls.append((done, total)),
    )
    total = (dataplane / "trace.log").stat().st_size + (dataplane / "qmp-transcript.jsonl").stat().st_size
    assert calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_write_progress_reports_the_rows_written_row_group_by_row_group(dataplane, tmp_path, monkeypatch):
    from analyzer.importers import output

    monkeypatch.setattr(output, "ROW_GROUP_ROWS", 500)
    calls = []
    summary = import_traces(
        [dataplane / "trace.log", dataplane / "qmp-transcript.jsonl"], tmp_path / "w.parquet",
        write_progress=lambda done, total: calls.append((done, total)),
    )
    rows = summary.rows
    assert rows > 1000 and calls[0] == (0, rows) and calls[-1] == (rows, rows)
    assert [d for d, _ in calls] == [min(500 * k, rows) for k in range(len(calls))]


def test_every_sample_imports_to_a_valid_table(samples_dir):
    for path in [
        *sorted((samples_dir / "qemu-7.2").glob("*/qmp-transcript.jsonl")),
        *sorted((samples_dir / "qemu-7.2").glob("*/trace.log")),
        *sorted((samples_dir / "qemu-7.2").glob("*/events.jsonl")),
        samples_dir / "libvirt-9.0" / "a-stop-eio" / "libvirtd.log",
    ]:
        table = read_input(path)
        assert validate(table) == [], path
        assert table.num_rows > 0


@given(st.lists(st.sampled_from(["trace_event", "qmp_reply", "b", "a", None]), max_size=40),
       st.permutations(range(5)))
def test_columns_kept_as_codes_come_out_as_encoding_the_strings_would(values, dictionary_order):
    """kind and name go through the build as dictionary codes under any dictionary: what is
    written is what ``dictionary_encode`` of the strings in output order gives (same bytes)."""
    words = ["trace_event", "qmp_reply", "b", "a", "unused"]
    dictionary = pa.array([words[i] for i in dictionary_order])
    position = {w: k for k, w in enumerate(dictionary.to_pylist())}
    coded = pa.DictionaryArray.from_arrays(
        pa.array([None if v is None else position[v] for v in values], pa.int32()), dictionary)
    got = first_appearance(coded)
    want = pa.array(values, pa.string()).dictionary_encode()
    assert got.dictionary.equals(want.dictionary) and got.indices.equals(want.indices)


def test_a_vm_of_one_nameless_reply_imports(tmp_path):
    """Every name null (a lone reply whose command was never seen): no dictionary at all."""
    src = tmp_path / "t.jsonl"
    src.write_text(json.dumps({"t": 1795625380.5, "dir": "recv", "line": '{"return": false, "id": 9}'}) + "\n")
    import_traces([src], tmp_path / "o.parquet")
    table = pq.read_table(tmp_path / "o.parquet")
    assert table.column("kind").to_pylist() == ["qmp_reply"] and table.column("name").to_pylist() == [None]


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=40), st.integers(0, 40),
       st.booleans(), st.booleans())
def test_one_input_comes_out_in_the_order_of_sorting_every_key(rows, split, lines_in_runs, ts_in_order):
    """The output order of one input (its lists' rows, then its segments'), put stably in line
    order and then in time order, is exactly the order of sorting by time, line and reading
    order -- whether or not each run is in line order, and the time in order."""
    split = min(split, len(rows))
    ts = np.array([t for t, _ in rows], dtype=np.int64)
    line = np.array([n for _, n in rows], dtype=np.int64)
    if lines_in_runs:
        line = np.concatenate((np.sort(line[:split]), np.sort(line[split:])))
    if ts_in_order:  # time follows line order (ties included)
        by_line = np.lexsort((np.arange(len(line)), line))
        ts[by_line] = np.sort(ts)
    idx = np.arange(len(rows))
    want = np.lexsort((idx, line, np.zeros(len(rows), np.int64), ts))
    got = _output_order(idx.copy(), ts, line, np.zeros(len(rows), np.int64), True)
    assert got.tolist() == want.tolist()


@given(st.lists(st.integers(0, 9), min_size=1, max_size=8), st.randoms(use_true_random=False), st.booleans(),
       st.integers(1, 12))
def test_a_column_in_output_order_is_taken_a_row_group_at_a_time_as_from_its_pieces_put_together(
        lengths, rnd, stretches, group):
    """A take per row group of `group` rows (long stretches moved around, or rows shuffled;
    some pieces waiting on disk) gives what taking every row from the pieces put together
    gives, for each column laid out in those pieces."""
    pieces = []
    for n in lengths:
        pieces.append(pa.array([f"r{len(pieces)}.{i}" for i in range(n)], pa.large_string()))
    starts = np.cumsum([0, *lengths])[:-1]
    total = sum(lengths)
    places = list(range(total))
    if stretches:  # a few stretches, moved around, some rows dropped (merged into others)
        cut = sorted(rnd.sample(range(1, total), min(2, total - 1))) if total > 1 else []
        runs = [places[a:b] for a, b in zip([0, *cut], [*cut, total], strict=True)]
        rnd.shuffle(runs)
        places = [p for run in runs for p in run if rnd.random() > 0.05]
    else:
        rnd.shuffle(places)
    want = pa.concat_arrays(pieces).take(pa.array(places, pa.int64())).to_pylist()
    with tempfile.TemporaryDirectory() as tmp:
        file = spill.SpillFile(Path(tmp))
        saved, spill.MIN_ROWS = spill.MIN_ROWS, 0
        try:
            kept = [file.keep(p) if rnd.random() < 0.5 else p for p in pieces]
        finally:
            spill.MIN_ROWS = saved
        file.close()
        placement = _Placement(starts.astype(np.int64), total, np.array(places, dtype=np.int64))
        column = _Taken(kept, placement, pa.large_string())
        # (a second column of the same pieces, asked for the same rows in turn: one placement)
        numbers = _Taken([pa.array(range(s, s + n), pa.int64()) for s, n in zip(starts.tolist(), lengths, strict=True)],
                         placement, pa.int64())
        got, got_numbers = [], []
        for at in range(0, len(places), group):
            got += column.slice(at, group).to_pylist()
            got_numbers += numbers.slice(at, group).to_pylist()
        assert got == want
        assert got_numbers == places


_WORDS = st.sampled_from(["main", "mgmt", "iothread0", "qemu", "vcpu0"])


@given(st.lists(st.tuples(st.none() | _WORDS, st.none() | _WORDS), max_size=30),
       st.lists(_WORDS, max_size=3))
def test_threads_from_presets_tids_and_a_default_come_out_as_encoding_the_strings_would(rows, extra):
    """A preset thread, else the one its TID names, else the default, as one dictionary
    column -- whatever duplicates or unused words the dictionaries hold -- is what
    ``dictionary_encode`` of the coalesced strings gives."""
    preset = [p for p, _ in rows]
    derived = [d for _, d in rows]

    def coded(values):
        words = list(dict.fromkeys([v for v in values if v is not None] + extra)) + extra
        return pa.DictionaryArray.from_arrays(
            pa.array([None if v is None else words.index(v) for v in values], pa.int32()), pa.array(words, pa.string()))

    got = _coalesce(coded(preset), coded(derived), "qemu")
    plain = pc.fill_null(pc.coalesce(pa.array(preset, pa.string()), pa.array(derived, pa.string())), "qemu")
    want = plain.dictionary_encode()
    assert got.dictionary.equals(want.dictionary) and got.indices.equals(want.indices)


def test_an_import_leaves_the_interpreter_as_it_found_it(dataplane, tmp_path):
    """A notebook's garbage collector and thread switch interval are its own again after an
    import, also one that fails (the import pauses the one and shortens the other)."""
    interval = sys.getswitchinterval()
    seen = []
    import_traces([dataplane / "trace.log"], tmp_path / "ok.parquet",
                  progress=lambda *_: seen.append((sys.getswitchinterval(), gc.isenabled())))
    bad = tmp_path / "bad.log"
    bad.write_text("10@1.000001:runstate_set\n")
    with pytest.raises(ImportFormatError):
        import_traces([bad], tmp_path / "bad.parquet")
    assert sys.getswitchinterval() == interval and gc.isenabled()
    assert seen and all(s <= 0.001 and not enabled for s, enabled in seen[:-1])


@given(st.integers(1, 40), st.lists(st.lists(st.tuples(st.integers(-1, 39), st.integers(0, 5)), max_size=30), max_size=4),
       st.integers(1, 50), st.booleans())
def test_a_sparse_column_made_of_writes_keeps_the_last_value_of_each_row_kept_dense_or_not(m, writes, group, dense):
    """`_Writes` of (row, value) writes, rows -1 dropped, in row groups of `group` rows: what
    writing them into a dict in order gives, whether kept as sorted rows or one value a row."""
    writes = [[(r, v) for r, v in batch if r < m] for batch in writes]
    want: dict[int, int] = {}
    for batch in writes:
        want.update((r, v) for r, v in batch if r >= 0)
    rows = [np.array([r for r, _ in b], dtype=np.int64) for b in writes]
    values = [np.array([v for _, v in b], dtype=np.int64) for b in writes]
    _Writes.DENSE = 10**9 if dense else 0  # (every column dense, or none)
    try:
        column = _Writes(rows, values, m, np.int64)
    finally:
        _Writes.DENSE = 8
    got = []
    for start in range(0, m, group):
        found, valid = column.window(start, group)
        assert len(found) == len(valid) == min(group, m - start)
        got += [int(f) if ok else None for f, ok in zip(found, valid, strict=True)]
    assert got == [want.get(r) for r in range(m)]
    assert column.numbers(0, m, pa.int32()).to_pylist() == got


@given(st.lists(st.one_of(st.none(), st.sampled_from(["main", "mgmt", "", "a\\u202eb"])), max_size=40))
def test_materialized_values_are_the_columns_values(values):
    # a message segment's dictionary columns become list rows through their few words
    column = pa.array(values, pa.string())
    assert _values(column.dictionary_encode()) == values
    assert _values(column) == values
