"""Per-VM statistics of a checked trace: what an audit report tabulates and charts.

Pure, vectorized functions from two tables to tidy pandas DataFrames (one fact per row, sorted
explicitly so that the same trace always gives the same frame):

* the **episodes** table of :func:`analyzer.check` (one row per error action, with the seq/ts of
  each milestone and the latencies between them), and
* the trace's **steps** (at least ``vm, seq, ts_ns, thread, kind, name, runstate``; see
  :data:`STEP_COLUMNS`), read once by the caller.

Nothing here loops over trace rows in Python: every function is a handful of group-bys, sorts and
shifts over whole columns, so a report of a million-step trace spends its time in pandas.
Times stay integer nanoseconds; percentiles are nearest-rank, so they are values that occurred.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyzer.report.fleet import natural_order
from analyzer.state import STOPPED, runstate_sources
from analyzer.steps import RS, Steps
from tracer.schema import ERRNO_NAMES

#: The step columns the statistics read (a report loads only these).
STEP_COLUMNS: tuple[str, ...] = ("host", "vm", "seq", "ts_ns", "thread", "kind", "name", "runstate")

#: The latencies a report summarises: (episodes column, milestone columns it is derived from
#: when the column itself is absent, the label shown to a reader).
LATENCIES: tuple[tuple[str, str, str, str], ...] = (
    ("error_to_event_ns", "ts_error_action", "ts_event", "error → BLOCK_IO_ERROR"),
    ("event_to_stop_ns", "ts_event", "ts_stop", "BLOCK_IO_ERROR → STOP"),
)

PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))

#: Run states of the timeline: QEMU's run state folded into what an SRE cares about.
TIMELINE_STATES: tuple[str, ...] = ("running", "io-error", "paused")

ALL_VMS = "(all)"


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _str(series: pd.Series) -> pd.Series:
    """Object strings (None for nulls) from a categorical / string / object column."""
    out = series.astype(object)
    return out.where(series.notna(), None)


def _int_col(frame: pd.DataFrame, name: str) -> pd.Series:
    """Column `name` as nullable Int64 (all-null when absent)."""
    if name in frame.columns:
        return pd.to_numeric(frame[name], errors="coerce").astype("Int64")
    return pd.Series(pd.array([pd.NA] * len(frame), dtype="Int64"), index=frame.index)


def _vm_order(values: Iterable[str]) -> list[str]:
    return sorted({str(v) for v in values})


def _codes(column: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Integer codes of a string column and the values they stand for, in sorted order (so code
    order is name order). Cheap on the categoricals a trace loads as; nulls get -1."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        # The categoricals a report reads: re-rank the few categories, one gather of the codes.
        cats = [str(c) for c in column.cat.categories]
        raw = column.cat.codes.to_numpy()
        used = np.zeros(len(cats) + 1, dtype=bool)
        used[raw] = True  # a null (-1) marks the extra last slot
        present = sorted((i for i in range(len(cats)) if used[i]), key=cats.__getitem__)
        lut = np.full(len(cats) + 1, -1, dtype=np.int64)
        lut[present] = np.arange(len(present))
        return lut[raw], [cats[i] for i in present]
    codes, uniques = pd.factorize(column, sort=True)
    return codes.astype(np.int64, copy=False), [str(u) for u in uniques]


def _sorted_by(*keys: np.ndarray) -> bool:
    """Whether rows are already sorted by `keys` (most significant first)."""
    if len(keys[0]) < 2:
        return True
    ok = np.ones(len(keys[0]) - 1, dtype=bool)
    tie = np.ones(len(keys[0]) - 1, dtype=bool)
    for k in keys:
        ok &= ~tie | (k[1:] >= k[:-1])
        tie &= k[1:] == k[:-1]
    return bool(ok.all())


def _order(*keys: np.ndarray) -> np.ndarray:
    """Row order sorting by `keys` (most significant first); identity when already sorted."""
    if _sorted_by(*keys):
        return np.arange(len(keys[0]))
    return np.lexsort(tuple(reversed(keys)))


def _where(steps: pd.DataFrame, mask: pd.Series | np.ndarray, columns: Sequence[str]) -> pd.DataFrame:
    """`columns` of the rows in `mask`, string columns as plain objects (None for null)."""
    sub = steps.loc[np.asarray(mask, dtype=bool), list(columns)]
    for c in columns:
        if c not in ("seq", "ts_ns"):
            sub[c] = _str(sub[c])
    return sub.reset_index(drop=True)


def _per_vm_ts(steps: pd.DataFrame) -> pd.DataFrame:
    """size, min and max of ts_ns per VM (index: VM name)."""
    codes, vms = _codes(steps["vm"])
    ts = steps["ts_ns"].to_numpy(dtype=np.int64)
    n = len(vms)
    size = np.bincount(codes, minlength=n)
    if len(codes) and bool(np.all(codes[1:] >= codes[:-1])):  # VM after VM: one block each
        starts = np.r_[0, np.cumsum(size)[:-1]]
        lo, hi = np.minimum.reduceat(ts, starts), np.maximum.reduceat(ts, starts)
    else:
        lo = np.full(n, np.iinfo(np.int64).max)
        hi = np.full(n, np.iinfo(np.int64).min)
        np.minimum.at(lo, codes, ts)
        np.maximum.at(hi, codes, ts)
    return pd.DataFrame({"size": size, "min": lo, "max": hi}, index=pd.Index(vms, name="vm"))


def errno_name(errno: object) -> str:
    """`EIO (5)` for a known errno, the number otherwise, `-` for none."""
    if errno is None or (isinstance(errno, float) and np.isnan(errno)) or errno is pd.NA:
        return "-"
    n = int(errno)  # type: ignore[arg-type]
    name = ERRNO_NAMES.get(n)
    return f"{name} ({n})" if name else str(n)


# ---------------------------------------------------------------------------------------------
# Per-unit facts: what the statistics keep of a unit's steps
# ---------------------------------------------------------------------------------------------

#: The events counted per VM.
COUNTED_EVENTS: tuple[str, ...] = ("STOP", "RESUME")


@dataclass(frozen=True)
class StepFacts:
    """Everything the statistics need from the steps of some whole VMs, a few rows per VM (and
    one per integrity problem): a report reads the trace unit by unit, keeps these and drops the
    steps, so its memory follows a unit, never the trace. Facts of disjoint sets of VMs merge
    (:func:`merge_facts`) into exactly the facts of their union.

    `ts`: size, min and max of ts_ns per VM (index: VM name, sorted); `events`: COUNTED_EVENTS
    per VM (same index); `gaps`: :func:`seq_gaps`; `clock`: :func:`clock_anomalies`.
    """

    ts: pd.DataFrame
    events: pd.DataFrame
    gaps: pd.DataFrame
    clock: pd.DataFrame
    #: vm -> its host(s) from the trace's `host` column (several joined by ", "), VMs without
    #: one left out; None when not gathered.
    hosts: pd.Series | None = None

    @property
    def vms(self) -> list[str]:
        return [str(v) for v in self.ts.index]


def step_facts(steps: pd.DataFrame) -> StepFacts:
    """The facts of `steps` (whole VMs; any row order)."""
    if len(steps):
        ts = _per_vm_ts(steps)
        events = _event_counts(steps, COUNTED_EVENTS)
    else:
        ts = pd.DataFrame({"size": pd.Series(dtype="int64"), "min": pd.Series(dtype="int64"),
                           "max": pd.Series(dtype="int64")}, index=pd.Index([], name="vm", dtype=object))
        events = pd.DataFrame({e: pd.Series(dtype="int64") for e in COUNTED_EVENTS},
                              index=pd.Index([], name="vm", dtype=object))
    return StepFacts(ts, events, seq_gaps(steps), clock_anomalies(steps), vm_hosts(steps))


def vm_hosts(steps: pd.DataFrame) -> pd.Series:
    """vm -> the host(s) its steps name (sorted, joined by ", "), for VMs with a host."""
    empty = pd.Series(dtype=object, index=pd.Index([], name="vm", dtype=object), name="host")
    if "host" not in steps or not len(steps) or not steps["host"].notna().any():
        return empty
    vm_c, vms = _codes(steps["vm"])
    host_c, hosts = _codes(steps["host"])
    ok = host_c >= 0
    pairs = np.unique(np.stack([vm_c[ok], host_c[ok]]), axis=1)
    if not pairs.shape[1]:
        return empty
    # pairs are sorted by VM code (name order), then host: one row per VM but where a VM
    # names several hosts (joined; rare, so the join runs for those alone).
    vm_of, host_of = pairs[0], np.asarray(hosts, dtype=object)[pairs[1]]
    first = np.r_[True, vm_of[1:] != vm_of[:-1]]
    values = host_of[first].copy()
    multi = np.flatnonzero(np.diff(np.r_[np.flatnonzero(first), len(vm_of)]) > 1)
    starts = np.flatnonzero(first)
    for k in multi.tolist():
        end = starts[k + 1] if k + 1 < len(starts) else len(vm_of)
        values[k] = ", ".join(host_of[starts[k]:end])
    out = pd.Series(values, index=pd.Index(np.asarray(vms, dtype=object)[vm_of[first]], name="vm"),
                    name="host", dtype=object)
    return out


def merge_facts(parts: Sequence[StepFacts]) -> StepFacts:
    """The facts of the union of disjoint sets of VMs, equal to those of all their steps at
    once: per-VM rows sorted by VM name, integrity rows by VM (each VM's own order kept)."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return step_facts(pd.DataFrame({c: pd.Series(dtype=object) for c in STEP_COLUMNS}))

    def rows(frames: list[pd.DataFrame]) -> pd.DataFrame:
        dtypes = frames[0].dtypes.to_dict()
        out = pd.concat(frames, ignore_index=True)
        return out.sort_values("vm", kind="mergesort").reset_index(drop=True).astype(dtypes)

    ts = pd.concat([p.ts for p in parts]).sort_index(kind="mergesort")
    events = pd.concat([p.events for p in parts]).sort_index(kind="mergesort").astype("int64")
    ts.index.name = events.index.name = "vm"
    hosts = [p.hosts for p in parts if p.hosts is not None and len(p.hosts)]
    merged_hosts = pd.concat(hosts).sort_index(kind="mergesort") if hosts else vm_hosts(pd.DataFrame())
    return StepFacts(ts.astype("int64"), events, rows([p.gaps for p in parts]),
                     rows([p.clock for p in parts]), merged_hosts)


def _facts(steps: pd.DataFrame | StepFacts) -> StepFacts:
    return steps if isinstance(steps, StepFacts) else step_facts(steps)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

ERROR_KEYS = ("vm", "device", "op", "errno", "action")


def errors_by_kind(episodes: pd.DataFrame) -> pd.DataFrame:
    """Error actions per VM by device, op, errno and action.

    Columns: vm, device, op, errno (Int64), action, errors. Nulls are kept as their own group
    (an imported trace may not know the op), sorted by vm then by descending count.
    """
    cols = ["vm", "device", "op", "errno", "action", "errors"]
    if episodes.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "errors" else object) for c in cols})
    frame = pd.DataFrame(
        {
            "vm": _str(episodes["vm"]).astype(str),
            "device": _str(episodes["device"]) if "device" in episodes else None,
            "op": _str(episodes["op"]) if "op" in episodes else None,
            "errno": _int_col(episodes, "errno"),
            "action": _str(episodes["action"]) if "action" in episodes else None,
        }
    )
    out = frame.groupby(list(ERROR_KEYS), sort=False, dropna=False).size().rename("errors").reset_index()
    out = out.sort_values(
        ["vm", "errors", "device", "op", "errno", "action"],
        ascending=[True, False, True, True, True, True],
        kind="mergesort",
        na_position="last",
    ).reset_index(drop=True)
    for c in ("device", "op", "action"):
        out[c] = _str(out[c])
    out["errno"] = out["errno"].astype("Int64")
    out["errors"] = out["errors"].astype("int64")
    return out[cols]


# ---------------------------------------------------------------------------------------------
# Stops, resumes, paused time
# ---------------------------------------------------------------------------------------------


def _event_counts(steps: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """Per VM, how many qmp_event rows of each name in `names` (0 when none)."""
    vms = _codes(steps["vm"])[1]
    ev = _where(steps, (steps["kind"] == "qmp_event") & steps["name"].isin(list(names)), ["vm", "name"])
    table = ev.groupby(["vm", "name"]).size().unstack("name", fill_value=0)
    table = table.reindex(index=vms, columns=list(names), fill_value=0)
    return table.astype("int64")


def io_error_stops(episodes: pd.DataFrame, steps: pd.DataFrame | StepFacts) -> pd.DataFrame:
    """The distinct STOPs caused by I/O errors, with how long each kept the VM paused.

    Several error actions can be served by one stop (QEMU's single request slot), so episodes
    are reduced to distinct (vm, seq_stop). A stop never resumed counts until the VM's last
    step and is flagged `open`. Columns: vm, seq_stop, ts_stop, ts_resume, paused_ns, open.
    """
    cols = {"vm": object, "seq_stop": "int64", "ts_stop": "int64", "ts_resume": "Int64",
            "paused_ns": "int64", "open": bool}
    if episodes.empty or "seq_stop" not in episodes:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols.items()})
    ep = pd.DataFrame(
        {
            "vm": _str(episodes["vm"]).astype(str),
            "seq_stop": _int_col(episodes, "seq_stop"),
            "ts_stop": _int_col(episodes, "ts_stop"),
            "ts_resume": _int_col(episodes, "ts_resume"),
        }
    )
    ep = ep[ep["seq_stop"].notna() & ep["ts_stop"].notna()]
    ep = ep.sort_values(["vm", "seq_stop"], kind="mergesort").drop_duplicates(["vm", "seq_stop"])
    last_ts = _facts(steps).ts["max"]
    end = ep["vm"].map(last_ts).astype("Int64")
    open_ = ep["ts_resume"].isna()
    until = ep["ts_resume"].where(~open_, end).fillna(ep["ts_stop"])
    out = ep.assign(
        seq_stop=ep["seq_stop"].astype("int64"),
        ts_stop=ep["ts_stop"].astype("int64"),
        paused_ns=(until - ep["ts_stop"]).clip(lower=0).astype("int64"),
        open=open_.astype(bool),
    )
    return out[list(cols)].reset_index(drop=True)


def vm_summary(episodes: pd.DataFrame, steps: pd.DataFrame | StepFacts) -> pd.DataFrame:
    """One row per VM: steps, span, errors, stops, resumes, and time paused by I/O errors.

    Columns: vm, steps, first_ts_ns, last_ts_ns, errors, errors_stop (action stop),
    stop_events, resume_events, io_error_stops, paused_ns, paused_at_end (an I/O-error stop
    still not resumed when the trace ends). `steps`: the steps, or their :class:`StepFacts`.
    """
    facts = _facts(steps)
    ts = facts.ts if len(facts.ts) else None
    ep_vm = _str(episodes["vm"]).astype(str) if len(episodes) else pd.Series(dtype=object)
    vms = _vm_order([*(ts.index if ts is not None else []), *ep_vm.unique()])
    index = pd.Index(vms, name="vm")
    is_stop = (_str(episodes["action"]) == "stop") if len(episodes) and "action" in episodes else None
    events = facts.events if len(facts.ts) else None
    stops = io_error_stops(episodes, facts).groupby("vm")

    def counts(series: pd.Series | None) -> pd.Series:
        values = series if series is not None else pd.Series(dtype="int64")
        return values.reindex(index).fillna(0).astype("int64")

    out = pd.DataFrame(
        {
            "steps": counts(ts["size"] if ts is not None else None),
            "first_ts_ns": (ts["min"] if ts is not None else pd.Series(dtype="Int64")).reindex(index).astype("Int64"),
            "last_ts_ns": (ts["max"] if ts is not None else pd.Series(dtype="Int64")).reindex(index).astype("Int64"),
            "errors": counts(ep_vm.value_counts()),
            "errors_stop": counts(ep_vm[is_stop].value_counts() if is_stop is not None else None),
            "stop_events": counts(events["STOP"] if events is not None else None),
            "resume_events": counts(events["RESUME"] if events is not None else None),
            "io_error_stops": counts(stops.size()),
            "paused_ns": counts(stops["paused_ns"].sum()),
            "paused_at_end": stops["open"].any().reindex(index).astype("boolean").fillna(False).astype(bool),
        },
        index=index,
    )
    return out.reset_index()


# ---------------------------------------------------------------------------------------------
# Latencies
# ---------------------------------------------------------------------------------------------


def latency_values(episodes: pd.DataFrame) -> pd.DataFrame:
    """Every measured latency, long form: vm, measure (label), ns. Negative values are kept
    (a clock anomaly is a fact to show, not to hide); missing ones (no event, no stop) dropped."""
    parts = []
    vm = _str(episodes["vm"]).astype(str) if len(episodes) else pd.Series(dtype=object)
    for col, start, end, label in LATENCIES:
        if col in episodes:
            ns = _int_col(episodes, col)
        elif start in episodes and end in episodes:
            ns = _int_col(episodes, end) - _int_col(episodes, start)
        else:
            continue
        keep = ns.notna()
        parts.append(pd.DataFrame({"vm": vm[keep], "measure": label, "ns": ns[keep].astype("int64")}))
    if not parts:
        return pd.DataFrame({"vm": pd.Series(dtype=object), "measure": pd.Series(dtype=object),
                             "ns": pd.Series(dtype="int64")})
    return pd.concat(parts, ignore_index=True)


def _nearest_rank(values: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """count, p50, p95, p99, max of `ns` per `keys` group, nearest-rank, vectorized."""
    v = values.sort_values([*keys, "ns"], kind="mergesort").reset_index(drop=True)
    grp = v.groupby(keys, sort=True)
    size = grp.size()
    start = np.concatenate([[0], np.cumsum(size.to_numpy())[:-1]]).astype(np.int64)
    n = size.to_numpy().astype(np.int64)
    ns = v["ns"].to_numpy()
    out = size.rename("count").reset_index()
    for label, q in PERCENTILES:
        pos = start + np.maximum(np.ceil(q * n).astype(np.int64) - 1, 0)
        out[f"{label}_ns"] = ns[pos]
    out["max_ns"] = ns[start + n - 1]
    return out


def latency_summary(episodes: pd.DataFrame) -> pd.DataFrame:
    """Latency percentiles per VM and measure, plus one ``(all)`` row per measure.

    Columns: vm, measure, count, p50_ns, p95_ns, p99_ns, max_ns (nearest-rank percentiles).
    """
    cols = ["vm", "measure", "count", "p50_ns", "p95_ns", "p99_ns", "max_ns"]
    values = latency_values(episodes)
    if values.empty:
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("vm", "measure") else "int64") for c in cols})
    per_vm = _nearest_rank(values, ["vm", "measure"])
    overall = _nearest_rank(values.assign(vm=ALL_VMS), ["vm", "measure"])
    labels = [label for _, _, _, label in LATENCIES]
    out = pd.concat([per_vm, overall], ignore_index=True)
    out["_m"] = out["measure"].map({m: i for i, m in enumerate(labels)})
    out["_all"] = out["vm"] == ALL_VMS
    out = out.sort_values(["_all", "vm", "_m"], kind="mergesort").drop(columns=["_m", "_all"])
    return out[cols].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Integrity
# ---------------------------------------------------------------------------------------------


def seq_gaps(steps: pd.DataFrame) -> pd.DataFrame:
    """Every hole in a VM's `seq` numbering (steps lost between two recorded ones).

    Columns: vm, after_seq, before_seq, missing. A VM's seq starts at 0; a trace that starts
    later is reported as a gap after seq -1.
    """
    cols = {"vm": object, "after_seq": "int64", "before_seq": "int64", "missing": "int64"}
    if steps.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols.items()})
    codes, vms = _codes(steps["vm"])
    seq = steps["seq"].to_numpy(dtype=np.int64)
    if _sorted_by(codes, seq):
        c, s = codes, seq
    else:
        order = np.lexsort((seq, codes))
        c, s = codes[order], seq[order]
    # A gap: a step after the VM's previous one by more than 1, or a VM starting after seq 0.
    same = c[1:] == c[:-1]
    later = np.flatnonzero(same & (s[1:] - s[:-1] > 1)) + 1
    first = np.flatnonzero(np.r_[True, ~same])
    first = first[s[first] > 0]
    at = np.sort(np.concatenate([first, later]))
    prev = np.where(np.isin(at, first), -1, s[np.maximum(at - 1, 0)])
    out = pd.DataFrame({"vm": np.asarray(vms, dtype=object)[c[at]], "after_seq": prev,
                        "before_seq": s[at], "missing": s[at] - prev - 1})
    return out.astype(cols)


def clock_anomalies(steps: pd.DataFrame) -> pd.DataFrame:
    """Steps whose timestamp goes back in time relative to the previous step of the same thread
    (the `ts-monotonic-per-thread` rule's facts, with how far back).

    Columns: vm, thread, prev_seq, seq, prev_ts_ns, ts_ns, backwards_ns.
    """
    cols = {"vm": object, "thread": object, "prev_seq": "int64", "seq": "int64",
            "prev_ts_ns": "int64", "ts_ns": "int64", "backwards_ns": "int64"}
    if steps.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols.items()})
    vm_c, vms = _codes(steps["vm"])
    seq = steps["seq"].to_numpy(dtype=np.int64)
    ts = steps["ts_ns"].to_numpy(dtype=np.int64)
    if _sorted_by(vm_c, seq):
        v, x = vm_c, ts
    else:
        by_vm = np.lexsort((seq, vm_c))
        v, x = vm_c[by_vm], ts[by_vm]
    if bool(np.all((x[1:] >= x[:-1]) | (v[1:] != v[:-1]))):
        # Each VM's clock never goes back in seq order, so no thread's (a subsequence) can:
        # the usual case, decided without sorting by thread.
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols.items()})
    del v, x
    th_c, threads = _codes(steps["thread"])
    order = np.lexsort((seq, th_c, vm_c))
    v, t, s, x = vm_c[order], th_c[order], seq[order], ts[order]
    same = np.r_[False, (v[1:] == v[:-1]) & (t[1:] == t[:-1])]
    prev_ts = np.r_[0, x[:-1]]
    prev_seq = np.r_[-1, s[:-1]]
    bad = same & (prev_ts > x)
    out = pd.DataFrame({"vm": np.asarray(vms, dtype=object)[v[bad]],
                        "thread": np.asarray(threads, dtype=object)[t[bad]],
                        "prev_seq": prev_seq[bad], "seq": s[bad], "prev_ts_ns": prev_ts[bad],
                        "ts_ns": x[bad], "backwards_ns": prev_ts[bad] - x[bad]})
    return out.sort_values(["vm", "seq"], kind="mergesort").reset_index(drop=True).astype(cols)


def integrity_summary(steps: pd.DataFrame | StepFacts, gaps: pd.DataFrame | None = None,
                      clock: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per VM: seq gaps (count, steps missing) and clock anomalies (count, worst jump back).

    `gaps` / `clock`: the results of :func:`seq_gaps` / :func:`clock_anomalies` if already
    computed. Columns: vm, seq_gaps, seq_missing, clock_anomalies, max_backwards_ns.
    """
    if isinstance(steps, StepFacts):
        vms = steps.vms
        gaps = steps.gaps if gaps is None else gaps
        clock = steps.clock if clock is None else clock
    else:
        vms = _codes(steps["vm"])[1] if len(steps) else []
    base = pd.DataFrame(index=pd.Index(vms, name="vm"))
    by_gap = (seq_gaps(steps) if gaps is None else gaps).groupby("vm")["missing"]
    by_clock = (clock_anomalies(steps) if clock is None else clock).groupby("vm")["backwards_ns"]
    base["seq_gaps"] = by_gap.size()
    base["seq_missing"] = by_gap.sum()
    base["clock_anomalies"] = by_clock.size()
    base["max_backwards_ns"] = by_clock.max()
    return base.fillna(0).astype("int64").reset_index()


# ---------------------------------------------------------------------------------------------
# Timeline
# ---------------------------------------------------------------------------------------------


def _fold(code: np.ndarray, io_stop: np.ndarray) -> np.ndarray:
    """Run-state codes folded into TIMELINE_STATES: a STOP known only as an event is io-error
    where `io_stop` (an episode links it to an error), paused otherwise."""
    io = (code == RS["io-error"]) | ((code == STOPPED) & io_stop)
    return np.select([code == RS["running"], io], ["running", "io-error"], "paused").astype(object)


def runstate_intervals(
    batch: Steps, episodes: pd.DataFrame | None = None, vms: Collection[str] | None = None,
    bounds: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Each VM's run state over time as intervals: vm, state, start_ns, end_ns.

    `batch`: every step of the VMs (:func:`analyzer.report.source.as_steps`); `vms`: only
    these. `state` is running, io-error or paused (any other stopped state): the replayed run
    state (`analyzer.state.runstate_sources`) of the `runstate` rows that name a state where a
    VM has them; otherwise of its STOP/RESUME events (a STOP that episodes link to an error is
    io-error, any other paused). Before the first known state a VM is taken as running; the last
    interval ends at the VM's last step. Adjacent equal states are merged. `bounds`: min and
    max ts_ns per VM (:attr:`StepFacts.ts`) when `batch` holds only some of the VMs' rows
    (:func:`analyzer.report.source.state_rows`).
    """
    cols = {"vm": object, "state": object, "start_ns": "int64", "end_ns": "int64"}
    chosen = np.ones(batch.n, dtype=bool)
    if vms is not None:
        wanted = set(vms)
        chosen = np.isin(batch.vm, [i for i, v in enumerate(batch.vm_names) if v in wanted])
    if not chosen.any():
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols.items()})
    told, code = runstate_sources(batch, valued=True)
    rows = np.flatnonzero(told & chosen)
    vm = np.asarray(batch.vm_names, dtype=object)[batch.vm[rows]]
    changes = pd.DataFrame({"vm": vm, "seq": batch.seq[rows], "ts": batch.ts[rows]})
    linked = pd.DataFrame({"vm": pd.Series(dtype=object), "seq": pd.Series(dtype="int64")})
    if episodes is not None and len(episodes) and "seq_stop" in episodes:
        linked = pd.DataFrame({"vm": _str(episodes["vm"]).astype(object),
                               "seq": _int_col(episodes, "seq_stop")}).dropna()
        linked = linked.astype({"seq": "int64"}).drop_duplicates()
    io_stop = changes[["vm", "seq"]].merge(
        linked.assign(io=True), on=["vm", "seq"], how="left")["io"].fillna(False).to_numpy(dtype=bool)
    changes["state"] = _fold(code[rows], io_stop)
    first = np.flatnonzero(batch.idx == batch.vstart)  # each VM's first row
    keep = chosen[first]
    names = np.asarray(batch.vm_names, dtype=object)[batch.vm[first[keep]]]
    if bounds is None:
        bounds = pd.DataFrame(
            {"min": np.minimum.reduceat(batch.ts, first)[keep], "max": np.maximum.reduceat(batch.ts, first)[keep]},
            index=pd.Index(names),
        )
    else:
        bounds = bounds.loc[list(names), ["min", "max"]]
    start_rows = pd.DataFrame({"vm": bounds.index, "seq": -1, "ts": bounds["min"].to_numpy(),
                               "state": "running"})
    changes = pd.concat([start_rows, changes], ignore_index=True)
    changes = changes.sort_values(["vm", "seq"], kind="mergesort").reset_index(drop=True)
    # Collapse repeated states, then each interval lasts until the next change of its VM.
    same = (changes["vm"] == changes["vm"].shift(1)) & (changes["state"] == changes["state"].shift(1))
    changes = changes[~same].reset_index(drop=True)
    end = changes.groupby("vm")["ts"].shift(-1)
    end = end.fillna(changes["vm"].map(bounds["max"])).astype("int64")
    start = changes["ts"].astype("int64")
    out = pd.DataFrame({"vm": changes["vm"], "state": changes["state"],
                        "start_ns": start, "end_ns": np.maximum(end, start)})
    return out.astype(cols).reset_index(drop=True)


TIMELINE_MARKERS: tuple[tuple[str, str], ...] = (
    ("BLOCK_IO_ERROR", "error"), ("STOP", "stop"), ("RESUME", "resume"),
)


def timeline_markers(steps: pd.DataFrame) -> pd.DataFrame:
    """The events a timeline marks: vm, marker (error / stop / resume), seq, ts_ns."""
    cols = {"vm": object, "marker": object, "seq": "int64", "ts_ns": "int64"}
    if steps.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols.items()})
    mapping = dict(TIMELINE_MARKERS)
    rows = _where(steps, (steps["kind"] == "qmp_event") & steps["name"].isin(list(mapping)),
                  ["vm", "name", "seq", "ts_ns"])
    out = pd.DataFrame({"vm": rows["vm"], "marker": rows["name"].map(mapping),
                        "seq": rows["seq"], "ts_ns": rows["ts_ns"]})
    return out.sort_values(["vm", "seq"], kind="mergesort").reset_index(drop=True).astype(cols)


def most_affected(summary: pd.DataFrame, findings_per_vm: dict[str, int] | None = None,
                  limit: int = 8) -> list[str]:
    """The `limit` VMs a reader should look at first: most findings, then errors, then time
    paused, then name in natural order (stable and deterministic)."""
    if summary.empty:
        return []
    s = summary[["vm", "errors", "paused_ns"]].copy()
    s["findings"] = s["vm"].map(findings_per_vm or {}).fillna(0).astype("int64")
    s = s.iloc[natural_order(s["vm"])]  # ties in natural name order: vm2 before vm10
    s = s.sort_values(["findings", "errors", "paused_ns"],
                      ascending=[False, False, False], kind="mergesort")
    return s["vm"].head(limit).tolist()
