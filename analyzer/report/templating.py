"""The Jinja2 environments of the HTML and Markdown reports.

Both escape by default, so that a template cannot forget to: HTML with Jinja2's autoescape,
Markdown with a `finalize` hook that passes every `{{ … }}` value through
:func:`analyzer.text.markdown_cell` unless it is already `Markup` (text built here on purpose,
such as a code fence). Templates load from the package, never from the working directory.
"""

from __future__ import annotations

import re
from functools import cache

import jinja2
from markupsafe import Markup

from analyzer.report import format as fmt
from analyzer.report.document import Report
from analyzer.text import markdown_cell, printable

FILTERS = {
    "duration": fmt.duration,
    "timestamp": fmt.timestamp,
    "integer": fmt.integer,
    "errno": fmt.errno,
    "text": fmt.text,
    "seqs": fmt.seqs,
    "records": fmt.records,
    "printable": printable,
}


def _markdown_finalize(value: object) -> object:
    if isinstance(value, Markup):
        return str(value)
    return markdown_cell("" if value is None else value)


def _base(**options: object) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("analyzer.report", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        **options,  # type: ignore[arg-type]
    )
    env.filters.update(FILTERS)
    return env


@cache
def html_environment() -> jinja2.Environment:
    return _base(autoescape=True)


@cache
def markdown_environment() -> jinja2.Environment:
    env = _base(autoescape=False, finalize=_markdown_finalize)
    env.filters["fence"] = fence
    return env


def fence(value: object, info: str = "") -> Markup:
    """`value` as a fenced Markdown code block whose fence no backtick run inside can close."""
    text = printable(value)
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return Markup(f"{ticks}{info}\n{text}\n{ticks}")


def view(report: Report) -> dict[str, object]:
    """What both templates read: the report, with its frames as plain rows."""
    listed = [lf for s in report.rules for lf in s.listed]
    offsets = [0]
    for s in report.rules:
        offsets.append(offsets[-1] + len(s.listed))
    return {
        "r": report,
        "result": report.result,
        "prov": report.provenance,
        "listed": listed,
        #: (section, number of findings listed before it): findings are numbered across rules.
        "sections": list(zip(report.rules, offsets, strict=False)),
        "vms": fmt.records(report.stats.vms),
        "errors": fmt.records(report.stats.errors),
        "latencies": fmt.records(report.stats.latencies),
        "integrity_vms": fmt.records(report.integrity.per_vm),
        "gaps": fmt.records(report.integrity.seq_gaps),
        "clock": fmt.records(report.integrity.clock_anomalies),
        "findings_per_vm": report.findings_per_vm,
    }
