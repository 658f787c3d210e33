"""Streaming the table build (issue #12): a VM's rows leave Python a chunk at a time and its
payloads reach the Parquet file one row group at a time, and none of that shows in the output.

- the files are byte for byte those `main` wrote before streaming (11a2ade), for every real
  sample and merged inputs (`BEFORE_STREAMING`: sha256 of the Parquet file, imported from
  relative paths in a fresh directory so that the bytes do not depend on where it ran);
- a chunk of a few rows gives the same file as one chunk, and row groups of a few rows the
  same rows and the same `check` result as one group (each row group's columns are put
  together as it is written, its dictionaries hold the words it uses).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analyzer.importers import import_traces, merge, output

#: (sample folder, inputs) of every real capture in every form, merged ones included.
CASES = {
    **{
        f"{v}-{kind}-{form}": (f"qemu-{v}/{folder}", names)
        for v in ("7.2", "10.0")
        for kind, folder in (("dataplane", "a-stop-eio-dataplane"), ("report", "c-report"))
        for form, names in (
            ("transcript", ["qmp-transcript.jsonl"]),
            ("events", ["events.jsonl"]),
            ("trace", ["trace.log"]),
            ("merged", ["qmp-transcript.jsonl", "trace.log"]),
            ("all3", ["qmp-transcript.jsonl", "trace.log", "events.jsonl"]),
        )
    },
    "libvirt-9.0": ("libvirt-9.0/a-stop-eio", ["libvirtd.log"]),
    "libvirt-11.3": ("libvirt-11.3/a-stop-eio", ["libvirtd.log"]),
}

#: sha256 of the Parquet file `main` wrote before streaming (commit 11a2ade), per case; the
#: libvirt cases since libvirt's qemuProcessHandle* lines became mgmt_event rows (13 more rows).
BEFORE_STREAMING = {
    "10.0-dataplane-all3": "0222a6f0195685253c5233a6704aad0d4cf273a8ef0d43e59f36694e76dd3db3",
    "10.0-dataplane-events": "93583958e815ce64221a0156a875af0b4332f0153c14cfc0f1c4b2ee422af3ef",
    "10.0-dataplane-merged": "778f2751876637f7a16eeba7f0cc6d66253180fecc50ebe973c549219453f603",
    "10.0-dataplane-trace": "08aea33b3d5e83fd1095c7d0a330c95d6eb6a3c78087abe63238ca2b34389041",
    "10.0-dataplane-transcript": "f226607710de4c81c335245274b5ab18996f5bc0515b12a51eac84d8d53bd6bb",
    "10.0-report-all3": "c368f0477dd7bd1de572a8f9df04d744cf2438a49e79ce0d4db9bed423dbac78",
    "10.0-report-events": "90802d82cb2d555eaecc5a37726107250db34c71fb6a52309feadb7744eef83c",
    "10.0-report-merged": "4ff6b8f93e54ff567a4a0e5ac2ec670290e6a196acf4b03f19bd1af9235132c2",
    "10.0-report-trace": "98e27ea17dbbfa3f13e71fbe6016e2e45c433fc6aa630f5e021411c172801a76",
    "10.0-report-transcript": "eea1be4371b971b45cd38e680584a53cc3f4fef573e93641356bd85be489ed02",
    "7.2-dataplane-all3": "a42b82d6bc8bde4af780354b50ffcd9d7b0f9b8a0ca9d0a07b0e1c968f1c3073",
    "7.2-dataplane-events": "b8fbaaceb42e1a9bccb529105c83326dec0278db66926982a0b918e2afc661ab",
    "7.2-dataplane-merged": "465af72bf815c402fa531b57d541ab77804abd588b26fc669e59aa6f1e242921",
    "7.2-dataplane-trace": "0d93e79d18b92b1eff193ddc29dbdc4a50e45ca62020782a76fd49bc474e97ad",
    "7.2-dataplane-transcript": "4b3e0adb2257c6de3dd441ea174b9de1d62f3189d8e97f702e1ec6301ea1d32e",
    "7.2-report-all3": "a9df48e5fe3ee30ec824d83d2b018c39f8d4d248791c499b6bf0e6567a137da0",
    "7.2-report-events": "9565a5998fbec8093e53e6741beedf6d9c53775d06139311c27cdf814cba7148",
    "7.2-report-merged": "4473fd571e9b8f09bc8c78c09f2016fdb5c2a6540af7170d9a593983487b69ec",
    "7.2-report-trace": "21f823e39e3cf5b05a225e2194d3aa2adf326774a959691f9dd5941c6bc6b93a",
    "7.2-report-transcript": "41fc15f70d347df5007b3bf58226c36c60ed1c528fda54d4031fec82748f2e8c",
    "libvirt-11.3": "910d2f292272da1aef7890f739ed6931e6f1fa0931c2b40f9704b5389823ab48",
    "libvirt-9.0": "9e2174d8b6cef9553a302ff2493b3cc4bb52ce95b1ea7f7ba48c0f8efe08fad5",
}


def _import(samples_dir: Path, case: str, work: Path, out: str = "out.parquet") -> Path:
    """Import `case` from copies under `work`, named by relative paths (cwd = `work`)."""
    folder, names = CASES[case]
    (work / "in").mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(samples_dir / folder / name, work / "in" / name)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        import_traces([f"in/{name}" for name in names], out)
    finally:
        os.chdir(cwd)
    return work / out


def _rows(path: Path) -> pa.Table:
    """The rows of a Parquet file, strings as strings (whatever each row group's dictionary)."""
    table = pq.read_table(path)
    plain = [pa.field(f.name, f.type.value_type, f.nullable) if pa.types.is_dictionary(f.type) else f for f in table.schema]
    return table.cast(pa.schema(plain, metadata=table.schema.metadata)).combine_chunks()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_file_is_the_one_written_before_streaming(samples_dir, tmp_path, case):
    assert _digest(_import(samples_dir, case, tmp_path)) == BEFORE_STREAMING[case]


@pytest.mark.parametrize("case", ["7.2-dataplane-all3", "10.0-report-merged", "10.0-dataplane-trace", "libvirt-9.0"])
def test_chunks_of_a_few_rows_give_the_same_file(samples_dir, tmp_path, monkeypatch, case):
    whole = _import(samples_dir, case, tmp_path / "whole")
    monkeypatch.setattr(merge, "CHUNK_ROWS", 3)
    chunked = _import(samples_dir, case, tmp_path / "chunked")
    assert chunked.read_bytes() == whole.read_bytes()


@pytest.mark.parametrize("case", ["7.2-dataplane-all3", "10.0-dataplane-merged", "7.2-report-trace"])
def test_row_groups_of_a_few_rows_give_the_same_rows_and_findings(samples_dir, tmp_path, monkeypatch, case):
    from analyzer import check

    whole = _import(samples_dir, case, tmp_path / "whole")
    monkeypatch.setattr(merge, "CHUNK_ROWS", 5)
    monkeypatch.setattr(output, "ROW_GROUP_ROWS", 7)
    small = _import(samples_dir, case, tmp_path / "small")
    groups = pq.ParquetFile(small).metadata
    assert groups.num_row_groups == -(-groups.num_rows // 7) > 1
    assert _rows(small).equals(_rows(whole)) and _rows(whole).num_rows > 7
    assert pq.read_schema(small).equals(pq.read_schema(whole))
    assert pq.read_schema(small).metadata == pq.read_schema(whole).metadata

    def findings(path: Path) -> list[tuple]:
        result = check([path])
        return [(f.rule, f.severity, f.message) for f in result.findings] + [result.verdict]

    assert findings(small) == findings(whole)


def test_a_directory_output_streams_each_vm_the_same(samples_dir, tmp_path, monkeypatch):
    whole = _import(samples_dir, "10.0-dataplane-merged", tmp_path / "whole", out="dir")
    monkeypatch.setattr(merge, "CHUNK_ROWS", 2)
    monkeypatch.setattr(output, "ROW_GROUP_ROWS", 11)
    small = _import(samples_dir, "10.0-dataplane-merged", tmp_path / "small", out="dir")
    [a] = sorted(whole.glob("vm=*/part-0.parquet"))
    [b] = sorted(small.glob("vm=*/part-0.parquet"))
    assert a.relative_to(whole) == b.relative_to(small)
    assert _rows(b).equals(_rows(a))
    assert pq.ParquetFile(b).metadata.num_row_groups > 1


def _fleet(samples_dir: Path, work: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The libvirt 9.0 and 11.3 samples' VMs on two hosts each, imported into one file (from
    relative paths, cwd = `work`)."""
    inputs = []
    for host in ("h1", "h2"):
        for v in ("9.0", "11.3"):
            (work / host / v).mkdir(parents=True)
            shutil.copyfile(samples_dir / f"libvirt-{v}" / "a-stop-eio" / "libvirtd.log", work / host / v / "libvirtd.log")
            inputs.append(f"{host}/{v}/libvirtd.log")
    monkeypatch.chdir(work)
    return work / import_traces(inputs, "out.parquet", host="{dir2}-{dir1}").files[0]


def test_several_vms_in_one_file_are_streamed_in_row_groups_that_cross_vms(samples_dir, tmp_path, monkeypatch):
    whole = _fleet(samples_dir, tmp_path / "whole", monkeypatch)
    monkeypatch.setattr(output, "ROW_GROUP_ROWS", 13)
    small = _fleet(samples_dir, tmp_path / "small", monkeypatch)
    rows = _rows(whole)
    assert len(set(zip(rows["host"].to_pylist(), rows["vm"].to_pylist(), strict=True))) >= 4
    groups = pq.ParquetFile(small).metadata
    assert groups.num_row_groups == -(-groups.num_rows // 13) > 4
    assert _rows(small).equals(rows)
    assert pq.read_schema(small).metadata == pq.read_schema(whole).metadata


def test_a_row_group_the_schema_refuses_late_in_the_file_leaves_no_output(samples_dir, tmp_path, monkeypatch):
    """Each row group is checked as it is made: one refused after others were written names
    the input line of its first bad row, and the output is not left half written."""
    from analyzer.importers import vm_tables
    from tracer.errors import ImportFormatError
    from tracer.schema import Problem, validate

    def refuse_line_70(table: pa.Table) -> list[Problem]:
        lines = table["src_line"].to_pylist()
        if 70 in lines:  # (a row of the third row group of 30 rows, or so)
            return [Problem("action", "unknown value 'explode'", lines.index(70))]
        return validate(table)

    monkeypatch.setattr(vm_tables, "validate", refuse_line_70)
    monkeypatch.setattr(output, "ROW_GROUP_ROWS", 30)
    for out in ("out.parquet", "out"):
        with pytest.raises(ImportFormatError) as exc:
            _import(samples_dir, "7.2-dataplane-transcript", tmp_path / out, out=out)
        assert exc.value.line == 70 and "explode" in str(exc.value) and "qmp-transcript.jsonl" in str(exc.value)
        assert not (tmp_path / out / out).exists()
        assert sorted(p.name for p in (tmp_path / out).iterdir()) == ["in"]
