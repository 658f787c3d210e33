"""The fleet view of a report: what an SRE reads first when hundreds or thousands of VMs paused.

A per-VM table of 10,000 rows is not a report. This module reduces the per-VM statistics to what
stays readable at any fleet size (issue #15), all of it bounded whatever the trace holds:

* the **headline**: verdict, the window in which VMs were paused by I/O errors, counts;
* **pauses**: every I/O-error pause (VM, host, start, end), drawn as VMs paused over time,
  stacked by host (:func:`paused_over_time`: a fixed number of columns and host series);
* VMs **ranked** by time paused, and a per-**host** aggregate, each a top-N with the rest
  collapsed and capped (:data:`TOP_VMS`, :data:`MORE_ROWS`);
* findings **grouped** by rule and message shape (the same message with other numbers, VM or
  device names: :func:`message_shape`), with exact counts and one worked example each;
* why a rule was **not applicable**, and whether anything was exercised at all.

VM names sort naturally (``vm2`` before ``vm10``: :func:`natural_key`). Nothing here loops over
trace rows: the inputs are the per-VM summary, the distinct pauses and the findings.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyzer.result import CheckResult, Finding, RuleInfo

#: VMs (and hosts) shown in the ranked tables; the rest go into a collapsed part.
TOP_VMS = 20
#: Rows of a collapsed part at most (the JSON report has every VM).
MORE_ROWS = 480
#: Host series of the fleet timeline; the other hosts are stacked as one.
CHART_HOSTS = 8
#: Columns of the fleet timeline.
CHART_BINS = 600
#: Incidents listed (most VMs first is not the order: start time is).
MAX_INCIDENTS = 50
NO_HOST = "(no host)"
OTHER_HOSTS = "other hosts"

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: object) -> tuple:
    """Sort key reading digit runs as numbers: vm2 < vm10 (ties broken by the text itself)."""
    text = "" if name is None else str(name)
    parts = _DIGITS.split(text)
    return (tuple((0, int(p), "") if i % 2 else (1, 0, p) for i, p in enumerate(parts) if p), text)


def natural_sorted(names: Sequence[str]) -> list[str]:
    return sorted(names, key=natural_key)


def natural_order(values: pd.Series) -> np.ndarray:
    """Positions that sort `values` naturally (stable; the key is computed once per distinct
    value, not per row)."""
    codes, uniques = pd.factorize(values.astype(str))
    keys = [natural_key(u) for u in uniques.tolist()]
    rank = np.empty(len(keys), dtype=np.int64)
    rank[sorted(range(len(keys)), key=keys.__getitem__)] = np.arange(len(keys))
    return np.argsort(rank[codes], kind="stable")


# ---------------------------------------------------------------------------------------------
# Findings grouped by rule and message shape
# ---------------------------------------------------------------------------------------------

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"(?<![A-Za-z])-?\d+(?:\.\d+)?|(?<=[A-Za-z_])\d+")


def message_shape(finding: Finding) -> str:
    """The finding's message with what varies between VMs left out: its VM, device and thread
    names, quoted text and numbers (``BLOCK_IO_ERROR (stop) on <device> was consumed ...``)."""
    text = finding.message
    for value, label in ((finding.device, "<device>"), (finding.thread, "<thread>"), (finding.vm, "<vm>")):
        if value and len(value) > 1:
            text = text.replace(value, label)
    text = _QUOTED.sub("'…'", text)
    return _NUMBER.sub("N", text)


@dataclass(frozen=True)
class FindingGroup:
    """Findings of one rule whose messages have one shape: counted exactly, one shown."""

    rule: RuleInfo
    shape: str
    count: int
    vms: int
    hosts: int
    #: The first finding of the group in replay order (listed, with its context, when it can be).
    example: Finding
    #: Further listed findings of the group (the report lists at most max_findings per rule).
    more: tuple[Finding, ...]

    @property
    def unlisted(self) -> int:
        return self.count - 1 - len(self.more)


def finding_groups(result: CheckResult, listed: Sequence[Finding]) -> list[FindingGroup]:
    """Groups in catalogue order of their rule, then by count (most first), then shape."""
    infos = {r.id: r for r in result.rules}
    count: Counter[tuple[str, str]] = Counter()
    vms: dict[tuple[str, str], set[str]] = {}
    hosts: dict[tuple[str, str], set[str]] = {}
    first: dict[tuple[str, str], Finding] = {}
    for f in result.findings:
        key = (f.rule, message_shape(f))
        count[key] += 1
        vms.setdefault(key, set()).add(f.vm_label)
        if f.host:
            hosts.setdefault(key, set()).add(f.host)
        first.setdefault(key, f)
    shown: dict[tuple[str, str], list[Finding]] = {}
    for f in listed:
        shown.setdefault((f.rule, message_shape(f)), []).append(f)
    rank = {r.id: i for i, r in enumerate(result.rules)}
    groups = []
    for key, n in count.items():
        rule_id, shape = key
        mine = shown.get(key, [])
        example = mine[0] if mine else first[key]
        info = infos.get(rule_id) or RuleInfo(rule_id, example.severity, rule_id, "", "")
        groups.append(FindingGroup(info, shape, n, len(vms[key]), len(hosts.get(key, ())),
                                   example, tuple(mine[1:])))
    groups.sort(key=lambda g: (rank.get(g.rule.id, len(rank)), g.rule.id, -g.count, g.shape))
    return groups


# ---------------------------------------------------------------------------------------------
# Rules not applicable
# ---------------------------------------------------------------------------------------------


def not_applicable_reason(rule: RuleInfo) -> str:
    """Why `rule` could not judge this trace, in the words of what it needs."""
    if rule.needs:
        needed = ", ".join(rule.needs)
        if len(rule.needs) == 1:
            return f"it judges {needed} steps and the trace has none"
        return f"it judges {needed} steps together and the trace lacks some of them"
    return "the trace lacks the steps this rule judges"


def nothing_exercised(result: CheckResult) -> bool:
    """A pass in which every ordering rule (not the integrity ones) was not applicable: the
    trace had nothing they could judge, so the pass says nothing about the ordering."""
    ordering = [r for r in result.rules if r.guarantee != "integrity"]
    na = set(result.not_applicable)
    return result.verdict == "pass" and bool(ordering) and all(r.id in na for r in ordering)


# ---------------------------------------------------------------------------------------------
# Hosts, pauses, rankings
# ---------------------------------------------------------------------------------------------


def host_of(summary: pd.DataFrame, hosts: pd.Series | None, episodes: pd.DataFrame,
            findings: Sequence[Finding]) -> pd.Series:
    """vm -> host for every VM of `summary` (None where nothing names one): the trace's `host`
    column, else the episodes' `host` column (when present), else the findings' host."""
    out = pd.Series([None] * len(summary), index=summary["vm"].astype(str).to_numpy(), dtype=object)
    if findings:
        by = {}
        for f in findings:
            if f.host and f.vm_label not in by:
                by[f.vm_label] = f.host
        if by:
            known = pd.Series(by, dtype=object)
            out = known.reindex(out.index).where(lambda s: s.notna(), out)
    if len(episodes) and "host" in episodes:
        ep = pd.DataFrame({"vm": episodes["vm"].astype(str), "host": episodes["host"]}).dropna()
        if len(ep):
            first = ep.drop_duplicates("vm").set_index("vm")["host"].astype(str)
            out = first.reindex(out.index).where(lambda s: s.notna(), out)
    if hosts is not None and len(hosts):
        out = hosts.reindex(out.index).where(lambda s: s.notna(), out)
    return out.astype(object).where(out.notna(), None)


def pauses_frame(stops: pd.DataFrame, host: pd.Series) -> pd.DataFrame:
    """The distinct I/O-error pauses (:func:`analyzer.report.stats.io_error_stops`) with each
    VM's host: vm, host, start_ns, end_ns, open."""
    if not len(stops):
        return pd.DataFrame({"vm": pd.Series(dtype=object), "host": pd.Series(dtype=object),
                             "start_ns": pd.Series(dtype="int64"), "end_ns": pd.Series(dtype="int64"),
                             "open": pd.Series(dtype=bool)})
    start = stops["ts_stop"].to_numpy(dtype=np.int64)
    return pd.DataFrame({
        "vm": stops["vm"].astype(str).to_numpy(),
        "host": stops["vm"].astype(str).map(host).to_numpy(dtype=object),
        "start_ns": start,
        "end_ns": start + stops["paused_ns"].to_numpy(dtype=np.int64),
        "open": stops["open"].to_numpy(dtype=bool),
    })


def ranked_vms(summary: pd.DataFrame, host: pd.Series, findings_per_vm: dict[str, int]) -> pd.DataFrame:
    """Every VM, most time paused first (then most error actions, most findings, natural name),
    with its host and findings."""
    out = summary.copy()
    out["vm"] = out["vm"].astype(str)
    out["host"] = out["vm"].map(host).astype(object)
    out["findings"] = out["vm"].map(findings_per_vm).fillna(0).astype("int64")
    out = out.iloc[natural_order(out["vm"])]
    out = out.sort_values(["paused_ns", "errors", "findings"], ascending=False, kind="mergesort")
    return out.reset_index(drop=True)


def host_table(ranked: pd.DataFrame) -> pd.DataFrame:
    """Per host: VMs, VMs paused by I/O errors, still paused at the end, time paused (sum and
    worst VM), error actions, findings; most VMs paused first."""
    cols = ["host", "vms", "vms_paused", "still_paused", "paused_ns", "max_paused_ns", "errors", "findings"]
    if not len(ranked):
        return pd.DataFrame({c: pd.Series(dtype=object if c == "host" else "int64") for c in cols})
    frame = ranked.assign(host=ranked["host"].fillna(NO_HOST).astype(str),
                          paused=(ranked["io_error_stops"] > 0).astype("int64"),
                          still=ranked["paused_at_end"].astype("int64"))
    g = frame.groupby("host", sort=False)
    out = pd.DataFrame({
        "vms": g.size(), "vms_paused": g["paused"].sum(), "still_paused": g["still"].sum(),
        "paused_ns": g["paused_ns"].sum(), "max_paused_ns": g["paused_ns"].max(),
        "errors": g["errors"].sum(), "findings": g["findings"].sum(),
    }).reset_index()
    out = out.iloc[natural_order(out["host"])]
    out = out.sort_values(["vms_paused", "paused_ns", "errors"], ascending=False, kind="mergesort")
    return out[cols].astype({c: "int64" for c in cols if c != "host"}).reset_index(drop=True)


@dataclass
class PausedSeries:
    """VMs paused over time, one series per host group, on `edges` (len(counts[0]) + 1 ns)."""

    edges: np.ndarray
    labels: list[str]
    #: (len(labels), columns) distinct VMs of each group paused at some time in each column.
    counts: np.ndarray


def paused_over_time(pauses: pd.DataFrame, t0: int, t1: int, bins: int = CHART_BINS,
                     hosts: int = CHART_HOSTS) -> PausedSeries | None:
    """How many VMs were paused by I/O errors in each of `bins` columns of [t0, t1], stacked by
    host: the `hosts` hosts with most paused VMs by name, the others as one group. A VM paused
    twice in one column counts once. None when nothing paused."""
    if not len(pauses):
        return None
    span = max(t1 - t0, 1)
    edges = t0 + np.arange(bins + 1, dtype=np.float64) * (span / bins)
    host = pauses["host"].fillna(NO_HOST).astype(str)
    per_host = pauses.assign(host=host).groupby("host")["vm"].nunique()
    names = sorted(per_host.index, key=lambda h: (-int(per_host[h]), natural_key(h)))
    top = names[:hosts]
    labels = top + ([OTHER_HOSTS] if len(names) > hosts else [])
    group = host.map({h: i for i, h in enumerate(top)}).fillna(len(top)).to_numpy(dtype=np.int64)
    c0 = np.clip(((pauses["start_ns"].to_numpy() - t0) * bins) // span, 0, bins - 1).astype(np.int64)
    c1 = np.clip(((pauses["end_ns"].to_numpy() - t0) * bins) // span, 0, bins - 1).astype(np.int64)
    c1 = np.maximum(c1, c0)
    # Per VM, merge the column ranges that overlap or touch, so that a VM counts once a column.
    vm_codes = pd.factorize(pauses["vm"])[0]
    order = np.lexsort((c0, vm_codes))
    v, a, b, g = vm_codes[order], c0[order], c1[order], group[order]
    new_vm = np.r_[True, v[1:] != v[:-1]]
    # Running max of the range ends within each VM (the offset keeps VMs apart).
    offset = np.cumsum(new_vm) * (bins + 1)
    reach = np.maximum.accumulate(b + offset) - offset
    starts_run = new_vm | (a > np.r_[-1, reach[:-1]])
    run_start = a[starts_run]
    run_end = np.maximum.reduceat(reach, np.flatnonzero(starts_run))
    run_group = g[starts_run]
    diff = np.zeros((len(labels), bins + 1), dtype=np.int64)
    np.add.at(diff, (run_group, run_start), 1)
    np.add.at(diff, (run_group, run_end + 1), -1)
    return PausedSeries(edges, labels, np.cumsum(diff[:, :bins], axis=1))


@dataclass
class Fleet:
    """The fleet view of a report (see the module docstring)."""

    #: Every VM ranked (see :func:`ranked_vms`), and per host.
    ranked: pd.DataFrame
    hosts: pd.DataFrame
    pauses: pd.DataFrame
    #: First pause start and last pause end (None when no VM paused), ns.
    window: tuple[int, int] | None
    #: First and last step of the trace, ns (None without steps).
    span: tuple[int, int] | None
    groups: list[FindingGroup]
    #: rule id -> why it was not applicable.
    reasons: dict[str, str]
    nothing_exercised: bool

    @property
    def vms_paused(self) -> int:
        return int((self.ranked["io_error_stops"] > 0).sum()) if len(self.ranked) else 0

    @property
    def still_paused(self) -> int:
        return int(self.ranked["paused_at_end"].sum()) if len(self.ranked) else 0

    @property
    def host_count(self) -> int:
        return int((self.hosts["host"] != NO_HOST).sum()) if len(self.hosts) else 0


def build_fleet(result: CheckResult, summary: pd.DataFrame, stops: pd.DataFrame,
                hosts: pd.Series | None, findings_per_vm: dict[str, int],
                listed: Sequence[Finding], episodes: pd.DataFrame | None = None) -> Fleet:
    """The fleet view from the per-VM summary, the distinct I/O-error stops and the findings.
    `episodes`: the check's, with `vm` as the report names VMs (default: the result's)."""
    host = host_of(summary, hosts, result.episodes if episodes is None else episodes, result.findings)
    ranked = ranked_vms(summary, host, findings_per_vm)
    pauses = pauses_frame(stops, host)
    window = (int(pauses["start_ns"].min()), int(pauses["end_ns"].max())) if len(pauses) else None
    span = None
    if len(summary) and summary["first_ts_ns"].notna().any():
        span = (int(summary["first_ts_ns"].min()), int(summary["last_ts_ns"].max()))
    infos = {r.id: r for r in result.rules}
    reasons = {rid: not_applicable_reason(infos[rid]) for rid in result.not_applicable if rid in infos}
    return Fleet(ranked, host_table(ranked), pauses, window, span,
                 finding_groups(result, listed), reasons, nothing_exercised(result))
