"""Parsed payloads wait on disk until written (`spill`): the files are the same byte for byte,
the spill directory is gone once the import ends (written or refused), and a spill that
cannot be written is one error naming it."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from analyzer.importers import import_traces, spill
from tests.analyzer.importers.test_streaming import BEFORE_STREAMING, CASES, _import
from tracer.errors import ImportFormatError, OutputError


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """Every segment spills (`MIN_ROWS` 1), into directories under `tmp_path`; returns the
    list of (directory, segments spilled) of each input."""
    seen: list[tuple[Path, int]] = []
    real = spill.spill_payloads

    def spill_payloads(segments, file):
        segments = list(segments)
        real(segments, file)
        seen.append((file.directory, sum(spill.is_spilled(s.payload) for s in segments)))

    monkeypatch.setattr(spill, "MIN_ROWS", 1)
    monkeypatch.setattr(spill, "spill_payloads", spill_payloads)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return seen


@pytest.mark.parametrize("case", ["7.2-dataplane-trace", "10.0-dataplane-transcript", "7.2-dataplane-all3",
                                  "10.0-report-merged", "libvirt-11.3"])
def test_spilled_payloads_give_the_file_written_before(samples_dir, tmp_path, counted, case):
    path = _import(samples_dir, case, tmp_path / "work")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == BEFORE_STREAMING[case]
    assert len(counted) == len(CASES[case][1])
    if "libvirt" not in case:  # (a libvirt log's rows are read one by one: nothing to spill)
        assert sum(n for _, n in counted) > 0
    assert not any(d.exists() for d, _ in counted)
    assert os.listdir(tmp_path / "tmp") == []


def _block_io_log(path: Path, lines: int) -> Path:
    """A trace log of `lines` block-layer lines: one bulk segment of them."""
    path.write_text("".join(
        f"9676@{1795625377 + i // 1000}.{i % 1000 * 1000:06d}:blk_root_attach child 0x562f02ff2af0 "
        f"blk 0x562f03054120 bs 0x{i:012x}\n" for i in range(lines)
    ))
    return path


def test_workers_spill_into_the_parents_directory_and_give_the_same_file(tmp_path, monkeypatch):
    """(Worker processes keep the default MIN_ROWS: inputs of more rows than it.)"""
    inputs = [_block_io_log(tmp_path / f"t{k}.log", spill.MIN_ROWS * 2 + k) for k in range(2)]
    directories = []
    real = spill.spill_directory

    def spill_directory():
        cm = real()
        directory = cm.__enter__()
        directories.append(directory)

        class Tracked:
            def __enter__(self):
                return directory

            def __exit__(self, *exc):
                assert any(directory.iterdir())  # (both workers' files were there until now)
                return cm.__exit__(*exc)
        return Tracked()

    monkeypatch.setattr(spill, "spill_directory", spill_directory)
    one = import_traces(inputs, tmp_path / "one", workers=1)
    two = import_traces(inputs, tmp_path / "two", workers=2)
    assert one.rows == two.rows == 2 * (spill.MIN_ROWS * 2) + 1
    files = [sorted(Path(o.out).rglob("*.parquet")) for o in (one, two)]
    assert [f.read_bytes() for f in files[0]] == [f.read_bytes() for f in files[1]]
    assert len(directories) == 2 and not any(d.exists() for d in directories)


def test_a_bad_input_after_a_spilled_one_leaves_no_spill(samples_dir, tmp_path, counted):
    good = tmp_path / "trace.log"
    shutil.copyfile(samples_dir / "qemu-7.2/a-stop-eio-dataplane/trace.log", good)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"t": 1, "dir": "recv", "line": "{\\"event\\": \\"STOP\\"')
    with pytest.raises(ImportFormatError):
        import_traces([good, bad], tmp_path / "out.parquet")
    assert counted and counted[0][1] > 0 and not counted[0][0].exists()
    assert not (tmp_path / "out.parquet").exists()


def test_a_spill_that_cannot_be_written_is_one_error_naming_it(samples_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(spill, "MIN_ROWS", 1)

    def full(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spill.SpillFile, "_create", full)
    with pytest.raises(OutputError) as exc:
        _import(samples_dir, "7.2-dataplane-trace", tmp_path / "work")
    assert "No space left on device" in str(exc.value) and "blkreplay-spill-" in str(exc.value)
    assert not (tmp_path / "work" / "out.parquet").exists()


def test_no_room_for_the_spill_is_one_line_and_exit_2_on_the_command_line(samples_dir, tmp_path, monkeypatch, capsys):
    from analyzer.cli import main

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryDirectory", full)
    trace = samples_dir / "qemu-7.2/a-stop-eio-dataplane/trace.log"
    with pytest.raises(SystemExit) as exit_:
        main(["import", str(trace), "-o", str(tmp_path / "out.parquet"), "-q"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_.value.code == 2
    assert len(err) == 1 and "No space left on device" in err[0] and "TMPDIR" in err[0], err
    assert not (tmp_path / "out.parquet").exists()
