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


def test_every_event_virsh_prints_imports_multi_line_ones_as_one_row(write):
    # what virsh of libvirt 11.x prints (tools/virsh-domain-event.c): disk events name the
    # disk, tunable / job-completed / memory-failure / nic-mac-change span several lines
    path = write("ev.log", "\n".join([
        "2026-11-25 16:55:38.346+0000: event 'tunable' for domain 'a':",
        "\tcputune.vcpu_period: 100000",
        "\tcputune.vcpu_quota: 50000",
        "2026-11-25 16:55:39.000+0000: event 'tray-change' for domain 'a' disk hdc: opened",
        "2026-11-25 16:55:39.500+0000: event 'disk-change' for domain 'a' disk fdc: /a.img -> <null>: dropped",
        "2026-11-25 16:55:40.000+0000: event 'job-completed' for domain 'a':",
        "\toperation: 5",
        "2026-11-25 16:55:41.000+0000: event 'nic-mac-change' for domain 'a':",
        "alias: net0",
        "oldMAC: 52:54:00:00:00:01",
        "newMAC: 52:54:00:00:00:02",
        "2026-11-25 16:55:41.640+0000: event 'io-error' for domain 'a': /x.img (virtio-disk0) pause",
        "2026-11-25 16:55:42.000+0000: event 'reboot' for domain 'a'",
        "events received: 7",
    ]) + "\n")
    [part] = parse_input(path).parts
    assert part.rows.name == ["tunable", "tray-change", "disk-change", "job-completed", "nic-mac-change",
                              "io-error", "reboot"]
    assert part.rows.line == [1, 4, 5, 6, 8, 12, 13]
    payloads = [json.loads(p) for p in part.rows.payload]
    assert payloads[0]["lines"] == ["cputune.vcpu_period: 100000", "cputune.vcpu_quota: 50000"]
    assert payloads[1] == {"disk": "hdc", "text": "opened"}
    assert payloads[2]["text"] == "/a.img -> <null>: dropped"
    assert payloads[4]["lines"] == ["alias: net0", "oldMAC: 52:54:00:00:00:01", "newMAC: 52:54:00:00:00:02"]
    assert part.rows.sparse["device"] == {1: "hdc", 2: "fdc", 5: "virtio-disk0"}
    assert part.rows.sparse["action"] == {5: "stop"}


def test_older_virsh_that_prints_the_domain_bare_is_read(write):
    # virsh before libvirt 6.x: "for domain %s:" without quotes
    path = write("ev.log", "2019-03-01 10:00:00.000+0000: event 'lifecycle' for domain vm-a: Suspended I/O Error\n"
                           "2019-03-01 10:00:00.000+0000: event 'io-error-reason' for domain vm-a: /x.img (drive-virtio-disk0) pause due to enospc\n"
                           "2019-03-01 10:00:01.000+0000: event 'reboot' for domain vm-a\n")
    parsed = parse_input(path)
    assert parsed.format == "virsh-events"
    [part] = parsed.parts
    assert part.vm == "vm-a" and part.rows.name == ["lifecycle", "io-error-reason", "reboot"]
    assert part.rows.sparse["runstate"] == {0: "io-error"}
    assert json.loads(part.rows.payload[1])["reason"] == "enospc"


def test_a_field_line_after_a_one_line_event_is_a_bad_line(write):
    # "FIELD: VALUE" continues only an event whose header ended in ":"
    path = write("ev.log", "event 'reboot' for domain 'a'\nalias: net0\n")
    with pytest.raises(ImportFormatError) as exc:
        parse_input(path)
    assert str(exc.value).startswith(f"{path}, line 2: not a virsh event line")
