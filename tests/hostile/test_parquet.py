"""The Parquet door: every bad trace file is exit 2 with one line naming the file (and the row
and column where there is one), every odd but valid one gives the right result; no traceback.

Black-box through the command line (`run_cli`), on corruptions of the shipped sample recording.
The fuzz test at the end mutates the bytes of a small valid file and the values of its table.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.hostile.conftest import (
    SAMPLE,
    Unchanged,
    assert_contract,
    check_json,
    run_cli,
    vm_rows,
    write_parquet,
)

#: Examples per fuzz test: small in CI, more by hand (README: BLKREPLAY_FUZZ_EXAMPLES=2000).
FUZZ_EXAMPLES = int(os.environ.get("BLKREPLAY_FUZZ_EXAMPLES", "40"))
#: Shrinking a failure runs the command hundreds of times: only when asked (BLKREPLAY_FUZZ_SHRINK=1).
FUZZ_PHASES = [p for p in Phase if p is not Phase.shrink or os.environ.get("BLKREPLAY_FUZZ_SHRINK")]


def bad(outcome, path: Path | str, *, row: bool = False, says: str | None = None) -> str:
    """Assert exit 2 and one line naming `path` (and a row, and `says`); the line."""
    assert outcome.code == 2, (outcome.code, outcome.err, outcome.crash)
    assert_contract(outcome, names=path, row=row)
    line = outcome.err_lines[0]
    if says is not None:
        assert says in line, line
    return line


def _binary_strings(values: list[bytes]) -> pa.Array:
    """A string array holding exactly these bytes (Arrow does not check UTF-8 here)."""
    b = pa.array(values, pa.binary())
    return pa.Array.from_buffers(pa.string(), len(b), b.buffers())


def _set(table: pa.Table, name: str, column: pa.Array | pa.ChunkedArray) -> pa.Table:
    i = table.column_names.index(name)
    return table.set_column(i, pa.field(name, column.type), column)


@pytest.fixture
def one_vm(sample_table) -> pa.Table:
    return vm_rows(sample_table, "vm0")


# ---------------------------------------------------------------------------------------------
# Footer and schema
# ---------------------------------------------------------------------------------------------


def test_a_duplicated_column(tmp_path, one_vm):
    t = pa.Table.from_arrays([*one_vm.columns, one_vm.column("vm")], names=[*one_vm.column_names, "vm"])
    p = write_parquet(t, tmp_path / "dup.parquet")
    bad(run_cli(["check", p]), p, says="column 'vm': appears 2 times")


def test_an_unknown_schema_version(tmp_path, one_vm):
    meta = dict(one_vm.schema.metadata)
    meta[b"blkreplay.schema_version"] = b"99"
    p = write_parquet(one_vm.replace_schema_metadata(meta), tmp_path / "v99.parquet")
    bad(run_cli(["check", p]), p, says="unsupported trace schema version '99'")


def test_a_zero_row_trace_is_a_warning_not_a_silent_pass(tmp_path, one_vm):
    p = write_parquet(one_vm.slice(0, 0), tmp_path / "zero.parquet")
    doc = check_json(run_cli(["check", p, "-f", "json"]))
    assert [(f["rule"], f["severity"]) for f in doc["findings"]] == [("trace-empty", "warning")]
    assert doc["summary"]["steps"] == 0 and "zero.parquet" in doc["findings"][0]["message"]
    for argv in (["report", p, "-o", tmp_path / "r.html"], ["replay", p]):
        out = run_cli(argv)
        assert_contract(out)
        assert out.code == 0, out.err
    assert "trace-empty" in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize("cut", [0, 4, 100, -8, -1])
def test_a_cut_or_empty_file(tmp_path, cut):
    raw = (SAMPLE / "seg-000000.parquet").read_bytes()
    p = tmp_path / "cut.parquet"
    p.write_bytes(raw[:cut] if cut else b"")
    bad(run_cli(["check", p]), p, says="not a readable Parquet file")


def test_files_of_one_dataset_disagreeing_on_schema(tmp_path, sample_table):
    d = tmp_path / "ds"
    d.mkdir()
    write_parquet(vm_rows(sample_table, "vm0"), d / "a.parquet")
    other = vm_rows(sample_table, "vm1")
    write_parquet(_set(other, "ts_ns", other.column("ts_ns").cast(pa.float64())), d / "b.parquet")
    bad(run_cli(["check", d]), d / "b.parquet", says="column 'ts_ns': wrong type double, expected int64")


# ---------------------------------------------------------------------------------------------
# Names and text
# ---------------------------------------------------------------------------------------------


def test_a_file_name_that_is_not_utf8_is_read(tmp_path):
    name = os.fsdecode(b"trace-\xff\xfe.parquet")
    shutil.copyfile(SAMPLE / "seg-000000.parquet", tmp_path / name)
    reference = check_json(run_cli(["check", SAMPLE / "seg-000000.parquet", "-f", "json"]))
    got = check_json(run_cli(["check", tmp_path / name, "-f", "json"]))
    assert (got["verdict"], got["summary"]["steps"]) == (reference["verdict"], reference["summary"]["steps"]) == ("pass", 5606)


@pytest.mark.parametrize("column", ["vm", "thread", "device", "name"])
def test_invalid_utf8_inside_a_string_column(tmp_path, one_vm, column):
    n = one_vm.num_rows
    values = one_vm.column(column).cast(pa.string()).to_pylist()
    raw = [None if v is None else v.encode() for v in values]
    row = next(i for i in range(n) if raw[i] is not None) + 3 if column in ("device", "name") else 7
    while raw[row] is None:
        row += 1
    raw[row] = b"caf\xe9"  # Latin-1, not UTF-8
    strings = _binary_strings(raw)
    for encoded in (strings, strings.dictionary_encode()):
        p = write_parquet(_set(one_vm, column, encoded), tmp_path / f"{column}.parquet")
        line = bad(run_cli(["check", p]), p, row=True, says=f"column '{column}': not UTF-8 text")
        assert f"row {row}:" in line, line
        assert "\ufffd" not in line


def test_a_latin1_vm_name_never_becomes_a_replacement_character(tmp_path, one_vm):
    # The whole row group holds one (Latin-1) VM: its statistics say min == max.
    vm = _binary_strings([b"d\xe9mo"] * one_vm.num_rows).dictionary_encode()
    p = write_parquet(_set(one_vm, "vm", vm), tmp_path / "latin1.parquet", row_group_size=1000)
    for argv in (["check", p], ["replay", p], ["report", p, "-o", tmp_path / "r.html"]):
        line = bad(run_cli(argv), p, row=True, says="column 'vm': not UTF-8 text")
        assert "row 0:" in line and "\ufffd" not in line


# ---------------------------------------------------------------------------------------------
# Integers
# ---------------------------------------------------------------------------------------------


def test_seq_stored_as_uint64_beyond_int64(tmp_path, one_vm):
    seq = pc.add(one_vm.column("seq").cast(pa.uint64()), pa.scalar(2**63 - 100, pa.uint64()))
    p = write_parquet(_set(one_vm, "seq", seq), tmp_path / "u64.parquet")
    line = bad(run_cli(["check", p]), p, row=True, says="column 'seq': value 9223372036854775808 out of range")
    assert "row 100:" in line  # the first seq >= 2^63, never a negative seq in a finding


def test_seq_stored_as_uint64_within_range_is_the_same_trace(tmp_path, one_vm):
    p = write_parquet(_set(one_vm, "seq", one_vm.column("seq").cast(pa.uint64())), tmp_path / "u.parquet")
    ref = write_parquet(one_vm, tmp_path / "ref.parquet")
    got, want = check_json(run_cli(["check", p, "-f", "json"])), check_json(run_cli(["check", ref, "-f", "json"]))
    assert (got["findings"], got["summary"]["steps"]) == (want["findings"], want["summary"]["steps"])


@pytest.mark.parametrize(("column", "value"), [("errno", 2**40), ("ts_ns", 2**64 - 1), ("error_id", 2**63)])
def test_integers_beyond_their_schema_type(tmp_path, one_vm, column, value):
    kind = pa.uint64() if value >= 2**63 else pa.int64()
    col = one_vm.column(column)
    values = col.cast(kind).to_pylist() if column != "errno" else [None] * one_vm.num_rows
    row = 11
    values[row] = value
    p = write_parquet(_set(one_vm, column, pa.array(values, kind)), tmp_path / f"{column}.parquet")
    line = bad(run_cli(["check", p]), p, row=True, says=f"column '{column}': value {value} out of range")
    assert f"row {row}:" in line


def test_report_and_check_with_error_id_at_int64_max(tmp_path, sample_table):
    eid = sample_table.column("error_id")
    big = pc.if_else(pc.is_valid(eid), pc.add(eid, pa.scalar(2**63 - 1 - 10_000)), pa.scalar(None, pa.int64()))
    p = write_parquet(_set(sample_table, "error_id", big), tmp_path / "eid.parquet")
    assert check_json(run_cli(["check", p, "-f", "json"]))["verdict"] == "pass"
    out = run_cli(["report", p, "-f", "json", "-o", tmp_path / "r.json"])
    assert_contract(out)
    assert out.code == 0, out.err
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["verdict"] == "pass"


# ---------------------------------------------------------------------------------------------
# Hive partitions and optional columns
# ---------------------------------------------------------------------------------------------


def test_a_hive_directory_disagreeing_with_the_vm_column(tmp_path, one_vm):
    d = tmp_path / "ds" / "vm=alpha"
    d.mkdir(parents=True)
    p = write_parquet(one_vm, d / "part-0.parquet")
    line = bad(run_cli(["check", tmp_path / "ds"]), p, says="column 'vm'")
    assert "'vm0'" in line and "vm=alpha" in line


def test_a_hive_directory_naming_the_vm_column_the_file_lacks(tmp_path, one_vm):
    d = tmp_path / "ds" / "vm=vm0"
    d.mkdir(parents=True)
    write_parquet(one_vm.drop(["vm"]), d / "part-0.parquet")
    got = check_json(run_cli(["check", tmp_path / "ds", "-f", "json"]))
    assert (got["verdict"], got["summary"]["steps"], got["summary"]["vms"]) == ("pass", one_vm.num_rows, 1)


def test_a_hive_directory_name_that_is_not_utf8(tmp_path, one_vm):
    d = tmp_path / "ds" / os.fsdecode(b"vm=\xe9")
    d.mkdir(parents=True)
    write_parquet(one_vm.drop(["vm"]), tmp_path / "part-0.parquet").rename(d / "part-0.parquet")
    bad(run_cli(["check", tmp_path / "ds"]), tmp_path / "ds", says="is not UTF-8")


@pytest.mark.parametrize("column", ["device", "cmd_seq", "thread_kind_optional"])
def test_report_and_replay_of_a_trace_lacking_an_optional_column(tmp_path, sample_table, column):
    if column == "thread_kind_optional":
        table = sample_table.drop(["host", "payload", "tid", "src_file", "src_line", "event_ts_ns", "req_id"])
    else:
        table = sample_table.drop([column])
    p = write_parquet(table, tmp_path / "t.parquet")
    for argv in (["report", p, "-o", tmp_path / "r.html"], ["report", p, "-f", "json", "-o", tmp_path / "r.json"],
                 ["replay", p, "--vm", "vm0"], ["replay", p, "--vm", "vm1", "--around", "200", "-f", "jsonl"],
                 ["check", p]):
        out = run_cli(argv)
        assert_contract(out)
        assert out.code in (0, 1), (argv, out.err)
    view = run_cli(["replay", p, "--vm", "vm1", "--around", "200", "--context", "3", "-f", "jsonl"])
    rows = [json.loads(line) for line in view.out.splitlines()]
    assert [r["seq"] for r in rows] == [197, 198, 199, 200, 201, 202, 203]



@pytest.mark.parametrize("variant", ["fixed", "qemu-10.0", "no-reset", "sync-stop"])
def test_a_trace_without_a_device_column_gains_no_error_finding(tmp_path, variant):
    """Without `device` an io-status row names no device: 'every device ok' must not hold
    vacuously (it made 5 false query-matches-runstate errors on the clean `fixed` sample)."""
    seg = SAMPLE.parent / variant / "seg-000000.parquet"
    table = pq.read_table(seg)
    p = write_parquet(table.drop(["device"]).replace_schema_metadata(table.schema.metadata), tmp_path / "t.parquet")
    def errors(path):
        return {(f["rule"], str(f["seq"])) for f in check_json(run_cli(["check", path, "-f", "json"]))["findings"]
                if f["severity"] == "error"}
    assert errors(p) <= errors(seg.parent)

# ---------------------------------------------------------------------------------------------
# Many tiny row groups: the same result, read in linear time (benchmarks/bench_rowgroups.py)
# ---------------------------------------------------------------------------------------------


def test_one_row_row_groups_give_the_same_result(tmp_path, sample_table):
    t = sample_table.slice(0, 3000)
    one = write_parquet(t, tmp_path / "one.parquet")
    tiny = write_parquet(t, tmp_path / "tiny.parquet", row_group_size=1)
    assert pq.ParquetFile(tiny).metadata.num_row_groups == 3000
    got, want = check_json(run_cli(["check", tiny, "-f", "json"])), check_json(run_cli(["check", one, "-f", "json"]))
    assert (got["findings"], got["summary"]["steps"], got["verdict"]) == (want["findings"], want["summary"]["steps"], want["verdict"])
    view = run_cli(["replay", tiny, "--vm", "vm0", "--around", "500", "--context", "2", "-f", "jsonl"])
    assert [json.loads(line)["seq"] for line in view.out.splitlines()] == [498, 499, 500, 501, 502]


# ---------------------------------------------------------------------------------------------
# Fuzzing: mutated bytes of a small valid file, mutated values of its table
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> bytes:
    table = pq.read_table(SAMPLE / "seg-000000.parquet").slice(0, 300)
    path = tmp_path_factory.mktemp("fuzz") / "small.parquet"
    pq.write_table(table, path, row_group_size=100)
    return path.read_bytes()


def _fuzz_contract(outcome, path: Path) -> None:
    """exit 0/1 with a findings document, or exit 2 with one line naming the file."""
    assert_contract(outcome, names=path if outcome.code == 2 else None)
    if outcome.code in (0, 1):
        doc = json.loads(outcome.out)
        assert doc["verdict"] in ("pass", "fail") and doc["summary"]["steps"] >= 0


_FUZZ = settings(derandomize=True, max_examples=FUZZ_EXAMPLES, deadline=None, phases=FUZZ_PHASES,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@_FUZZ
@given(data=st.data())
def test_fuzz_mutated_bytes(tmp_path, small_file, data):
    raw = bytearray(small_file)
    for _ in range(data.draw(st.integers(1, 8), label="mutations")):
        op = data.draw(st.sampled_from(["flip", "set", "cut", "splice"]), label="op")
        # Most of the interesting structure (footer, page headers) is near the end.
        pos = data.draw(st.integers(0, len(raw) - 1), label="pos")
        if data.draw(st.booleans(), label="near-footer"):
            pos = max(0, len(raw) - 1 - data.draw(st.integers(0, min(600, len(raw) - 1)), label="back"))
        if op == "flip":
            raw[pos] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        elif op == "set":
            raw[pos] = data.draw(st.integers(0, 255), label="byte")
        elif op == "cut" and len(raw) > 16:
            del raw[pos:pos + data.draw(st.integers(1, 64), label="len")]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=16), label="insert")
    p = tmp_path / "mutated.parquet"
    p.write_bytes(bytes(raw))
    with Unchanged(p):
        _fuzz_contract(run_cli(["check", p, "-f", "json"]), p)


_INT_VALUES = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, -1, 2**31, 2**62, 2**63 - 1, -(2**63)]))


@_FUZZ
@given(data=st.data())
def test_fuzz_mutated_tables(tmp_path, small_file, data):
    table = pq.read_table(pa.BufferReader(small_file))
    n = table.num_rows
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        name = data.draw(st.sampled_from(table.column_names), label="column")
        col = table.column(name)
        rows = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=5), label="rows")
        op = data.draw(st.sampled_from(["null", "value", "type", "drop", "bytes"]), label="op")
        if op == "drop":
            table = table.drop([name])
            continue
        if op == "type":
            kind = data.draw(st.sampled_from([pa.uint64(), pa.int32(), pa.float64(), pa.string(), pa.binary()]))
            with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
                table = _set(table, name, col.cast(kind))
            continue
        try:
            values = col.to_pylist()
        except UnicodeDecodeError:  # already holds invalid UTF-8 from an earlier mutation
            continue
        is_int = pa.types.is_integer(col.type)
        for r in rows:
            if op == "null":
                values[r] = None
            elif is_int:
                values[r] = data.draw(_INT_VALUES, label="int")
            else:
                values[r] = data.draw(st.text(max_size=12), label="text")
        if op == "bytes" and not is_int:
            raw = [None if v is None else v.encode("utf-8", "surrogatepass") for v in values]
            for r in rows:
                raw[r] = data.draw(st.binary(max_size=8), label="raw")
            arr = _binary_strings(raw)
        else:
            kind = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
            try:
                arr = pa.array(values, kind)
            except (pa.ArrowInvalid, OverflowError, UnicodeEncodeError):
                continue
        if pa.types.is_dictionary(col.type):
            arr = arr.dictionary_encode()
        table = _set(table, name, arr)
    p = tmp_path / "mutated.parquet"
    try:
        pq.write_table(table, p, row_group_size=data.draw(st.sampled_from([7, 100, 1000]), label="rg"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return
    _fuzz_contract(run_cli(["check", p, "-f", "json"]), p)
