"""Number, time and duration formatting shared by every report renderer (pure, deterministic)."""

from __future__ import annotations

import pandas as pd

from analyzer.report.stats import errno_name
from analyzer.timefmt import format_ts


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def duration(ns: object) -> str:
    """A duration in ns as a short human reading: `850 ns`, `12.3 µs`, `4.56 ms`, `1.234 s`."""
    if _missing(ns):
        return "-"
    n = int(ns)  # type: ignore[call-overload]
    sign, n = ("-", -n) if n < 0 else ("", n)
    if n < 1_000:
        text = f"{n} ns"
    elif n < 1_000_000:
        text = f"{n / 1e3:.3g} µs"
    elif n < 1_000_000_000:
        text = f"{n / 1e6:.3g} ms"
    elif n < 600 * 10**9:
        text = f"{n / 1e9:.3f} s"
    else:
        text = f"{n / 6e10:.1f} min"
    return sign + text


def timestamp(ns: object) -> str:
    """A step's ts_ns as :func:`analyzer.timefmt.format_ts` shows it: ISO-8601 UTC for
    wall-clock traces, ``t=… s`` on the trace's own clock otherwise."""
    if _missing(ns):
        return "-"
    return format_ts(int(ns))  # type: ignore[call-overload]


def integer(value: object) -> str:
    """An integer with thousands separators (`1,000,000`), `-` when missing."""
    if _missing(value):
        return "-"
    return f"{int(value):,}"  # type: ignore[call-overload]


def errno(value: object) -> str:
    return errno_name(None if _missing(value) else value)


def text(value: object) -> str:
    """A nullable string cell: `-` when missing."""
    return "-" if _missing(value) else str(value)


def seqs(values: tuple[int, ...] | list[int]) -> str:
    return ", ".join(str(v) for v in values) if values else "-"


def records(frame: pd.DataFrame) -> list[dict]:
    """A frame as plain Python rows (NA -> None) for templates and JSON."""
    out = frame.astype(object).where(frame.notna(), None)
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in out.to_dict(orient="records")
    ]
