"""A VM is (run, host, vm) on the command line (issue #13): the same VM name on two hosts or in
two recordings is two VMs for `check`, `report` and `replay`, and inputs that contradict
themselves are one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analyzer import check
from analyzer.cli import main
from tests.analyzer.trace.test_load import broken_trace
from tracer import tracedir

VM = "vm-a-stop-eio-file"


def run(argv, capsys):
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(params=["libvirt-9.0", "libvirt-11.3"])
def two_hosts(request, samples_dir: Path, tmp_path: Path, capsys) -> Path:
    """The same libvirt log imported for host h1 and for host h2, as a hive dataset."""
    libvirt_log = samples_dir / request.param / "a-stop-eio" / "libvirtd.log"
    ds = tmp_path / "ds"
    for host in ("h1", "h2"):
        code, _, err = run(["import", libvirt_log, "--host", host, "-o", ds / f"host={host}" / "t.parquet",
                            "--parents", "-q"], capsys)
        assert code == 0, err
    return ds


def test_one_log_imported_for_two_hosts_passes(two_hosts: Path, capsys) -> None:
    code, out, _ = run(["check", two_hosts], capsys)
    assert code == 0 and out.strip().splitlines()[-1].startswith("PASS: 0 error finding(s)")
    code, out, _ = run(["check", two_hosts, "-f", "json"], capsys)
    doc = json.loads(out)
    assert doc["verdict"] == "pass" and doc["summary"]["vms"] == 2
    eps = check([two_hosts]).episodes
    per_host = eps.groupby("host").size().to_dict()
    assert set(per_host) == {"h1", "h2"} and per_host["h1"] == per_host["h2"] > 0
    assert set(eps["vm"]) == {VM}


def test_replay_asks_which_host(two_hosts: Path, capsys) -> None:
    code, out, err = run(["replay", two_hosts, "--vm", VM], capsys)
    assert (code, out) == (2, "")
    assert err.strip().splitlines() == [
        f"blkreplay: error: VM '{VM}' is in the trace 2 times: {VM} (host h1); {VM} (host h2); "
        f"choose one with --host"]
    code, out, _ = run(["replay", two_hosts, "--vm", VM, "--host", "h2", "-f", "jsonl"], capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and rows and {r["vm"] for r in rows} == {f"{VM} (host h2)"}
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)  # one VM's steps, not two
    code, out, _ = run(["replay", two_hosts, "--vm", VM, "--host", "h1", "--around", "5", "--context", "1"], capsys)
    assert code == 0 and [ln.split()[0] for ln in out.strip().splitlines()[1:]] == ["4", "5", "6"]
    code, _, err = run(["replay", two_hosts, "--vm", VM, "--host", "h3"], capsys)
    assert code == 2 and "no VM named" in err and f"{VM} (host h1)" in err


def _record(out: Path, capsys) -> None:
    code, _, err = run(["record", "-o", out, "--seed", "4", "--duration", "0.02", "--error-rate", "0.02",
                        "--variant", "no-reset", "--vms", "1"], capsys)
    assert code == 0, err


def test_two_recordings_of_vm0_are_two_runs(tmp_path: Path, capsys) -> None:
    first, second = tmp_path / "run1", tmp_path / "run2"
    _record(first, capsys)
    _record(second, capsys)
    code, out, _ = run(["check", first, second, "-f", "json"], capsys)
    doc = json.loads(out)
    assert code == 1 and doc["summary"]["vms"] == 2
    rules = {f["rule"] for f in doc["findings"]}
    assert "seq-unique" not in rules and "ts-monotonic-per-thread" not in rules
    assert {(f["vm"], f["host"], f["run"]) for f in doc["findings"]} == {
        ("vm0", None, str(first)), ("vm0", None, str(second))}
    code, out, _ = run(["check", first, second, "-f", "junit"], capsys)
    assert f"vm=vm0 run={first} device=" in out and f"vm=vm0 run={second} device=" in out
    code, _, err = run(["report", first, second, "-o", tmp_path / "r.md", "-q"], capsys)
    assert code == 1, err
    md = (tmp_path / "r.md").read_text()
    # One row per run in the per-VM table, each with its own steps and findings.
    rows = [ln for ln in md.splitlines() if ln.startswith("| vm0 \\(run ") and ln.count("|") == 10]
    assert [r.split("|")[1].strip()[-6:] for r in rows] == ["run1\\)", "run2\\)"]


def test_a_host_directory_contradicted_by_its_file_is_one_line(tmp_path: Path, capsys) -> None:
    table = broken_trace().table()
    table = table.set_column(table.column_names.index("host"), "host",
                             pa.array(["h2"] * table.num_rows, pa.string()).dictionary_encode())
    path = tmp_path / "ds" / "host=h1" / "t.parquet"
    path.parent.mkdir(parents=True)
    tracedir.write_table(table, path)
    code, out, err = run(["check", tmp_path / "ds"], capsys)
    assert (code, out) == (2, "")
    assert err.strip().splitlines() == [
        f"blkreplay: error: {path}, row 0: column 'host': the file's host 'h2' disagrees with its "
        f"directory host=h1 (row group 0)"]


def test_files_disagreeing_on_a_column_type_are_one_line_naming_both(tmp_path: Path, capsys) -> None:
    (tmp_path / "ds").mkdir()
    good = tmp_path / "ds" / "a.parquet"
    tracedir.write_table(broken_trace("a").table(), good)
    table = broken_trace("b").table()
    table = table.set_column(table.column_names.index("device"), "device",
                             pa.array([1] * table.num_rows, pa.int64()))
    bad = tmp_path / "ds" / "b.parquet"
    pq.write_table(table, bad)
    code, out, err = run(["check", tmp_path / "ds"], capsys)
    assert (code, out) == (2, "")
    assert err.strip().splitlines() == [
        f"blkreplay: error: {bad}: column 'device': wrong type int64, expected dictionary<string>, but "
        f"{good} of the same trace has dictionary<string>: the files "
        f"of one trace must agree on each column's type"]
