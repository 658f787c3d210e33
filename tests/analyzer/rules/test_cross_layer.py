"""The cross-layer rules over the real libvirt 9.0 / 11.3 captures: every combination of their
files checks clean (no false alarm), a missing side is "not applicable", and an edited copy
(an io-error event removed, libvirt's reason turned 'unknown', a QEMU event removed) is caught
with the lines of both layers."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from analyzer.importers import import_traces
from tests.analyzer.guarantees import check_guarantees as check

LIBVIRT = ("libvirt-9.0", "libvirt-11.3")
FILES = ("libvirtd.log", "virsh-events.log", "qemu-vm-a-stop-eio-file.log")
CROSS = ("libvirt-reports-io-error", "libvirt-event-has-cause", "libvirt-delivers-events")


def _dir(samples_dir: Path, version: str) -> Path:
    return samples_dir / version / "a-stop-eio"


def _check(tmp_path: Path, inputs: list[Path], name: str = "t"):
    out = tmp_path / f"{name}.parquet"
    import_traces(inputs, out)
    return check([out])


def _edited(tmp_path: Path, src: Path, edit) -> Path:
    lines = src.read_text().splitlines(keepends=True)
    out = tmp_path / src.name
    out.write_text("".join(edit(lines)))
    return out


@pytest.mark.parametrize("version", LIBVIRT)
@pytest.mark.parametrize(
    "combo", [c for n in (1, 2, 3) for c in itertools.combinations(FILES, n)],
    ids=lambda c: "+".join(f.split(".")[0].split("-")[0] for f in c),
)
def test_every_combination_of_the_real_files_checks_clean(samples_dir, tmp_path, version, combo):
    result = _check(tmp_path, [_dir(samples_dir, version) / f for f in combo])
    assert result.findings == [] and result.verdict == "pass"  # no false alarm, of any rule
    has_qemu = "libvirtd.log" in combo
    has_virsh = "virsh-events.log" in combo
    judged = {r for r in CROSS if r not in result.not_applicable}
    if not has_qemu:  # no QEMU side: nothing to compare
        assert judged == set()
    elif has_virsh:
        assert judged == set(CROSS)
    else:  # libvirt's own handling (its log) against the events it received
        assert judged == {"libvirt-reports-io-error", "libvirt-event-has-cause"}


@pytest.mark.parametrize("version", LIBVIRT)
def test_a_removed_io_error_event_is_caught(samples_dir, tmp_path, version):
    d = _dir(samples_dir, version)
    seen = []

    def drop_second_episode(lines):
        # the second BLOCK_IO_ERROR's io-error and reason lines (both named io-error in 11.3)
        for line in lines:
            if "event 'io-error" in line:
                seen.append(line)
                if 3 <= len(seen) <= 4:
                    continue
            yield line

    events = _edited(tmp_path, d / "virsh-events.log", drop_second_episode)
    result = _check(tmp_path, [d / "libvirtd.log", events])
    found = [f for f in result.findings if f.rule == "libvirt-delivers-events"]
    assert len(found) == 1
    f = found[0]
    assert f.vm == "vm-a-stop-eio-file" and f.device == "virtio-disk0"
    assert "BLOCK_IO_ERROR" in f.message and "no an io-error" not in f.message
    assert f.src[0].startswith(str(d / "libvirtd.log") + ":")
    assert [x for x in result.findings if x.rule != "libvirt-delivers-events"] == []


@pytest.mark.parametrize("version", LIBVIRT)
def test_libvirt_reporting_paused_unknown_is_caught(samples_dir, tmp_path, version):
    d = _dir(samples_dir, version)
    count = [0]

    def third_pause_unknown(lines):
        for line in lines:
            if line.rstrip().endswith("Suspended I/O Error"):
                count[0] += 1
                if count[0] == 3:
                    line = line.replace("Suspended I/O Error", "Suspended Paused")
            yield line

    events = _edited(tmp_path, d / "virsh-events.log", third_pause_unknown)
    result = _check(tmp_path, [d / "libvirtd.log", events])
    found = [f for f in result.findings if f.rule == "libvirt-reports-io-error"]
    assert len(found) == 1
    f = found[0]
    assert "paused (unknown)" in f.message and "virsh event" in f.message
    # both layers' lines: the BLOCK_IO_ERROR and STOP in libvirtd.log, the lifecycle in virsh's
    assert any(s.startswith(str(d / "libvirtd.log")) for s in f.src)
    assert any(s.startswith(str(events) + ":") for s in f.src)
    assert result.verdict == "fail"


@pytest.mark.parametrize("version", LIBVIRT)
def test_libvirtd_handling_with_reason_unknown_is_caught(samples_dir, tmp_path, version):
    d = _dir(samples_dir, version)
    count = [0]

    def handle_stop(lines):
        for line in lines:
            if "qemuProcessHandleIOError" in line and "Transitioned guest" in line:
                count[0] += 1
                if count[0] == 2:
                    head = line.split("qemuProcessHandleIOError")[0]
                    line = (f"{head}qemuProcessHandleStop:700 : Transitioned guest "
                            "vm-a-stop-eio-file to paused state, reason unknown, event detail 0\n")
            yield line

    log = _edited(tmp_path, d / "libvirtd.log", handle_stop)
    result = _check(tmp_path, [log])
    found = [f for f in result.findings if f.rule == "libvirt-reports-io-error"]
    assert len(found) == 1
    assert "libvirtd log reported it paused (unknown)" in found[0].message
    assert [f.rule for f in result.findings] == ["libvirt-reports-io-error"]


@pytest.mark.parametrize("version", LIBVIRT)
def test_a_libvirt_io_error_without_its_qemu_event_is_caught(samples_dir, tmp_path, version):
    d = _dir(samples_dir, version)
    count = [0]

    def drop_fourth_block_io_error(lines):
        for line in lines:
            if "QEMU_MONITOR_RECV_EVENT" in line and "BLOCK_IO_ERROR" in line:
                count[0] += 1
                if count[0] == 4:
                    continue
            yield line

    log = _edited(tmp_path, d / "libvirtd.log", drop_fourth_block_io_error)
    result = _check(tmp_path, [log, d / "virsh-events.log"])
    found = [f for f in result.findings if f.rule == "libvirt-event-has-cause"]
    # the suspension (its handler line and virsh's lifecycle) and virsh's io-error events
    assert found and all("BLOCK_IO_ERROR" in f.message for f in found)
    assert {f.src[0].rsplit(":", 1)[0] for f in found} == {str(log), str(d / "virsh-events.log")}


def test_qemu_2_x_order_is_named_in_the_finding(samples_dir, tmp_path):
    """BLOCK_IO_ERROR, RESUME, STOP (QEMU 2.1-2.12 after cont): libvirt handles the error while
    paused, resumes, then pauses with reason unknown. Built from the 9.0 log: the second
    episode's BLOCK_IO_ERROR moved before its RESUME, libvirt's handling made HandleStop's."""
    d = _dir(samples_dir, "libvirt-9.0")
    lines = (d / "libvirtd.log").read_text().splitlines(keepends=True)
    recv = [i for i, line in enumerate(lines) if "QEMU_MONITOR_RECV_EVENT" in line]
    bie = [i for i in recv if "BLOCK_IO_ERROR" in lines[i]]
    resume = [i for i in recv if '"RESUME"' in lines[i]]
    b = bie[1]
    r = max(i for i in resume if i < b)
    cut = lines[r].index("+0000: ") + 7  # the RESUME's time: the error arrives just before it
    moved = lines[r][:cut] + lines[b][lines[b].index("+0000: ") + 7 :]
    edited = lines[:r] + [moved] + [x for i, x in enumerate(lines[r:], r) if i != b]
    n = 0
    fixed = []
    for line in edited:
        if "qemuProcessHandleIOError" in line and "Transitioned guest" in line:
            n += 1
            if n == 2:
                head = line.split("qemuProcessHandleIOError")[0]
                line = (f"{head}qemuProcessHandleStop:700 : Transitioned guest "
                        "vm-a-stop-eio-file to paused state, reason unknown, event detail 0\n")
        fixed.append(line)
    log = tmp_path / "libvirtd.log"
    log.write_text("".join(fixed))
    result = _check(tmp_path, [log])
    found = [f for f in result.findings if f.rule == "libvirt-reports-io-error"]
    assert len(found) == 1
    assert "f056158d69" in found[0].message and "paused (unknown)" in found[0].message

