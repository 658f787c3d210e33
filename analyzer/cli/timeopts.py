"""`--since` / `--until`: one wording and one parser for every command that takes a time range.

A bound is ISO-8601 (``2026-12-02T19:40:00Z``, an offset, or none meaning UTC; a date alone is
its midnight) or seconds since the epoch (:func:`analyzer.timefmt.parse_time`). The commands
analyse the whole trace and keep what lies in the range, so a cut never raises a false alarm.
"""

from __future__ import annotations

from analyzer.timefmt import parse_time
from tracer.errors import UsageError

SINCE_HELP = ("Keep only what happened at or after TIME (ISO-8601 like 2026-12-02T19:40:00Z, or "
              "epoch seconds); the whole trace is still analysed.")
UNTIL_HELP = "Keep only what happened at or before TIME (as --since)."


def time_bounds(since: str | None, until: str | None, command: str) -> tuple[int | None, int | None]:
    """The bounds as epoch ns (None: open). Raises UsageError for a bad time or an empty range."""
    out = []
    for flag, text in (("--since", since), ("--until", until)):
        if text is None:
            out.append(None)
            continue
        try:
            out.append(parse_time(text))
        except ValueError as exc:
            raise UsageError(f"{flag}: {exc}", command=command) from None
    lo, hi = out
    if lo is not None and hi is not None and lo > hi:
        raise UsageError(f"--since {since} is after --until {until}", command=command)
    return lo, hi
