"""Bad input: one clear error naming file and line, nothing written; or skipped and counted."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.cli import main
from analyzer.importers import import_traces, pipeline
from analyzer.importers import lines as lines_mod
from analyzer.importers.json_scan import parse_json, parse_json_exact
from tracer.errors import ImportFormatError, InputError, JSONBoundError
from tracer.schema import read_metadata

GOOD_TRACE = "10@1.000001:runstate_set current_run_state 6 (prelaunch) new_state 9 (running)\n"
EVENT = '{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}'


def transcript(*messages, t0=1.0):
    return "".join(
        json.dumps({"t": t0 + i, "dir": "recv", "line": m}) + "\n" for i, m in enumerate(messages)
    )


@pytest.mark.parametrize(
    "name,text,line,reason",
    [
        ("trace.log", GOOD_TRACE + "10@1.5:runstate_set\n", 2, "runstate_set without its run states"),
        ("trace.log", GOOD_TRACE + "!!! garbage\n", 2, "not a QEMU trace line"),
        ("trace.log", GOOD_TRACE + "10@1.5:monitor_qmp_respond mon 0x1 resp: {nope\n", 2, "bad JSON in monitor_qmp_respond"),
        ("t.jsonl", transcript(EVENT) + "{not json\n", 2, "not JSON"),
        ("t.jsonl", transcript(EVENT) + json.dumps({"t": 3, "dir": "recv", "line": '{"hello": 1}'}) + "\n", 2, "not a QMP message"),
        ("t.jsonl", transcript(EVENT) + EVENT + "\n", 2, "a raw QMP message in a transcript"),
        ("l.log", "2026-01-02 03:04:05.000+0000: 1: info : f:1 : QEMU_MONITOR_RECV_EVENT: mon=0x1 event={bad\n", 1, "QEMU_MONITOR_RECV_EVENT: bad JSON"),
        # a raw control character in a string: the decoder's own "... at" said once
        ("l.log", '2026-01-02 03:04:05.000+0000: 1: info : f:1 : QEMU_MONITOR_SEND_MSG: mon=0x1 msg={"execute":"x\x1b"}\n', 1,
         "QEMU_MONITOR_SEND_MSG: bad JSON (Invalid control character at column 14)"),
        ("t.jsonl", transcript(EVENT) + '{"t": 3, "dir": "recv", "line": "\x01"}\n', 2, "bad JSON in the QMP message (Invalid control character at column 34)"),
    ],
)
def test_malformed_line_names_file_and_line(write, tmp_path, name, text, line, reason):
    path = write(name, text)
    out = tmp_path / "out.parquet"
    with pytest.raises(ImportFormatError) as exc:
        import_traces([path], out)
    assert exc.value.path == str(path) and exc.value.line == line
    assert reason in str(exc.value)
    assert str(exc.value).startswith(f"{path}, line {line}: ")
    assert not out.exists()


def test_mixed_formats_name_the_first_foreign_line(write, tmp_path):
    path = write("trace.log", GOOD_TRACE * 3 + "2026-01-02 03:04:05.000+0000: 1: info : f:1 : hello\n" + GOOD_TRACE)
    with pytest.raises(ImportFormatError, match=r"line 4: a libvirt-log line in a qemu-log input \(mixed formats\)"):
        import_traces([path], tmp_path / "o.parquet")
    path = write("t.jsonl", transcript(EVENT) + GOOD_TRACE)
    with pytest.raises(ImportFormatError, match=r"line 2: a qemu-log line in a qmp input"):
        import_traces([path], tmp_path / "o.parquet")
    path = write("libvirtd.log", "2026-01-02 03:04:05.000+0000: 1: info : f:1 : hello\n" + GOOD_TRACE)
    with pytest.raises(ImportFormatError, match=r"line 2: a qemu-log line in a libvirt-log input"):
        import_traces([path], tmp_path / "o.parquet")


def test_unknown_and_empty_inputs(write, tmp_path):
    with pytest.raises(ImportFormatError, match=r"line 2: unknown format"):
        import_traces([write("x.conf", "\n[inject-error]\nevent = write_aio\n")], tmp_path / "o.parquet")
    with pytest.raises(ImportFormatError, match="empty input"):
        import_traces([write("e.log", "\n\n")], tmp_path / "o.parquet")
    with pytest.raises(InputError, match="no such file"):
        import_traces([tmp_path / "missing.log"], tmp_path / "o.parquet")
    with pytest.raises(InputError, match="unknown format 'xml'"):
        import_traces([write("t.log", GOOD_TRACE)], tmp_path / "o.parquet", format="xml")


def test_explicit_format_is_not_guessed(write, tmp_path):
    with pytest.raises(ImportFormatError, match=r"line 1: a qemu-log line in a qmp input"):
        import_traces([write("t.log", GOOD_TRACE)], tmp_path / "o.parquet", format="qmp")


def test_truncated_file(write, tmp_path):
    cut = GOOD_TRACE + '10@1.5:monitor_qmp_respond mon 0x1 resp: {"timestamp": {"sec'
    path = write("trace.log", cut)
    out = tmp_path / "out.parquet"
    with pytest.raises(ImportFormatError, match=r"line 2: truncated: the file ends mid-line"):
        import_traces([path], out)
    assert not out.exists()
    summary = import_traces([path], out, skip_bad=True)
    assert summary.truncated and summary.skipped == 1 and summary.rows == 1
    meta = read_metadata(pq.read_schema(out))
    assert meta["truncated"] == "true" and meta["skipped_lines"] == "1"
    # a last line without newline that parses is no truncation
    whole = write("whole.log", GOOD_TRACE.rstrip("\n"))
    assert not import_traces([whole], tmp_path / "w.parquet").truncated


def test_skip_bad_skips_and_counts(write, tmp_path):
    path = write("t.jsonl", transcript(EVENT) + "{not json\n" + "\n" + GOOD_TRACE + transcript(EVENT.replace("STOP", "RESUME"), t0=9))
    summary = import_traces([path], tmp_path / "o.parquet", skip_bad=True)
    assert (summary.skipped, summary.rows, summary.truncated) == (2, 2, False)
    table = pq.read_table(tmp_path / "o.parquet")
    meta = read_metadata(table.schema)
    assert meta["skipped_lines"] == "2" and "truncated" not in meta
    assert json.loads(meta["inputs"])[0]["skipped"] == 2
    assert table.column("src_line").to_pylist() == [1, 5]


def test_skip_bad_finds_the_format_after_junk(write, tmp_path):
    path = write("trace.log", "#### header junk\n" + GOOD_TRACE)
    with pytest.raises(ImportFormatError, match="unknown format"):
        import_traces([path], tmp_path / "o.parquet")
    summary = import_traces([path], tmp_path / "o.parquet", skip_bad=True)
    assert (summary.inputs[0].format, summary.skipped, summary.rows) == ("qemu-log", 1, 1)


def test_cli_bad_input_is_one_line_exit_2_nothing_written(write, tmp_path, capsys):
    path = write("trace.log", GOOD_TRACE + "!!! garbage\n")
    out = tmp_path / "out.parquet"
    with pytest.raises(SystemExit) as exc:
        main(["import", str(path), "-o", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "trace.log, line 2" in err and "Traceback" not in err
    assert not out.exists()


# -- the bounded reader (analyzer.importers.lines) and the bounded JSON (json_scan) ------------


@settings(max_examples=60, derandomize=True, deadline=None)
@given(st.lists(st.text(alphabet="ab\r\u00e9\u20ac", max_size=12), max_size=12), st.booleans(), st.integers(1, 9))
def test_streamed_lines_are_the_file_split_at_newlines_whatever_the_chunk(parts, newline_at_end, chunk):
    text = "\n".join(parts) + ("\n" if newline_at_end and parts else "")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.log"
        path.write_bytes(text.encode("utf-8"))
        old = lines_mod.CHUNK_BYTES
        lines_mod.CHUNK_BYTES = chunk  # multi-byte characters and CRs split across chunks
        try:
            got = lines_mod.read_text(path)
            expected = text.split("\n")
            if expected and expected[-1] == "":
                expected.pop()
            assert list(got.lines) == expected
            assert list(got.lines) == expected  # iterated again: read again from the file
            assert len(got.lines) == len(expected)
            assert got.unterminated == (bool(text) and not text.endswith("\n"))
            assert got.crlf == ("\r" in text)
            got.close()
        finally:
            lines_mod.CHUNK_BYTES = old


def test_line_bound_is_exact_and_names_the_line(tmp_path, monkeypatch):
    monkeypatch.setattr(lines_mod, "MAX_LINE_BYTES", 10)
    monkeypatch.setattr(lines_mod, "CHUNK_BYTES", 4)
    ok = tmp_path / "ok.log"
    ok.write_bytes(b"x" * 10 + b"\n" + b"y" * 10)
    assert [len(line) for line in lines_mod.read_text(ok).lines] == [10, 10]
    for content, line in [(b"a\nb\n" + b"x" * 11 + b"\nc\n", 3), (b"x" * 11, 1), (b"a\n" + b"x" * 30, 2)]:
        bad = tmp_path / "bad.log"
        bad.write_bytes(content)
        with pytest.raises(InputError, match="line longer than") as exc:
            list(lines_mod.read_text(bad).lines)
        assert exc.value.line == line


@pytest.mark.parametrize("name", ["trace.log", "libvirtd.log"])
def test_a_bad_line_is_reported_before_a_too_long_line_after_it(tmp_path, monkeypatch, name):
    """Blocks are read ahead of the parsing: the first bad line in order is still the one named."""
    monkeypatch.setattr(lines_mod, "MAX_LINE_BYTES", 200)
    monkeypatch.setattr(lines_mod, "CHUNK_BYTES", 64)
    monkeypatch.setattr(pipeline, "DETECT_BYTES", 400)  # (the format is told from the good lines)
    good = GOOD_TRACE if name == "trace.log" else "2026-01-02 03:04:05.000+0000: 1: info : f:1 : hostname: h\n"
    path = tmp_path / name
    first = good if name == "trace.log" else good.replace("hostname: h", f"QEMU_MONITOR_RECV_EVENT: mon=0x1 event={EVENT}")
    bad = "1 not a line\n" if name == "trace.log" else GOOD_TRACE  # (a trace line in a libvirt log)
    path.write_text(first + good * 4 + bad + good + "x" * 300 + "\n")
    with pytest.raises(ImportFormatError) as exc:
        import_traces([path], tmp_path / "out.parquet")
    assert exc.value.line == 6


@pytest.mark.parametrize(
    ("text", "reason"),
    [("[" * 100_000 + "]" * 100_000, "nested deeper"), ("[" * 65 + "]" * 65, "nested deeper"),
     ('{"a": 1e400}', "out of range"), ('{"a": NaN}', "non-finite"), ('{"a": -Infinity}', "non-finite"),
     ('"\\ud800"', "lone surrogate"), ('{"\\udc80": 1}', "lone surrogate"), ("9" * 5000, "too many digits")],
)
def test_bounded_json_refuses_with_a_value_error(text, reason):
    for parse in (parse_json, parse_json_exact):
        with pytest.raises(JSONBoundError, match=reason):
            parse(text)
    assert isinstance(JSONBoundError("x"), ValueError)


def test_bounded_json_keeps_what_is_valid():
    assert parse_json("[" * 64 + "]" * 64) is not None
    assert parse_json('{"a": "\\u00e9\\ud83d\\ude00", "b": 1.5}') == {"a": "\u00e9\U0001f600", "b": 1.5}
    assert parse_json_exact('{"t": 1795625380.571850}') == {"t": "1795625380.571850"}
