"""Incidents: many VMs pausing on I/O errors together, the unit an SRE reports an outage in.

A storage outage does not pause one VM: it pauses every VM on the failing backend, on many
hosts, within seconds. Per-VM findings cannot show that; an *incident* groups the io-error
pauses of the fleet that start within a window of each other into one result with its window
(UTC), VMs, hosts, devices, errnos and how long the VMs stayed paused.

This module holds the result type every layer shares (check, report, exports); finding the
incidents is `find_incidents`, over the merged episodes table of a whole check (incidents cross
the units of whole VMs the rules run in, so they are computed after the merge).

Grouping: the io-error pauses of the fleet, by the time each began (its BLOCK_IO_ERROR, else its
STOP), are chained: a pause that starts within `window_ns` of the previous one joins its group.
A group with pauses of at least `min_vms` distinct VMs is an incident; one VM pausing again and
again is a pattern of that VM (`analyzer.rules.patterns`), not an incident. Only wall-clock time
is grouped (`analyzer.timefmt.is_wall_clock`): the simulator's virtual clock compresses QEMU's
seconds into milliseconds, where a window of seconds would merge every error of a run.

`paused_by_vm` gives the same time-paused statistics per VM (the SLO an SRE reports).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analyzer.params import Param
from analyzer.timefmt import WALL_CLOCK_MIN_NS

#: Default grouping window: pauses starting within 30 s of the previous one are one outage.
DEFAULT_WINDOW_NS = 30 * 10**9
#: Default minimum of distinct VMs in an incident (one VM alone is not an incident).
DEFAULT_MIN_VMS = 2
#: The grouping's parameters (``--param incidents.window_s=10``).
INCIDENT_PARAMS: tuple[Param, ...] = (
    Param("window_s", DEFAULT_WINDOW_NS / 1e9, "an io-error pause starting within this many seconds "
          "of the previous one of the fleet joins its incident"),
    Param("min_vms", DEFAULT_MIN_VMS, "distinct VMs an incident needs", minimum=1),
)


@dataclass(frozen=True)
class Incident:
    """Correlated io-error pauses across the fleet (sorted, deterministic fields)."""

    #: 1-based, in order of `start_ns`.
    id: int
    #: First and last io-error pause start (BLOCK_IO_ERROR / STOP) of the incident, ns.
    start_ns: int
    end_ns: int
    #: (host, vm) of every VM paused in it, sorted; host is None where the trace has none.
    vms: tuple[tuple[str | None, str], ...]
    hosts: tuple[str, ...]
    devices: tuple[str, ...]
    errnos: tuple[int, ...]
    #: Error episodes (io-error pauses) it groups.
    episodes: int
    #: Time paused (STOP -> RESUME, ns) over its episodes that resumed; None when none did.
    paused_p50_ns: int | None
    paused_p95_ns: int | None
    paused_max_ns: int | None
    #: Episodes still paused at the end of the trace.
    still_paused: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "vms": [{"host": h, "vm": v} for h, v in self.vms],
            "hosts": list(self.hosts),
            "devices": list(self.devices),
            "errnos": list(self.errnos),
            "episodes": self.episodes,
            "paused_p50_ns": self.paused_p50_ns,
            "paused_p95_ns": self.paused_p95_ns,
            "paused_max_ns": self.paused_max_ns,
            "still_paused": self.still_paused,
        }


def _pauses(episodes: pd.DataFrame) -> pd.DataFrame:
    """The io-error pauses among `episodes` (a STOP, or the stop action), with their start
    `t` (BLOCK_IO_ERROR, else STOP, else the error action), host, paused_ns, still_paused; only
    those on a wall clock."""
    if not len(episodes):
        return pd.DataFrame({"t": pd.Series(dtype="int64")})
    stop = episodes["ts_stop"]
    paused = stop.notna() | (episodes["action"] == "stop")
    t = episodes["ts_event"].fillna(stop).fillna(episodes["ts_error_action"])
    keep = paused & t.notna()
    keep &= t.fillna(0) >= WALL_CLOCK_MIN_NS
    e = episodes[keep.to_numpy(dtype=bool)]
    host = e["host"] if "host" in e.columns else pd.Series([None] * len(e), index=e.index, dtype=object)
    out = pd.DataFrame({
        "t": e["ts_event"].fillna(e["ts_stop"]).fillna(e["ts_error_action"]).astype("int64"),
        "host": host.astype(object).where(host.notna(), None),
        "vm": e["vm"].astype(object),
        "device": e["device"].astype(object),
        "errno": e["errno"],
        "paused_ns": e["paused_ns"],
        "still_paused": (e["ts_stop"].notna() & e["ts_resume"].isna()).to_numpy(dtype=bool),
    })
    key_host = out["host"].fillna("")
    order = np.lexsort((out["device"].fillna("").to_numpy(dtype=object).astype(str),
                        out["vm"].to_numpy(dtype=object).astype(str),
                        key_host.to_numpy(dtype=object).astype(str), out["t"].to_numpy()))
    return out.iloc[order].reset_index(drop=True)


def _nearest_rank(values: np.ndarray, q: float) -> int | None:
    """The nearest-rank `q` quantile of int values (an observed value, so deterministic)."""
    if not len(values):
        return None
    v = np.sort(values)
    k = max(int(np.ceil(q * len(v))) - 1, 0)
    return int(v[k])


def _sorted_unique(values: pd.Series) -> tuple:
    return tuple(sorted({v for v in values.tolist() if v is not None and v == v}))


def find_incidents(
    episodes: pd.DataFrame,
    *,
    window_ns: int = DEFAULT_WINDOW_NS,
    min_vms: int = DEFAULT_MIN_VMS,
) -> list[Incident]:
    """The incidents among the io-error pauses of `episodes` (the episodes table of
    `analyzer.episodes`, with a `host` column where the trace has one), by start time.

    Pauses starting within `window_ns` of the previous pause of the fleet are chained into one
    group; a group of at least `min_vms` distinct (host, vm) is an incident. Deterministic: the
    result depends only on the rows, not on their order.
    """
    if window_ns < 0:
        raise ValueError("window_ns must be >= 0")
    if min_vms < 1:
        raise ValueError("min_vms must be >= 1")
    p = _pauses(episodes)
    if not len(p):
        return []
    t = p["t"].to_numpy(dtype=np.int64)
    new = np.concatenate([[True], np.diff(t) > window_ns])
    group = np.cumsum(new) - 1
    p = p.assign(group=group, _vmkey=p["host"].fillna("\x00").astype(str) + "\x00" + p["vm"].astype(str))
    n_vms = p.groupby("group", sort=True)["_vmkey"].nunique()
    chosen = n_vms.index[n_vms.to_numpy() >= min_vms]
    out: list[Incident] = []
    for _g, part in p[p["group"].isin(chosen)].groupby("group", sort=True):
        vms = part[["host", "vm"]].drop_duplicates()
        pairs = sorted(zip(vms["host"].tolist(), vms["vm"].tolist(), strict=True),
                       key=lambda hv: (hv[0] is not None, hv[0] or "", hv[1]))
        done = part["paused_ns"].dropna().to_numpy(dtype=np.int64)
        out.append(Incident(
            id=len(out) + 1,
            start_ns=int(part["t"].iloc[0]),
            end_ns=int(part["t"].iloc[-1]),
            vms=tuple(pairs),
            hosts=_sorted_unique(part["host"]),
            devices=_sorted_unique(part["device"]),
            errnos=tuple(sorted({int(e) for e in part["errno"].dropna().tolist()})),
            episodes=len(part),
            paused_p50_ns=_nearest_rank(done, 0.5),
            paused_p95_ns=_nearest_rank(done, 0.95),
            paused_max_ns=int(done.max()) if len(done) else None,
            still_paused=int(part["still_paused"].sum()),
        ))
    return out


#: Columns of `paused_by_vm`.
PAUSED_COLUMNS = ("host", "vm", "pauses", "paused_p50_ns", "paused_p95_ns", "paused_max_ns",
                  "paused_total_ns", "still_paused")


def paused_by_vm(episodes: pd.DataFrame) -> pd.DataFrame:
    """How long each VM stayed paused on I/O errors (the SLO), one row per (host, vm) with
    io-error pauses, sorted: pauses, nearest-rank p50 / p95, max and total of STOP -> RESUME
    (ns, over the pauses that resumed; NA when none did), pauses still paused at the end. Any
    clock (a duration needs no wall clock)."""
    if not len(episodes):
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("host", "vm") else "Int64")
                             for c in PAUSED_COLUMNS})
    e = episodes[(episodes["ts_stop"].notna() | (episodes["action"] == "stop")).to_numpy(dtype=bool)]
    host = e["host"] if "host" in e.columns else pd.Series([None] * len(e), index=e.index, dtype=object)
    frame = pd.DataFrame({"host": host.astype(object).where(host.notna(), None).fillna(""),
                          "vm": e["vm"].astype(str), "paused_ns": e["paused_ns"],
                          "still": (e["ts_stop"].notna() & e["ts_resume"].isna()).astype("int64")})
    if not len(frame):
        return paused_by_vm(episodes.iloc[:0])
    gid = frame.groupby(["host", "vm"], sort=True).ngroup().to_numpy()
    keys = frame.assign(_g=gid).drop_duplicates("_g").sort_values("_g")
    n = int(gid.max()) + 1
    ok = frame["paused_ns"].notna().to_numpy()
    g_ok = gid[ok]
    v_ok = frame["paused_ns"][ok].to_numpy(dtype=np.int64)
    order = np.lexsort((v_ok, g_ok))
    g_ok, v_ok = g_ok[order], v_ok[order]
    done = np.bincount(g_ok, minlength=n)
    has = done > 0
    start = np.concatenate([[0], np.cumsum(done)[:-1]])

    def nullable(values: np.ndarray) -> pd.Series:
        return pd.Series(pd.arrays.IntegerArray(np.where(has, values, 0).astype(np.int64), ~has))

    def rank(q: float) -> pd.Series:  # nearest rank within each group's sorted values
        k = start + np.maximum(np.ceil(q * done).astype(np.int64) - 1, 0)
        return nullable(v_ok[np.minimum(k, len(v_ok) - 1)] if len(v_ok) else np.zeros(n, np.int64))

    total = np.zeros(n, dtype=np.int64)
    np.add.at(total, g_ok, v_ok)
    peak = np.zeros(n, dtype=np.int64)
    np.maximum.at(peak, g_ok, v_ok)
    still = np.zeros(n, dtype=np.int64)
    np.add.at(still, gid, frame["still"].to_numpy(dtype=np.int64))
    out = pd.DataFrame({
        "host": keys["host"].to_numpy(dtype=object),
        "vm": keys["vm"].to_numpy(dtype=object),
        "pauses": np.bincount(gid, minlength=n),
        "paused_p50_ns": rank(0.5),
        "paused_p95_ns": rank(0.95),
        "paused_max_ns": nullable(peak),
        "paused_total_ns": nullable(total),
        "still_paused": still,
    })
    for c in PAUSED_COLUMNS[2:]:
        out[c] = out[c].astype("Int64")
    out["host"] = out["host"].where(out["host"] != "", None)
    return out[list(PAUSED_COLUMNS)]


__all__ = ["DEFAULT_MIN_VMS", "DEFAULT_WINDOW_NS", "INCIDENT_PARAMS", "PAUSED_COLUMNS", "Incident", "find_incidents",
           "paused_by_vm"]
