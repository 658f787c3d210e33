"""OpenMetrics text of a check: io errors, pauses and time paused per VM and host, findings,
incidents — for Prometheus, through node-exporter's textfile collector.

A VM's series are per identity (`analyzer.identity`), labelled ``host`` and ``vm`` (and
``run`` in a trace that has runs): vm0 of two hosts is two series, never one sum.

An SRE's dashboards and alerts live in Prometheus/Grafana, not in our reports. A periodic
``blkreplay export ... --to openmetrics -o /var/lib/node_exporter/textfile/blkreplay.prom``
puts the audit there. The collector reads ``*.prom`` files while other processes write
them, so the file is replaced atomically (`analyzer.outputs`: a hidden temporary name that
does not end in ``.prom``, then a rename).

The text follows the OpenMetrics 1.0 exposition format: metric names ``blkreplay_*``, a TYPE
and a HELP line per family (UNIT for seconds), label values escaped (backslash, double
quote, newline), ``# EOF`` last, no sample timestamps (the textfile collector refuses them).
Every family is a gauge: the values describe one exported trace, and the next export (of
another recording) may well be lower, which a counter must never be; and a gauge reads the
same in OpenMetrics and in the Prometheus text format the textfile collector parses (an
OpenMetrics counter's ``_total`` samples would lose their type there). Order is fixed
(families as listed here, samples by label values), so the same check gives the same bytes.
Control and bidi characters in names from the trace are shown as visible escapes
(`analyzer.text.printable`) before the OpenMetrics escaping, so that ``cat`` of the file
cannot drive a terminal.

What is counted comes from the episodes table (`analyzer.episodes`): an io error is an error
episode; a pause is a distinct STOP that served error episodes; time paused sums STOP ->
RESUME of those that resumed; a VM still paused at the end of its trace has
``blkreplay_vm_paused 1``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyzer import outputs
from analyzer.export.source import ExportSource, VmSpan, all_inputs, input_paths, resolve, vm_spans
from analyzer.export.summary import ExportSummary
from analyzer.result import CheckResult
from analyzer.text import printable


@dataclass(frozen=True)
class Family:
    """One metric family: name (a counter's without ``_total``), type, help, unit, samples."""

    name: str
    type: str
    help: str
    samples: list[tuple[tuple[tuple[str, str], ...], float | int]]
    unit: str | None = None


def escape_label(value: object) -> str:
    """A label value for the exposition: control / bidi characters as visible escapes, then
    OpenMetrics escaping of backslash, double quote and newline."""
    text = "\n".join(printable(part) for part in ("" if value is None else str(value)).split("\n"))
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float | int) -> str:
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, int | np.integer):
        return str(int(value))
    return repr(float(value))


def render(families: Iterable[Family]) -> str:
    """The exposition text of `families`, ``# EOF`` last."""
    lines: list[str] = []
    for f in families:
        lines.append(f"# TYPE {f.name} {f.type}")
        if f.unit is not None:
            lines.append(f"# UNIT {f.name} {f.unit}")
        lines.append(f"# HELP {f.name} {_escape_help(f.help)}")
        sample = f"{f.name}_total" if f.type == "counter" else f.name
        for labels, value in f.samples:
            if labels:
                text = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels)
                lines.append(f"{sample}{{{text}}} {_number(value)}")
            else:
                lines.append(f"{sample} {_number(value)}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def families(result: CheckResult, vms: Iterable[VmSpan]) -> list[Family]:
    """The metric families of a check; `vms` are every VM of the trace (`vm_spans`: VMs
    without an episode get zeros, so that their series exist for alerts). A VM's series is
    labelled by its host and name, and by its run where the trace has runs: vm0 of two hosts
    (or two runs) is two series."""
    per_vm = _per_vm(result.episodes, vms)
    with_run = bool(per_vm["run"].notna().any())

    def vm_samples(col: str) -> list:
        return [((("host", h or ""), ("vm", v), *((("run", r or ""),) if with_run else ())), _num(x))
                for h, v, r, x in zip(per_vm["host"], per_vm["vm"], per_vm["run"], per_vm[col],
                                      strict=True)]

    known = per_vm[per_vm["host"].notna()]
    per_host = known.groupby("host", sort=True)[["io_errors", "pauses", "paused_ns", "paused"]].sum()

    def host_samples(col: str, scale: float = 1.0) -> list:
        return [((("host", h),), _num(x) if scale == 1.0 else float(x) / scale)
                for h, x in zip(per_host.index.tolist(), per_host[col].tolist(), strict=True)]

    severity = {r.id: r.severity for r in result.rules}
    by_rule = sorted(result.by_rule.items())
    inc = sorted(result.incidents, key=lambda i: i.id)
    out = [
        Family("blkreplay_vm_io_errors", "gauge", "I/O errors (error episodes) of the VM in the trace.",
               vm_samples("io_errors")),
        Family("blkreplay_vm_pauses", "gauge", "Pauses (STOP) of the VM that served an I/O error.",
               vm_samples("pauses")),
        Family("blkreplay_vm_paused_seconds", "gauge",
               "Time the VM stayed paused on I/O errors (STOP to RESUME, resumed pauses).",
               [(lbl, float(x) / 1e9) for lbl, x in vm_samples("paused_ns")], unit="seconds"),
        Family("blkreplay_vm_paused", "gauge", "1 if the VM was still paused on an I/O error when its trace ended.",
               vm_samples("paused")),
        Family("blkreplay_host_io_errors", "gauge", "I/O errors (error episodes) of the host's VMs.",
               host_samples("io_errors")),
        Family("blkreplay_host_pauses", "gauge", "Pauses of the host's VMs that served an I/O error.",
               host_samples("pauses")),
        Family("blkreplay_host_paused_seconds", "gauge",
               "Time the host's VMs stayed paused on I/O errors, summed over its VMs.",
               host_samples("paused_ns", 1e9), unit="seconds"),
        Family("blkreplay_host_vms_paused", "gauge", "VMs of the host still paused on an I/O error at the end.",
               host_samples("paused")),
        Family("blkreplay_findings", "gauge", "Findings of the check per rule that applied.",
               [((("rule", rid), ("severity", severity.get(rid, ""))), n) for rid, n in by_rule]),
        Family("blkreplay_check_failed", "gauge", "1 if the check found an error (verdict fail), else 0.",
               [((), int(result.verdict == "fail"))]),
        Family("blkreplay_incidents", "gauge", "Incidents: io-error pauses correlated across the fleet.",
               [((), len(inc))]),
        Family("blkreplay_incident_vms", "gauge", "VMs paused in the incident.",
               [((("incident", str(i.id)),), len(i.vms)) for i in inc]),
        Family("blkreplay_incident_hosts", "gauge", "Hosts with VMs paused in the incident.",
               [((("incident", str(i.id)),), len(i.hosts)) for i in inc]),
        Family("blkreplay_incident_start_seconds", "gauge",
               "Start of the incident (first io-error pause), seconds on the trace clock (Unix time for wall-clock traces).",
               [((("incident", str(i.id)),), i.start_ns / 1e9) for i in inc], unit="seconds"),
        Family("blkreplay_incident_paused_max_seconds", "gauge",
               "Longest STOP to RESUME of the incident's resumed pauses.",
               [((("incident", str(i.id)),), i.paused_max_ns / 1e9) for i in inc
                if i.paused_max_ns is not None], unit="seconds"),
        Family("blkreplay_incident_still_paused", "gauge", "Episodes of the incident still paused at the end.",
               [((("incident", str(i.id)),), i.still_paused) for i in inc]),
    ]
    return out


def _num(x: object) -> int:
    return int(x)  # type: ignore[call-overload]


#: The identity of a VM as grouping columns ("" for no host / no run, so that groups exist).
_WHO = ["_host", "vm", "_run"]
_STATS = ("io_errors", "pauses", "paused_ns", "paused")


def _identity_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with _host / _run: its host / run ("" where none, or without the column)."""
    def part(col: str) -> pd.Series:
        if col not in frame.columns:
            return pd.Series([""] * len(frame), index=frame.index, dtype=object)
        return frame[col].astype(object).where(frame[col].notna(), "")
    return frame.assign(_host=part("host"), _run=part("run"))


def _per_vm(eps: pd.DataFrame, vms: Iterable[VmSpan]) -> pd.DataFrame:
    """Per VM identity (every VM of `vms` and of the episodes): vm, host, run (None for none),
    io_errors, pauses, paused_ns, paused; sorted by (host, vm, run)."""
    spans = list(vms)
    base = pd.DataFrame({"_host": [v.host or "" for v in spans], "vm": [v.vm for v in spans],
                         "_run": [v.run or "" for v in spans]}, dtype=object)
    if len(eps):
        frame = _identity_frame(eps[[c for c in ("vm", "host", "run", "seq_stop", "paused_ns", "ts_resume")
                                     if c in eps.columns]])
        frame["vm"] = frame["vm"].astype(object)
        errors = frame.groupby(_WHO, sort=True).size().rename("io_errors")
        stopped = frame[frame["seq_stop"].notna()]
        stops = stopped.drop_duplicates([*_WHO, "seq_stop"])
        paused = stops.assign(p=stops["paused_ns"].fillna(0).astype("int64"),
                              open=stops["ts_resume"].isna().astype("int64"))
        g = paused.groupby(_WHO, sort=True)
        agg = pd.DataFrame({"pauses": g.size(), "paused_ns": g["p"].sum(),
                            "paused": (g["open"].max() > 0).astype("int64")})
        stats = pd.concat([errors, agg], axis=1).reset_index()
        base = base.merge(stats, on=_WHO, how="outer")
    for col in _STATS:
        base[col] = base[col].fillna(0).astype("int64") if col in base.columns else 0
    base = base.drop_duplicates(_WHO).sort_values(_WHO, kind="mergesort").reset_index(drop=True)
    return pd.DataFrame({
        "vm": base["vm"].astype(object),
        "host": base["_host"].astype(object).where(base["_host"] != "", None),
        "run": base["_run"].astype(object).where(base["_run"] != "", None),
        **{c: base[c] for c in _STATS},
    })


def openmetrics(
    source: ExportSource,
    out: outputs.PathArg,
    *,
    parents: bool = False,
) -> ExportSummary:
    """Write the OpenMetrics text of `source` (paths, a `Trace` or a `CheckResult`) to `out`
    (``-``: standard output), atomically, never over an input."""
    inputs = input_paths(source)
    outputs.check_output(out, inputs=inputs, kind="text", parents=parents, allow_stdout=True)
    src = resolve(source, need_trace=True)
    spans = vm_spans(src.require_trace())
    fams = families(src.result, spans.values())
    text = render(fams)
    outputs.write_output(out, text, inputs=all_inputs(inputs, src), kind="text",
                         parents=parents, allow_stdout=True)
    return ExportSummary("openmetrics", str(out), {
        "families": len(fams), "samples": sum(len(f.samples) for f in fams), "vms": len(spans)})
