"""A VM is identified by (run, host, vm) everywhere (issue #13, identity).

VM names repeat across a fleet: vm0 of two hosts, or of two recordings, is two VMs, never one
VM whose seqs collide. These tests build such traces and check what a user reads: verdicts,
findings (host / run in JSON and in the one-line renderings), episodes, and the errors of
inputs that contradict themselves.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analyzer import check, identity
from analyzer.render import render_junit
from analyzer.trace import load
from tests.analyzer.builders import TraceBuilder
from tests.analyzer.trace.test_load import broken_trace, write_dir
from tracer import tracedir
from tracer.errors import InputError, TraceSchemaError


def _on_host(table: pa.Table, host: str | None = None, run: str | None = None) -> pa.Table:
    """`table` with every row's host and run set."""
    for name, value in (("host", host), ("run", run)):
        if value is None:
            continue
        col = pa.array([value] * table.num_rows, pa.string()).dictionary_encode()
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, col)
        else:
            table = table.append_column(name, col)
    return table


def _doc(result) -> str:
    """The findings document and episodes, without the inputs (which name the files)."""
    d = result.to_dict()
    d.pop("inputs")
    return json.dumps(d, indent=2) + result.episodes.to_csv()


# --- the key --------------------------------------------------------------------------------


@pytest.mark.parametrize("parts", [
    ("vm0", None, None), ("vm0", "h1", None), ("vm0", None, "r1"), ("vm0", "h1", "r1"),
    ("a\x00", "b", None), ("a", "\x00b", None), ("a\x00\x00b", "", "c\x00\x01"), ("", "h", ""),
    ("vm\u202e", "h\n", "r\x1b[31m"),
])
def test_keys_split_back_into_their_parts(parts) -> None:
    vm, host, run = parts
    assert identity.split(identity.make(vm, host, run)) == (vm, host or None, run or None)


def test_keys_are_injective_and_bare_names_stay_names() -> None:
    parts = [(v, h, r) for v in ("a", "a\x00", "\x00a", "") for h in (None, "h", "h\x00", "\x00")
             for r in (None, "r", "\x00\x00")]
    keys = [identity.make(*p) for p in parts]
    assert len(set(keys)) == len(parts)
    assert identity.make("vm0") == "vm0" and identity.make("vm0", "", "") == "vm0"
    # A composite sorts by (run, host, vm).
    ordered = sorted(identity.make(v, h, r) for v, h, r in [("b", "h1", "r1"), ("a", "h2", "r1"), ("z", "h0", "r0")])
    assert [identity.split(k) for k in ordered] == [("z", "h0", "r0"), ("b", "h1", "r1"), ("a", "h2", "r1")]


# --- the same VM on two hosts -----------------------------------------------------------------


def _two_hosts_in_one_file(tmp_path: Path) -> Path:
    both = pa.concat_tables([_on_host(broken_trace().table(), "h1"), _on_host(broken_trace().table(), "h2")])
    path = tmp_path / "fleet.parquet"
    tracedir.write_table(both, path)
    return path


def test_one_vm_name_on_two_hosts_is_two_vms(tmp_path: Path) -> None:
    result = check([_two_hosts_in_one_file(tmp_path)])
    alone = check([_write(tmp_path / "one.parquet", broken_trace().table())])
    assert result.vms == 2
    assert not [f for f in result.findings if f.rule in ("seq-unique", "ts-monotonic-per-thread")]
    # Each host's findings are the one VM's findings, with the host.
    for host in ("h1", "h2"):
        mine = [(f.rule, f.vm, f.seq, f.message) for f in result.findings if f.host == host]
        assert mine == [(f.rule, f.vm, f.seq, f.message) for f in alone.findings]
    doc = result.to_dict()
    assert {(f["vm"], f["host"], f["run"]) for f in doc["findings"]} == {("vm0", "h1", None), ("vm0", "h2", None)}
    assert "host" not in alone.to_dict()["findings"][0]  # a trace without hosts keeps its bytes
    f = result.findings[0]
    assert f.where()[:2] == [("vm", "vm0"), ("host", "h1")]
    assert "vm=vm0 host=h1" in render_junit(result)
    # Episodes per host.
    eps = result.episodes
    assert list(eps.columns[:3]) == ["vm", "host", "run"]
    assert eps.groupby("host").size().to_dict() == {"h1": len(alone.episodes), "h2": len(alone.episodes)}
    # Sorted by (run, host, vm).
    assert [f.host for f in result.findings] == sorted(f.host for f in result.findings)


def _write(path: Path, table: pa.Table, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tracedir.write_table(table, path, **kw)
    return path


def test_findings_are_the_same_in_every_layout_of_a_multi_host_trace(tmp_path: Path) -> None:
    one = check([_two_hosts_in_one_file(tmp_path)])
    for host in ("h1", "h2"):  # hive partitions host=/vm=, the files lacking both columns
        table = broken_trace().table().drop_columns(["vm", "host"])
        _write(tmp_path / "ds" / f"host={host}" / "vm=vm0" / "part-0.parquet", table, row_group_size=7)
    assert _doc(check([tmp_path / "ds"])) == _doc(one)
    for host in ("h1", "h2"):  # one file per host, host in the column
        _write(tmp_path / "per-host" / f"{host}.parquet", _on_host(broken_trace().table(), host))
    assert _doc(check([tmp_path / "per-host"])) == _doc(one)


def test_a_host_directory_that_its_file_contradicts_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "ds" / "host=h1" / "t.parquet", _on_host(broken_trace().table(), "h2"))
    with pytest.raises(TraceSchemaError) as exc:
        load([tmp_path / "ds"])
    assert str(exc.value).splitlines() == [
        f"{path}, row 0: column 'host': the file's host 'h2' disagrees with its directory host=h1 (row group 0)"]


def test_files_that_disagree_on_a_column_type_are_an_error_naming_both(tmp_path: Path) -> None:
    good = _write(tmp_path / "ds" / "a.parquet", broken_trace("vm0").table())
    table = broken_trace("vm1").table()
    table = table.set_column(table.column_names.index("host"), "host", pa.array([7] * table.num_rows, pa.int64()))
    bad = tmp_path / "ds" / "b.parquet"
    pq.write_table(table, bad)
    with pytest.raises(InputError) as exc:
        load([tmp_path / "ds"])
    [line] = str(exc.value).splitlines()
    assert str(bad) in line and str(good) in line and "column 'host'" in line


# --- two runs of one VM -----------------------------------------------------------------------


def test_two_recordings_of_one_vm_are_two_runs(tmp_path: Path) -> None:
    for name in ("run1", "run2"):
        write_dir(broken_trace().table(), tmp_path / name, segment_rows=10)
    result = check([tmp_path / "run1", tmp_path / "run2"])
    assert not [f for f in result.findings if f.rule in ("seq-unique", "ts-monotonic-per-thread")]
    runs = {f["run"] for f in result.to_dict()["findings"]}
    assert runs == {str(tmp_path / "run1"), str(tmp_path / "run2")}
    assert set(result.episodes["run"]) == runs
    # One recording alone names no run: its output is what it always was.
    assert "run" not in check([tmp_path / "run1"]).to_dict()["findings"][0]


def test_a_run_column_or_partition_names_the_run(tmp_path: Path) -> None:
    _write(tmp_path / "ds" / "run=monday" / "t.parquet", broken_trace().table())
    _write(tmp_path / "ds" / "run=tuesday" / "t.parquet", broken_trace().table())
    hive = check([tmp_path / "ds"])
    assert {f.run for f in hive.findings} == {"monday", "tuesday"}
    assert not [f for f in hive.findings if f.rule == "seq-unique"]
    cols = pa.concat_tables([_on_host(broken_trace().table(), run="monday"),
                             _on_host(broken_trace().table(), run="tuesday")])
    assert _doc(check([_write(tmp_path / "runs.parquet", cols)])) == _doc(hive)


# --- the same steps twice ---------------------------------------------------------------------


def test_a_file_copied_twice_is_one_seq_unique_finding_naming_both(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.parquet", broken_trace().table())
    b = tmp_path / "b.parquet"
    shutil.copy(a, b)
    result = check([a, b])
    found = [f for f in result.findings if f.rule == "seq-unique"]
    assert len(found) == 1
    rows = broken_trace().table().num_rows
    assert found[0].message.startswith(f"{rows} seqs between 0 and {rows - 1} occur in each of {a}, {b}")
    assert found[0].seq == (0, rows - 1)
    # The rules judge the steps once: the other findings are those of one copy.
    alone = check([a])
    assert [f for f in result.findings if f.rule != "seq-unique"] == alone.findings
    assert result.episodes.equals(alone.episodes)


def test_two_unidentified_recordings_of_one_vm_do_not_flood(tmp_path: Path) -> None:
    """Two files of vm0 with no host and no run are one VM: their seqs collide, which is one
    finding, and the clock going back between the interleaved copies is folded into it."""
    first = TraceBuilder("vm0")
    first.start()
    first.io(n=30)
    later = TraceBuilder("vm0")
    later.start()
    later.io(n=30)
    t1 = first.table()
    t2 = later.table()
    t2 = t2.set_column(1, "ts_ns", pa.array([t + 10**12 for t in t2.column("ts_ns").to_pylist()], pa.int64()))
    a, b = _write(tmp_path / "a.parquet", t1), _write(tmp_path / "b.parquet", t2)
    result = check([a, b])
    integrity = [f for f in result.findings if f.rule in ("seq-unique", "ts-monotonic-per-thread")]
    assert [f.rule for f in integrity] == ["seq-unique"]
    assert str(a) in integrity[0].message and str(b) in integrity[0].message
    assert "clock goes back between the copies" in integrity[0].message
