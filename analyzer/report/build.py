"""Assembling a :class:`~analyzer.report.document.Report` from a check result and the trace.

`build_report` does the I/O: it loads the trace once and checks it; `assemble_report` then reads
the steps the report needs *unit by unit* (the units `check` uses, sets of whole VMs:
`analyzer.trace.plan`), so that memory follows one unit, never the trace (issue #13):

1. statistics: each unit leaves only its :class:`~analyzer.report.stats.StepFacts` (a few
   rows per VM, one per integrity problem) and the context windows of the listed findings of
   its VMs (at most ``--max-findings`` per rule), replayed from its state rows only;
2. timeline: the few VMs it draws are read again (the unit still held from step 1 is not).

Facts of disjoint VMs merge into exactly the facts of all their steps, so the report is the
same bytes however the trace splits into units (``tests/analyzer/report/test_units.py``).
`assemble_report` also takes one frame of every step (tests build them by hand).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import shlex
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from analyzer import identity
from analyzer.check import check
from analyzer.progress import ProgressCallback
from analyzer.report import context, fleet, source, stats
from analyzer.report.document import (
    ContextWindow,
    Integrity,
    ListedFinding,
    Provenance,
    Report,
    RuleSection,
    Statistics,
    Timeline,
)
from analyzer.result import CheckResult, Finding, RuleInfo
from analyzer.trace import Trace, Unit, load
from analyzer.trace.files import RowGroup
from tracer import __version__

ContextFn = Callable[[Sequence[Finding]], list[ContextWindow | None]]

#: VMs drawn in the run-state timeline when a trace has many.
TIMELINE_VMS = 8


def rules_hash(rules: Sequence[RuleInfo]) -> str:
    """sha256 of the rule catalogue: sorted (id, severity, title), one per line."""
    lines = sorted(f"{r.id}\t{r.severity}\t{r.title}" for r in rules)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def default_command(paths: Sequence[str | Path], max_findings: int,
                    rule_files: Sequence[str | Path] = (), only_files: bool = False) -> str:
    args = ["blkreplay", "report", *(str(p) for p in paths)]
    if max_findings != 50:
        args += ["--max-findings", str(max_findings)]
    for f in rule_files:
        args += ["--rules-file", str(f)]
    if only_files:
        args.append("--only-file")
    return shlex.join(args)


def _sections(result: CheckResult, max_findings: int) -> tuple[list[RuleSection], list[Finding]]:
    """Rule sections in catalogue order, with the first `max_findings` of each rule listed."""
    by_rule: dict[str, list[Finding]] = {}
    for f in result.findings:
        by_rule.setdefault(f.rule, []).append(f)
    sections = []
    listed: list[Finding] = []
    known = {r.id for r in result.rules}
    rules = list(result.rules) + [
        RuleInfo(rid, by_rule[rid][0].severity, rid, "", "")  # findings of an unlisted rule
        for rid in sorted(set(by_rule) - known)
    ]
    for rule in rules:
        fs = sorted(by_rule.get(rule.id, []), key=Finding.sort_key)
        head = fs[: max(max_findings, 0)]
        listed.extend(head)
        sections.append(
            RuleSection(rule, rule.id not in result.not_applicable, len(fs),
                        tuple(ListedFinding(f, None) for f in head))
        )
    return sections, listed


def _attach_contexts(sections: list[RuleSection], contexts: dict[int, ContextWindow | None]) -> list[RuleSection]:
    out = []
    for s in sections:
        listed = tuple(ListedFinding(lf.finding, contexts.get(id(lf.finding))) for lf in s.listed)
        out.append(RuleSection(s.rule, s.applicable, s.total, listed))
    return out


@dataclass(frozen=True)
class UnitSteps:
    """The steps of one unit of work (whole VMs), as :func:`source.read_unit_steps` reads them."""

    vms: frozenset[str]
    rows: int
    steps: pd.DataFrame
    #: Whether the reader already reported the unit's rows to the progress callback.
    progressed: bool = False

    @property
    def full(self) -> bool:
        """Whether it holds every report column (the replay view's too), not only the
        statistics' ones."""
        return set(source.REPORT_COLUMNS).issubset(self.steps.columns)


#: fn(vms of a unit) -> the columns to read of it (the statistics' alone, or every report
#: column where the replay view or the timeline needs the unit's steps).
ColumnsFn = Callable[[frozenset[str]], Sequence[str]]

#: fn(vms, skip[, columns, progress]) -> the units holding any of `vms` (None: every unit) but
#: those whose VMs are one of the sets in `skip`, read one at a time, each restricted to `vms`
#: when given; `progress(rows)` as row groups are read.
UnitReader = Callable[
    [Collection[str] | None, Collection[frozenset[str]], ColumnsFn | None, Callable[[int], None] | None],
    Iterator[UnitSteps],
]


def frame_units(steps: pd.DataFrame) -> UnitReader:
    """A whole steps frame as one unit (tests, and callers that already hold the steps)."""

    def read(vms: Collection[str] | None, skip: Collection[frozenset[str]] = (),
             columns: ColumnsFn | None = None,
             progress: Callable[[int], None] | None = None) -> Iterator[UnitSteps]:
        names = frozenset(str(v) for v in steps["vm"].unique()) if len(steps) else frozenset()
        if names in skip:
            return
        if vms is None:
            yield UnitSteps(names, len(steps), steps)
        elif names & set(vms):
            sub = steps[steps["vm"].isin(list(vms)).to_numpy()].reset_index(drop=True)
            yield UnitSteps(names, len(sub), sub)

    return read


@dataclass(frozen=True)
class TraceUnits:
    """The units of a loaded trace as a `UnitReader`, each read when its turn comes and let go
    before the next is read (memory: one unit)."""

    trace: Trace

    @property
    def rows(self) -> int:
        return self.trace.rows

    def __call__(self, vms: Collection[str] | None,
                 skip: Collection[frozenset[str]] = (),
                 columns: ColumnsFn | None = None,
                 progress: Callable[[int], None] | None = None) -> Iterator[UnitSteps]:
        wanted = None if vms is None else set(vms)
        for unit in self.trace.units:
            labels = frozenset(identity.label(k) for k in unit.vms)  # as the report names VMs
            if wanted is not None and not wanted.intersection(labels):
                continue
            if labels in skip:
                continue
            cols = source.REPORT_COLUMNS if columns is None else columns(labels)
            steps = source.read_unit_steps(self.trace, unit, cols,
                                           vms=None if wanted is None else sorted(wanted),
                                           progress=progress)
            yield UnitSteps(labels, len(steps), steps, progressed=progress is not None)
            del steps


def _shown(f: Finding) -> str:
    """How the report's per-VM tables name the finding's VM (`analyzer.identity.display`)."""
    return f.vm_label


def _labelled(episodes: pd.DataFrame) -> pd.DataFrame:
    """The episodes with `vm` the label of each VM's identity, so that per-VM statistics never
    merge vm0 of two hosts or runs (unchanged when the trace names no host or run)."""
    if not len(episodes) or "host" not in episodes or (episodes["host"].isna().all() and episodes["run"].isna().all()):
        return episodes
    parts = episodes[["vm", "host", "run"]].astype(object).fillna("")
    codes, combos = pd.MultiIndex.from_frame(parts).factorize()
    names = np.array([identity.display(v, h or None, r or None) for v, h, r in combos], dtype=object)
    return episodes.assign(vm=names[codes])


def trace_units(trace: Trace) -> TraceUnits:
    """The units of a loaded trace, read one at a time (see :class:`TraceUnits`)."""
    return TraceUnits(trace)


def _only(steps: pd.DataFrame, vms: set[str]) -> pd.DataFrame:
    """The rows of `vms` (the frame itself when it holds no other VM)."""
    if not len(steps):
        return steps
    keep = steps["vm"].isin(list(vms)).to_numpy()
    return steps if keep.all() else steps[keep].reset_index(drop=True)


def _stacked(frames: list[pd.DataFrame], empty: pd.DataFrame) -> pd.DataFrame:
    """Per-unit rows (each sorted by vm, then its own order) as one frame sorted by vm."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty
    if len(frames) == 1:
        return frames[0]
    out = pd.concat(frames, ignore_index=True).sort_values("vm", kind="mergesort")
    return out.reset_index(drop=True).astype(empty.dtypes.to_dict())


def _episodes_by_vm(episodes: pd.DataFrame) -> Callable[[Collection[str]], pd.DataFrame]:
    """fn(vms) -> the episodes of `vms`, grouped once (not one scan of the table per unit)."""
    if not len(episodes):
        return lambda vms: episodes
    index = episodes.groupby(episodes["vm"].astype(str), sort=False).indices

    def of(vms: Collection[str]) -> pd.DataFrame:
        rows = [index[v] for v in vms if v in index]
        if not rows:
            return episodes.iloc[:0]
        return episodes.iloc[np.sort(np.concatenate(rows))]

    return of


class _TimelinePool:
    """The run-state intervals and event marks of the `limit` most affected VMs seen so far.

    The order of :func:`stats.most_affected` is total and a VM's summary row depends on its own
    steps alone, so the trace's most affected VMs are among the most affected of each unit:
    each unit offers its own top `limit`, the pool keeps the best `limit` of those it holds.
    The timeline thus needs no second read, and holds `limit` VMs' intervals at most. Without
    `findings_per_vm` (the statistics gathered during the check, before its findings are
    final) every VM's intervals are kept: a few rows per run-state change, like the episodes."""

    def __init__(self, findings_per_vm: dict[str, int] | None, limit: int) -> None:
        self.findings_per_vm = findings_per_vm
        self.limit = limit
        self.summary: pd.DataFrame | None = None
        self.intervals: list[pd.DataFrame] = []
        self.markers: list[pd.DataFrame] = []

    def add(self, steps: pd.DataFrame, episodes: pd.DataFrame, facts: stats.StepFacts) -> None:
        if not len(steps) or self.limit <= 0:
            return
        if self.findings_per_vm is None:  # the findings are not known yet: keep every VM
            self._draw(steps, episodes, facts, facts.vms)
            return
        summary = stats.vm_summary(episodes, facts)
        best = stats.most_affected(summary, self.findings_per_vm, self.limit)
        pool = summary[summary["vm"].isin(best)]
        if self.summary is not None:
            pool = pd.concat([self.summary, pool], ignore_index=True)
        keep = set(stats.most_affected(pool, self.findings_per_vm, self.limit))
        new = [v for v in best if v in keep]
        self.summary = pool[pool["vm"].isin(keep)].reset_index(drop=True)
        self.intervals = [f[f["vm"].isin(keep)] for f in self.intervals]
        self.markers = [f[f["vm"].isin(keep)] for f in self.markers]
        if new:
            self._draw(steps, episodes, facts, new)

    def _draw(self, steps: pd.DataFrame, episodes: pd.DataFrame, facts: stats.StepFacts,
              new: list[str]) -> None:
        shown = _only(steps, set(new))
        batch = source.as_steps(shown.iloc[source.state_rows(shown)])
        eps = episodes[episodes["vm"].astype(str).isin(new)] if len(episodes) else episodes
        self.intervals.append(stats.runstate_intervals(batch, eps, vms=new, bounds=facts.ts))
        self.markers.append(stats.timeline_markers(shown))

    @staticmethod
    def joined(pools: Sequence[_TimelinePool]) -> _TimelinePool:
        """One pool holding the intervals and marks of all of `pools` (disjoint VMs)."""
        if len(pools) == 1:
            return pools[0]
        out = _TimelinePool(None, TIMELINE_VMS)
        for p in pools:
            out.intervals.extend(p.intervals)
            out.markers.extend(p.markers)
        return out

    def timeline(self, chosen: list[str], total_vms: int) -> Timeline:
        nothing = source.empty_steps()
        keep = set(chosen)
        return Timeline(
            vms=chosen,
            total_vms=total_vms,
            intervals=_stacked([f[f["vm"].isin(keep)] for f in self.intervals],
                               stats.runstate_intervals(source.as_steps(nothing), None, vms=[])),
            markers=_stacked([f[f["vm"].isin(keep)] for f in self.markers],
                             stats.timeline_markers(nothing)),
        )


class StatsObserver:
    """The report's statistics, gathered while the check reads the trace (`analyzer.check`'s
    `observe`): each unit's rows go through :class:`source.UnitGather` into its
    :class:`~analyzer.report.stats.StepFacts` and run-state intervals, then are dropped. The
    trace is read once for the check and the statistics together (issue #13)."""

    #: The statistics' columns, and the host and run that name each VM's identity.
    columns = (*source.STAT_COLUMNS, "host", "run")

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.lock = threading.Lock()
        self.facts: dict[int, stats.StepFacts] = {}
        self.pools: dict[int, _TimelinePool] = {}
        self._order: dict[int, int] = {}

    def unit(self, unit: Unit) -> _UnitWatch:
        return _UnitWatch(self, unit)

    def ordered(self, units: Sequence[Unit]) -> tuple[list[stats.StepFacts], list[_TimelinePool]]:
        """The facts and pools in the order of `units` (the plan's), whatever order the
        units were checked in."""
        keys = [id(u) for u in units if id(u) in self.facts]
        return [self.facts[k] for k in keys], [self.pools[k] for k in keys]


class _UnitWatch:
    def __init__(self, observer: StatsObserver, unit: Unit) -> None:
        self.observer = observer
        self.unit = unit
        self.gather = source.UnitGather(source.STAT_COLUMNS, unit.rows)

    def row_group(self, rg: RowGroup | None, table: pa.Table | None) -> None:
        if rg is None or table is None:  # read again from the start
            self.gather = source.UnitGather(source.STAT_COLUMNS, self.unit.rows)
        else:  # VMs named as the report names them (vm0 of two hosts: two VMs)
            self.gather.add(source.labelled(table, rg, self.observer.trace.files[rg.file].run))

    def done(self, result: object) -> None:
        steps = self.gather.frame()
        del self.gather
        facts = stats.step_facts(steps)
        pool = _TimelinePool(None, TIMELINE_VMS)
        pool.add(steps, _labelled(getattr(result, "episodes", pd.DataFrame())), facts)
        del steps
        with self.observer.lock:
            self.observer.facts[id(self.unit)] = facts
            self.observer.pools[id(self.unit)] = pool


def _counted(progress: ProgressCallback | None, total: int) -> Callable[[int], None]:
    done = 0
    if progress is not None:
        progress(0, total)

    def advance(n: int) -> None:
        nonlocal done
        done = min(done + n, total)
        if progress is not None:
            progress(done, total)

    return advance


def assemble_report(
    result: CheckResult,
    steps: pd.DataFrame | UnitReader,
    *,
    max_findings: int = 50,
    command: str,
    generated_at: str | None = None,
    contexts: ContextFn | None = None,
    statistics_progress: ProgressCallback | None = None,
    timeline_progress: ProgressCallback | None = None,
    total_rows: int | None = None,
    gathered: StatsObserver | None = None,
    units: Sequence[Unit] | None = None,
) -> Report:
    """Everything the renderers show, from a check result and the trace's steps: a frame of
    the columns of :func:`analyzer.report.source.read_steps` sorted by vm and seq, or a
    `UnitReader` giving them unit by unit (:func:`trace_units`). `contexts` replaces the
    replay-view windows (tests).

    The steps are read unit by unit, twice at most: once for the statistics (each unit leaves
    only its :class:`~analyzer.report.stats.StepFacts`, and the context windows of the listed
    findings of its VMs), once more for the few VMs the timeline draws. Nothing of the whole
    trace is ever held at once. `statistics_progress` / `timeline_progress` get
    ``(rows done, rows in all)`` of each pass; `total_rows`: the rows of every unit, if known.
    `gathered`: the statistics a :class:`StatsObserver` gathered while the check read the
    `units` (:func:`build_report`): then only the VMs of listed findings are read again.
    """
    episodes = _labelled(result.episodes)
    read = frame_units(steps) if isinstance(steps, pd.DataFrame) else steps
    if isinstance(steps, pd.DataFrame):
        total_rows = len(steps)
    elif total_rows is None and isinstance(steps, TraceUnits):
        total_rows = steps.rows
    sections, listed = _sections(result, max_findings)
    order = [r.id for r in result.rules]

    # One pass: per-unit facts, the windows of the listed findings of the unit's VMs, and the
    # run states of the unit's most affected VMs (the timeline's candidates).
    findings_per_vm = dict(sorted(Counter(_shown(f) for f in result.findings).items()))
    facts: list[stats.StepFacts] = []
    windows: list[ContextWindow | None] = [None] * len(listed)
    advance = _counted(None if gathered is not None else statistics_progress, total_rows or 0)
    # Only the units holding a listed finding are read whole; the others, the statistics'
    # few columns (the context windows need every report column, the statistics seven).
    listed_vms = {_shown(f) for f in listed} if contexts is None else set()

    def columns(vms: frozenset[str]) -> Sequence[str]:
        return source.REPORT_COLUMNS if vms & listed_vms else source.STAT_COLUMNS

    episodes_of = _episodes_by_vm(episodes)
    pool = _TimelinePool(findings_per_vm, TIMELINE_VMS)
    pools = [pool]
    if gathered is not None:
        # The statistics came with the check: read only the VMs of the listed findings again,
        # for their context windows.
        facts, pools = gathered.ordered(units or [])
        steps_facts = stats.merge_facts(facts)
        sizes = steps_facts.ts["size"] if len(steps_facts.ts) else pd.Series(dtype="int64")
        wanted = sorted(v for v in listed_vms if v in sizes.index)
        advance = _counted(statistics_progress, int(sizes.reindex(wanted).sum()) if wanted else 0)
        units_read = read(wanted, (), lambda vms: source.REPORT_COLUMNS, advance) if wanted else iter(())
    else:
        units_read = read(None, (), columns, advance)
    for unit in units_read:
        if gathered is None:
            unit_facts = stats.step_facts(unit.steps)
            facts.append(unit_facts)
        mine = [i for i, f in enumerate(listed) if _shown(f) in unit.vms]
        if mine and contexts is None:
            shown = _only(unit.steps, {_shown(listed[i]) for i in mine})
            rows = source.state_rows(shown)
            found = context.context_windows(shown, source.as_steps(shown.iloc[rows]),
                                            [listed[i] for i in mine], result.findings, order,
                                            rows=rows)
            for i, w in zip(mine, found, strict=True):
                windows[i] = w
        if gathered is None:
            pool.add(unit.steps, episodes_of(unit_facts.vms), unit_facts)
        if not unit.progressed:
            advance(unit.rows)
        del unit  # gone before the next unit is read
    if contexts is not None and listed:
        windows = contexts(listed)
    sections = _attach_contexts(sections, {id(f): w for f, w in zip(listed, windows, strict=True)})
    if gathered is None:
        steps_facts = stats.merge_facts(facts)

    summary = stats.vm_summary(episodes, steps_facts)
    statistics = Statistics(
        vms=summary,
        errors=stats.errors_by_kind(episodes),
        latencies=stats.latency_summary(episodes),
        latency_values=stats.latency_values(episodes),
    )
    gaps, clock = steps_facts.gaps, steps_facts.clock
    cap = max(max_findings, 0)
    integrity = Integrity(
        truncated=tuple(i for i in result.inputs if not i.complete),
        per_vm=stats.integrity_summary(steps_facts),
        seq_gaps=gaps.head(cap),
        clock_anomalies=clock.head(cap),
        seq_gaps_total=len(gaps),
        clock_anomalies_total=len(clock),
    )
    chosen = stats.most_affected(summary, findings_per_vm, TIMELINE_VMS)
    if timeline_progress is not None:  # no pass of its own any more: done with the statistics
        timeline_progress(0, 0)
    timeline = _TimelinePool.joined(pools).timeline(chosen, total_vms=len(summary))
    provenance = Provenance(
        inputs=tuple(result.inputs),
        version=__version__,
        rules_hash=rules_hash(result.rules),
        command=command,
        generated_at=generated_at,
    )
    stops = stats.io_error_stops(episodes, steps_facts)
    fleet_view = fleet.build_fleet(result, summary, stops, steps_facts.hosts, findings_per_vm, listed,
                                   episodes=episodes)
    return Report(result, provenance, sections, statistics, integrity, timeline,
                  max_findings, findings_per_vm, fleet_view)


def build_report(
    paths: Sequence[str | Path],
    *,
    max_findings: int = 50,
    timestamp: bool = False,
    command: str | None = None,
    progress: ProgressCallback | None = None,
    statistics_progress: ProgressCallback | None = None,
    timeline_progress: ProgressCallback | None = None,
    rule_files: Sequence[str | Path] = (),
    only_files: bool = False,
    since: int | str | None = None,
    until: int | str | None = None,
) -> Report:
    """Check `paths` and gather everything an audit report shows.

    `since` / `until`: the time window of the findings and episodes, as :func:`analyzer.check`
    takes it (the whole trace is still judged).

    `rule_files` (docs/rules-language.md) are run beside the built-in rules, or alone with
    `only_files`, exactly as :func:`analyzer.check` runs them.

    `command` is the command line printed as the way to reproduce the report (default: the
    equivalent `blkreplay report` call). No wall-clock time is recorded unless `timestamp`.
    `progress` follows the check, `statistics_progress` and `timeline_progress` the two reads
    of the steps (see :func:`assemble_report`), each in rows. Raises :class:`tracer.errors.InputError` for unusable input.
    """
    paths = [str(p) for p in paths]
    trace = load(paths)
    files = [str(f) for f in rule_files]
    observer = StatsObserver(trace)
    result = check(trace, progress=progress, rule_files=files, only_files=only_files,
                   since=since, until=until, observe=observer)
    generated_at = (
        _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        if timestamp else None
    )
    return assemble_report(
        result,
        trace_units(trace),
        max_findings=max_findings,
        command=command or default_command(paths, max_findings, files, only_files),
        generated_at=generated_at,
        statistics_progress=statistics_progress,
        timeline_progress=timeline_progress,
        total_rows=trace.rows,
        gathered=observer,
        units=trace.units,
    )
