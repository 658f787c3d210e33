"""The HTML audit report: one self-contained file (inline CSS and SVG, no script, no URL).

Rendered from `templates/report.html.j2` with Jinja2 autoescape, so every string that came from
a trace is shown as text; a Content-Security-Policy forbids scripts and network access as a
second line of defence. The charts are inline SVG from :mod:`analyzer.report.charts`.
"""

from __future__ import annotations

from markupsafe import Markup

from analyzer.report import charts
from analyzer.report.document import Report
from analyzer.report.templating import html_environment, view


def render_html(report: Report) -> bytes:
    timeline = charts.timeline_svg(report.timeline)
    latency = charts.latency_svg(report.stats)
    chart_markup = {
        # matplotlib escapes every text it writes into the SVG; the SVG is ours to inline.
        "timeline": Markup(timeline) if timeline else None,
        "latency": Markup(latency) if latency else None,
    }
    template = html_environment().get_template("report.html.j2")
    return template.render(**view(report), charts=chart_markup, bins=charts.BINS,
                           marker_bins=charts.MARKER_BINS).encode("utf-8")
