"""`blkreplay export`: writes what `analyzer.export` makes, says where in one line, and refuses
a bad output or a missing extra with one line and exit 2, writing nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import analyzer.export as export
from analyzer.cli import main
from analyzer.export.perfetto import PROTOS

pytest.importorskip(PROTOS)

TRACES = Path(__file__).resolve().parents[2] / "traces"
SAMPLE = TRACES / "sample"


def run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_perfetto_file_is_the_library_export_and_the_summary_says_so(tmp_path, capsys):
    out = tmp_path / "fleet.pftrace"
    code, stdout, err = run(["export", SAMPLE, "--to", "perfetto", "-o", out], capsys)
    assert (code, stdout) == (0, "")
    assert err.startswith("perfetto export (1 hosts, 3 vms, ") and err.rstrip().endswith(f"written to {out}")
    export.perfetto(SAMPLE, tmp_path / "lib.pftrace")
    assert out.read_bytes() == (tmp_path / "lib.pftrace").read_bytes()


def test_parquet_directory_and_force(tmp_path, capsys):
    out = tmp_path / "tables"
    code, _, err = run(["export", SAMPLE, "--to", "parquet", "-o", out, "-q"], capsys)
    assert (code, err) == (0, "")
    assert sorted(p.name for p in out.iterdir()) == [
        "episodes.parquet", "findings.parquet", "incidents.parquet", "state.parquet"]
    assert pq.read_table(out / "episodes.parquet").num_rows == 38
    code, _, err = run(["export", SAMPLE, "--to", "parquet", "-o", out], capsys)
    assert code == 2 and err.count("\n") == 1 and "--force replaces it as a whole" in err
    code, _, _ = run(["export", SAMPLE, "--to", "parquet", "-o", out, "--force", "-q"], capsys)
    assert code == 0


def test_openmetrics_to_stdout(capsys):
    code, stdout, err = run(["export", SAMPLE, "--to", "openmetrics", "-o", "-"], capsys)
    assert code == 0 and stdout.endswith("# EOF\n") and "blkreplay_vm_io_errors" in stdout
    assert "written to standard output" in err


@pytest.mark.parametrize("to", ["perfetto", "openmetrics", "parquet"])
@pytest.mark.parametrize("where, message", [
    ("missing/dir/out", "does not exist (--parents creates it)"),
    (str(SAMPLE / "out"), "refusing to write into an input"),
    (str(SAMPLE / "seg-000000.parquet"), "refusing to write into an input"),
])
def test_a_bad_output_is_one_line_exit_2_and_nothing_is_written(to, where, message, tmp_path, capsys,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in SAMPLE.iterdir())
    code, stdout, err = run(["export", SAMPLE, "--to", to, "-o", where], capsys)
    assert (code, stdout) == (2, "")
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert sorted(p.name for p in SAMPLE.iterdir()) == before
    assert not list(tmp_path.iterdir())


def test_a_directory_named_as_a_file_output(tmp_path, capsys):
    code, _, err = run(["export", SAMPLE, "--to", "perfetto", "-o", tmp_path], capsys)
    assert code == 2 and err.count("\n") == 1 and "is a directory" in err


def test_an_unknown_format_and_a_missing_option(tmp_path, capsys):
    code, _, err = run(["export", SAMPLE, "--to", "chrome", "-o", tmp_path / "x"], capsys)
    assert code == 2 and "unknown format 'chrome' (choose from perfetto, parquet, openmetrics)" in err
    code, _, err = run(["export", SAMPLE, "-o", tmp_path / "x"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--to" in err


def test_without_the_export_extra_perfetto_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, PROTOS, None)
    code, _, err = run(["export", SAMPLE, "--to", "perfetto", "-o", tmp_path / "x.pftrace"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "pip install 'blkreplay[export]'" in err
    assert not list(tmp_path.iterdir())


def test_a_bad_input_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    code, _, err = run(["export", bad, "--to", "openmetrics", "-o", tmp_path / "m.prom"], capsys)
    assert code == 2 and err.count("\n") == 1 and str(bad) in err
    assert not (tmp_path / "m.prom").exists()


def test_hostile_names_in_the_summary_are_escaped(tmp_path, capsys):
    from tests.analyzer.test_export import HOSTILE_HOST, HOSTILE_VM, fleet

    path, _ = fleet(tmp_path, vm_a=HOSTILE_VM, host=HOSTILE_HOST)
    out = tmp_path / "x\x1b[31m.prom"
    code, _, err = run(["export", path, "--to", "openmetrics", "-o", out], capsys)
    assert code == 0 and "\x1b" not in err and "\\x1b" in err


@pytest.mark.parametrize("to, name", [("perfetto", "x.pftrace"), ("openmetrics", "x.prom"),
                                      ("parquet", "tables")])
def test_outputs_get_the_umasks_permissions(to, name, tmp_path, capsys):
    import os

    old = os.umask(0o077)
    try:
        code, _, _ = run(["export", TRACES / "fixed", "--to", to, "-o", tmp_path / name, "-q"], capsys)
    finally:
        os.umask(old)
    assert code == 0
    out = tmp_path / name
    files = list(out.iterdir()) if out.is_dir() else [out]
    assert {f.stat().st_mode & 0o777 for f in files} == {0o600}
    if out.is_dir():
        assert out.stat().st_mode & 0o777 == 0o700


def test_a_failed_export_keeps_the_old_metrics_file(tmp_path, capsys):
    prom = tmp_path / "blkreplay.prom"
    prom.write_text("# old\n")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 nope")
    code, _, _ = run(["export", bad, "--to", "openmetrics", "-o", prom], capsys)
    assert code == 2 and prom.read_text() == "# old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet", "blkreplay.prom"]
