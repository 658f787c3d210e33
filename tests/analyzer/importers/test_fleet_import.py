"""A fleet at a time: the files of many hosts imported at once are one hive dataset,
``host=H/vm=V/part-0.parquet``, the host from ``--host`` (a name or a pattern over the path),
else the logs themselves (libvirt's ``hostname:`` line, taken by the files beside it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from analyzer.importers import import_traces
from tests.analyzer.guarantees import check_guarantees as check
from tracer.errors import InputError, OutputError

FILES = ("libvirtd.log", "virsh-events.log", "qemu-vm-a-stop-eio-file.log")
VM = "vm-a-stop-eio-file"
#: (host, vm) as the VM's identity in the analyzer comes with the identity work; before it,
#: two hosts' VMs of one name are read as one VM (seq-unique findings).


def _fleet(samples_dir: Path, root: Path, hosts: dict[str, str], *, hostname: bool = False) -> list[Path]:
    """Copies of a libvirt capture per host directory (`hosts`: host -> libvirt version);
    with `hostname`, the ``hostname:`` of each libvirtd.log and domain log names its directory."""
    inputs = []
    for host, version in hosts.items():
        d = root / host
        d.mkdir(parents=True)
        for name in FILES:
            shutil.copy(samples_dir / version / "a-stop-eio" / name, d / name)
            inputs.append(d / name)
        if hostname:
            for name in ("libvirtd.log", FILES[2]):
                log = d / name
                log.write_text(log.read_text().replace("hostname: vm\n", f"hostname: {host}\n", 1))
    return inputs


def _files(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*.parquet"))


def test_the_same_vm_under_two_hosts_is_two_vms_of_one_dataset(samples_dir, tmp_path):
    inputs = _fleet(samples_dir, tmp_path / "logs", {"alpha": "libvirt-9.0", "beta": "libvirt-9.0"})
    out = tmp_path / "fleet"
    summary = import_traces(inputs, out, host="{dir}")
    assert _files(out) == [f"host=alpha/vm={VM}/part-0.parquet", f"host=beta/vm={VM}/part-0.parquet"]
    assert summary.hosts == ("alpha", "beta")
    assert summary.host_vm_rows == {("alpha", VM): 963, ("beta", VM): 963}
    assert summary.vm_rows == {VM: 2 * 963}
    assert [i.host for i in summary.inputs] == ["alpha"] * 3 + ["beta"] * 3
    a = pq.read_table(out / "host=alpha" / f"vm={VM}" / "part-0.parquet")
    b = pq.read_table(out / "host=beta" / f"vm={VM}" / "part-0.parquet")
    assert set(a["host"].to_pylist()) == {"alpha"} and set(b["host"].to_pylist()) == {"beta"}
    # the same rows but for the host and the files they came from
    for col in ("seq", "ts_ns", "kind", "name", "device", "payload", "src_line"):
        assert a[col].to_pylist() == b[col].to_pylist(), col
    # each host's file records only its own inputs
    assert "beta" not in a.schema.metadata[b"blkreplay.inputs"].decode()


def test_a_fleet_with_one_vm_name_on_two_hosts_checks_clean(samples_dir, tmp_path):
    inputs = _fleet(samples_dir, tmp_path / "logs", {"alpha": "libvirt-9.0", "beta": "libvirt-9.0"})
    out = tmp_path / "fleet"
    import_traces(inputs, out, host="{dir}")
    result = check([out])
    assert result.findings == [] and result.verdict == "pass"


def test_the_host_comes_from_the_logs_and_the_files_beside_them(samples_dir, tmp_path):
    inputs = _fleet(samples_dir, tmp_path / "logs", {"alpha": "libvirt-9.0", "beta": "libvirt-11.3"},
                    hostname=True)
    out = tmp_path / "fleet"
    summary = import_traces(inputs, out)
    assert _files(out) == [f"host=alpha/vm={VM}/part-0.parquet", f"host=beta/vm={VM}/part-0.parquet"]
    # virsh events name no host: they take the one of the logs beside them
    assert [(Path(i.path).name, i.host) for i in summary.inputs] == [
        (n, h) for h in ("alpha", "beta") for n in FILES
    ]
    for host in ("alpha", "beta"):
        t = pq.read_table(out / f"host={host}" / f"vm={VM}" / "part-0.parquet")
        assert set(t["host"].to_pylist()) == {host}
        assert {Path(f).name for f in t["src_file"].to_pylist()} == set(FILES)
    # each host's VM checks clean on its own (no cross-layer false alarm from a fleet import)
    for host in ("alpha", "beta"):
        result = check([out / f"host={host}"])
        assert result.findings == [], host


def test_a_fixed_host_and_a_regex_pattern(samples_dir, tmp_path):
    inputs = _fleet(samples_dir, tmp_path / "logs", {"h1": "libvirt-9.0", "h2": "libvirt-9.0"})
    fixed = import_traces(inputs[:3], tmp_path / "one", host="rack7")
    assert fixed.hosts == ("rack7",)
    assert _files(tmp_path / "one") == [f"vm={VM}/part-0.parquet"]  # one host: the layout of ever
    assert set(pq.read_table(tmp_path / "one").column("host").to_pylist()) == {"rack7"}
    one = import_traces(inputs[:3], tmp_path / "pattern", host="{dir}")  # a pattern: a fleet
    assert one.hosts == ("h1",)
    assert _files(tmp_path / "pattern") == [f"host=h1/vm={VM}/part-0.parquet"]
    regex = import_traces(inputs, tmp_path / "two", host=r"re:logs/(?P<host>h\d)/")
    assert regex.hosts == ("h1", "h2")
    templ = import_traces(inputs, tmp_path / "three", host="dc1-{dir}")
    assert templ.hosts == ("dc1-h1", "dc1-h2")
    # one .parquet file holds the whole fleet, each row with its host
    single = tmp_path / "fleet.parquet"
    import_traces(inputs, single, host="{dir}")
    t = pq.read_table(single)
    assert sorted(set(t["host"].to_pylist())) == ["h1", "h2"]
    # and records every host's inputs, each once
    recorded = json.loads(t.schema.metadata[b"blkreplay.inputs"])
    assert sorted(e["path"] for e in recorded) == sorted(str(p) for p in inputs)


def test_a_pattern_that_gives_no_host_is_an_input_error(samples_dir, tmp_path):
    inputs = _fleet(samples_dir, tmp_path / "logs", {"h1": "libvirt-9.0"})
    with pytest.raises(InputError, match="gives no host for this input"):
        import_traces(inputs, tmp_path / "o", host="re:nowhere/(x)")
    with pytest.raises(InputError, match="needs a group"):
        import_traces(inputs, tmp_path / "o", host="re:logs")
    with pytest.raises(InputError, match=r"unknown field \{host\}"):
        import_traces(inputs, tmp_path / "o", host="{host}")
    assert not (tmp_path / "o").exists()
    done = subprocess.run(
        [sys.executable, "-c", "from analyzer.cli import main; main()", "import", *map(str, inputs), "-o", str(tmp_path / "o"),
         "--host", "{dir99}"], capture_output=True, text=True,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no {dir99} directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_fleet_import_is_the_same_whatever_the_order_of_its_files(samples_dir, tmp_path):
    inputs = _fleet(samples_dir, tmp_path / "logs", {"alpha": "libvirt-9.0", "beta": "libvirt-11.3"},
                    hostname=True)
    import_traces(inputs, tmp_path / "a")
    import_traces(list(reversed(inputs)), tmp_path / "b")
    files = _files(tmp_path / "a")
    assert files == _files(tmp_path / "b")
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_a_fleet_output_never_replaces_its_inputs(samples_dir, tmp_path):
    inputs = _fleet(samples_dir, tmp_path / "logs", {"alpha": "libvirt-9.0"})
    before = {p: p.read_bytes() for p in inputs}
    with pytest.raises(OutputError):
        import_traces(inputs, tmp_path / "logs", host="{dir}", replace=True)
    assert {p: p.read_bytes() for p in inputs} == before


def test_one_hosts_files_merge_wherever_they_lie(samples_dir, tmp_path):
    """virsh events kept elsewhere than the libvirt log still merge with its VM: the import
    has one host, theirs (and with two hosts, the one whose logs hold their domain)."""
    d = samples_dir / "libvirt-9.0" / "a-stop-eio"
    events = tmp_path / "elsewhere" / "virsh-events.log"
    events.parent.mkdir()
    shutil.copy(d / "virsh-events.log", events)
    summary = import_traces([d / "libvirtd.log", events], tmp_path / "one.parquet")
    assert summary.host_vm_rows == {("vm", VM): 931 + 29}
    assert [i.host for i in summary.inputs] == ["vm", "vm"]
    inputs = _fleet(samples_dir, tmp_path / "logs", {"alpha": "libvirt-9.0"}, hostname=True)
    other = tmp_path / "logs" / "beta" / "libvirtd.log"
    other.parent.mkdir()
    other.write_text("".join(
        line.replace("hostname: vm", "hostname: beta").replace(VM, "vm-other")
        for line in (d / "libvirtd.log").read_text().splitlines(keepends=True)
    ))
    summary = import_traces([*inputs, other, events], tmp_path / "two")
    assert summary.inputs[-1].host == "alpha"  # the only host with a VM of its domain's name
    assert _files(tmp_path / "two") == [f"host=alpha/vm={VM}/part-0.parquet",
                                         "host=beta/vm=vm-other/part-0.parquet"]


def test_inputs_without_a_host_sit_beside_the_hosts(samples_dir, tmp_path, dataplane):
    inputs = _fleet(samples_dir, tmp_path / "logs", {"alpha": "libvirt-9.0", "beta": "libvirt-9.0"},
                    hostname=True)
    qmp = tmp_path / "lab" / "qmp-transcript.jsonl"
    qmp.parent.mkdir()
    shutil.copy(dataplane / "qmp-transcript.jsonl", qmp)
    out = tmp_path / "mixed"
    summary = import_traces([*inputs, qmp], out)
    assert summary.inputs[-1].host is None  # two hosts, no directory, no VM name: none
    assert _files(out) == [f"host=alpha/vm={VM}/part-0.parquet", f"host=beta/vm={VM}/part-0.parquet",
                           "vm=vm0/part-0.parquet"]
