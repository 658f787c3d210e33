"""Incidents: a fleet's io-error pauses grouped into outages (`analyzer.outage`), as `check`
returns them, the JSON document and the text output show them, and the library's tables."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

import analyzer
from analyzer.episodes import empty_episodes
from analyzer.outage import find_incidents, paused_by_vm
from analyzer.render import render_check
from tests.analyzer.pattern_scenarios import EPOCH_NS, checked, hosts_of, trace
from tracer.errors import InputError

S = 10**9


def _episodes(rows: list[tuple]) -> pd.DataFrame:
    """An episodes table from (host, vm, t_event_s, paused_s or None for still paused)."""
    frame = empty_episodes()
    n = len(rows)
    data = {c: pd.Series([pd.NA] * n, dtype=frame[c].dtype) for c in frame.columns}
    data["vm"] = pd.Series([r[1] for r in rows], dtype=object)
    data["device"] = pd.Series(["drive0"] * n, dtype=object)
    data["action"] = pd.Series(["stop"] * n, dtype=object)
    data["errno"] = pd.Series([5] * n, dtype="Int64")
    ev = [EPOCH_NS + int(r[2] * S) for r in rows]
    data["ts_event"] = pd.Series(ev, dtype="Int64")
    data["ts_stop"] = pd.Series([e + 1000 for e in ev], dtype="Int64")
    data["ts_resume"] = pd.Series([None if r[3] is None else e + 1000 + int(r[3] * S)
                                   for e, r in zip(ev, rows, strict=True)], dtype="Int64")
    data["paused_ns"] = data["ts_resume"] - data["ts_stop"]
    out = pd.DataFrame(data)
    out["host"] = pd.Series([r[0] for r in rows], dtype=object)
    return out


# ------------------------------------------------------------------ the simulated fleet


def test_a_fleet_storage_outage_is_one_incident_with_its_vms_and_window():
    path = trace("fleet-outage")
    result = checked("fleet-outage")
    [incident] = result.incidents
    assert len(incident.vms) == 200 and {vm for _, vm in incident.vms} == {f"vm{i}" for i in range(200)}
    # the outage is 40 s .. 70 s of the model's clock; every VM pauses within its first second
    assert EPOCH_NS + 40 * S <= incident.start_ns < EPOCH_NS + 41 * S
    assert EPOCH_NS + 60 * S < incident.end_ns < EPOCH_NS + 70 * S
    assert incident.devices == ("drive0",) and incident.errnos == (5,)
    assert incident.still_paused == 0 and incident.episodes == len(result.episodes)
    ten = tuple(f"host{i:02d}" for i in range(10))
    assert incident.hosts in ((), ten)  # () until the episodes carry the trace's host column
    # management resumes 4-12 s after a stop (cont_delay_ms = 8000 x U(0.5, 1.5))
    assert 4 * S <= incident.paused_p50_ns <= incident.paused_p95_ns <= incident.paused_max_ns <= 12 * S
    # with the episodes' host column (the trace's `host`), the ten hosts
    eps = result.episodes.assign(host=result.episodes["vm"].map(hosts_of(path)))
    [with_hosts] = find_incidents(eps)
    assert with_hosts.hosts == tuple(f"host{i:02d}" for i in range(10))
    assert ("host03", "vm13") in with_hosts.vms and len(with_hosts.vms) == 200


def test_a_healthy_fleet_has_no_incident_and_no_finding():
    result = checked("fleet-outage", faults=())
    assert result.incidents == [] and result.findings == [] and len(result.episodes) == 0


def test_the_flapping_backend_of_two_vms_is_one_incident_of_those_two():
    [incident] = checked("flapping-backend").incidents
    assert [vm for _, vm in incident.vms] == ["vm0", "vm1"]
    assert EPOCH_NS + 20 * S <= incident.start_ns < EPOCH_NS + 21 * S


def test_one_vm_pausing_again_and_again_is_no_incident():
    # enospc-extender: only vm0 pauses (nine times)
    result = checked("enospc-extender")
    assert len(result.episodes) >= 5 and set(result.episodes["vm"]) == {"vm0"}
    assert result.incidents == []
    assert analyzer.check([trace("enospc-extender")], params={"incidents.min_vms": 1}).incidents


# ------------------------------------------------------------------ grouping


def test_pauses_are_chained_by_the_window_and_need_min_vms():
    eps = _episodes([
        ("h1", "a", 0, 5), ("h2", "b", 10, 6), ("h1", "c", 35, 7),   # chained (gaps 10 s, 25 s)
        ("h1", "a", 100, 1),                                          # alone: one VM
        ("h3", "d", 200, None), ("h3", "e", 201, 2), ("h3", "d", 202, 3),
    ])
    one, two = find_incidents(eps)
    assert (one.id, one.vms, one.hosts, one.episodes) == (1, (("h1", "a"), ("h1", "c"), ("h2", "b")), ("h1", "h2"), 3)
    assert (one.start_ns, one.end_ns) == (EPOCH_NS, EPOCH_NS + 35 * S)
    assert (one.paused_p50_ns, one.paused_p95_ns, one.paused_max_ns) == (6 * S, 7 * S, 7 * S)
    assert (two.id, two.vms, two.still_paused, two.episodes) == (2, (("h3", "d"), ("h3", "e")), 1, 3)
    assert (two.paused_p50_ns, two.paused_max_ns) == (2 * S, 3 * S)
    # a shorter window splits the first; min_vms 3 keeps only it
    assert [len(i.vms) for i in find_incidents(eps, window_ns=20 * S)] == [2, 2]
    assert [i.vms for i in find_incidents(eps, min_vms=3)] == [one.vms]


def test_incidents_do_not_depend_on_row_order_and_hosts_are_optional():
    eps = _episodes([("h1", "a", 0, 5), ("h2", "b", 10, 6), ("h1", "c", 12, 7), ("h2", "a", 13, 1)])
    want = find_incidents(eps)
    shuffled = eps.iloc[np.random.default_rng(1).permutation(len(eps))].reset_index(drop=True)
    assert find_incidents(shuffled) == want
    # (h1, a) and (h2, a) are two VMs: names repeat across a fleet
    assert len(want[0].vms) == 4
    [no_host] = find_incidents(eps.drop(columns="host"))
    assert no_host.hosts == () and no_host.vms == ((None, "a"), (None, "b"), (None, "c"))


def test_only_wall_clock_pauses_are_grouped():
    eps = _episodes([("h", "a", 0, 1), ("h", "b", 1, 1)])
    for c in ("ts_event", "ts_stop", "ts_resume"):
        eps[c] = eps[c] - EPOCH_NS  # a virtual clock from 0
    assert find_incidents(eps) == []
    assert find_incidents(empty_episodes()) == []


def test_bad_grouping_parameters_are_refused():
    with pytest.raises(InputError, match=r"parameter incidents\.min_vms: 0 is not an integer >= 1"):
        analyzer.check([trace("flapping-backend")], params={"incidents.min_vms": 0})
    with pytest.raises(ValueError):
        find_incidents(empty_episodes(), window_ns=-1)


def test_paused_by_vm_is_the_slo_per_vm():
    eps = _episodes([("h1", "a", 0, 5), ("h1", "a", 10, 1), ("h1", "a", 20, 9), ("h2", "b", 0, None)])
    frame = paused_by_vm(eps)
    assert frame.to_dict("records") == [
        {"host": "h1", "vm": "a", "pauses": 3, "paused_p50_ns": 5 * S, "paused_p95_ns": 9 * S,
         "paused_max_ns": 9 * S, "paused_total_ns": 15 * S, "still_paused": 0},
        {"host": "h2", "vm": "b", "pauses": 1, "paused_p50_ns": None, "paused_p95_ns": None,
         "paused_max_ns": None, "paused_total_ns": None, "still_paused": 1},
    ]
    assert len(paused_by_vm(empty_episodes())) == 0


# ------------------------------------------------------------------ what a user sees


def test_the_json_document_lists_the_incidents():
    doc = json.loads(render_check(checked("flapping-backend"), "json"))
    [incident] = doc["incidents"]
    assert [v["vm"] for v in incident["vms"]] == ["vm0", "vm1"]
    # (host: None until the episodes carry the trace's host column, then host00 / host01)
    assert [v["host"] for v in incident["vms"]] in ([None, None], ["host00", "host01"])
    assert set(incident) == {"id", "start_ns", "end_ns", "vms", "hosts", "devices", "errnos", "episodes",
                             "paused_p50_ns", "paused_p95_ns", "paused_max_ns", "still_paused"}
    assert json.loads(render_check(checked("fleet-outage", faults=()), "json"))["incidents"] == []


def test_the_text_output_shows_each_incident_in_utc():
    text = render_check(checked("fleet-outage"), "text")
    lines = text.splitlines()
    [at] = [k for k, x in enumerate(lines) if x.startswith("incident ")]
    # " on 10 host(s)" once the episodes carry the trace's host column
    assert re.match(r"incident 1: 200 VM\(s\)( on 10 host\(s\))?, 2026-05-28T20:27:20\.", lines[at])
    assert "Z .. 2026-05-28T20:27:" in lines[at]
    assert lines[at + 1].startswith("        2,277 io-error pause(s), device(s) drive0, errno 5; paused p50 ")
    assert "incident" not in render_check(checked("fleet-outage", faults=()), "text")


def test_the_library_tables_and_the_short_repr():
    result = checked("flapping-backend")
    frame = analyzer.incidents(result)
    assert list(frame["n_vms"]) == [2] and list(frame["id"]) == [1]
    assert [vm for _, vm in frame["vms"][0]] == ["vm0", "vm1"]
    findings = analyzer.findings_frame(result)
    keys = list(result.findings[0].to_dict())
    assert list(findings.columns) == [*keys, *(c for c in ("host", "run") if c not in keys)]
    assert list(findings["host"]) == [f.host for f in result.findings]
    assert sorted(set(findings["rule"])) == ["pause-storm", "resume-before-storage-back"]
    assert list(findings["vm"]) == [f.vm for f in result.findings]
    assert repr(result) == ("<CheckResult pass: 0 error(s), 4 warning(s), 1 incident(s); "
                            f"{result.steps:,} steps, 4 VM(s), {len(result.episodes)} episode(s), 1 input(s)>")
    empty = analyzer.findings_frame(checked("fleet-outage", faults=()))
    assert len(empty) == 0 and "host" in empty.columns
