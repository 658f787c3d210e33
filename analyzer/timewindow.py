"""A time window over a result: keep what happened in [since, until], judged on the whole trace.

`check(..., since=, until=)` and `replay(..., since=, until=)` never cut the trace before the
analysis: a STOP whose BLOCK_IO_ERROR lies before `since` would otherwise look unexplained (a
false alarm from cut context). They analyse everything and then keep the findings (by the
time of their first offending step), episodes (by their first milestone) and steps whose time
lies in the window; a finding with no time (one about the trace as a whole: truncated,
empty) is always kept. Bounds are inclusive, epoch ns, or anything :func:`bound` accepts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from analyzer.result import Finding
from analyzer.timefmt import parse_time

TimeBound = int | float | str | datetime | None


def bound(value: TimeBound) -> int | None:
    """A bound as epoch ns: an int is ns already, a float epoch seconds, a str ISO-8601 or
    epoch seconds (:func:`analyzer.timefmt.parse_time`), a datetime its instant (naive: UTC).
    Raises ValueError for text that is not a time."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value * 1e9)
    if isinstance(value, datetime):
        return parse_time(value.isoformat())
    return parse_time(str(value))


def in_window(ts_ns: int | None, lo: int | None, hi: int | None) -> bool:
    return ts_ns is None or ((lo is None or ts_ns >= lo) and (hi is None or ts_ns <= hi))


def keep_findings(findings: Sequence[Finding], lo: int | None, hi: int | None) -> list[Finding]:
    """The findings whose first offending step lies in [lo, hi] (and those without a time)."""
    return [f for f in findings if in_window(f.ts_ns, lo, hi)]


def keep_episodes(table: pd.DataFrame, lo: int | None, hi: int | None) -> pd.DataFrame:
    """The episodes whose first milestone lies in [lo, hi] (vectorized over the table)."""
    if (lo is None and hi is None) or not len(table):
        return table
    ts = [c for c in table.columns if c.startswith("ts_")]
    none = np.iinfo(np.int64).max
    first = np.column_stack([pd.array(table[c], dtype="Int64").to_numpy(dtype=np.int64, na_value=none)
                             for c in ts]).min(axis=1)
    inside = np.ones(len(table), dtype=bool)
    if lo is not None:
        inside &= first >= lo
    if hi is not None:
        inside &= first <= hi
    return table[inside | (first == none)].reset_index(drop=True)
