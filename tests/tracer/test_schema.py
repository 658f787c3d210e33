"""Trace schema v1: round trip, validation messages, conforming."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tracer import schema
from tracer.errors import TraceSchemaError


def _rows() -> list[dict]:
    return [
        {"seq": 0, "ts_ns": 10, "vm": "vm0", "thread": "main", "thread_kind": "main",
         "kind": "runstate", "prev_runstate": "prelaunch", "runstate": "running"},
        {"seq": 1, "ts_ns": 20, "vm": "vm0", "thread": "iothread0", "thread_kind": "iothread",
         "kind": "error_action", "device": "drive0", "req_id": 7, "op": "write", "errno": 5,
         "policy": "stop", "action": "stop", "error_id": 1},
        {"seq": 0, "ts_ns": 15, "vm": "vm1", "thread": "main", "thread_kind": "main",
         "kind": "qmp_event", "name": "STOP", "payload": '{"event": "STOP"}'},
    ]


def test_round_trip_through_parquet_keeps_types_values_and_metadata(tmp_path):
    table = schema.from_pylist(_rows(), source="sim", extra={"seed": 42, "scenario": "x"})
    assert schema.validate(table) == []
    pq.write_table(table, tmp_path / "t.parquet")
    back = pq.read_table(tmp_path / "t.parquet")
    assert back.schema.equals(schema.SCHEMA, check_metadata=False)
    assert back.to_pylist() == table.to_pylist()
    meta = schema.read_metadata(back.schema)
    assert meta["schema_version"] == "1"
    assert meta["source"] == "sim"
    assert meta["seed"] == "42"


def test_missing_required_column_is_named():
    table = schema.from_pylist(_rows(), source="sim").drop_columns(["thread"])
    problems = schema.validate(table)
    assert [str(p) for p in problems] == ["column 'thread': missing required column"]


def test_wrong_type_names_actual_and_expected():
    table = schema.from_pylist(_rows(), source="sim")
    table = table.set_column(table.schema.get_field_index("seq"), "seq", pa.array(["a", "b", "c"]))
    (problem,) = schema.validate(table)
    assert problem.column == "seq"
    assert "wrong type string, expected int64" in problem.message


def test_null_in_required_column_gives_first_row():
    rows = _rows()
    rows[2]["thread"] = None
    table = schema.from_pylist(rows, source="sim")
    (problem,) = schema.validate(table)
    assert (problem.column, problem.row) == ("thread", 2)
    assert "null in required column" in problem.message


def test_unknown_vocabulary_value_names_column_value_and_first_row():
    rows = _rows()
    rows[1]["action"] = "explode"
    rows[2]["kind"] = "teleport"
    problems = {p.column: p for p in schema.validate(schema.from_pylist(rows, source="sim"))}
    assert problems["action"].row == 1
    assert "unknown value 'explode'" in problems["action"].message
    assert problems["kind"].row == 2
    assert "'teleport'" in problems["kind"].message


def test_duplicate_seq_within_a_vm_is_found_but_not_across_vms():
    rows = [*_rows(), dict(_rows()[0], ts_ns=30)]
    (problem,) = schema.validate(schema.from_pylist(rows, source="sim"))
    assert problem.column == "seq"
    assert problem.row == 3
    assert "duplicate seq 0 within vm 'vm0'" in problem.message
    # seq 0 exists in vm0 and vm1: that is fine
    assert schema.validate(schema.from_pylist(_rows(), source="sim")) == []


def test_nonpositive_errno_is_rejected():
    rows = _rows()
    rows[1]["errno"] = -5
    (problem,) = schema.validate(schema.from_pylist(rows, source="sim"))
    assert problem.column == "errno"
    assert "-5" in problem.message


def test_ensure_valid_raises_one_line_with_path_and_row():
    rows = _rows()
    rows[1]["op"] = "scribble"
    with pytest.raises(TraceSchemaError) as info:
        schema.ensure_valid(schema.from_pylist(rows, source="sim"), path="t.parquet")
    message = str(info.value)
    assert message.startswith("t.parquet, row 1: column 'op': unknown value 'scribble'")
    assert "\n" not in message


def test_conform_casts_plain_strings_and_narrow_ints_and_adds_optional_columns():
    plain = pa.table(
        {
            "seq": pa.array([0, 1], pa.int32()),
            "ts_ns": pa.array([5, 6], pa.int64()),
            "vm": ["a", "a"],
            "thread": ["main", "main"],
            "thread_kind": ["main", "main"],
            "kind": ["vm_start", "vm_stop"],
        }
    )
    assert schema.validate(plain) == []
    out = schema.conform(plain)
    assert out.schema.equals(schema.SCHEMA, check_metadata=False)
    assert out.column("kind").to_pylist() == ["vm_start", "vm_stop"]
    assert out.column("device").null_count == 2


def test_extra_columns_are_allowed():
    table = schema.from_pylist(_rows(), source="sim").append_column("note", pa.array(["x"] * 3))
    assert schema.validate(table) == []
