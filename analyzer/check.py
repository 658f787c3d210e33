"""`check`: run the rule catalogue over a trace and return every finding.

The trace is loaded and planned (`analyzer.trace`), every unit of whole VMs is read, reduced to
the rows the rules need and judged independently (`analyzer.engine`), and the per-unit results
are merged in an explicit order. Rules whose step kinds the trace lacks are reported as not
applicable and never produce findings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa

from analyzer.applicability import reason
from analyzer.engine import dask_cluster, map_units
from analyzer.episodes import EPISODE_COLUMNS, empty_episodes, episodes
from analyzer.lang.ruleset import RuleSet, load_rules
from analyzer.outage import Incident, find_incidents
from analyzer.progress import ProgressCallback
from analyzer.result import CheckResult, Finding
from analyzer.rules import RULE_IDS, applicable, columns_for, run, select
from analyzer.rules.catalogue import resolve_params, rule
from analyzer.rules.integrity import findings as integrity_findings
from analyzer.timewindow import TimeBound, bound, keep_episodes, keep_findings
from analyzer.trace import PathArg, Trace, Unit, UnitData, load, release_footers, scan_unit
from analyzer.trace.files import RowGroup
from tracer.errors import InputError
from tracer.schema import COLUMN_NAMES


@dataclass
class UnitResult:
    """What one unit contributes to a check."""

    findings: list[Finding]
    episodes: pd.DataFrame
    rows: int
    present: set[str] = field(default_factory=set)


def analyze_unit(
    trace: Trace,
    unit: Unit,
    report_rows: Callable[[int], None] | None,
    *,
    rule_ids: tuple[str, ...],
    columns: tuple[str, ...],
    extra: RuleSet | None = None,
    params: dict[str, dict] | None = None,
    observe: UnitObserver | None = None,
) -> UnitResult:
    """Read one unit and judge it: the per-VM work of a check (a pure function of its input).
    `extra`: rules loaded from rule files (`analyzer.lang`), judged beside the catalogue's.
    `params`: the rules' parameter values (`analyzer.rules.catalogue.resolve_params`).
    `observe`: see :func:`check`."""
    def judge(batch: UnitData) -> UnitResult:
        found = run(batch.steps, rule_ids, params)
        if extra:
            found.extend(extra.run(batch.steps))
        found.extend(f for f in integrity_findings(batch.integrity) if f.rule in rule_ids)
        return UnitResult(found, episodes(batch.steps), batch.rows, batch.present)

    watch = observe.unit(unit) if observe is not None else None
    parts = scan_unit(trace, unit, columns, judge, progress=report_rows,
                      observe=None if watch is None else watch.row_group)
    frames = [p.episodes for p in parts if len(p.episodes)]
    eps = pd.concat(frames, ignore_index=True) if len(frames) > 1 else (frames[0] if frames else episodes_empty())
    if len(frames) > 1:  # batches come in the order their VMs' last rows were read
        eps = identity_order(eps)
    out = UnitResult(
        [f for p in parts for f in p.findings],
        eps,
        sum(p.rows for p in parts),
        set().union(*(p.present for p in parts)) if parts else set(),
    )
    if watch is not None:
        watch.done(out)
    return out


def check(
    paths: Trace | PathArg | Sequence[PathArg],
    *,
    rules: Iterable[str] | None = None,
    engine: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: ProgressCallback | None = None,
    rule_files: Sequence[PathArg] = (),
    only_files: bool = False,
    since: TimeBound = None,
    until: TimeBound = None,
    params: Mapping[str, Any] | None = None,
    observe: UnitObserver | None = None,
) -> CheckResult:
    """Check the trace at `paths` (files, directories, globs, or a loaded `Trace`).

    `rules`: ids to run (default: the whole catalogue). `engine`: "local" (the default) or
    "dask"; `workers`: processes (local engine) or threads (Dask's threaded scheduler). `scheduler`: run on
    a Dask cluster for this check — a scheduler address (``tcp://host:8786``; workers read the
    inputs at the same paths, so they must be on a shared filesystem) or ``local:N`` to start N
    worker processes here; implies engine "dask" (see `analyzer.engine.dask_cluster`).
    `progress(done_rows, total_rows)` is called as rows are read (per unit on a cluster).
    `rule_files`: rule files of the rule language (docs/rules-language.md) whose rules run
    beside the catalogue; with `only_files`, instead of it (`rules` then selects among theirs).
    `params`: thresholds, ``{"RULE.KEY": value}`` (``{"pause-storm.min_pauses": 3}``, and
    ``incidents.window_s`` / ``incidents.min_vms`` for the incident grouping); unknown keys and
    bad values are InputErrors (docs/rules.md lists them with their defaults).
    `observe`: a :class:`UnitObserver` shown every row group the check reads (with its
    `columns` read too), so that another consumer of every row (``blkreplay report``'s
    statistics) reads the trace once, with the check; local engine only.
    Raises :class:`tracer.errors.InputError` for unusable input, unknown rule ids, a bad rule
    file or an unreachable scheduler. `since` / `until` (epoch ns, ISO-8601 text, epoch
    seconds as float or text, datetime; inclusive) keep only the findings and episodes of that
    time window, the whole trace still judged (`analyzer.timewindow`). The result is deterministic: same steps, same result, whatever the
    file layout, engine, scheduler or worker count.
    """
    if scheduler is not None:
        if engine not in (None, "dask"):
            raise InputError(f"a scheduler runs the 'dask' engine, not {engine!r}")
        if workers is not None:
            raise InputError("workers does not apply with a scheduler: the cluster's workers run "
                             "the units (local:N starts N of them)")
    try:
        lo, hi = bound(since), bound(until)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    values = resolve_params(params)
    extra, chosen = _rule_sets(rules, rule_files, only_files)
    trace = paths if isinstance(paths, Trace) else load(paths)  # type: ignore[arg-type]
    ids = tuple(r.id for r in chosen)
    wanted = set(columns_for(ids)) | extra.columns()
    if observe is not None:
        if scheduler is not None or engine not in (None, "local"):
            raise InputError("an observer of the rows runs with the local engine only")
        wanted |= set(observe.columns)
    columns = tuple(c for c in COLUMN_NAMES if c in wanted)
    fn = partial(analyze_unit, rule_ids=ids, columns=columns, extra=extra, params=values,
                 observe=observe)
    units = trace.split(_local_workers(scheduler) or workers or 1)
    # The input is loaded (and judged usable) before a cluster is started or reached; a
    # local:N cluster is not started for one unit (it runs here).
    try:
        with (dask_cluster(scheduler, units=len(units)) if scheduler is not None
              else nullcontext()) as client:
            remote = scheduler is not None and client is not None
            results = map_units(fn, trace, units, engine="dask" if remote else engine or "local",
                                workers=workers, progress=progress, client=client)
    finally:  # a long-lived process (a notebook) keeps no parsed footer of a big file alive
        release_footers()
    present: set[str] = set()
    for r in results:
        present |= r.present
    not_applicable = [r.id for r in chosen if not applicable(r, present)]
    not_applicable += [r.id for r in extra.rules if not r.applies_to(present)]
    skip = set(not_applicable)
    reasons = {r.id: reason(rule(r.id).needs, rule(r.id).needs_one_of, present)
               for r in chosen if r.id in skip}
    reasons.update({r.info.id: reason(r.spec.needs, (), present) for r in extra.rules if r.info.id in skip})
    findings = [f for r in results for f in r.findings if f.rule not in skip]
    if "trace-truncated" in ids:
        findings.extend(integrity_findings(trace.truncated))
    # Rules name a VM by its identity key: here, the one place, it becomes (vm, host, run).
    findings = [f.identified() for f in findings]
    if "recording-intact" in ids:
        findings.extend(integrity_findings(trace.recording_problems()))
    if "trace-empty" in ids:
        findings.extend(integrity_findings(trace.empty))
    findings = keep_findings(findings, lo, hi)
    findings.sort(key=_order)
    frames = [r.episodes for r in results if len(r.episodes)]
    eps = (
        pd.concat(frames, ignore_index=True) if frames else episodes_empty()
    )
    if len(frames) > 1:
        eps = identity_order(eps)
    kept = keep_episodes(eps, lo, hi)
    return CheckResult(
        inputs=sorted(trace.inputs, key=lambda i: i.path),
        rules=[*chosen, *(r.info for r in extra.rules)],
        findings=findings,
        not_applicable=not_applicable,
        steps=sum(r.rows for r in results),
        vms=len(trace.vms),
        episodes=kept,
        not_applicable_reasons=reasons,
        incidents=_incidents(kept, values["incidents"]),
    )


def _incidents(eps: pd.DataFrame, values: Mapping[str, Any]) -> list[Incident]:
    """The incidents of the merged episodes of every unit (`analyzer.outage`)."""
    return find_incidents(eps, window_ns=round(values["window_s"] * 1e9), min_vms=values["min_vms"])


class UnitWatch(Protocol):
    """What an observer does with one unit: every row group as read (``(None, None)``: the
    unit is read again from its start), then `done` with what the unit gave the check."""

    def row_group(self, rg: RowGroup | None, table: pa.Table | None) -> None: ...

    def done(self, result: UnitResult) -> None: ...


class UnitObserver(Protocol):
    """Sees the rows a check reads, unit by unit (see :func:`check`)."""

    #: Columns it needs beside the rules' (read in the same pass).
    columns: Sequence[str]

    def unit(self, unit: Unit) -> UnitWatch: ...


def identity_order(eps: pd.DataFrame) -> pd.DataFrame:
    """Episodes in (run, host, vm) order, each VM's in their own order (a stable sort)."""
    order = eps.assign(_run=eps["run"].fillna(""), _host=eps["host"].fillna(""))
    order = order.sort_values(["_run", "_host", "vm"], kind="mergesort")
    return eps.loc[order.index].reset_index(drop=True)


def _local_workers(scheduler: str | None) -> int | None:
    """N of a ``local:N`` scheduler (None for no scheduler, a remote one or a malformed N,
    which `dask_cluster` reports)."""
    if scheduler is None or not scheduler.startswith("local:") or not scheduler[6:].isdigit():
        return None
    return int(scheduler[6:]) or None


def _rule_sets(
    rules: Iterable[str] | None, rule_files: Sequence[PathArg], only_files: bool
) -> tuple[RuleSet, list]:
    """The loaded rules and the built-in ones to run; `rules` selects among both."""
    if only_files and not rule_files:
        raise InputError("only_files needs at least one rule file")
    extra = load_rules([str(p) for p in rule_files]) if rule_files else RuleSet()
    wanted = None if rules is None else [i.strip() for i in rules if i and i.strip()]
    if wanted is not None and extra:
        unknown = sorted(set(wanted) - set(extra.ids) - (set() if only_files else set(RULE_IDS)))
        if unknown:
            raise InputError(f"unknown rule id {', '.join(unknown)}; loaded rules: {', '.join(extra.ids)}")
        extra = extra.select(wanted)
        wanted = [i for i in wanted if i not in extra.ids]
        if only_files or not wanted:
            return extra, []
    if only_files:
        return extra, []
    chosen = select(wanted)
    clash = sorted(set(extra.ids) & {r.id for r in chosen})
    if clash:
        where = {r.id: r.spec.source for r in extra.rules}
        raise InputError(f"{where[clash[0]]}: rule id {clash[0]!r} is a built-in rule; "
                         f"run the file alone (only_files / --only-file) or rename the rule")
    return extra, chosen


def episodes_empty() -> pd.DataFrame:
    return empty_episodes()[list(EPISODE_COLUMNS)]


def _order(f: Finding) -> tuple:
    return (*f.sort_key(), f.message, f.device or "", f.error_id if f.error_id is not None else -1)

