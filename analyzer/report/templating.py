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
import pandas as pd
from markupsafe import Markup

from analyzer.report import fleet as fleet_view
from analyzer.report import format as fmt
from analyzer.report.document import Report
from analyzer.report.stats import ALL_VMS, errno_name
from analyzer.text import markdown_cell, printable
from analyzer.timefmt import format_ts, is_wall_clock, iso_utc

FILTERS = {
    "duration": fmt.duration,
    "timestamp": fmt.timestamp,
    "utc": fmt.timestamp,
    "integer": fmt.integer,
    "errno": fmt.errno,
    "text": fmt.text,
    "seqs": fmt.seqs,
    "records": fmt.records,
    "printable": printable,
    "id_of": id,
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


def _part(frame: pd.DataFrame, top: int, more: int) -> tuple[list[dict], list[dict], int]:
    """(the first `top` rows, the next `more`, how many rows neither holds) as plain rows."""
    return (fmt.records(frame.iloc[:top]), fmt.records(frame.iloc[top:top + more]),
            max(len(frame) - top - more, 0))


def _names(values: object, limit: int = 6) -> str:
    """A few names of a list (naturally sorted), with how many more: ``vm1, vm2 (+98 more)``."""
    names = fleet_view.natural_sorted([str(v) for v in values])  # type: ignore[attr-defined]
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit:,} more)" if len(names) > limit else "")


def _window(start: int, end: int) -> str:
    """A time window as people read it: UTC date-times for wall-clock time."""
    if is_wall_clock(start):
        a, b = iso_utc(start), iso_utc(end)
        return f"{a} – {b[11:] if a[:10] == b[:10] else b}"
    return f"{format_ts(start)} – {format_ts(end)}"


def _incidents(report: Report) -> list[dict]:
    rows = []
    for inc in report.result.incidents[: fleet_view.MAX_INCIDENTS]:
        rows.append({
            "id": inc.id, "window": _window(inc.start_ns, inc.end_ns),
            "duration": fmt.duration(inc.end_ns - inc.start_ns),
            "vms": len(inc.vms), "vm_names": _names(v for _, v in inc.vms),
            "hosts": len(inc.hosts), "host_names": _names(inc.hosts) or "-",
            "devices": _names(inc.devices, 4) or "-",
            "errnos": ", ".join(errno_name(e) for e in inc.errnos) or "-",
            "episodes": inc.episodes, "p50": inc.paused_p50_ns, "p95": inc.paused_p95_ns,
            "max": inc.paused_max_ns, "still_paused": inc.still_paused,
        })
    return rows


def _errors_fleet(errors: pd.DataFrame) -> pd.DataFrame:
    """Error actions of the fleet by device, op, errno and action, with how many VMs."""
    keys = ["device", "op", "errno", "action"]
    if not len(errors):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in [*keys, "vms", "errors"]})
    g = errors.groupby(keys, sort=False, dropna=False)
    out = pd.DataFrame({"vms": g["vm"].nunique(), "errors": g["errors"].sum()}).reset_index()
    return out.sort_values(["errors", "vms", "device", "op", "action"],
                           ascending=[False, False, True, True, True], kind="mergesort",
                           na_position="last").reset_index(drop=True)


def _rule_heads(groups: list, by_rule: dict) -> dict[int, object]:
    heads: dict[int, object] = {}
    seen: set[str] = set()
    for i, g in enumerate(groups):
        if g.rule.id not in seen and g.rule.id in by_rule:
            seen.add(g.rule.id)
            heads[i] = by_rule[g.rule.id]
    return heads


def view(report: Report) -> dict[str, object]:
    """What both templates read: the report, with its frames as plain rows (bounded: top-N
    and a capped collapsed rest, whatever the number of VMs)."""
    listed = [lf for s in report.rules for lf in s.listed]
    offsets = [0]
    for s in report.rules:
        offsets.append(offsets[-1] + len(s.listed))
    number = {id(lf.finding): i + 1 for i, lf in enumerate(listed)}
    by_rule = {s.rule.id: s for s in report.rules}
    contexts = {id(lf.finding): lf.context for lf in listed}
    fl = report.fleet
    top, more = fleet_view.TOP_VMS, fleet_view.MORE_ROWS
    ranked = fl.ranked if fl is not None else report.stats.vms
    vms_top, vms_more, vms_unlisted = _part(ranked, top, more)
    hosts = fl.hosts if fl is not None else pd.DataFrame({"host": []})
    hosts_top, hosts_more, hosts_unlisted = _part(hosts, top, more)
    lat = report.stats.latencies
    lat_all = lat[lat["vm"] == ALL_VMS] if len(lat) else lat
    lat_vms = lat[lat["vm"] != ALL_VMS] if len(lat) else lat
    lat_vms = lat_vms.iloc[fleet_view.natural_order(lat_vms["vm"])] if len(lat_vms) else lat_vms
    per_vm = report.integrity.per_vm
    troubled = per_vm[(per_vm["seq_gaps"] > 0) | (per_vm["clock_anomalies"] > 0)] if len(per_vm) else per_vm
    troubled = troubled.iloc[fleet_view.natural_order(troubled["vm"])] if len(troubled) else troubled
    return {
        "r": report,
        "result": report.result,
        "prov": report.provenance,
        "listed": listed,
        #: (section, number of findings listed before it): findings are numbered across rules.
        "sections": list(zip(report.rules, offsets, strict=False)),
        "number": number,
        "contexts": contexts,
        "fleet": fl,
        #: vm -> host (the trace's, where a finding does not name its own).
        "vm_host": ({} if fl is None else
                    {v: h for v, h in zip(fl.ranked["vm"], fl.ranked["host"], strict=True) if h is not None}),
        "groups": fl.groups if fl is not None else [],
        #: group index (0-based) -> its rule's section, at the first group of each rule.
        "rule_heads": _rule_heads(fl.groups if fl is not None else [], by_rule),
        "reasons": fl.reasons if fl is not None else {},
        "window": _window(*fl.window) if fl is not None and fl.window else None,
        "window_length": fmt.duration(fl.window[1] - fl.window[0]) if fl is not None and fl.window else None,
        "span": _window(*fl.span) if fl is not None and fl.span else None,
        "wall_clock": bool(fl is not None and fl.span and is_wall_clock(fl.span[0])),
        "incidents": _incidents(report),
        "incidents_unlisted": max(len(report.result.incidents) - fleet_view.MAX_INCIDENTS, 0),
        "vms_top": vms_top, "vms_more": vms_more, "vms_unlisted": vms_unlisted,
        "hosts_top": hosts_top, "hosts_more": hosts_more, "hosts_unlisted": hosts_unlisted,
        "errors_fleet": fmt.records(_errors_fleet(report.stats.errors).head(top + more)),
        "errors_kinds": len(_errors_fleet(report.stats.errors)),
        "latencies_all": fmt.records(lat_all),
        "latencies_vms": fmt.records(lat_vms.head(more)),
        "latencies_vms_total": len(lat_vms),
        "integrity_vms": fmt.records(troubled.head(more)),
        "integrity_vms_total": len(troubled),
        "gaps": fmt.records(report.integrity.seq_gaps),
        "clock": fmt.records(report.integrity.clock_anomalies),
        "findings_per_vm": report.findings_per_vm,
        "top_n": top,
    }
