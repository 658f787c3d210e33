"""The times of libvirt log lines' headers, many lines at once.

A libvirt header starts ``YYYY-MM-DD HH:MM:SS.mmm+ZZZZ:`` (``virTimeStringNowRaw``: the time
in milliseconds, the UTC offset in hours and minutes). The parser turns one header at a time
into nanoseconds since the epoch (`libvirt_log._LibvirtParser.time_ns`: ``strptime``, a cache
per second), which is about a tenth of its time per monitor line. Here the same sum is made
with numpy for the picked lines of a block, on the threads that read ahead of the parser.

Only headers in that exact shape are timed here: every digit where it belongs, a date that
exists in 1900..2199, a time before 23:59:60 and an offset within ±23:59. Any other (a leap
second, a fraction of more or fewer digits, February 30, month 13) is left to the parser's
own reading, which also says what is wrong with it: `header_times` never decides that a
header is bad.
"""

from __future__ import annotations

import numpy as np

from analyzer.importers.byte_lines import ByteLines

#: Offsets of the header's digits: year, month, day, hour, minute, second, milliseconds,
#: offset hours, offset minutes.
_FIELDS = ((0, 4), (5, 2), (8, 2), (11, 2), (14, 2), (17, 2), (20, 3), (24, 2), (26, 2))
_PUNCTUATION = ((4, b"-"), (7, b"-"), (10, b" "), (13, b":"), (16, b":"), (19, b"."), (28, b":"))
_LENGTH = 29
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def header_times(lines: ByteLines, picked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ns since the epoch, whether timed here) of the headers of lines `picked`."""
    starts = lines.starts[picked]
    long_enough = lines.ends[picked] - starts >= _LENGTH
    at = starts[long_enough]
    data = np.frombuffer(lines.block, dtype=np.uint8)
    ok = np.ones(len(at), dtype=bool)
    for offset, byte in _PUNCTUATION:
        ok &= data[at + offset] == byte[0]
    sign = data[at + 23]
    ok &= (sign == ord("+")) | (sign == ord("-"))
    values = []
    for offset, width in _FIELDS:
        digits = data[at[:, None] + np.arange(offset, offset + width)].astype(np.int64) - ord("0")
        ok &= ((digits >= 0) & (digits <= 9)).all(axis=1)
        values.append(digits @ (10 ** np.arange(width - 1, -1, -1, dtype=np.int64)))
    year, month, day, hour, minute, second, millis, off_hours, off_minutes = values
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_ok = (month >= 1) & (month <= 12)
    days_in_month = _DAYS_IN_MONTH[np.where(month_ok, month, 0)] + ((month == 2) & leap)
    ok &= (year >= 1900) & (year <= 2199) & month_ok & (day >= 1) & (day <= days_in_month)
    ok &= (hour <= 23) & (minute <= 59) & (second <= 59) & (off_hours <= 23) & (off_minutes <= 59)
    seconds = _days_since_epoch(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
    offset = (off_hours * 3600 + off_minutes * 60) * np.where(sign == ord("+"), 1, -1)
    ns = np.zeros(len(picked), dtype=np.int64)
    timed = np.zeros(len(picked), dtype=bool)
    where = np.flatnonzero(long_enough)
    ns[where] = (seconds - offset) * 1_000_000_000 + millis * 1_000_000
    timed[where] = ok
    return ns, timed


def _days_since_epoch(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days from 1970-01-01 to each (proleptic Gregorian) date (H. Hinnant's days_from_civil)."""
    y = year - (month <= 2)
    era = y // 400
    year_of_era = y - era * 400
    day_of_year = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


__all__ = ["header_times"]
