"""KubeVirt virt-launcher pod logs: libvirt's lines wrapped in the launcher's JSON records.

The pod log is derived from the real libvirt 9.0 ``libvirtd.log`` by
`tests.analyzer.importers.hostlog_inputs.kubevirt` (each line re-printed as KubeVirt's
``LogLibvirtLogLine`` prints it, the launcher's own records interleaved); it must import to
the same events, in the same order, as the log itself, each row naming the pod log's line.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from analyzer import check
from analyzer.cli import main
from analyzer.importers import import_traces
from analyzer.importers.pipeline import parse_input
from tests.analyzer.importers import hostlog_inputs as derive
from tests.analyzer.importers.test_journald import SAME


def test_pod_log_imports_as_the_libvirt_log(libvirt_log, tmp_path):
    orig = tmp_path / "orig.parquet"
    import_traces([libvirt_log], orig)
    original = pq.read_table(orig)
    path = tmp_path / "virt-launcher.log"
    path.write_text(derive.kubevirt(libvirt_log))
    assert parse_input(path).format == "kubevirt-log"
    out = tmp_path / "t.parquet"
    import_traces([path], out)
    table = pq.read_table(out)
    assert table.num_rows == original.num_rows > 900
    for column in SAME:
        assert table[column].to_pylist() == original[column].to_pylist(), column
    # one launcher record before the libvirt lines: line k of the log is line k + 1
    assert table["src_line"].to_pylist() == [n + 1 for n in original["src_line"].to_pylist()]
    lines = path.read_text().split("\n")
    first = json.loads(lines[table["src_line"][0].as_py() - 1])
    assert first["subcomponent"] == "libvirt" and first["msg"].startswith("QEMU_MONITOR_")
    result = check([out])
    assert result.verdict == "pass" and result.findings == []


def _record(msg: str, **extra: str) -> str:
    rec = {"component": "virt-launcher", "level": "info", "msg": msg, "subcomponent": "libvirt",
           "thread": "46", "timestamp": "2024-03-01T10:00:00.123000Z", **extra}
    return json.dumps(rec) + "\n"


def test_an_unnamed_monitor_takes_the_domain_of_the_launcher(write, tmp_path):
    event = 'QEMU_MONITOR_RECV_EVENT: mon=0x7f01 event={"timestamp": {"seconds": 1709287200, "microseconds": 1}, "event": "STOP"}'
    text = (
        json.dumps({"component": "virt-launcher", "kind": "Domain", "level": "info", "msg": "Domain defined.",
                    "name": "testvm", "namespace": "default", "timestamp": "2024-03-01T10:00:00.000000Z"}) + "\n"
        + _record("QEMU_MONITOR_NEW: mon=0x7f01 refs=2 fd=20", pos="qemuMonitorOpenInternal:623")
        + _record(event, pos="qemuMonitorJSONIOProcessLine:205")
    )
    path = write("pod.log", text)
    summary = import_traces([path], tmp_path / "t.parquet")
    assert list(summary.vm_rows) == ["default_testvm"]
    table = pq.read_table(tmp_path / "t.parquet")
    assert table["name"].to_pylist() == ["STOP"] and table["src_line"].to_pylist() == [3]
    assert table["ts_ns"][0].as_py() == 1709287200_123000000  # libvirt's time, as the launcher printed it


@pytest.mark.parametrize("bad", ["panic: runtime error: invalid memory address", '{"component": "virt-launcher", "msg": "x"'])
def test_a_line_that_is_not_json_names_its_line(write, capsys, bad):
    path = write("pod.log", _record("hostname: testvm") + bad + "\n")
    out = path.parent / "t.parquet"
    with pytest.raises(SystemExit) as exc:
        main(["import", str(path), "-o", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pod.log, line 2:" in err and "not a KubeVirt pod log record" in err
    assert not out.exists()
