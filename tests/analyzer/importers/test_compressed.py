"""Compressed inputs (gzip, bzip2, xz, zstd: from their magic bytes), standard input (``-``)
and globs: the same log imports to byte-identical Parquet whichever way it comes; damaged
compressed data is one line naming the file and line (exit 2), or skipped and counted."""

from __future__ import annotations

import bz2
import gzip
import lzma
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analyzer.importers import import_traces
from analyzer.importers.compressed import codec_of, logical_name

CLI = "import sys; from analyzer.cli import main; main(sys.argv[1:])"


def _compress(codec: str, data: bytes) -> bytes:
    if codec == "gzip":
        return gzip.compress(data, mtime=0)
    if codec == "bzip2":
        return bz2.compress(data)
    if codec == "xz":
        return lzma.compress(data)
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as out:
        out.write(data)
    return sink.getvalue().to_pybytes()


SUFFIX = {"gzip": ".gz", "bzip2": ".bz2", "xz": ".xz", "zstd": ".zst"}


def blkreplay(args: list[str], cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, *args], cwd=cwd, input=stdin, capture_output=True,
                          timeout=300, check=False)


@pytest.fixture
def sample(tmp_path: Path, libvirt_log: Path) -> Path:
    """The libvirt 9.0 daemon log and the virsh events of its VM, copied beside the tests."""
    shutil.copy(libvirt_log, tmp_path / "libvirtd.log")
    shutil.copy(libvirt_log.parent / "virsh-events.log", tmp_path / "virsh-events.log")
    return tmp_path


@pytest.mark.parametrize("codec", sorted(SUFFIX))
def test_compressed_and_stdin_copies_import_to_byte_identical_parquet(sample, codec):
    data = (sample / "libvirtd.log").read_bytes()
    packed = _compress(codec, data)
    assert codec_of(packed[:8]) == codec
    (sample / f"libvirtd.log{SUFFIX[codec]}").write_bytes(packed)
    runs = {
        "plain": (["libvirtd.log"], None),
        "compressed": ([f"libvirtd.log{SUFFIX[codec]}"], None),
        "stdin": (["-", "--stdin-name", "libvirtd.log"], data),
        "compressed-stdin": (["-", "--stdin-name", "libvirtd.log"], packed),
    }
    outputs = {}
    for name, (args, stdin) in runs.items():
        done = blkreplay(["import", *args, "virsh-events.log", "-o", f"{name}.parquet", "-q"], sample, stdin)
        assert (done.returncode, done.stderr) == (0, b""), name
        outputs[name] = (sample / f"{name}.parquet").read_bytes()
    assert len(set(outputs.values())) == 1
    table = pq.read_table(sample / "compressed.parquet")
    assert set(table["src_file"].to_pylist()) == {"libvirtd.log", "virsh-events.log"}
    assert table.num_rows == 918 + 13 + 29  # QMP rows, libvirt's handler lines, virsh events


def test_a_name_without_suffix_is_still_read_from_its_magic(sample):
    (sample / "rotated.1").write_bytes(gzip.compress((sample / "virsh-events.log").read_bytes()))
    import_traces([sample / "rotated.1"], sample / "t.parquet")
    assert set(pq.read_table(sample / "t.parquet")["src_file"].to_pylist()) == {str(sample / "rotated.1")}
    assert logical_name("a/libvirtd.log.1.gz", "gzip") == "a/libvirtd.log.1"
    assert logical_name("x.XZ", "xz") == "x"


def test_stdin_is_named_stdin_unless_told(sample):
    data = (sample / "virsh-events.log").read_bytes()
    done = blkreplay(["import", "-", "-o", "t.parquet"], sample, data)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines()[0] == "<stdin>: virsh-events (29 lines, 29 rows) -> vm-a-stop-eio-file"
    assert set(pq.read_table(sample / "t.parquet")["src_file"].to_pylist()) == {"<stdin>"}


@pytest.mark.parametrize("codec", ["gzip", "xz"])
def test_a_truncated_compressed_file_is_one_line_naming_file_and_line(sample, codec):
    data = (sample / "libvirtd.log").read_bytes()
    packed = _compress(codec, data)
    name = f"cut.log{SUFFIX[codec]}"
    (sample / name).write_bytes(packed[: len(packed) // 2])
    done = blkreplay(["import", name, "-o", "t.parquet"], sample)
    err = done.stderr.decode()
    assert done.returncode == 2 and done.stdout == b""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"blkreplay: error: {name}, line ")
    assert f"truncated {codec} data: the compressed stream ends early" in err
    line = int(err.split(", line ")[1].split(":")[0])
    assert 1 < line < data.count(b"\n")
    assert not (sample / "t.parquet").exists()
    # --skip-bad: the lines before the damage are imported, the cut counted
    done = blkreplay(["import", name, "-o", "t.parquet", "--skip-bad"], sample)
    assert done.returncode == 0, done.stderr
    first = done.stdout.decode().splitlines()[0]
    assert first.startswith(f"cut.log: libvirt-log ({line - 1:,} lines, ") and first.endswith("1 skipped, truncated) -> vm-a-stop-eio-file")
    meta = pq.read_table(sample / "t.parquet").schema.metadata
    assert meta[b"blkreplay.truncated"] == b"true" and meta[b"blkreplay.skipped_lines"] == b"1"


def test_a_truncated_gzip_through_a_pipe_names_stdin(sample):
    packed = gzip.compress((sample / "libvirtd.log").read_bytes())
    done = blkreplay(["import", "-", "-o", "t.parquet"], sample, packed[:5000])
    assert done.returncode == 2
    assert done.stderr.decode().startswith("blkreplay: error: -, line ")


def test_globs_the_shell_did_not_expand_are_expanded(sample):
    for k in (1, 2):
        (sample / f"events.log.{k}.gz").write_bytes(gzip.compress((sample / "virsh-events.log").read_bytes()))
    done = blkreplay(["import", "events.log.*.gz", "-o", "t.parquet"], sample)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert [x.split(":")[0] for x in lines[:2]] == ["events.log.1", "events.log.2"]
    done = blkreplay(["import", "nothing-*.log", "-o", "t.parquet"], sample)
    assert (done.returncode, done.stderr) == (2, b"blkreplay: error: nothing-*.log: no file matches this pattern\n")
