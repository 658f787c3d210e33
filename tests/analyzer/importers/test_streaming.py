"""Streaming the table build (issue #12): a VM's rows leave Python a chunk at a time and its
payloads reach the Parquet file one row group at a time, and none of that shows in the output.

- the files hold byte for byte the rows `main` wrote before streaming (11a2ade), for every
  real sample and merged inputs (`BEFORE_STREAMING`: sha256 of the Parquet file, imported from
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

#: sha256 of the Parquet file, per case: the rows `main` wrote before streaming (commit 11a2ade;
#: the libvirt cases since libvirt's qemuProcessHandle* lines became mgmt_event rows, 13 more
#: rows), encoded since stop 32 with `tracer.tracedir.PLAIN_COLUMNS` plain (re-pinned once each
#: file's rows and metadata were checked equal to the file of the code before).
BEFORE_STREAMING = {
    "10.0-dataplane-all3": "8d289a4b27110eb99a35c52c3b34b15870c31f17b50f0cafa3d3c83b8cf60231",
    "10.0-dataplane-events": "cdc3f19aa02d7ddcb9958fe3a75672491d792d16996d07ef8f47a681cdb77994",
    "10.0-dataplane-merged": "74288ad33440309faf1260b5a715d56b3b2b28de828334ee4880bdac576df4da",
    "10.0-dataplane-trace": "6586fe054f297b3cb0851e508aa13e115a76423764479e6affce2346128b5960",
    "10.0-dataplane-transcript": "908a1d37b46e22dbd16222e36f798fb8d0d3bd84839a12bc38d79a77c85af800",
    "10.0-report-all3": "945ef65c48c5a7d774e8c6e892130032a7d2d5eee0e8be066214fd55633a54c4",
    "10.0-report-events": "4b05982b64573e51aee14ac75dd38921b1fb363bd3d78b35fa708a4266bec0ae",
    "10.0-report-merged": "4c7049eca76aa5ea3675827b51c79a1f9f875b752ebe4ca3b492453709dbee17",
    "10.0-report-trace": "939afcb3d6dff8aa35988e94e8ae8a6b54161143b38ba08ea811e49657161514",
    "10.0-report-transcript": "90815328b00a40dd070109b078bab03298fb92bc250058ccb9655f457051e44c",
    "7.2-dataplane-all3": "be4d4dd74e14cf57bbf792924761ae71c6fd97c9c05afbbc6d935d092bedb753",
    "7.2-dataplane-events": "60e982008b783ffc7d8f456171c18147883d08c47aafb1c0266677ee7989b1fd",
    "7.2-dataplane-merged": "88673012f17f752c54c7c716ab63d46e534dd1cd2a66201d3345e82ddaabb79c",
    "7.2-dataplane-trace": "1b74cc5c1988c1cfeece2144b41d367a486c554bd150d2baa591d38d54d6bd13",
    "7.2-dataplane-transcript": "4b03ff58f3be2acab15e7b9e621ba688d717d7c48b34f49d3ecd3c6d4d191226",
    "7.2-report-all3": "49af504b76591942d222d7445cb81f6276071e15d942ee844d63b1415acc541a",
    "7.2-report-events": "08464c71048ec87e5bd66c8b1f424a74137bb3295ec335b003b49af3ceccec45",
    "7.2-report-merged": "4ff149266654caf1c73ed0f395f34ed4e408ab3a5a2ba13d52c0a542acf45d80",
    "7.2-report-trace": "2a31cfa34451e33fd9cb81bb29d170e0e1b658e62a8647c6492e506300e41bcd",
    "7.2-report-transcript": "4f6542226d8fc61e7cc6758e5917efa7cd40d89a12579c02eaf9c312e48a3c92",
    "libvirt-11.3": "fe3e4b9810442e92fd259a7851f87f5b6b0e4940d142d81dfdda18f7475c134b",
    "libvirt-9.0": "82f76fa5c660ea76aaf32c53156c02352f077fc0df2dd3262a753cb50cf4acca",
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
