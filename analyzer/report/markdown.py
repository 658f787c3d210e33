"""The Markdown audit report: GitHub-flavoured tables that render cleanly on a code-hosting site.

Every value a template prints is escaped with :func:`analyzer.text.markdown_cell` by the
environment itself (see :mod:`analyzer.report.templating`), so a device named like HTML or
Markdown markup shows as text, and a pipe cannot break a table. Charts are left to the HTML
report.
"""

from __future__ import annotations

from analyzer.report.document import Report
from analyzer.report.templating import markdown_environment, view


def render_markdown(report: Report) -> bytes:
    template = markdown_environment().get_template("report.md.j2")
    return template.render(**view(report)).encode("utf-8")
