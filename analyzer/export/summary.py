"""What an export wrote, for the command line's one-line summary and a notebook."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ExportSummary:
    """The format, where it went (``-`` for standard output) and what it holds, by name:
    tracks, slices, rows per table, metric families, ..."""

    format: str
    path: str
    counts: dict[str, int] = field(default_factory=dict)
