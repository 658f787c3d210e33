"""README's "Verified against real output": the shipped real captures of QEMU 10.0.2 and
libvirt 11.3 (`../shared/samples/`) check clean in every input form they have, and each import
knows the QEMU version that produced it. (QEMU 7.2 and libvirt 9.0 samples:
`tests/analyzer/importers/test_real_samples.py`; the live rig: `test_real_qemu*.py`.)"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from analyzer import check
from analyzer.importers import import_traces

#: id -> (folder under ../shared/samples, the files of one input form, QEMU version it names)
FORMS = {
    f"qemu-10.0/{case}-{form}": (f"qemu-10.0/{case}", files, version)
    for case in ("a-stop-eio-dataplane", "c-report")
    for form, files, version in (
        ("transcript", ("qmp-transcript.jsonl",), "10.0.2"),
        ("events", ("events.jsonl",), None),  # events only: no greeting, no version
        ("trace", ("trace.log",), "10.0.2"),
        ("merged", ("qmp-transcript.jsonl", "trace.log"), "10.0.2"),
    )
}
FORMS["libvirt-11.3/a-stop-eio"] = ("libvirt-11.3/a-stop-eio", ("libvirtd.log",), "10.0.2")


@pytest.mark.parametrize("case", sorted(FORMS))
def test_shipped_sample_checks_clean_and_names_its_qemu(samples_dir: Path, tmp_path: Path, case: str) -> None:
    folder, files, version = FORMS[case]
    out = tmp_path / "trace.parquet"
    import_traces([samples_dir / folder / f for f in files], out)
    meta = pq.read_schema(out).metadata or {}
    assert meta.get(b"blkreplay.qemu_version") == (version.encode() if version else None)
    result = check([out])
    assert [(f.rule, f.message) for f in result.findings if f.severity == "error"] == []
    assert result.verdict == "pass"
