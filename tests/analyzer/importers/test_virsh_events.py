"""``virsh event --all --loop --timestamp`` output: management-layer rows, alone or merged with
the libvirt daemon log of the same VM."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from analyzer import check
from analyzer.importers import import_traces
from analyzer.importers.pipeline import parse_input
from tracer.errors import ImportFormatError

LIBVIRT = ("libvirt-9.0", "libvirt-11.3")


def _events(samples_dir: Path, version: str) -> Path:
    return samples_dir / version / "a-stop-eio" / "virsh-events.log"


@pytest.mark.parametrize("version", LIBVIRT)
def test_virsh_events_alone_import_as_mgmt_events(samples_dir, tmp_path, version):
    path = _events(samples_dir, version)
    assert parse_input(path).format == "virsh-events"
    out = tmp_path / "t.parquet"
    import_traces([path], out)
    table = pq.read_table(out)
    assert set(table["kind"].to_pylist()) == {"mgmt_event"}
    assert set(table["vm"].to_pylist()) == {"vm-a-stop-eio-file"}
    names = table["name"].to_pylist()
    # virsh 9.0 names the reason event io-error-reason (its reason empty); 11.3 prints it as
    # 'io-error' "... pause due to message": kept as printed, the reason in the payload
    expected = ({"lifecycle": 17, "io-error": 6, "io-error-reason": 6} if version == "libvirt-9.0"
                else {"lifecycle": 17, "io-error": 12})
    assert {n: names.count(n) for n in set(names)} == expected
    reasons = [json.loads(p).get("reason") for p in table["payload"].to_pylist()]
    assert reasons.count("" if version == "libvirt-9.0" else "message") == 6
    assert table["src_line"].to_pylist() == list(range(1, 30))
    io = table.filter(pc.equal(table["name"], "io-error"))
    assert set(io["device"].to_pylist()) == {"virtio-disk0"}
    assert set(io["action"].to_pylist()) == {"stop"}  # libvirt's "pause"
    payload = json.loads(io["payload"][0].as_py())
    assert payload["libvirt_action"] == "pause" and payload["alias"] == "virtio-disk0"
    assert payload["path"].endswith("vm-a-stop-eio-file.img")
    life = table.filter(pc.equal(table["name"], "lifecycle"))
    details = [json.loads(p)["event"] + " " + json.loads(p)["detail"] for p in life["payload"].to_pylist()]
    assert details.count("Suspended I/O Error") == 6
    ts = table["ts_ns"].to_pylist()
    assert ts == sorted(ts) and ts[0] > 1_700_000_000 * 10**9
    # check says which rules can judge it: none of the QEMU-side rules
    result = check([out])
    assert result.findings == [] and result.verdict == "pass"
    assert "action-matches-policy" in result.not_applicable
    assert "stop-follows-error" in result.not_applicable


@pytest.mark.parametrize("version", LIBVIRT)
def test_virsh_events_merge_with_the_libvirt_log_of_the_vm(samples_dir, tmp_path, version):
    events = _events(samples_dir, version)
    libvirtd = events.parent / "libvirtd.log"
    out = tmp_path / "t.parquet"
    summary = import_traces([libvirtd, events], out)
    assert list(summary.vm_rows) == ["vm-a-stop-eio-file"]
    table = pq.read_table(out)
    kinds = table["kind"].to_pylist()
    assert kinds.count("mgmt_event") == 29 + 13  # virsh's events, libvirt's handler lines
    assert set(table["src_file"].to_pylist()) == {str(libvirtd), str(events)}
    # in time order: each io-error libvirt delivered comes after the BLOCK_IO_ERROR it received
    names = table["name"].to_pylist()
    first_qmp = names.index("BLOCK_IO_ERROR")
    first_mgmt = names.index("io-error")
    assert first_qmp < first_mgmt
    assert check([out]).verdict == "pass"


def test_without_timestamps_the_order_of_the_file_is_kept(write):
    path = write("ev.log", "event 'lifecycle' for domain 'a': Started Booted\n"
                           "event 'io-error' for domain 'a': /x.img (vda) report\n"
                           "events received: 2\n")
    parsed = parse_input(path)
    [part] = parsed.parts
    assert part.vm == "a" and part.rows.kind == ["mgmt_event", "mgmt_event"]
    assert part.rows.line == [1, 2] and part.rows.ts == [0, 0]
    assert part.rows.sparse["action"] == {1: "report"}


def test_a_line_that_is_no_event_is_one_line_naming_file_and_line(write):
    path = write("ev.log", "2026-11-25 16:55:38.346+0000: event 'lifecycle' for domain 'a': Defined Added\n"
                           "garbage here\n")
    with pytest.raises(ImportFormatError) as exc:
        parse_input(path)
    assert str(exc.value).startswith(f"{path}, line 2: not a virsh event line")
    parsed = parse_input(path, skip_bad=True)
    assert parsed.skipped == 1 and parsed.rows == 1
