"""A check's results as DataFrames, for a notebook: one row per finding, one per incident.

`CheckResult` keeps typed records (what renderers and the JSON document read); an analyst
filters, groups and joins tables. These are the same values in the JSON document's shapes (the
columns are `Finding.to_dict`'s and `Incident.to_dict`'s), plus a finding's host and run, in the
result's order, so that ``findings_frame(r).groupby("host")`` answers "which hosts" at once.
"""

from __future__ import annotations

import pandas as pd

from analyzer.outage import Incident
from analyzer.result import CheckResult, Finding

#: Columns of `findings_frame`: Finding.to_dict's, then host and run.
FINDING_COLUMNS: tuple[str, ...] = (*Finding("r", "error", "v", None, None, (), None, None, "").to_dict(),)
FINDING_COLUMNS = (*FINDING_COLUMNS, *(c for c in ("host", "run") if c not in FINDING_COLUMNS))
#: Columns of `incidents`: Incident.to_dict's, with vms as a list of (host, vm) pairs and the
#: counts an SRE reads first.
INCIDENT_COLUMNS: tuple[str, ...] = (
    "id", "start_ns", "end_ns", "n_vms", "n_hosts", "vms", "hosts", "devices", "errnos", "episodes",
    "paused_p50_ns", "paused_p95_ns", "paused_max_ns", "still_paused",
)

_INT_COLUMNS = ("error_id", "ts_ns")


def findings_frame(result: CheckResult) -> pd.DataFrame:
    """One row per finding of `result` (its order), columns :data:`FINDING_COLUMNS`."""
    rows = [{**f.to_dict(), "host": f.host, "run": f.run} for f in result.findings]
    frame = pd.DataFrame(rows, columns=list(FINDING_COLUMNS))
    for c in _INT_COLUMNS:
        frame[c] = frame[c].astype("Int64")
    return frame


def incidents(result: CheckResult) -> pd.DataFrame:
    """One row per incident of `result` (by start), columns :data:`INCIDENT_COLUMNS`."""
    rows = [_incident_row(i) for i in result.incidents]
    frame = pd.DataFrame(rows, columns=list(INCIDENT_COLUMNS))
    for c in ("id", "start_ns", "end_ns", "n_vms", "n_hosts", "episodes", "paused_p50_ns",
              "paused_p95_ns", "paused_max_ns", "still_paused"):
        frame[c] = frame[c].astype("Int64")
    return frame


def _incident_row(i: Incident) -> dict:
    d = i.to_dict()
    d["vms"] = list(i.vms)
    d["n_vms"] = len(i.vms)
    d["n_hosts"] = len(i.hosts)
    return d


__all__ = ["FINDING_COLUMNS", "INCIDENT_COLUMNS", "findings_frame", "incidents"]
