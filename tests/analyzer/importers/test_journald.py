"""libvirt's daemon log kept by the systemd journal (``journalctl -o json|export|short-precise``)
and the split daemons' ``virtqemud.log``.

The journal inputs are derived from the real libvirt 9.0 ``libvirtd.log`` by
`tests.analyzer.importers.hostlog_inputs` (re-printed as libvirt's journald output and
journalctl would print it); each must import to the same events, in the same order, as the
log itself, each row naming the journal's own line, and pass ``check`` the same way.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from analyzer import check
from analyzer.cli import main
from analyzer.importers import import_traces
from analyzer.importers.pipeline import parse_input
from tests.analyzer.importers import hostlog_inputs as derive

#: Columns that must be equal between the import of the log and of its rendering.
SAME = ("seq", "ts_ns", "vm", "thread", "thread_kind", "kind", "device", "req_id", "op", "errno", "policy",
        "action", "iostatus", "runstate", "prev_runstate", "name", "error_id", "payload", "cmd_seq", "event_ts_ns")


@pytest.fixture(scope="module")
def original(libvirt_log, tmp_path_factory):
    out = tmp_path_factory.mktemp("orig") / "t.parquet"
    import_traces([libvirt_log], out)
    return pq.read_table(out)


def _same_as_original(original, path: Path, where: dict[int, int], tmp_path: Path, host: str = "host-a"):
    out = tmp_path / "t.parquet"
    import_traces([path], out)
    table = pq.read_table(out)
    assert table.num_rows == original.num_rows > 900
    for column in SAME:
        assert table[column].to_pylist() == original[column].to_pylist(), column
    # every row names the journal's line that carries the log line it came from
    assert table["src_line"].to_pylist() == [where[n] for n in original["src_line"].to_pylist()]
    assert set(table["src_file"].to_pylist()) == {str(path)}
    assert set(table["host"].to_pylist()) == {host}  # _HOSTNAME, not libvirt's "hostname: vm"
    result = check([out])
    assert result.verdict == "pass" and result.findings == []
    return table


def test_journal_json_imports_as_the_libvirt_log(original, libvirt_log, tmp_path):
    text, where = derive.journal_json(libvirt_log)
    path = tmp_path / "journal.json"
    path.write_text(text)
    assert parse_input(path).format == "journal-json"
    _same_as_original(original, path, where, tmp_path)


def test_journal_of_the_daemons_stderr_imports_as_the_libvirt_log(original, libvirt_log, tmp_path):
    path = tmp_path / "journal.json"
    path.write_text(derive.journal_json_stderr(libvirt_log))
    lines = libvirt_log.read_text().count("\n")
    _same_as_original(original, path, {k: k for k in range(1, lines + 1)}, tmp_path)


def test_journal_export_imports_as_the_libvirt_log(original, libvirt_log, tmp_path):
    data, where = derive.journal_export(libvirt_log)
    assert b"MESSAGE\n" in data  # binary fields: the \r\n of the QMP commands
    path = tmp_path / "journal.export"
    path.write_bytes(data)
    assert parse_input(path).format == "journal-export"
    _same_as_original(original, path, where, tmp_path)


@pytest.mark.parametrize("iso,offset", [(False, 0), (True, 60), (True, -300)])
def test_journal_short_precise_imports_as_the_libvirt_log(original, libvirt_log, tmp_path, iso, offset):
    text, where = derive.journal_short(libvirt_log, iso=iso, offset_min=offset)
    path = tmp_path / "journal.txt"
    path.write_text(text)
    assert parse_input(path).format == "journal-short"
    _same_as_original(original, path, where, tmp_path)


def test_short_precise_in_local_time_finds_year_and_zone_from_the_qmp_events(original, libvirt_log, tmp_path):
    # no year, no zone printed: 90 minutes east of UTC, and no header line
    text, where = derive.journal_short(libvirt_log, offset_min=90)
    path = tmp_path / "journal.txt"
    path.write_text(text.split("\n", 1)[1])
    _same_as_original(original, path, {k: v - 1 for k, v in where.items()}, tmp_path)


def _refused(path: Path, capsys) -> str:
    """The one line `blkreplay import` prints for a bad `path` (exit 2, nothing written)."""
    out = path.parent / "t.parquet"
    with pytest.raises(SystemExit) as exc:
        main(["import", str(path), "-o", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()
    return err


def test_short_precise_without_any_clock_is_refused(write, capsys):
    path = write("j.txt", "Nov 25 16:55:38.065000 host-a libvirtd[1]: hostname: vm\n")
    err = _refused(path, capsys)
    assert "j.txt, line 1" in err and "short-iso-precise" in err


def test_a_broken_export_record_names_its_line(libvirt_log, tmp_path, capsys):
    data, _ = derive.journal_export(libvirt_log)
    # the first binary MESSAGE: its length made 1 byte too long
    key = data.index(b"MESSAGE\n")
    start = key + len(b"MESSAGE\n")
    length = int.from_bytes(data[start : start + 8], "little")
    bad = data[:start] + (length + 1).to_bytes(8, "little") + data[start + 8 :]
    path = tmp_path / "journal.export"
    path.write_bytes(bad)
    line = data[:key].count(b"\n") + 1
    err = _refused(path, capsys)
    assert f"journal.export, line {line}:" in err and "binary journal field MESSAGE" in err and "bad length" in err
    # skipped and counted: the other records import
    summary = import_traces([path], tmp_path / "t.parquet", skip_bad=True)
    assert summary.skipped == 1 and summary.rows > 900


def test_a_cut_binary_length_at_the_end_is_one_line(write, tmp_path, capsys):
    path = tmp_path / "j.export"
    path.write_bytes(b"__CURSOR=s=1\n__REALTIME_TIMESTAMP=1795625738065000\n_COMM=libvirtd\nMESSAGE\n\x05\x00")
    err = _refused(path, capsys)
    assert "j.export, line 4:" in err and "length is cut" in err


def test_json_message_left_out_by_journalctl_is_a_bad_line(write, capsys):
    good = '{"__REALTIME_TIMESTAMP":"1795625738065000","_COMM":"libvirtd","MESSAGE":"hostname: vm"}\n'
    path = write("j.json", good + '{"__REALTIME_TIMESTAMP":"1795625738066000","_COMM":"libvirtd","MESSAGE":null}\n')
    err = _refused(path, capsys)
    assert "j.json, line 2:" in err and "--all" in err


def test_records_of_two_hosts_are_refused(write, capsys):
    rec = '{{"__REALTIME_TIMESTAMP":"1795625738065000","_COMM":"virtqemud","_HOSTNAME":"{}","MESSAGE":"hostname: x"}}\n'
    path = write("j.json", rec.format("a") + rec.format("b"))
    err = _refused(path, capsys)
    assert "j.json, line 2:" in err and "'b'" in err and "_HOSTNAME" in err


def test_other_programs_records_are_not_libvirt(write, tmp_path):
    other = '{"__REALTIME_TIMESTAMP":"1","_COMM":"sshd","MESSAGE":"QEMU_MONITOR_RECV_EVENT: mon=0x1 event={bad"}\n'
    path = write("j.json", other)
    with pytest.raises(Exception, match="no QMP traffic"):
        import_traces([path], tmp_path / "t.parquet")


def test_virtqemud_log_of_the_split_daemons(original, libvirt_log, tmp_path):
    """virtqemud (libvirt >= 7's modular QEMU daemon) writes the same record format; the
    samples are monolithic libvirtd's, so this is libvirt 9.0's log with virtqemud's names."""
    text = libvirt_log.read_text().replace("libvirtd", "virtqemud").replace("libvirt-sock", "virtqemud-sock")
    path = tmp_path / "virtqemud.log"
    path.write_text(text)
    assert parse_input(path).format == "libvirt-log"
    out = tmp_path / "t.parquet"
    import_traces([path], out)
    table = pq.read_table(out)
    for column in SAME:
        assert table[column].to_pylist() == original[column].to_pylist(), column
    assert check([out]).verdict == "pass"
