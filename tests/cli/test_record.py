"""`blkreplay record` as a user runs it: flags over scenario files, summary, one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analyzer.cli.app import app
from tracer.schema import read_metadata
from tracer.tracedir import read_manifest, segment_paths

SCENARIOS = Path(__file__).resolve().parents[2] / "traces" / "scenarios"


def _blkreplay() -> list[str]:
    exe = Path(sys.executable).parent / "blkreplay"
    found = str(exe) if exe.exists() else shutil.which("blkreplay")
    if found is None:
        pytest.skip("the blkreplay console script is not installed in this environment")
    return [found]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*_blkreplay(), "record", *args], capture_output=True, text=True, timeout=120)


def test_record_writes_trace_and_truth_and_prints_a_summary(tmp_path):
    out = tmp_path / "t"
    result = CliRunner().invoke(app, ["record", "-o", str(out), "--seed", "4", "--duration", "0.02",
                                      "--error-rate", "0.02", "--variant", "no-reset", "--vms", "2"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    assert manifest is not None and manifest.source == "sim"
    truth = json.loads((out / "truth.json").read_text())
    assert truth["variant"] == "no-reset" and truth["seed"] == 4
    summary = result.stderr if result.stderr_bytes is not None else result.output
    assert f"recorded {manifest.rows:,} steps from 2 VM(s)" in summary
    assert "errors" in summary and "stops" in summary and "resumes" in summary


def test_flags_override_the_scenario(tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "t"
    result = CliRunner().invoke(app, ["record", "-o", str(out), "--scenario", str(SCENARIOS / "cont-race.toml"),
                                      "--seed", "9", "--duration", "0.01", "--werror", "enospc",
                                      "--rerror", "report", "--errno", "ENOSPC", "--cont-delay", "0.5",
                                      "--iothreads", "0", "--devices", "1", "-q"])
    assert result.exit_code == 0, result.output
    meta = read_metadata(pq.read_schema(segment_paths(out)[0]))
    config = json.loads(meta["config"])
    assert meta["scenario"] == "cont-race" and meta["seed"] == "9"
    assert (config["werror"], config["rerror"], config["errno"]) == ("enospc", "report", "ENOSPC")
    assert (config["cont_delay_ms"], config["iothreads"], config["devices"]) == (0.5, 0, 1)
    assert config["fast_cont_prob"] == 0.8  # from the scenario file


def test_threads_mode_from_the_command_line(tmp_path):
    out = tmp_path / "t"
    result = run("-o", str(out), "--mode", "threads", "--duration", "0.2", "-q")
    assert result.returncode == 0, result.stderr
    assert read_manifest(out).source == "threads"
    assert not (out / "truth.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vms", "x"], "option --vms: expected an integer, got 'x'"),
        (["--vms", "0"], "option --vms: must be between 1 and 100000, got 0"),
        (["--error-rate", "2"], "option --error-rate: must be at least 0 and at most 1, got 2"),
        (["--duration", "soon"], "option --duration: expected a number, got 'soon'"),
        (["--errno", "EFOO"], "option --errno: expected an errno name"),
        (["--werror", "pause"], "option --werror: expected one of report, ignore, enospc, stop"),
        (["--rerror", "enospc"], "option --rerror: expected one of report, ignore, stop (QEMU rejects rerror=enospc)"),
        (["--variant", "nope"], "option --variant: expected one of fixed, sync-stop"),
        (["--mode", "fast"], "option --mode: expected one of sim, threads"),
        (["--scenario", "/no/such.toml"], "/no/such.toml: scenario file not found"),
    ],
)
def test_bad_flags_exit_2_with_one_line(tmp_path, args, message):
    result = run("-o", str(tmp_path / "t"), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "t").exists()


def test_bad_scenario_file_exits_2_naming_file_and_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('werror = "sometimes"\n')
    result = run("-o", str(tmp_path / "t"), "--scenario", str(bad))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and f"{bad}: key 'werror'" in result.stderr


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "t"
    assert run("-o", str(out), "--duration", "0.005", "-q").returncode == 0
    again = run("-o", str(out), "--duration", "0.005", "-q")
    assert again.returncode == 2 and "exists and is not empty" in again.stderr
    assert run("-o", str(out), "--duration", "0.005", "-q", "--force").returncode == 0


def test_force_replaces_only_a_recording(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work\n")
    done = run("-o", str(home), "--duration", "0.005", "-q", "--force")
    assert done.returncode == 2
    assert "holds files that are not a recording (thesis.tex, ...)" in done.stderr
    assert (home / "thesis.tex").read_text() == "years of work\n"


@pytest.mark.parametrize("case", ["missing-parent", "under-a-file", "empty", "a-file"])
def test_a_bad_output_directory_is_one_line_before_recording(tmp_path, case):
    (tmp_path / "file").write_text("x\n")
    out = {"missing-parent": str(tmp_path / "a" / "b"), "under-a-file": str(tmp_path / "file" / "t"),
           "empty": "", "a-file": str(tmp_path / "file")}[case]
    done = run("-o", out, "--duration", "0.005", "-q")
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "a").exists()
    if case == "missing-parent":
        assert run("-o", out, "--duration", "0.005", "-q", "--parents").returncode == 0
        assert read_manifest(out) is not None
