"""Charts of an audit report as inline SVG text, byte-for-byte reproducible.

matplotlib draws on its SVG canvas (no pyplot, no global backend switch) with a fixed hash salt,
no date or creator metadata, fixed figure sizes and text kept as text; element ids are then
prefixed per chart so that several charts can live in one HTML page. Large traces are
aggregated before drawing: a timeline has at most :data:`BINS` columns per VM and one marker per
kind and column, so its size does not grow with the trace.
"""

from __future__ import annotations

import io
import re

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FormatStrFormatter, FuncFormatter, MaxNLocator

from analyzer.report.document import Statistics, Timeline
from analyzer.report.fleet import PausedSeries
from analyzer.report.stats import LATENCIES, TIMELINE_STATES
from analyzer.text import printable
from analyzer.timefmt import is_wall_clock, iso_utc

#: Columns of a timeline: each VM's run state is sampled at this resolution.
BINS = 800

STATE_COLORS = {"running": "#7fbf7f", "io-error": "#d62728", "paused": "#f2b134"}
#: Columns for event marks: each mark is a short tick, one per kind and column at most.
MARKER_BINS = 250
#: kind -> (legend label, colour, tick from, tick to) relative to the band's centre line.
MARKERS = {
    "error": ("BLOCK_IO_ERROR", "#8b0000", 0.28, 0.48),
    "stop": ("STOP", "#111111", -0.25, 0.25),
    "resume": ("RESUME", "#1f5fbf", -0.48, -0.28),
}

_RC = {
    "svg.hashsalt": "blkreplay",
    "svg.fonttype": "none",
    "svg.id": None,
    "text.parse_math": False,
    "font.family": "sans-serif",
    "font.size": 9,
    "path.simplify": True,
    "path.simplify_threshold": 0.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _label(value: object, width: int = 28) -> str:
    text = printable(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _svg(fig: Figure, prefix: str) -> str:
    buf = io.StringIO()
    FigureCanvasSVG(fig)
    with mpl.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return _inline(buf.getvalue(), prefix)


_ID = re.compile(r'\bid="([^"]+)"')


def _inline(svg: str, prefix: str) -> str:
    """Strip the XML prologue and metadata; make every id unique to this chart."""
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    ids = set(_ID.findall(svg))
    if ids:
        pattern = re.compile(r'(\bid="|url\(#|href="#)(' + "|".join(map(re.escape, sorted(ids, key=len, reverse=True))) + r')(?=[")])')
        svg = pattern.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", svg)
    return svg.replace("<svg ", f'<svg class="chart-svg" data-chart="{prefix}" ', 1).strip() + "\n"


def _bins(values: np.ndarray, t0: int, width: float) -> np.ndarray:
    return np.clip(((values - t0) / width).astype(np.int64), 0, BINS - 1)


def _state_grid(intervals: pd.DataFrame, vms: list[str], t0: int, width: float) -> np.ndarray:
    """(len(vms), BINS) codes: -1 no data, else index into TIMELINE_STATES; a column shows the
    most serious state present in it (io-error > paused > running)."""
    n = len(vms)
    row = intervals["vm"].map({v: i for i, v in enumerate(vms)}).to_numpy(dtype=np.int64)
    start = _bins(intervals["start_ns"].to_numpy(), t0, width)
    end = np.maximum(_bins(intervals["end_ns"].to_numpy(), t0, width), start)
    grid = np.full((n, BINS), -1, dtype=np.int64)
    for code in (0, 2, 1):  # running, then paused, then io-error painted last (wins)
        mask = (intervals["state"] == TIMELINE_STATES[code]).to_numpy()
        diff = np.zeros((n, BINS + 1), dtype=np.int64)
        np.add.at(diff, (row[mask], start[mask]), 1)
        np.add.at(diff, (row[mask], end[mask] + 1), -1)
        present = np.cumsum(diff[:, :BINS], axis=1) > 0
        grid[present] = code
    return grid


def timeline_svg(timeline: Timeline) -> str | None:
    """Run state over time per VM (running / io-error / paused) with BLOCK_IO_ERROR, STOP and
    RESUME marks. None when there is nothing to draw."""
    if not timeline.vms or timeline.intervals.empty:
        return None
    vms = list(timeline.vms)
    iv = timeline.intervals
    t0 = int(iv["start_ns"].min())
    t1 = int(iv["end_ns"].max())
    span = max(t1 - t0, 1)
    width = span / BINS
    grid = _state_grid(iv, vms, t0, width)
    scale = span / 1e9
    x_unit, x_div = ("s", 1e9) if scale >= 1 else ("ms", 1e6) if scale >= 1e-3 else ("µs", 1e3)
    bin_w = width / x_div

    height = 1.0 + 0.45 * len(vms)
    fig = Figure(figsize=(10, height), dpi=72)
    ax = fig.add_axes((0.14, 0.55 / height, 0.84, 0.45 * len(vms) / height))
    for i, _vm in enumerate(vms):
        y = len(vms) - 1 - i
        codes = grid[i]
        change = np.flatnonzero(np.diff(codes)) + 1
        starts = np.concatenate([[0], change])
        lengths = np.diff(np.concatenate([starts, [BINS]]))
        for code in (0, 2, 1):
            sel = codes[starts] == code
            if sel.any():
                spans = list(zip(starts[sel] * bin_w, lengths[sel] * bin_w, strict=True))
                ax.broken_barh(spans, (y - 0.25, 0.5), facecolors=STATE_COLORS[TIMELINE_STATES[code]],
                               edgecolors="none")
    mk = timeline.markers
    mark_w = span / MARKER_BINS
    for key, (_, color, lo, hi) in MARKERS.items():
        sub = mk[mk["marker"] == key]
        row = sub["vm"].map({v: i for i, v in enumerate(vms)}).dropna().astype(np.int64)
        if row.empty:
            continue
        cols = np.clip(((sub.loc[row.index, "ts_ns"].to_numpy() - t0) / mark_w).astype(np.int64), 0,
                       MARKER_BINS - 1)
        cells = np.unique(np.stack([row.to_numpy(), cols]), axis=1)
        x = (cells[1] + 0.5) * mark_w / x_div
        y = (len(vms) - 1 - cells[0]).astype(np.float64)
        # One path of separate vertical ticks (NaN breaks the line): small SVG whatever the count.
        xs = np.stack([x, x, np.full_like(x, np.nan)], axis=1).ravel()
        ys = np.stack([y + lo, y + hi, np.full_like(y, np.nan)], axis=1).ravel()
        ax.plot(xs, ys, color=color, linewidth=1.0, solid_capstyle="butt")
    ax.set_yticks(range(len(vms)), [_label(v) for v in reversed(vms)])
    ax.set_ylim(-0.7, len(vms) - 0.3)
    ax.set_xlim(0, span / x_div)
    _time_axis(ax, t0, span, x_div, x_unit)
    handles = [Patch(color=STATE_COLORS[s], label=s) for s in TIMELINE_STATES] + [
        Line2D([], [], linestyle="none", marker="|", markersize=8, color=c, label=name)
        for name, c, _, _ in MARKERS.values()
    ]
    fig.legend(handles=handles, loc="upper center", ncols=6, frameon=False, fontsize=8)
    return _svg(fig, "timeline")


def _time_axis(ax, t0: int, span: int, x_div: float, x_unit: str) -> None:
    """Label the x axis (in units of `x_div` ns since `t0`): UTC clock time when the trace's
    clock is wall-clock time, else time since the first step."""
    if not is_wall_clock(t0):
        ax.set_xlabel(f"time since first step ({x_unit})")
        return
    digits = next((d for d, least in ((0, 20 * 10**9), (1, 2 * 10**9), (2, 2 * 10**8), (3, 2 * 10**7))
                   if span >= least), 6)

    def utc(x: float, _pos: object = None) -> str:
        text = iso_utc(t0 + round(x * x_div))  # 2026-12-02T19:40:43.123456Z
        clock = text[11:19] + (text[19:20 + digits] if digits else "")
        return clock

    ax.xaxis.set_major_locator(MaxNLocator(nbins=6 if digits < 3 else 4))
    ax.xaxis.set_major_formatter(FuncFormatter(utc))
    ax.set_xlabel(f"UTC, {iso_utc(t0)[:10]} (from {iso_utc(t0)[11:19]}Z)")


def _steps(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The vertices of a step line: `values[k]` over [edges[k], edges[k + 1]), a corner only
    where the value changes."""
    change = np.flatnonzero(values[1:] != values[:-1]) + 1
    xs = np.concatenate([[edges[0]], np.repeat(edges[change], 2), [edges[-1]]])
    ys = np.concatenate([[values[0]], np.stack([values[change - 1], values[change]], axis=1).ravel(),
                         [values[-1]]])
    return np.stack([xs, ys.astype(np.float64)], axis=1)


#: Colours of the host series of the fleet chart (the last: every other host).
HOST_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3",
               "#8c8c8c", "#ccb974")


def fleet_svg(series: PausedSeries | None) -> str | None:
    """VMs paused by I/O errors over time, stacked by host (a bounded number of series)."""
    if series is None or not series.counts.size or not series.counts.any():
        return None
    t0 = int(series.edges[0])
    span = max(int(series.edges[-1]) - t0, 1)
    scale = span / 1e9
    x_unit, x_div = ("s", 1e9) if scale >= 1 else ("ms", 1e6) if scale >= 1e-3 else ("µs", 1e3)
    x = (series.edges - t0) / x_div
    fig = Figure(figsize=(10, 3.4), dpi=72)
    ax = fig.add_axes((0.08, 0.2, 0.70, 0.72))
    bottom = np.zeros(series.counts.shape[1], dtype=np.int64)
    for i, label in enumerate(series.labels):
        top = bottom + series.counts[i]
        color = HOST_COLORS[min(i, len(HOST_COLORS) - 1)] if label != "other hosts" else "#bbbbbb"
        # One polygon per band (steps along its top, back along its bottom; a vertex only where
        # a value changes), added without autoscaling: a stairs patch per band costs seconds of
        # limit updates, and a vertex per column hundreds of kB of SVG.
        verts = np.concatenate([_steps(x, top), _steps(x, bottom)[::-1]])
        band = PolyCollection([verts], facecolors=color, edgecolors="none", label=_label(label, 24))
        ax.add_collection(band, autolim=False)
        bottom = top
    ax.set_xlim(0, span / x_div)
    ax.set_ylim(0, max(int(bottom.max()), 1) * 1.08)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    ax.set_ylabel("VMs paused")
    _time_axis(ax, t0, span, x_div, x_unit)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(list(reversed(handles)), list(reversed(labels)), loc="center left",
               bbox_to_anchor=(0.79, 0.56), frameon=False, fontsize=8,
               title="host" if len(labels) > 1 or labels[0] != "(no host)" else None)
    return _svg(fig, "fleet")


def _hist_edges(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """40 bins; logarithmic when the positive values span more than two decades."""
    pos = values[values > 0]
    if len(pos) and pos.max() / pos.min() > 100:
        return np.geomspace(pos.min(), pos.max(), 41), True
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, 41), False


def latency_svg(stats: Statistics) -> str | None:
    """Histograms of error → BLOCK_IO_ERROR and BLOCK_IO_ERROR → STOP latencies (all VMs)."""
    values = stats.latency_values
    measures = [label for _, _, _, label in LATENCIES if (values["measure"] == label).any()]
    if not measures:
        return None
    fig = Figure(figsize=(10, 3.2), dpi=72)
    axes = fig.subplots(1, len(measures), squeeze=False)[0]
    for ax, label in zip(axes, measures, strict=True):
        ns = values.loc[values["measure"] == label, "ns"].to_numpy(dtype=np.float64)
        div, unit = (1e6, "ms") if np.median(ns) >= 1e5 else (1e3, "µs")
        v = ns / div
        edges, log = _hist_edges(v)
        counts, _ = np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)
        ax.stairs(counts, edges, fill=True, color="#4c72b0")
        if log:
            ax.set_xscale("log")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
            ax.xaxis.set_major_formatter(FormatStrFormatter("%.6g"))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        ax.set_title(f"{label}  (n={len(ns):,})", fontsize=9)
        ax.set_xlabel(f"latency ({unit}{', log scale' if log else ''})")
        ax.set_ylabel("error actions")
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.18, top=0.88, wspace=0.28)
    return _svg(fig, "latency")
