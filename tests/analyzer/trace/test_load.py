"""Loading: every input form, validation errors naming the file, truncation, and results that do
not depend on how the steps are laid out in files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analyzer import check, load
from analyzer.rules import columns_for
from analyzer.rules.catalogue import RULE_IDS
from tests.analyzer.builders import TraceBuilder, by_rule, write_dir
from tracer import tracedir
from tracer.errors import InputError, TraceFormatError, TraceSchemaError
from tracer.schema import from_pylist


def broken_trace(vm: str = "vm0") -> TraceBuilder:
    """A trace with findings of several rules (so that layout changes would show)."""
    b = TraceBuilder(vm, iothreads={"drive0": "iothread0", "drive1": None})
    b.start()
    b.io(n=5)
    b.error(1, iostatus=False)
    b.set_iostatus(1, "drive0")
    b.main_loop()
    b.query_status()
    b.query_block({"drive0": "ok", "drive1": "ok"})
    b.cont(reset=False)
    b.query_block()
    b.io("drive1", n=4)
    b.error(2, "drive1")
    b.main_loop()
    b.cont(retry=[{"error_id": 3, "device": "drive1"}], resume_after_retry=True)
    b.main_loop()
    b.io(n=3)
    return b


def doc(result) -> str:
    """The findings document without the inputs (which name the files)."""
    d = result.to_dict()
    d.pop("inputs")
    return json.dumps(d, sort_keys=True) + result.episodes.to_json()


def test_a_file_a_trace_directory_a_glob_and_several_paths(tmp_path: Path) -> None:
    table = broken_trace().table()
    tracedir.write_table(table, tmp_path / "one.parquet")
    write_dir(table, tmp_path / "dir", segment_rows=7)
    reference = doc(check([tmp_path / "one.parquet"]))
    assert doc(check([tmp_path / "dir"])) == reference
    assert doc(check([str(tmp_path / "dir" / "seg-*.parquet")])) == reference
    parts = sorted((tmp_path / "dir").glob("seg-*.parquet"))
    assert doc(check([str(p) for p in reversed(parts)])) == reference
    result = check([tmp_path / "dir"])
    assert [i.path for i in result.inputs] == [str(p) for p in parts]
    assert all(len(i.sha256) == 64 for i in result.inputs)
    assert sum(i.rows for i in result.inputs) == result.steps == table.num_rows


def test_layout_does_not_change_the_result(tmp_path: Path) -> None:
    """Segment size, row-group size, file order, row order in files, several VMs per file."""
    a, b = broken_trace("vm-a"), broken_trace("vm-b")
    rows = a.rows + b.rows
    tracedir.write_table(from_pylist(rows, "sim"), tmp_path / "r.parquet")
    reference = doc(check([tmp_path / "r.parquet"]))
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    table = from_pylist(shuffled, "sim")
    tracedir.write_table(table, tmp_path / "shuffled.parquet", row_group_size=5)
    assert doc(check([tmp_path / "shuffled.parquet"])) == reference
    # Interleaved VMs (one recorder, two VMs), small row groups, in seq order per VM.
    interleaved = [r for pair in zip(a.rows, b.rows, strict=False) for r in pair]
    interleaved += a.rows[len(b.rows):] + b.rows[len(a.rows):]
    tracedir.write_table(from_pylist(interleaved, "sim"), tmp_path / "inter.parquet", row_group_size=9)
    assert doc(check([tmp_path / "inter.parquet"])) == reference
    for size in (1, 3, 64):
        write_dir(from_pylist(rows, "sim"), tmp_path / f"seg{size}", segment_rows=size)
        assert doc(check([tmp_path / f"seg{size}"])) == reference


def test_hive_partitioned_dataset_takes_vm_from_the_path(tmp_path: Path) -> None:
    for vm in ("a", "b"):
        table = broken_trace(vm).table().drop_columns(["vm"])
        part = tmp_path / "ds" / "host=h1" / f"vm={vm}"
        part.mkdir(parents=True)
        pq.write_table(table, part / "part-0.parquet")
    result = check([tmp_path / "ds"])
    assert {f.vm for f in result.findings} == {"a", "b"}
    assert result.vms == 2
    both = from_pylist(broken_trace("a").rows + broken_trace("b").rows, "sim")
    tracedir.write_table(both, tmp_path / "both.parquet")
    assert doc(result) == doc(check([tmp_path / "both.parquet"]))


def test_a_directory_without_manifest_is_reported_truncated(tmp_path: Path) -> None:
    write_dir(broken_trace().table(), tmp_path / "t", segment_rows=10, manifest=False)
    result = check([tmp_path / "t"])
    [f] = by_rule(result, "trace-truncated")
    assert f.severity == "warning" and f.vm == "vm0" and str(tmp_path / "t") in f.message
    assert not any(i.complete for i in result.inputs)
    write_dir(broken_trace().table(), tmp_path / "c", segment_rows=10)
    assert by_rule(check([tmp_path / "c"]), "trace-truncated") == []


def test_a_single_file_marked_truncated_by_its_producer(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    tracedir.write_table(b.table(extra={"truncated": "true"}), tmp_path / "t.parquet")
    result = check([tmp_path / "t.parquet"])
    assert [f.rule for f in result.findings] == ["trace-truncated"]
    assert result.verdict == "pass"


def test_duplicated_steps_across_files_are_seq_unique_findings(tmp_path: Path) -> None:
    table = broken_trace().table()
    tracedir.write_table(table, tmp_path / "a.parquet")
    tracedir.write_table(table.slice(3, 4), tmp_path / "b.parquet")
    result = check([tmp_path / "a.parquet", tmp_path / "b.parquet"])
    found = by_rule(result, "seq-unique")
    # One finding for the set of files, not one per repeated seq (issue #13).
    assert [f.seq for f in found] == [(3, 6)]
    assert "4 seqs between 3 and 6" in found[0].message
    assert str(tmp_path / "a.parquet") in found[0].message and str(tmp_path / "b.parquet") in found[0].message
    assert all(f.severity == "error" for f in found)
    assert result.verdict == "fail"


def test_timestamps_going_back_within_a_thread(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    b.io(n=3)
    back = b.step("qmp_command", "mgmt", name="query-status", ts_ns=1)
    later = b.step("qmp_command", "mgmt", name="query-status", ts_ns=0)  # mgmt goes back
    b.step("qmp_event", "main", name="RESUME", ts_ns=5)  # main goes back to before seq 1
    rows = b.rows
    for size in (None, 2):
        tracedir.write_table(from_pylist(rows, "sim"), tmp_path / "t.parquet", row_group_size=size)
        found = by_rule(check([tmp_path / "t.parquet"]), "ts-monotonic-per-thread")
        assert [(f.thread, f.seq) for f in found] == [("main", (1, 10)), ("mgmt", (back, later))]
        assert all(f.severity == "warning" for f in found)


@pytest.mark.parametrize(("mutate", "error", "words"), [
    (lambda t: t.drop_columns(["kind"]), TraceSchemaError, "column 'kind': missing required column"),
    (lambda t: t.set_column(t.schema.get_field_index("seq"), "seq", pa.array(["x"] * t.num_rows)),
     TraceSchemaError, "column 'seq': wrong type"),
    (lambda t: t.set_column(t.schema.get_field_index("kind"), "kind",
                            pa.array(["io_submit"] * (t.num_rows - 1) + ["bogus"])),
     TraceSchemaError, "unknown value 'bogus'"),
    (lambda t: t.set_column(t.schema.get_field_index("errno"), "errno",
                            pa.array([None] * (t.num_rows - 1) + [-5], pa.int32())),
     TraceSchemaError, "errno must be positive"),
    (lambda t: t.set_column(t.schema.get_field_index("thread"), "thread",
                            pa.array([None] + ["main"] * (t.num_rows - 1), pa.string())),
     TraceSchemaError, "null in required column"),
    (lambda t: t.set_column(t.schema.get_field_index("seq"), "seq",
                            pa.array([0, *range(t.num_rows - 1)], pa.int64())),
     TraceSchemaError, "duplicate seq 0 within vm 'vm0'"),
])
def test_unusable_input_names_the_file_and_the_problem(tmp_path: Path, mutate, error, words) -> None:
    path = tmp_path / "bad.parquet"
    pq.write_table(mutate(broken_trace().table()), path)
    with pytest.raises(error) as exc:
        check([path])
    assert str(path) in str(exc.value) and words in str(exc.value)


@pytest.mark.parametrize(("mutate", "error", "words"), [
    (lambda t: t.set_column(t.schema.get_field_index("kind"), "kind",
                            pa.array(["io_submit"] * (t.num_rows - 7) + ["bogus"] * 7)),
     TraceSchemaError, "unknown value 'bogus'"),
    (lambda t: t.set_column(t.schema.get_field_index("errno"), "errno",
                            pa.array([None] * (t.num_rows - 3) + [-5, None, None], pa.int32())),
     TraceSchemaError, "errno must be positive"),
    (lambda t: t.set_column(t.schema.get_field_index("device"), "device",
                            pa.array([b"drive0"] * 20 + [b"dr\xffve"] + [b"drive0"] * (t.num_rows - 21),
                                     pa.binary()).cast(pa.string(), safe=False)),
     TraceSchemaError, "not UTF-8"),
    (lambda t: t.set_column(t.schema.get_field_index("seq"), "seq",
                            pa.array([*range(30), 29, *range(30, t.num_rows - 1)], pa.int64())),
     TraceSchemaError, "duplicate seq 29 within vm 'vm0'"),
])
def test_one_row_row_groups_name_the_same_row(tmp_path: Path, mutate, error, words) -> None:
    """A bad value met in a read of many tiny row groups (read together, combined into one
    chunk) names the same row as in a file of one row group, and the row group holding it."""
    table = mutate(broken_trace().table())
    messages = []
    for size in (None, 1):
        path = tmp_path / f"bad-{size}.parquet"
        pq.write_table(table, path, row_group_size=size)
        with pytest.raises(error) as exc:
            check([path])
        assert str(path) in str(exc.value) and words in str(exc.value)
        messages.append(str(exc.value).replace(str(path), "FILE"))
    row = [m.split("row ")[1].split()[0].rstrip(":,") for m in messages]
    assert row[0] == row[1], messages
    if "(row group " in messages[1]:
        assert messages[1].endswith(f"(row group {row[1]})"), messages


def test_a_file_rewritten_in_place_is_read_anew(tmp_path: Path) -> None:
    """Footers are parsed once per process and shared by planning and reading; a file
    rewritten under the same path is not judged by its old footer."""
    path = tmp_path / "t.parquet"
    first, second = broken_trace("vm-a").table(), broken_trace("vm-b").table().slice(0, 20)
    pq.write_table(first, path, row_group_size=1)
    assert doc(check([path])) == doc(check([path]))
    pq.write_table(second, path, row_group_size=1)
    pq.write_table(second, tmp_path / "fresh.parquet", row_group_size=1)
    assert doc(check([path])) == doc(check([tmp_path / "fresh.parquet"]))
    assert load([path]).vms == ["vm-b"]


def test_missing_and_non_parquet_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or directory"):
        load([tmp_path / "nope.parquet"])
    with pytest.raises(InputError, match="no file matches"):
        load([str(tmp_path / "*.parquet")])
    (tmp_path / "notes.parquet").write_text("hello")
    with pytest.raises(TraceFormatError, match="not a readable Parquet file"):
        load([tmp_path / "notes.parquet"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no Parquet files"):
        load([tmp_path / "empty"])


def test_only_the_columns_rules_need_are_read() -> None:
    cols = columns_for(RULE_IDS)
    assert "payload" not in cols and "req_id" not in cols and "host" not in cols
    assert {"seq", "ts_ns", "vm", "thread", "kind"} <= set(cols)
    assert "thread_kind" not in columns_for(["iostatus-before-event"])


def test_tiny_row_groups_are_read_together_within_bounds(tmp_path: Path, monkeypatch) -> None:
    """Consecutive tiny row groups become one read (linear in row groups, not one footer
    parse each), never more than COALESCE_ROWS rows or COALESCE_GROUPS groups, every Parquet
    row group exactly once and in order."""
    from analyzer.trace import files

    monkeypatch.setattr(files, "COALESCE_GROUPS", 4)
    a, b = broken_trace("vm-a"), broken_trace("vm-b")
    table = from_pylist(a.rows + b.rows, "sim")
    tracedir.write_table(table, tmp_path / "t.parquet", row_group_size=3)
    trace = load([tmp_path / "t.parquet"])
    groups = [g for u in trace.units for g in u.row_groups]
    covered = [i for g in sorted(groups, key=lambda g: g.index) for i in range(g.index, g.index + g.count)]
    assert covered == list(range(pq.ParquetFile(tmp_path / "t.parquet").metadata.num_row_groups))
    assert max(g.count for g in groups) == 4 and sum(g.rows for g in groups) == table.num_rows
    assert sorted(trace.vms) == ["vm-a", "vm-b"]
    tracedir.write_table(table, tmp_path / "one.parquet")
    assert doc(check([tmp_path / "t.parquet"])) == doc(check([tmp_path / "one.parquet"]))


def test_recording_problems_are_facts_of_the_loaded_trace(tmp_path: Path) -> None:
    table = broken_trace().table()
    d = write_dir(table, tmp_path / "rec", segment_rows=10)
    assert load([d]).recording_problems() == []
    (d / "seg-000001.parquet").unlink()
    shutil_copy = (d / "seg-000000.parquet").read_bytes()
    (d / "seg-000099.parquet").write_bytes(shutil_copy)
    facts = load([d]).recording_problems()
    assert [(f.kind, f.segment) for f in facts] == [
        ("segment-missing", "seg-000001.parquet"), ("segment-extra", "seg-000099.parquet")]
    assert all(f.directory == str(d) for f in facts)
    found = by_rule(check([d]), "recording-intact")
    assert [f.severity for f in found] == ["error", "error"]


def test_a_check_keeps_no_parsed_footer_alive_after_it_returns():
    """A notebook that checked a file of 200,000 row groups must not hold its ~4 GB footer."""
    from analyzer.trace import files

    sample = Path(__file__).resolve().parents[3] / "traces" / "sample"
    check([sample])
    assert not files._FOOTERS.footers and not files._OPEN.files
