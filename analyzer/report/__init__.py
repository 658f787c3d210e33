"""Audit reports: what an SRE attaches to an incident or a release.

A report is complete (every rule, every finding counted, every input hashed), honest (capped
listings say how much they leave out; integrity problems of the trace itself are shown),
reproducible (byte-identical for the same inputs, with the command that made it) and readable by
someone who never ran the tool. One :class:`Report` is built from the inputs and rendered as
HTML (self-contained, with charts), Markdown (for a code-hosting site) or JSON::

    from analyzer.report import build_report, write_report
    report = build_report(["traces/sync-stop"], max_findings=20)
    write_report(report, "audit.html")          # format from the extension
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from analyzer.report.build import assemble_report, build_report, rules_hash
from analyzer.report.document import FORMATS, Report
from tracer.errors import BlkreplayError

__all__ = [
    "FORMATS",
    "Report",
    "assemble_report",
    "build_report",
    "format_for",
    "render",
    "rules_hash",
    "write_report",
]

_EXTENSIONS = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md", ".json": "json"}


def format_for(out: str | Path, fmt: str | None = None) -> str:
    """The report format: `fmt` if given, else from the output file's extension."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise BlkreplayError(f"unknown report format {fmt!r}; expected one of: {', '.join(FORMATS)}")
        return fmt
    ext = Path(out).suffix.lower()
    if ext not in _EXTENSIONS:
        raise BlkreplayError(
            f"cannot tell the report format from {str(out)!r}; use --format html|md|json"
        )
    return _EXTENSIONS[ext]


def render(report: Report, fmt: str) -> bytes:
    """The report as `fmt` ("html", "md" or "json"), as bytes (UTF-8)."""
    if fmt == "html":
        from analyzer.report.html import render_html

        return render_html(report)
    if fmt == "md":
        from analyzer.report.markdown import render_markdown

        return render_markdown(report)
    if fmt == "json":
        from analyzer.report.json import render_json

        return render_json(report)
    raise BlkreplayError(f"unknown report format {fmt!r}; expected one of: {', '.join(FORMATS)}")


def write_report(report: Report, out: str | Path, fmt: str | None = None) -> Path:
    """Render and write atomically: an existing `out` is replaced only by a complete new file."""
    out = Path(out)
    data = render(report, format_for(out, fmt))
    directory = out.parent if str(out.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
