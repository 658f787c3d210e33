"""The manifest door: a recording is checked against its manifest.

A manifest that cannot be used (a directory, ``1e400``, 100k nested brackets, wrong types) is
exit 2 with one line naming ``manifest.json``. A recording that differs from a usable manifest
(a segment deleted, altered, added, foreign, named ``../../x``, a symlink out) is a
`recording-intact` error finding, exit 1, never a silent PASS with fewer steps. A recording
whose manifest says the recorder was interrupted is a `trace-truncated` warning.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.hostile.conftest import SAMPLE, Unchanged, assert_contract, check_json, run_cli, vm_rows
from tracer import tracedir


def manifest(d: Path) -> dict:
    return json.loads((d / tracedir.MANIFEST_NAME).read_text())


def write_manifest(d: Path, doc: dict | str) -> None:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    (d / tracedir.MANIFEST_NAME).write_text(text)


@pytest.fixture
def recording(tmp_path, sample_table) -> Path:
    """A recording of three segments (one VM each) with a correct manifest."""
    d = tmp_path / "rec"
    d.mkdir()
    segments = []
    for i, vm in enumerate(("vm0", "vm1", "vm2")):
        name = tracedir.segment_name(i)
        rows, digest = tracedir.write_table(vm_rows(sample_table, vm), d / name)
        segments.append(tracedir.Segment(name, rows, digest))
    m = tracedir.Manifest(rows=sum(s.rows for s in segments), source="sim", segments=tuple(segments))
    write_manifest(d, m.to_json())
    return d


def intact(outcome) -> list[dict]:
    doc = check_json(outcome)
    return [f for f in doc["findings"] if f["rule"] == "recording-intact"]


def problems(outcome, expected_code: int = 1) -> list[str]:
    """The messages of the recording-intact findings of a `check -f json` (exit 1)."""
    assert_contract(outcome)
    assert outcome.code == expected_code, outcome.err
    found = intact(outcome)
    assert all(f["severity"] == "error" for f in found)
    return [f["message"] for f in found]


def test_an_intact_recording_passes(recording):
    out = run_cli(["check", recording, "-f", "json"])
    assert problems(out, 0) == []
    assert check_json(out)["summary"]["steps"] == 5606


# ---------------------------------------------------------------------------------------------
# Unusable manifests: exit 2, one line naming manifest.json
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "not a regular file"),
        ('{"rows": 1e400, "source": "sim", "segments": []}', "number out of range"),
        ("[" * 100_000 + "]" * 100_000, "nested deeper than"),
        ("{" * 50_000, "unreadable manifest"),
        ("", "unreadable manifest"),
        ("[]", "not a JSON object"),
        ('{"rows": "5606", "source": "sim", "segments": []}', "field 'rows' must be int"),
        ('{"rows": 99999999999999999999999, "source": "sim", "segments": []}', "out of range"),
        ('{"rows": -1, "source": "sim", "segments": []}', "out of range"),
        ('{"rows": 1, "source": "sim", "segments": [{"file": 7, "rows": 1, "sha256": ""}]}', "segments[0].file"),
        ('{"rows": 1, "source": "sim", "segments": [[]]}', "segments[0] is not an object"),
        ('{"rows": 1, "source": "sim", "segments": [], "schema": "other/9"}', "unsupported manifest schema"),
        ('{"rows": 1, "source": "sim", "segments": [], "complete": "yes"}', "field 'complete' must be bool"),
        ('{"rows": NaN, "source": "sim", "segments": []}', "non-finite"),
        ('{"rows": 1, "source": "\\ud800", "segments": []}', "lone surrogate"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
    ids=["directory", "1e400", "nested-lists", "nested-objects", "empty", "list", "rows-string",
         "rows-huge", "rows-negative", "file-int", "segment-list", "schema", "complete-string", "nan",
         "surrogate", "not-utf8"],
)
def test_an_unusable_manifest(trace_dir, content, says):
    m = trace_dir / tracedir.MANIFEST_NAME
    m.unlink()
    if content is None:
        m.mkdir()
    elif isinstance(content, bytes):
        m.write_bytes(content)
    else:
        m.write_text(content)
    for argv in (["check", trace_dir], ["report", trace_dir, "-o", trace_dir.parent / "r.html"],
                 ["replay", trace_dir, "--vm", "vm0"]):
        out = run_cli(argv)
        assert out.code == 2, (argv, out.err, out.crash)
        assert_contract(out, names=m)
        assert "manifest.json" in out.err_lines[0] and says in out.err_lines[0], out.err_lines[0]


# ---------------------------------------------------------------------------------------------
# Recordings that differ from their manifest: recording-intact findings, exit 1
# ---------------------------------------------------------------------------------------------


def test_a_deleted_segment_is_an_error_not_fewer_steps(recording):
    (recording / "seg-000001.parquet").unlink()
    out = run_cli(["check", recording, "-f", "json"])
    [msg] = problems(out)
    assert "seg-000001.parquet" in msg and "missing" in msg
    assert check_json(out)["verdict"] == "fail"


def test_an_altered_segment(recording, sample_table):
    # Same rows, other bytes (another row-group size): only the SHA-256 tells.
    seg = recording / "seg-000002.parquet"
    pq.write_table(pq.read_table(seg), seg, row_group_size=100)
    [msg] = problems(run_cli(["check", recording, "-f", "json"]))
    assert "seg-000002.parquet was altered" in msg and "SHA-256" in msg


def test_a_segment_with_other_rows(recording, sample_table):
    seg = recording / "seg-000000.parquet"
    pq.write_table(pq.read_table(seg).slice(0, 100), seg)
    msgs = problems(run_cli(["check", recording, "-f", "json"]))
    assert any("seg-000000.parquet was altered" in m and "the file has 100" in m for m in msgs)


def test_a_wrong_sha256_or_row_count_in_the_manifest(recording):
    doc = manifest(recording)
    doc["segments"][0]["sha256"] = "0" * 64
    doc["segments"][1]["rows"] += 1
    write_manifest(recording, doc)
    msgs = problems(run_cli(["check", recording, "-f", "json"]))
    assert len(msgs) == 3  # sha256 of seg 0, rows of seg 1, the total
    assert any("row total" in m for m in msgs)


def test_an_extra_segment(recording, sample_table):
    shutil.copyfile(recording / "seg-000000.parquet", recording / "seg-000009.parquet")
    msgs = problems(run_cli(["check", recording, "-f", "json"]))
    assert any("seg-000009.parquet is not listed in the manifest" in m for m in msgs)


def test_a_foreign_segment(recording, tmp_path, sample_table):
    other = tmp_path / "other.parquet"
    tracedir.write_table(vm_rows(sample_table, "vm1").slice(0, 500), other)
    shutil.copyfile(other, recording / "seg-000001.parquet")
    msgs = problems(run_cli(["check", recording, "-f", "json"]))
    assert any("seg-000001.parquet was altered" in m for m in msgs)


@pytest.mark.parametrize("name", ["../../x", "/etc/passwd", "sub/seg.parquet", "..", ""])
def test_a_segment_named_outside_the_directory(recording, name):
    doc = manifest(recording)
    doc["segments"][2]["file"] = name
    write_manifest(recording, doc)
    with Unchanged(recording):
        msgs = problems(run_cli(["check", recording, "-f", "json"]))
    assert any("not a file name inside the directory" in m for m in msgs)
    # ... and the segment no longer listed is found as unlisted
    assert any("seg-000002.parquet is not listed" in m for m in msgs)


def test_a_segment_that_is_a_symlink_out_of_the_directory(recording, tmp_path):
    seg = recording / "seg-000001.parquet"
    outside = tmp_path / "outside.parquet"
    shutil.move(seg, outside)
    os.symlink(outside, seg)
    msgs = problems(run_cli(["check", recording, "-f", "json"]))
    assert any("seg-000001.parquet resolves outside the trace directory" in m for m in msgs)


def test_a_segment_listed_twice(recording):
    doc = manifest(recording)
    doc["segments"].append(dict(doc["segments"][0]))
    doc["rows"] += doc["segments"][0]["rows"]
    write_manifest(recording, doc)
    msgs = problems(run_cli(["check", recording, "-f", "json"]))
    assert any("more than once" in m for m in msgs)


def test_report_of_an_altered_recording_lists_the_finding(recording, tmp_path):
    (recording / "seg-000000.parquet").unlink()
    out = run_cli(["report", recording, "-f", "json", "-o", tmp_path / "r.json"])
    assert_contract(out)
    assert out.code == 1, out.err
    text = (tmp_path / "r.json").read_text()
    assert "recording-intact" in text and "seg-000000.parquet" in text



def test_replay_of_an_altered_recording_says_so_before_its_steps(recording):
    (recording / "seg-000001.parquet").unlink()
    out = run_cli(["replay", recording, "-f", "jsonl"])
    assert_contract(out)
    assert out.code == 0, out.err
    [line] = [ln for ln in out.err.splitlines() if "recording-intact" in ln]
    assert line.startswith("blkreplay replay: error: recording-intact: ") and "seg-000001.parquet" in line
    assert out.out  # the steps that are there are still shown

# ---------------------------------------------------------------------------------------------
# Incomplete recordings: a warning, the run is cut short but what is there is intact
# ---------------------------------------------------------------------------------------------


def test_a_manifest_marked_interrupted_is_a_truncation_warning(recording):
    doc = manifest(recording)
    doc["complete"], doc["interrupted"] = False, True
    write_manifest(recording, doc)
    out = run_cli(["check", recording, "-f", "json"])
    assert_contract(out)
    assert out.code == 0, out.err
    found = check_json(out)["findings"]
    assert {f["rule"] for f in found} == {"trace-truncated"}
    assert all(f["severity"] == "warning" and "interrupted" in f["message"] for f in found)
    assert sorted(f["vm"] for f in found) == ["vm0", "vm1", "vm2"]


def test_no_manifest_is_a_truncation_warning_without_integrity_errors(recording):
    (recording / tracedir.MANIFEST_NAME).unlink()
    out = run_cli(["check", recording, "-f", "json"])
    assert out.code == 0, out.err
    assert {f["rule"] for f in check_json(out)["findings"]} == {"trace-truncated"}


def test_the_sample_recording_still_verifies():
    assert tracedir.verify_trace_dir(SAMPLE) == []
