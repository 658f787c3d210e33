"""Audit reports: what an SRE attaches to an incident or a release.

A report is complete (every rule, every finding counted, every input hashed), honest (capped
listings say how much they leave out; integrity problems of the trace itself are shown),
reproducible (byte-identical for the same inputs, with the command that made it) and readable by
someone who never ran the tool. One :class:`Report` is built from the inputs and rendered as
HTML (self-contained, with charts), Markdown (for a code-hosting site) or JSON::

    from analyzer.report import build_report, write_report
    report = build_report(["traces/sync-stop"], max_findings=20)
    write_report(report, "audit.html")          # format from the extension

:func:`write_report` goes through :mod:`analyzer.outputs`: it never writes over (or into a
recording among) the report's own inputs, replaces an existing report only by a complete new
file with the umask's permissions, and turns every failure into one
:class:`tracer.errors.OutputError` naming the output.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from analyzer import outputs
from analyzer.progress import ProgressCallback
from analyzer.report.build import assemble_report, build_report, rules_hash
from analyzer.report.document import FORMATS, Report
from tracer import tracedir
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


def render(report: Report, fmt: str, progress: ProgressCallback | None = None) -> bytes:
    """The report as `fmt` ("html", "md" or "json"), as bytes (UTF-8). `progress(done, total)`
    follows the parts drawn (charts, then the page)."""
    if fmt == "html":
        from analyzer.report.html import render_html

        return render_html(report, progress)
    if fmt in ("md", "json"):
        if progress is not None:
            progress(0, 1)
        if fmt == "md":
            from analyzer.report.markdown import render_markdown

            data = render_markdown(report)
        else:
            from analyzer.report.json import render_json

            data = render_json(report)
        if progress is not None:
            progress(1, 1)
        return data
    raise BlkreplayError(f"unknown report format {fmt!r}; expected one of: {', '.join(FORMATS)}")


def write_report(
    report: Report,
    out: str | os.PathLike[str],
    fmt: str | None = None,
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
    parents: bool = False,
    progress: ProgressCallback | None = None,
) -> Path | None:
    """Render and write atomically: an existing `out` is replaced only by a complete new file.

    `out` is ``-`` for standard output (then `fmt` is needed); returns the path written, None
    for stdout. The report's own input files, the recordings they belong to and `inputs`
    (e.g. the paths as the user named them) are never written over or into. Missing parent
    directories are created only with `parents`; `progress` follows the rendering (see
    :func:`render`). Raises :class:`tracer.errors.OutputError`.
    """
    report_inputs = [*inputs, *report_input_paths(report)]
    target = outputs.check_output(out, inputs=report_inputs, kind="report", parents=parents,
                                  allow_stdout=True)
    kind = format_for(out, fmt)
    data = render(report, kind) if progress is None else render(report, kind, progress)
    return outputs.write_output(out if target is None else target, data, inputs=report_inputs,
                                kind="report", parents=parents, allow_stdout=True)


def report_input_paths(report: Report) -> list[str]:
    """The files a report was built from, and the recording directories that hold them."""
    paths = [i.path for i in report.provenance.inputs]
    dirs = {os.path.dirname(p) for p in paths}
    return [*paths, *sorted(d for d in dirs if d and tracedir.is_trace_dir(d))]
