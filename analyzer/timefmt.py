"""Showing trace time as people read it: ISO-8601 UTC for wall-clock traces, seconds otherwise.

A trace's `ts_ns` is a Unix epoch time for imports and live captures, but a virtual clock
(simulator) or a monotonic clock (threaded recorder) for our own recordings, which start near
zero. An SRE comparing blkreplay's output with journald, Grafana or `virsh` needs UTC wall
time; a simulated run has none, and printing 1970 dates for it would mislead. The line is
drawn at `WALL_CLOCK_MIN_NS` (2001-09-09): no monotonic clock of a running host reaches 31
years of uptime, and no import predates it.

Every renderer (replay, findings, reports, exports) formats time here, so a timestamp reads
the same everywhere: microseconds (the resolution of QMP's timestamps), a ``Z`` suffix.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

#: Timestamps at or after this (ns since the epoch; 2001-09-09T01:46:40Z) are wall-clock time.
WALL_CLOCK_MIN_NS = 10**18


def is_wall_clock(ts_ns: int | None) -> bool:
    """Whether `ts_ns` reads as a Unix epoch time (an import or a live capture)."""
    return ts_ns is not None and ts_ns >= WALL_CLOCK_MIN_NS


def iso_utc(ts_ns: int) -> str:
    """``2026-12-02T19:40:43.123456Z``: the UTC time of an epoch `ts_ns`, to the microsecond."""
    return str(np.datetime64(int(ts_ns) // 1000, "us")) + "Z"


def iso_utc_array(ts_ns: np.ndarray) -> np.ndarray:
    """`iso_utc` over a whole int64 column (vectorized: no Python loop over rows)."""
    us = np.asarray(ts_ns, dtype=np.int64) // 1000
    return np.char.add(np.datetime_as_string(us.astype("datetime64[us]"), unit="us"), "Z")


def seconds(ns: int) -> str:
    """A duration or a non-wall-clock time as seconds: ``12.345678 s``."""
    return f"{ns / 1e9:.6f} s"


def format_ts(ts_ns: int | None) -> str:
    """A timestamp for people: ISO-8601 UTC when it is wall-clock time, else seconds on the
    trace's own clock (``t=12.345678 s``); ``-`` when there is none."""
    if ts_ns is None:
        return "-"
    if is_wall_clock(ts_ns):
        return iso_utc(ts_ns)
    return f"t={seconds(ts_ns)}"


def relative(ts_ns: int, origin_ns: int) -> str:
    """`ts_ns` relative to `origin_ns` (the trace's or an incident's start): ``+1.250000 s``."""
    d = ts_ns - origin_ns
    return ("+" if d >= 0 else "-") + seconds(abs(d))


def parse_time(text: str) -> int:
    """A user's time bound (``--since`` / ``--until``) as epoch ns: ISO-8601 (``Z``, an offset,
    or none meaning UTC; a date alone is its midnight UTC) or a number of seconds since the
    epoch. Raises ValueError with a readable message otherwise."""
    raw = text.strip()
    try:
        return int(float(raw) * 1e9) if raw.replace(".", "", 1).isdigit() else _iso(raw)
    except (ValueError, OverflowError):
        raise ValueError(f"not a time: {text!r} (use ISO-8601 like 2026-12-02T19:40:00Z, "
                         "or seconds since the epoch)") from None


def _iso(raw: str) -> int:
    value = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000
