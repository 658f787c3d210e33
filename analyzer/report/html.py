"""The HTML audit report: one self-contained file (inline CSS and SVG, no script, no URL).

Rendered from `templates/report.html.j2` with Jinja2 autoescape, so every string that came from
a trace is shown as text; a Content-Security-Policy forbids scripts and network access as a
second line of defence. The charts are inline SVG from :mod:`analyzer.report.charts`.
"""

from __future__ import annotations

from markupsafe import Markup

from analyzer.progress import ProgressCallback
from analyzer.report import charts
from analyzer.report.document import Report
from analyzer.report.fleet import CHART_BINS, CHART_HOSTS, paused_over_time
from analyzer.report.templating import html_environment, view


def render_html(report: Report, progress: ProgressCallback | None = None) -> bytes:
    """The page; `progress(done, 4)` after each chart and the page itself."""
    def step(done: int) -> None:
        if progress is not None:
            progress(done, 4)

    step(0)
    series = None
    if report.fleet is not None and report.fleet.span is not None:
        series = paused_over_time(report.fleet.pauses, *report.fleet.span)
    fleet_chart = charts.fleet_svg(series)
    step(1)
    timeline = charts.timeline_svg(report.timeline)
    step(2)
    latency = charts.latency_svg(report.stats)
    step(3)
    chart_markup = {
        # matplotlib escapes every text it writes into the SVG; the SVG is ours to inline.
        "fleet": Markup(fleet_chart) if fleet_chart else None,
        "timeline": Markup(timeline) if timeline else None,
        "latency": Markup(latency) if latency else None,
    }
    template = html_environment().get_template("report.html.j2")
    data = template.render(**view(report), charts=chart_markup, bins=charts.BINS,
                           marker_bins=charts.MARKER_BINS,
                           fleet_hosts=CHART_HOSTS, fleet_bins=CHART_BINS).encode("utf-8")
    step(4)
    return data
