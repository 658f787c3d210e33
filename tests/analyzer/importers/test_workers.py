"""`import --workers N` (issues #13/#14): inputs parsed in worker processes give the very
file one process writes, and a bad input is reported as one process reports it."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analyzer.cli.app import app
from analyzer.importers import import_traces
from tests.analyzer.importers.test_streaming import BEFORE_STREAMING
from tracer.errors import ImportFormatError

NAMES = ["qmp-transcript.jsonl", "trace.log", "events.jsonl"]


def _copy(samples_dir: Path, work: Path, names: list[str]) -> list[str]:
    (work / "in").mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(samples_dir / "qemu-7.2/a-stop-eio-dataplane" / name, work / "in" / name)
    return [f"in/{n}" for n in names]


def _run(work: Path, inputs: list[str], out: str, **kw) -> str:
    cwd = os.getcwd()
    os.chdir(work)
    try:
        import_traces(inputs, out, **kw)
    finally:
        os.chdir(cwd)
    return hashlib.sha256((work / out).read_bytes()).hexdigest()


@pytest.mark.parametrize("order", [NAMES, NAMES[::-1]])
def test_two_workers_write_the_file_one_process_writes(samples_dir, tmp_path, order):
    inputs = _copy(samples_dir, tmp_path, order)
    one = _run(tmp_path, inputs, "one.parquet")
    two = _run(tmp_path, inputs, "two.parquet", workers=2)
    assert two == one
    if order == NAMES:  # (the pinned bytes of main)
        assert two == BEFORE_STREAMING["7.2-dataplane-all3"]


def test_the_first_bad_input_in_order_is_reported(samples_dir, tmp_path):
    inputs = _copy(samples_dir, tmp_path, NAMES)
    (tmp_path / "in" / "bad.jsonl").write_text('{"event": "STOP", "timestamp": {"seconds": 1e400}}\n' * 3)
    with pytest.raises(ImportFormatError) as one:
        _run(tmp_path, [inputs[0], "in/bad.jsonl", inputs[1]], "one.parquet")
    with pytest.raises(ImportFormatError) as two:
        _run(tmp_path, [inputs[0], "in/bad.jsonl", inputs[1]], "two.parquet", workers=2)
    assert str(two.value) == str(one.value)
    assert two.value.path == one.value.path and two.value.line == one.value.line
    assert not (tmp_path / "two.parquet").exists()


def test_the_cli_takes_workers(samples_dir, tmp_path):
    inputs = _copy(samples_dir, tmp_path, NAMES)
    out = tmp_path / "cli.parquet"
    result = CliRunner().invoke(
        app, ["import", *[str(tmp_path / i) for i in inputs], "-o", str(out), "--workers", "2", "-q"],
    )
    assert result.exit_code == 0, result.output
    assert out.exists()
    bad = CliRunner().invoke(app, ["import", str(tmp_path / inputs[0]), "-o", str(out), "--workers", "0"])
    assert bad.exit_code == 2
