"""QEMU trace events printed by SystemTap (``qemu-trace-stap run``, QEMU's dtrace backend).

The stap output is derived from the real QEMU 7.2 ``a-stop-eio-dataplane/trace.log`` by
`tests.analyzer.importers.hostlog_inputs.stap` (re-printed as tracetool's ``log_stap.py``
probes print: ``PID@NANOSECONDS name args``); it must import to the same events, in the same
order and at the same times, as the log backend's trace, with no thread ids (stap prints
the pid for every thread).
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from analyzer import check
from analyzer.cli import main
from analyzer.importers import import_traces
from analyzer.importers.pipeline import parse_input
from tests.analyzer.importers import hostlog_inputs as derive

SAME = ("seq", "ts_ns", "kind", "device", "req_id", "op", "errno", "action", "iostatus", "runstate",
        "prev_runstate", "name", "event_ts_ns", "cmd_seq")


def test_stap_output_imports_as_the_trace_log(dataplane, tmp_path):
    orig = tmp_path / "orig.parquet"
    import_traces([dataplane / "trace.log"], orig)
    original = pq.read_table(orig)
    text, where = derive.stap(dataplane / "trace.log")
    path = tmp_path / "stap.txt"
    path.write_text(text)
    assert parse_input(path).format == "qemu-stap"
    out = tmp_path / "t.parquet"
    import_traces([path], out)
    table = pq.read_table(out)
    assert table.num_rows == original.num_rows > 1000
    for column in SAME:
        assert table[column].to_pylist() == original[column].to_pylist(), column
    assert table["src_line"].to_pylist() == [where[n] for n in original["src_line"].to_pylist()]
    # the pid is no thread: no row claims one
    assert set(table["tid"].to_pylist()) == {None}
    assert "main" not in set(table["thread"].to_pylist())
    kinds = table["kind"].to_pylist()
    assert kinds.count("io_complete") == original["kind"].to_pylist().count("io_complete") > 0
    result = check([out])
    assert result.verdict == "pass" and result.findings == []


def test_stap_chatter_is_left_and_a_bad_line_is_named(write, capsys, tmp_path):
    good = "9676@1795625377558687000 runstate_set current_run_state 6 (prelaunch) new_state 9 (running)\n"
    path = write("stap.txt", good + "Running script, <Ctrl>-c to quit\n" + good)
    import_traces([path], tmp_path / "ok.parquet")
    table = pq.read_table(tmp_path / "ok.parquet")
    assert table["kind"].to_pylist() == ["runstate", "runstate"] and table["src_line"].to_pylist() == [1, 3]
    assert table["ts_ns"][0].as_py() == 1795625377558687000
    bad = write("bad.txt", good + "9676@1795625377558690000 runstate_set\n")
    out = tmp_path / "t.parquet"
    with pytest.raises(SystemExit) as exc:
        main(["import", str(bad), "-o", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.txt, line 2:" in err and "runstate_set without its run states" in err
