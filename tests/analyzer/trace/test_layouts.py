"""The same findings, byte for byte, whatever the Parquet layout, unit plan, engine or workers.

A trace of several VMs with findings of several rules is laid out as a recorder directory, one
file sorted by (vm, seq) with row groups crossing VM boundaries, the same rows sorted by time
across VMs (every VM in every row group), many files cut across VMs, hive ``vm=`` partitions
and row groups of a few rows; each is checked in one process and on worker processes and Dask,
with units small enough that row groups are shared between units.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from analyzer import check, load
from analyzer.trace import files
from tests.analyzer.builders import TraceBuilder, write_dir
from tests.analyzer.trace.test_load import broken_trace, doc
from tracer.schema import from_pylist

VMS = 5


def _table() -> pa.Table:
    rows = []
    for i in range(VMS):
        b = broken_trace(f"vm{i}") if i % 2 == 0 else _clean(f"vm{i}")
        for r in b.rows:
            r["ts_ns"] += 137 * i  # VMs interleave in time
        rows.extend(b.rows)
    return from_pylist(rows, "sim")


def _clean(vm: str) -> TraceBuilder:
    b = TraceBuilder(vm)
    b.start()
    b.io(n=7)
    b.error(1)
    b.main_loop()
    b.cont()
    b.io(n=4)
    return b


def _sorted(table: pa.Table, keys: list[str]) -> pa.Table:
    keyed = pa.table({k: table.column(k).cast(pa.string()) if k == "vm" else table.column(k) for k in keys})
    return table.take(pc.sort_indices(keyed, [(k, "ascending") for k in keys]))


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("layouts")
    table = _table()
    by_vm = _sorted(table, ["vm", "seq"])
    by_time = _sorted(table, ["ts_ns", "vm", "seq"])
    out = {"recorder": tmp / "rec"}
    for i in range(VMS):  # the recorder: whole VMs per segment directory
        vm = f"vm{i}"
        write_dir(by_vm.filter(pc.equal(by_vm.column("vm").cast(pa.string()), vm)), out["recorder"] / vm,
                  segment_rows=1000)
    out["sorted"] = tmp / "sorted.parquet"
    pq.write_table(by_vm, out["sorted"], row_group_size=23)  # groups cross VM boundaries
    out["time"] = tmp / "time.parquet"
    pq.write_table(by_time, out["time"], row_group_size=17)  # every VM in every group
    out["tiny"] = tmp / "tiny.parquet"
    pq.write_table(by_time, out["tiny"], row_group_size=3)
    out["many"] = tmp / "many"  # files cut across VMs, in time order
    out["many"].mkdir()
    for i, start in enumerate(range(0, by_time.num_rows, 29)):
        pq.write_table(by_time.slice(start, 29), out["many"] / f"part-{i:03d}.parquet", row_group_size=10)
    out["hive"] = tmp / "hive"
    for i in range(VMS):
        vm = f"vm{i}"
        part = by_vm.filter(pc.equal(by_vm.column("vm").cast(pa.string()), vm))
        (out["hive"] / f"vm={vm}").mkdir(parents=True)
        pq.write_table(part.drop_columns(["vm"]), out["hive"] / f"vm={vm}" / "part-0.parquet",
                       row_group_size=11)
    return out


@pytest.fixture(scope="module")
def reference(layouts) -> str:
    result = check([layouts["recorder"]])
    assert {f.rule for f in result.findings} >= {"resume-before-retry-error", "iostatus-before-event"}
    assert {f.vm for f in result.findings} == {"vm0", "vm2", "vm4"}
    return doc(result)


@pytest.mark.parametrize("layout", ["sorted", "time", "tiny", "many", "hive"])
def test_every_layout_gives_the_same_findings(layouts, reference, layout) -> None:
    assert doc(check([layouts[layout]])) == reference


@pytest.mark.parametrize("layout", ["sorted", "time", "many"])
def test_units_sharing_row_groups_give_the_same_findings(layouts, reference, layout) -> None:
    trace = load([layouts[layout]], unit_rows=40)  # several units over shared row groups
    units = trace.split(3)
    assert len(units) > 1
    assert any(u.shared(rg) for u in units for rg in u.row_groups)
    assert sorted(v for u in units for v in u.vms) == trace.vms  # each VM in exactly one unit
    assert doc(check(trace)) == reference
    assert doc(check(trace, workers=2)) == reference
    assert doc(check(trace, workers=3)) == reference
    assert doc(check(trace, engine="dask", workers=2)) == reference


def test_a_time_sorted_file_splits_for_the_workers(layouts) -> None:
    trace = load([layouts["time"]])
    assert len(trace.units) == 1  # small: one unit in one process
    spread = load([layouts["time"]], unit_rows=40)
    assert len(spread.split(2)) == 1  # two units would each read the whole file
    assert len(spread.split(3)) == 3  # one unit a worker


def test_a_vm_sorted_file_splits_at_its_row_groups(layouts, monkeypatch) -> None:
    monkeypatch.setattr(files, "COALESCE_ROWS", 1)  # tiny row groups read one by one
    trace = load([layouts["sorted"]], unit_rows=40)
    assert len(trace.units) > 2
    read = sum(rg.rows for u in trace.units for rg in u.row_groups)
    assert read < 2 * trace.rows  # only the groups at the cuts are read twice
    assert doc(check(trace, workers=2)) == doc(check([layouts["recorder"]]))


def test_in_one_process_a_row_group_at_a_cut_is_decoded_once(layouts, monkeypatch) -> None:
    monkeypatch.setattr(files, "COALESCE_ROWS", 1)
    trace = load([layouts["sorted"]], unit_rows=40)
    cuts = {(rg.file, rg.index) for u in trace.units for rg in u.row_groups if u.shared(rg)}
    assert cuts
    decoded: list[tuple[str, int]] = []
    real = files.read_row_group

    def counting(tf, index, columns, count=1):
        decoded.append((tf.path, index))
        return real(tf, index, columns, count)

    monkeypatch.setattr(files, "read_row_group", counting)
    monkeypatch.setattr("analyzer.trace.scan.read_row_group", counting)
    assert doc(check(trace)) == doc(check([layouts["recorder"]]))
    mine = [d for d in decoded if d[0] == str(layouts["sorted"])]
    assert len(mine) == len(set(mine)) == len(trace.row_groups)


def test_the_table_of_a_shared_layout_has_every_row_once(layouts, monkeypatch) -> None:
    monkeypatch.setattr(files, "COALESCE_ROWS", 1)
    trace = load([layouts["sorted"]], unit_rows=40)
    assert any(u.shared(rg) for u in trace.units for rg in u.row_groups)
    whole = load([layouts["recorder"]]).table(columns=["vm", "seq", "kind"])
    assert trace.table(columns=["vm", "seq", "kind"]).equals(whole)
    assert trace.table("vm3", columns=["seq"]).num_rows == whole.filter(
        pc.equal(whole.column("vm"), "vm3")).num_rows


def test_hive_host_vm_date_partitions_give_the_same_findings(tmp_path) -> None:
    table = _table()
    hosts = pa.array([f"h{int(v[2:]) % 2}" for v in table.column("vm").cast(pa.string()).to_pylist()])
    table = table.set_column(table.schema.get_field_index("host"), "host",
                             hosts.dictionary_encode().cast(table.schema.field("host").type))
    one = tmp_path / "one.parquet"
    pq.write_table(_sorted(table, ["vm", "seq"]), one)
    for i in range(VMS):  # each VM over two days: several files a VM, no vm or host column
        part = table.filter(pc.equal(table.column("vm").cast(pa.string()), f"vm{i}"))
        half = part.num_rows // 2
        for day, rows in (("2026-01-01", part.slice(0, half)), ("2026-01-02", part.slice(half))):
            d = tmp_path / "hive" / f"host=h{i % 2}" / f"vm=vm{i}" / f"date={day}"
            d.mkdir(parents=True)
            pq.write_table(rows.drop_columns(["vm", "host"]), d / "part-0.parquet", row_group_size=9)
    reference = check([one])
    assert doc(check([tmp_path / "hive"])) == doc(reference)
    assert doc(check(load([tmp_path / "hive"], unit_rows=40), workers=2)) == doc(reference)


def test_a_clock_going_back_after_row_groups_read_in_time_order_is_found(tmp_path, monkeypatch) -> None:
    """Row groups read in time order keep each thread's last step without reordering their
    rows; a later group where a thread's clock goes back below that step is a finding, the same
    as in a file sorted by (vm, seq)."""
    monkeypatch.setattr(files, "COALESCE_ROWS", 1)  # tiny row groups read one by one
    size = 17
    by_time = _sorted(_table(), ["ts_ns", "vm", "seq"])
    rows = by_time.to_pylist()
    start = (len(rows) // size - 1) * size  # the last whole row group
    last_of: dict[tuple[str, str], int] = {}
    for i, r in enumerate(rows[:start]):
        last_of[(r["vm"], r["thread"])] = i
    # a row that is its thread's first in that group, the thread's previous step an earlier group's
    i = next(i for i in range(start, len(rows)) if (rows[i]["vm"], rows[i]["thread"]) in last_of
             and all((r["vm"], r["thread"]) != (rows[i]["vm"], rows[i]["thread"]) for r in rows[start:i]))
    before = rows[last_of[(rows[i]["vm"], rows[i]["thread"])]]
    rows[i]["ts_ns"] = before["ts_ns"] - 1
    edited = from_pylist(rows, "sim")
    pq.write_table(edited, tmp_path / "time.parquet", row_group_size=size)
    pq.write_table(_sorted(edited, ["vm", "seq"]), tmp_path / "sorted.parquet")
    found = check([tmp_path / "time.parquet"])
    back = [f for f in found.findings if f.rule == "ts-monotonic-per-thread"]
    assert [(f.vm, f.thread, f.seq) for f in back] == [(rows[i]["vm"], rows[i]["thread"],
                                                        (before["seq"], rows[i]["seq"]))]
    assert doc(found) == doc(check([tmp_path / "sorted.parquet"]))
