"""``virsh qemu-monitor-event --loop [--timestamp]``: the QMP events libvirt relays.

The virsh output is derived from the real QEMU 7.2 ``a-stop-eio-dataplane/events.jsonl`` by
`tests.analyzer.importers.hostlog_inputs.monitor_events` (re-printed as virsh prints each
event); it must import to the ``qmp_event`` rows the QMP stream itself gives.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from analyzer.cli import main
from analyzer.importers import import_traces
from analyzer.importers.pipeline import parse_input
from tests.analyzer.guarantees import check_guarantees as check
from tests.analyzer.importers import hostlog_inputs as derive


@pytest.mark.parametrize("timestamp", [False, True])
def test_monitor_events_import_as_the_qmp_events(dataplane, tmp_path, timestamp):
    orig = tmp_path / "orig.parquet"
    import_traces([dataplane / "events.jsonl"], orig, vm="vm-a")
    original = pq.read_table(orig)
    path = tmp_path / "events.txt"
    path.write_text(derive.monitor_events(dataplane / "events.jsonl", "vm-a", timestamp=timestamp))
    assert parse_input(path).format == "qemu-monitor-event"
    out = tmp_path / "t.parquet"
    import_traces([path], out)
    table = pq.read_table(out)
    same = ["seq", "vm", "kind", "name", "device", "op", "errno", "action", "thread", "src_line"]
    if not timestamp:  # the QMP timestamp: the same times, the same identity
        same += ["ts_ns", "event_ts_ns", "payload"]
    else:  # virsh's time, to the millisecond; the QMP timestamp is not printed
        assert table["ts_ns"].to_pylist() == [t // 1_000_000 * 1_000_000 for t in original["ts_ns"].to_pylist()]
        assert set(table["event_ts_ns"].to_pylist()) == {None}
    for column in same:
        assert table[column].to_pylist() == original[column].to_pylist(), column
    assert table["name"].to_pylist().count("BLOCK_IO_ERROR") == 6
    result = check([out])
    assert result.verdict == "pass" and result.findings == []


def test_bad_event_data_names_its_line(write, capsys):
    good = "event STOP at 1795625380.545651 for domain 'vm-a': <null>\n"
    path = write("events.txt", good + "event BLOCK_IO_ERROR at 1795625380.545036 for domain 'vm-a': {\"device\":\n")
    out = path.parent / "t.parquet"
    with pytest.raises(SystemExit) as exc:
        main(["import", str(path), "-o", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "events.txt, line 2:" in err and "bad JSON in the event data" in err


def test_older_virsh_that_prints_the_domain_bare_is_read(write):
    path = write("mon.log", 'event BLOCK_IO_ERROR at 1551434400.000100 for domain vm-a: '
                            '{"device":"drive-virtio-disk0","nospace":false,"reason":"Input/output error",'
                            '"operation":"write","action":"stop"}\n'
                            "event STOP at 1551434400.000200 for domain vm-a: <null>\n")
    parsed = parse_input(path)
    assert parsed.format == "qemu-monitor-event"
    [part] = parsed.parts
    assert part.vm == "vm-a" and part.rows.name == ["BLOCK_IO_ERROR", "STOP"]
    assert part.rows.ts == [1551434400000100000, 1551434400000200000]
