"""Header times read in bulk (`libvirt_times.header_times`) are the parser's own
(`_LibvirtParser.time_ns`), and every header in the shape they read is read in bulk."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.importers.byte_lines import ByteLines
from analyzer.importers.libvirt_log import _HEAD, _LibvirtParser
from analyzer.importers.libvirt_times import header_times


def _two(n: int) -> str:
    return f"{n:02d}"


_HEADER = st.tuples(
    st.sampled_from([1899, 1900, 1970, 2000, 2023, 2024, 2100, 2199, 2200, 2262]),
    st.integers(0, 13), st.integers(0, 32), st.integers(0, 24), st.integers(0, 60), st.integers(0, 61),
    st.sampled_from(["364", "0", "0000", "999", "12"]), st.sampled_from("+-"),
    st.integers(0, 25), st.integers(0, 61),
)


def _text(h: tuple) -> str:
    year, month, day, hour, minute, second, fraction, sign, oh, om = h
    return (f"{year:04d}-{_two(month)}-{_two(day)} {_two(hour)}:{_two(minute)}:{_two(second)}.{fraction}"
            f"{sign}{_two(oh)}{_two(om)}: 17: info : qemuMonitorSend:861 : QEMU_MONITOR_SEND_MSG: mon=0x1 msg={{}}")


def _parser_time(line: str) -> int | None:
    m = _HEAD.match(line)
    assert m is not None
    parser = _LibvirtParser.__new__(_LibvirtParser)
    parser._seconds = {}
    try:
        return parser.time_ns(m)
    except ValueError:
        return None


@settings(max_examples=300, deadline=None)
@given(headers=st.lists(_HEADER, min_size=1, max_size=30), junk=st.lists(st.text("ab- :.", max_size=40), max_size=3))
def test_bulk_header_times_are_the_parsers(headers, junk):
    texts = [_text(h) for h in headers] + junk
    lines = ByteLines("\n".join(texts).encode())
    ns, timed = header_times(lines, np.arange(len(texts)))
    for k, h in enumerate(headers):
        expected = _parser_time(texts[k])
        year, _, _, _, _, second, fraction = h[:7]
        in_shape = len(fraction) == 3 and second <= 59 and 1900 <= year <= 2199
        if timed[k]:
            assert int(ns[k]) == expected
        else:  # what is not read in bulk is out of its shape, or bad for the parser too
            assert not in_shape or expected is None
    assert not timed[len(headers):].any()


def test_a_short_or_empty_line_is_not_timed():
    lines = ByteLines(b"\n2026-01-02 03:04:05.000+0000\nx")
    _, timed = header_times(lines, np.arange(3))
    assert not timed.any()


def test_leap_days_and_offsets():
    cases = [(2000, 2, 29, "+", 0, 0), (1900, 2, 29, "+", 0, 0), (2024, 2, 29, "-", 5, 30),
             (2023, 2, 29, "+", 1, 0), (2199, 12, 31, "+", 23, 59), (1900, 1, 1, "-", 23, 59)]
    texts = [_text((y, mo, d, 23, 59, 59, "999", sign, oh, om)) for y, mo, d, sign, oh, om in cases]
    ns, timed = header_times(ByteLines("\n".join(texts).encode()), np.arange(len(texts)))
    assert timed.tolist() == [True, False, True, False, True, True]
    assert [int(v) for v, ok in zip(ns, timed, strict=True) if ok] == [
        _parser_time(t) for t, ok in zip(texts, timed, strict=True) if ok
    ]
