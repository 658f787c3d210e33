"""libvirt's per-domain QEMU log and plain QEMU command lines: recognised from content, their
device configuration imported as `device_config` rows that make action-matches-policy judge
BLOCK_IO_ERROR events against the configured werror/rerror."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from analyzer.importers import import_traces
from analyzer.importers.detect import classify_line
from analyzer.importers.domain_log import parse_command_line, qemu_opts
from analyzer.importers.pipeline import parse_input
from tests.analyzer.guarantees import check_guarantees as check
from tracer.errors import ImportFormatError

LIBVIRT = ("libvirt-9.0", "libvirt-11.3")
DOMAIN_LOG = "qemu-vm-a-stop-eio-file.log"


def _folder(samples_dir: Path, version: str) -> Path:
    return samples_dir / version / "a-stop-eio"


def _import(inputs: list[Path], out: Path) -> pq.ParquetFile:
    import_traces(inputs, out)
    return pq.read_table(out)


def _configs(table) -> list[dict]:
    rows = table.filter(pc.equal(table["kind"], "device_config")).to_pylist()
    return [{k: r[k] for k in ("device", "op", "policy", "src_line")} | {"payload": json.loads(r["payload"])}
            for r in rows]


@pytest.mark.parametrize("version", LIBVIRT)
def test_domain_log_is_recognised_and_gives_the_device_configuration(samples_dir, tmp_path, version):
    path = _folder(samples_dir, version) / DOMAIN_LOG
    parsed = parse_input(path)
    assert parsed.format == "domain-log"
    table = _import([path], tmp_path / "t.parquet")
    configs = _configs(table)
    assert [(c["device"], c["op"], c["policy"]) for c in configs] == [
        ("virtio-disk0", "write", "stop"), ("virtio-disk0", "read", "stop"),
    ]
    fact = configs[0]["payload"]
    assert fact["qom_path"] == "/machine/peripheral/virtio-disk0/virtio-backend"
    assert fact["iothread"] == "iothread1"
    assert fact["werror"] == fact["rerror"] == "stop"
    assert fact["node_names"][-1] == "libvirt-1-storage"
    # the rows point at the -device option that configured the disk
    lines = path.read_text().splitlines()
    assert lines[configs[0]["src_line"] - 1].startswith("-device '{\"driver\":\"virtio-blk-pci\"")
    assert set(table["src_file"].to_pylist()) == {str(path)}
    meta = table.schema.metadata
    assert meta[b"blkreplay.qemu_version"] == (b"7.2.22" if version == "libvirt-9.0" else b"10.0.2")
    assert set(table["host"].to_pylist()) == {"vm"}
    assert set(table["vm"].to_pylist()) == {"vm-a-stop-eio-file"}


def _combinations(folder: Path) -> list[tuple[Path, ...]]:
    files = [folder / "libvirtd.log", folder / DOMAIN_LOG, folder / "virsh-events.log"]
    return [c for n in (1, 2, 3) for c in itertools.combinations(files, n)]


@pytest.mark.parametrize("version", LIBVIRT)
def test_every_combination_of_the_real_samples_imports_and_checks_clean(samples_dir, tmp_path, version):
    folder = _folder(samples_dir, version)
    for k, combo in enumerate(_combinations(folder)):
        out = tmp_path / f"t{k}.parquet"
        import_traces(list(combo), out)
        result = check([out])
        names = [p.name for p in combo]
        assert [(f.rule, f.message) for f in result.findings] == [], names
        assert result.verdict == "pass", names
        judged = "action-matches-policy" not in result.not_applicable
        # judged exactly when the policy (domain log) and BLOCK_IO_ERRORs (libvirtd.log) meet
        assert judged == ({"libvirtd.log", DOMAIN_LOG} <= set(names)), names


@pytest.mark.parametrize("version", LIBVIRT)
def test_an_edited_policy_that_disagrees_with_the_events_is_caught(samples_dir, tmp_path, version):
    folder = _folder(samples_dir, version)
    text = (folder / DOMAIN_LOG).read_text()
    assert '"werror":"stop"' in text
    edited = tmp_path / DOMAIN_LOG
    edited.write_text(text.replace('"werror":"stop"', '"werror":"report"'))
    line = next(i for i, x in enumerate(text.splitlines(), 1) if '"werror":"stop"' in x)
    out = tmp_path / "t.parquet"
    import_traces([folder / "libvirtd.log", edited, folder / "virsh-events.log"], out)
    result = check([out])
    found = [f for f in result.findings if f.rule == "action-matches-policy"]
    assert result.verdict == "fail"
    assert {f.rule for f in result.findings} == {"action-matches-policy"}
    # every write error (the read error follows rerror=stop, still right)
    assert len(found) == 5
    for f in found:
        assert f.message.startswith("BLOCK_IO_ERROR took action stop but the write policy configured on the "
                                    "command line (werror=report) with errno 5 gives report")
        assert f"{edited}:{line}" in f.src  # the -device line that configured it
        assert any(s.startswith(f"{folder / 'libvirtd.log'}:") for s in f.src)


@pytest.mark.parametrize("qemu", ["qemu-7.2", "qemu-10.0"])
@pytest.mark.parametrize("sample", ["a-stop-eio-dataplane", "c-report"])
def test_a_plain_command_line_gives_the_policy_of_a_drive(samples_dir, tmp_path, qemu, sample):
    folder = samples_dir / qemu / sample
    cmdline = folder / "cmdline.txt"
    assert parse_input(cmdline).format == "domain-log"
    inputs = [cmdline, folder / "qmp-transcript.jsonl", folder / "trace.log"]
    out = tmp_path / "t.parquet"
    table = _import(inputs, out)
    configs = _configs(table)
    # -drive id=drive0 + -device id=vblk0: the events may carry either name
    assert {c["device"] for c in configs} == {"vblk0", "drive0"}
    result = check([out])
    assert result.findings == [] and "action-matches-policy" not in result.not_applicable
    # the same capture with the opposite policy on the command line is caught
    text = cmdline.read_text()
    policy = "stop" if "werror=stop" in text else "report"
    other = "report" if policy == "stop" else "stop"
    edited = tmp_path / "cmdline.txt"
    edited.write_text(text.replace(f"werror={policy}", f"werror={other}").replace(f"rerror={policy}", f"rerror={other}"))
    import_traces([edited, *inputs[1:]], tmp_path / "e.parquet")
    bad = check([tmp_path / "e.parquet"])
    assert {f.rule for f in bad.findings if f.severity == "error"} == {"action-matches-policy"}


def test_policy_left_to_qemu_default_is_not_judged(write, tmp_path, samples_dir):
    """No werror/rerror on the command line: the rows carry no policy and nothing is judged
    against a default this importer would have to guess."""
    folder = samples_dir / "qemu-7.2" / "a-stop-eio-dataplane"
    text = (folder / "cmdline.txt").read_text().replace(",rerror=stop,werror=stop", "")
    cmdline = write("cmdline.txt", text)
    out = tmp_path / "t.parquet"
    table = _import([cmdline, folder / "qmp-transcript.jsonl"], out)
    assert {c["policy"] for c in _configs(table)} == {None}
    assert check([out]).findings == []


def test_trace_lines_in_a_domain_log_become_trace_rows(samples_dir, tmp_path):
    """QEMU's stderr in the domain log: `-trace` lines are parsed as a trace log's."""
    folder = _folder(samples_dir, "libvirt-11.3")
    trace = (samples_dir / "qemu-10.0" / "a-stop-eio-dataplane" / "trace.log").read_text().splitlines()[:50]
    lines = (folder / DOMAIN_LOG).read_text().splitlines()
    at = next(i for i, x in enumerate(lines) if "is tainted" in x) + 1
    path = tmp_path / DOMAIN_LOG
    path.write_text("\n".join(lines[:at] + trace + lines[at:]) + "\n")
    table = _import([path], tmp_path / "t.parquet")
    kinds = table["kind"].to_pylist()
    src = table["src_line"].to_pylist()
    names = table["name"].to_pylist()
    assert kinds.count("device_config") == 2
    traced = [s for k, s, n in zip(kinds, src, names, strict=True) if k != "device_config" and n != "qemu_message"]
    # every trace line became a row pointing at its line in the domain log
    assert sorted(traced) == list(range(at + 1, at + len(trace) + 1))
    terminating = next(i for i, x in enumerate(lines, 1) if "terminating on signal" in x) + len(trace)
    assert src[names.index("qemu_message")] == terminating


def test_classify_the_new_line_types():
    assert classify_line("2026-12-02 05:24:24.992+0000: starting up libvirt version: 11.3.0, qemu version: 10.0.2") == "domain-log"
    assert classify_line("qemu-system-x86_64 -accel tcg -nodefaults") == "domain-log"
    assert classify_line("/usr/bin/qemu-kvm -name guest=a") == "domain-log"
    assert classify_line("qemu-system-x86_64: terminating on signal 15") == "qemu-log"
    assert classify_line("2026-12-02 05:24:55.023+0000: event 'lifecycle' for domain 'a': Stopped Shutdown") == "virsh-events"


def test_qemu_opts_and_json_options():
    assert qemu_opts("virtio-blk-pci,drive=d0,id=a,,b", "driver") == {"driver": "virtio-blk-pci", "drive": "d0", "id": "a,b"}
    cmd = parse_command_line([
        "qemu-system-x86_64", "-name", "guest=vm1,debug-threads=on",
        "-drive", "file=x.img,if=none,id=drive-scsi0,werror=enospc,rerror=report",
        "-device", "scsi-hd,drive=drive-scsi0,id=scsi0-0-0-0",
        "-blockdev", '{"driver":"file","filename":"y","node-name":"n1"}',
        "-device", '{"driver":"virtio-blk-pci","drive":"n1","id":"vd1","werror":"ignore"}',
    ])
    assert cmd.vm == "vm1"
    by_id = {d["qdev_id"]: d for d in cmd.devices}
    assert by_id["scsi0-0-0-0"]["werror"] == "enospc" and by_id["scsi0-0-0-0"]["qom_path"] == "/machine/peripheral/scsi0-0-0-0"
    assert by_id["vd1"]["werror"] == "ignore" and by_id["vd1"]["rerror"] is None
    assert cmd.node_map["n1"] == "vd1"


def test_a_broken_json_option_is_one_line_naming_the_file_and_line(write):
    path = write("vm.log", "2026-12-02 05:24:24.992+0000: starting up libvirt version: 11.3.0, hostname: h\n"
                           "LC_ALL=C \\\nqemu-system-x86_64 \\\n-device '{\"driver\":\"virtio-blk-pci\",\"drive\":' \\\n"
                           "-S\n")
    with pytest.raises(ImportFormatError) as exc:
        parse_input(path)
    message = str(exc.value)
    assert message.startswith(f"{path}, line 4: QEMU command line: -device ") and "not valid JSON" in message
    assert "\n" not in message


@pytest.mark.parametrize("name", [DOMAIN_LOG, "virsh-events.log"])
def test_mangled_host_logs_give_rows_or_one_input_error_never_a_crash(samples_dir, tmp_path, name):
    """Seeded mutations of the real domain log and virsh output (bytes flipped, lines cut,
    doubled, reordered): each parses, or fails with an InputError (exit 2), never otherwise."""
    import random

    from analyzer.importers.vm_tables import vm_tables
    from tracer.errors import InputError

    original = (_folder(samples_dir, "libvirt-11.3") / name).read_bytes()
    rng = random.Random(14)
    path = tmp_path / name
    for _ in range(150):
        lines = original.split(b"\n")
        for _ in range(rng.randint(1, 4)):
            k = rng.randrange(len(lines))
            what = rng.randrange(4)
            if what == 0 and lines[k]:
                j = rng.randrange(len(lines[k]))
                lines[k] = lines[k][:j] + bytes([rng.choice(b"'\"{},=\\ \x00\xff:-")]) + lines[k][j + 1 :]
            elif what == 1:
                lines[k] = lines[k][: rng.randrange(len(lines[k]) + 1)]
            elif what == 2:
                lines.insert(k, lines[rng.randrange(len(lines))])
            else:
                del lines[k]
        path.write_bytes(b"\n".join(lines))
        for skip in (False, True):
            try:
                parsed = parse_input(path, skip_bad=skip)
                vm_tables([parsed], vm=None, host=None)
            except InputError as exc:
                assert "\n" not in str(exc)


def test_a_rotated_domain_log_starting_with_qemu_stderr_is_still_a_domain_log(samples_dir, tmp_path):
    lines = (_folder(samples_dir, "libvirt-11.3") / DOMAIN_LOG).read_text().splitlines()
    terminating = next(i for i, x in enumerate(lines) if "terminating on signal" in x)
    rotated = tmp_path / (DOMAIN_LOG + ".1")
    rotated.write_text("\n".join(lines[terminating:] + lines) + "\n")
    parsed = parse_input(rotated)
    assert parsed.format == "domain-log"
    assert [p.source for p in parsed.parts] == ["domain-log", "qemu-log"]
    # a trace log alone stays a trace log
    assert parse_input(samples_dir / "qemu-10.0" / "a-stop-eio-dataplane" / "trace.log").format == "qemu-log"
