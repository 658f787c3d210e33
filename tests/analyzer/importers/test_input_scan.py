"""An input's scan (sha256, line count, a cut last line, CRs) runs beside its parsing
(`InputText.start_scan`): what it finds is what reading the input first found, and a parser
never sees the difference."""

from __future__ import annotations

import hashlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.importers import lines
from analyzer.importers.lines import InputText, LinePolicy

_BYTES = st.lists(st.sampled_from([b"a", b"\n", b"\r", b"\r\n", b"x" * 7, "é".encode()]), max_size=60).map(b"".join)


def _facts(text: InputText) -> tuple:
    return text.sha256, text.line_count, text.unterminated, text.crlf, text.size


def _expected(data: bytes) -> tuple:
    cut = bool(data) and not data.endswith(b"\n")
    return hashlib.sha256(data).hexdigest(), data.count(b"\n") + cut, cut, b"\r" in data, len(data)


@settings(max_examples=60, deadline=None)
@given(data=_BYTES, chunk=st.sampled_from([1, 3, 64]))
def test_a_scan_beside_the_parsing_finds_what_a_scan_first_found(tmp_path_factory, data, chunk):
    path = tmp_path_factory.mktemp("scan") / "in.log"
    path.write_bytes(data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lines, "CHUNK_BYTES", chunk)
        with open(path, "rb") as first, open(path, "rb") as beside:
            before = InputText(str(path), first, size=len(data)).scan()
            during = InputText(str(path), beside, size=len(data)).start_scan()
            read = [block for _, block in during.iter_byte_blocks()]  # (the parser's reading)
            assert _facts(during) == _facts(before) == _expected(data)
            assert b"\n".join(read) == (data[:-1] if data.endswith(b"\n") else data)


def test_an_input_without_a_descriptor_is_scanned_at_once():
    text = InputText("mem.log", io.BytesIO(b"one\r\ntwo"), size=8).start_scan()
    assert _facts(text) == _expected(b"one\r\ntwo")


def test_closing_an_input_stops_its_scan(tmp_path, monkeypatch):
    monkeypatch.setattr(lines, "CHUNK_BYTES", 1)
    path = tmp_path / "big.log"
    path.write_bytes(b"line\n" * 200_000)
    text = lines.read_text(path, scan=False).start_scan()
    text.close()  # returns once the scan thread is done: it never reads a reused descriptor
    assert text._scanning is not None and text._scanning.done()


def test_a_bad_cut_last_line_is_reported_as_truncated_while_the_scan_runs(tmp_path):
    path = tmp_path / "cut.log"
    path.write_bytes(b"123@1.000001:ok\n123@1.0000")
    text = lines.read_text(path, scan=False).start_scan()
    policy = LinePolicy(text, "qemu-log", skip_bad=True)
    policy.bad(2, "123@1.0000", "not a QEMU trace line")
    assert policy.truncated and policy.skipped == 1
    text.close()
