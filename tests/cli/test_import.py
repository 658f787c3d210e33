"""`blkreplay import` on the command line."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from analyzer.cli import main


def run(argv, capsys):
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_import_says_what_it_recognised(dataplane, tmp_path, capsys):
    out = tmp_path / "vm.parquet"
    code, stdout, _ = run(
        ["import", str(dataplane / "qmp-transcript.jsonl"), str(dataplane / "trace.log"), "-o", str(out), "--vm", "cap-a", "--host", "h1"],
        capsys,
    )
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0] == f"{dataplane / 'qmp-transcript.jsonl'}: qmp (212 lines, 212 rows) -> cap-a"
    assert lines[1] == f"{dataplane / 'trace.log'}: qemu-log (1777 lines, 1757 rows) -> cap-a"
    assert lines[2] == f"wrote 1757 rows (1 VM) -> {out}"
    table = pq.read_table(out)
    assert set(table.column("vm").to_pylist()) == {"cap-a"}
    assert set(table.column("host").to_pylist()) == {"h1"}


def test_import_to_a_directory_quietly(libvirt_log, tmp_path, capsys):
    code, stdout, stderr = run(["import", str(libvirt_log), "-o", str(tmp_path / "d"), "-q"], capsys)
    assert (code, stdout, stderr) == (0, "", "")
    assert (tmp_path / "d" / "vm=vm-a-stop-eio-file" / "part-0.parquet").is_file()


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--format", "xml"], "unknown format 'xml' (choose from auto, qmp, qemu-log, libvirt-log, domain-log, virsh-events, journal-json, journal-export, journal-short, kubevirt-log, qemu-stap, qemu-monitor-event)"),
        (["--vm", "nope"], "no VM named 'nope' in the libvirt log (found: vm-a-stop-eio-file)"),
    ],
)
def test_bad_options_exit_2(libvirt_log, tmp_path, capsys, argv, message):
    code, _, stderr = run(["import", str(libvirt_log), "-o", str(tmp_path / "x.parquet"), *argv], capsys)
    assert code == 2
    assert message in stderr
    assert not (tmp_path / "x.parquet").exists()


def test_skip_bad_is_reported(write, tmp_path, capsys):
    path = write("t.log", "1@1.0:runstate_set current_run_state 6 (prelaunch) new_state 9 (running)\n???\n")
    code, stdout, _ = run(["import", str(path), "-o", str(tmp_path / "o.parquet"), "--skip-bad"], capsys)
    assert code == 0
    assert "qemu-log (2 lines, 1 rows, 1 skipped)" in stdout
