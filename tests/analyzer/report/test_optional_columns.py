"""A valid trace may lack any optional column (an import that never knew `cmd_seq`, a recorder
without `device`): the report of it must still be written, in every format (issue #13)."""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from analyzer.report import build_report, render
from tests.analyzer.report.fixtures import TraceBuilder
from tracer.schema import COLUMNS

OPTIONAL = [c.name for c in COLUMNS if not c.required]


def _table():
    b = TraceBuilder()
    for vm in ("vm0", "vm1"):
        b.start(vm)
    for i in range(2):
        b.error_cycle("vm0", "drive0", i + 1)
    b.error_cycle("vm1", "drive1", 1, stop=False)  # a finding, so a context window is drawn
    return b.table()


@pytest.mark.parametrize("column", OPTIONAL)
def test_a_trace_without_an_optional_column_is_reported(tmp_path, column):
    table = _table()
    if column in table.column_names:
        table = table.drop_columns([column])
    path = tmp_path / f"no-{column}.parquet"
    pq.write_table(table, path)
    rep = build_report([path])
    assert rep.result.steps == table.num_rows
    doc = json.loads(render(rep, "json"))
    assert doc["check"]["summary"]["steps"] == table.num_rows
    assert b"Verdict" in render(rep, "html") and b"Verdict" in render(rep, "md")


def test_files_that_differ_in_their_optional_columns_are_reported(tmp_path):
    table = _table()
    (tmp_path / "t").mkdir()
    pq.write_table(table.filter(pc.equal(table.column("vm"), "vm0")), tmp_path / "t" / "a.parquet")
    rest = table.filter(pc.equal(table.column("vm"), "vm1"))
    pq.write_table(rest.drop_columns([c for c in ("cmd_seq", "device", "host") if c in rest.column_names]),
                   tmp_path / "t" / "b.parquet")
    rep = build_report([tmp_path / "t"])
    assert rep.result.steps == table.num_rows
    assert "vm1" in render(rep, "md").decode()
