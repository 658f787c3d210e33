"""Where the sources of one VM contradict each other: marked, never silently reconciled.

Merging (`merge`) makes one row of a QMP event seen by several inputs (a trace log, a QMP
transcript, libvirt's log): same name and QMP timestamp. It keeps the first input's row and
fills what that row lacks from the others, so a *contradiction* would vanish: the other
input's device, action or op would be dropped; two inputs showing the same events in another
order would become one order; an event one input proves QEMU sent, inside the time another
input covers, would appear once with nothing saying the other never saw it. Each is a sign that
an input is incomplete, edited or of another run, and the verdict rests on it.

`find` compares every pair of a VM's event-carrying parts (``qemu-log``, ``qmp``,
``libvirt-log``) before they merge, and adds to the part that contradicts (or lacks) one
``qmp_event`` row named `MARKER` at its own line (for a lacking part: its first event after
the missing one's time), whose ``cmd_seq`` will name the other part's row (`merge.build_rows`
links them); the rule ``sources-disagree`` (`analyzer.rules.sources`) turns each into a
finding naming both places. The rows themselves still merge as before. What is compared:

- *content*: an event both show (once each) whose ``device`` (both non-empty), ``op``,
  ``action``, ``errno``, ``iostatus`` or ``runstate`` differ; the same for an answer (a reply
  row: a ``query-block`` device's io-status, a ``query-status`` run state) that a trace log
  and a client's input both show;
- *order*: events both show (once each) in reading order: one that the second part shows
  before an event the first part shows before it (each descent marked once);
- *missing*: an event of one part whose QMP timestamp lies within the other's events' span
  (QEMU sends every event to every QMP monitor, and a trace log sees each one it sends) and
  that the other lacks.

Markers carry a key of their own (``("marker", ...)``) so that merging never takes them for a
message; their name is no QAPI event name (lower case, a colon) and starts with no ``#``.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from itertools import combinations

import numpy as np

from analyzer.importers.rows import Part

#: Name of the marker rows (``qmp_event``), followed by ``:content:FIELD,...``, ``:order`` or
#: ``:missing``: no QAPI event is named so.
MARKER = "blkreplay:sources-disagree"
#: Formats whose rows carry QMP events with their timestamps.
EVENT_SOURCES = frozenset({"qemu-log", "qmp", "libvirt-log"})
_FIELDS = ("device", "op", "action", "errno", "iostatus", "runstate")


def _events(part: Part) -> dict[tuple, list[int]]:
    """Event key -> the part's rows with it (markers of other kinds left out)."""
    out: dict[tuple, list[int]] = {}
    for local, key in part.rows.sparse["key"].items():
        if key[0] == "event" and isinstance(key[1], str) and not key[1].startswith("#"):
            out.setdefault(key, []).append(local)
    return out


def _replies(part: Part) -> dict[tuple, list[int]]:
    """Reply key -> the part's rows with it (one per device of a query-block answer)."""
    out: dict[tuple, list[int]] = {}
    for local, key in part.rows.sparse["key"].items():
        if key[0] == "reply":
            out.setdefault(key, []).append(local)
    return out


def _stamp(key: tuple) -> int | None:
    sec, usec = key[2], key[3]
    if not isinstance(sec, int) or not isinstance(usec, int):
        return None
    return sec * 1_000_000_000 + usec * 1_000


def _where(part: Part, local: int) -> str:
    return f"{part.path}:{part.rows.line[local]}"


def find(parts: Sequence[Part]) -> list[tuple[int, int, int, int]]:
    """Mark the disagreements between `parts` (one VM's, in merge order) with marker rows (see
    the module doc); returns (marker part, marker row, other part, other row) for each."""
    events = [_events(p) if p.source in EVENT_SOURCES else {} for p in parts]
    found: list[tuple[int, int, int, int, str, dict]] = []
    for i, j in combinations(range(len(parts)), 2):
        a, b = events[i], events[j]
        if not a or not b or (parts[i].path, parts[i].sha256) == (parts[j].path, parts[j].sha256):
            continue  # (two monitor sessions of one input: other QEMU runs, not other views)
        pa_, pb = parts[i], parts[j]
        once = sorted(k for k in a.keys() & b.keys() if len(a[k]) == 1 and len(b[k]) == 1)
        # content; answers too, between a trace log (it sees every monitor) and a client's
        # input, the only pair merging pairs them (two clients may reuse ids)
        answers: list[tuple] = []
        if (pa_.source == "qemu-log") != (pb.source == "qemu-log"):
            ra, rb = _replies(pa_), _replies(pb)
            answers = sorted(k for k in ra.keys() & rb.keys() if len(ra[k]) == 1 and len(rb[k]) == 1)
            a, b = {**a, **{k: ra[k] for k in answers}}, {**b, **{k: rb[k] for k in answers}}
        for key in once + answers:
            la, lb = a[key][0], b[key][0]
            differ = {}
            for f in _FIELDS:
                va, vb = pa_.rows.sparse[f].get(la), pb.rows.sparse[f].get(lb)
                if va is None or vb is None or va == vb or (f == "device" and not (va and vb)):
                    continue
                differ[f] = [va, vb]
            if differ:
                what = key[1] if key[0] == "event" else f"{key[2]} reply"
                found.append((j, lb, i, la, "content", {"event": what, "fields": differ}))
        # order (reading order of each part)
        if len(once) > 1:
            la = np.array([a[k][0] for k in once], dtype=np.int64)
            lb = np.array([b[k][0] for k in once], dtype=np.int64)
            by_a = np.argsort(np.array([pa_.rows.line[x] for x in la]), kind="stable")
            line_b = np.array([pb.rows.line[x] for x in lb[by_a]], dtype=np.int64)
            for k in np.flatnonzero(line_b[1:] < line_b[:-1]) + 1:
                ka, kb = once[by_a[k]], once[by_a[k - 1]]
                found.append((j, b[ka][0], i, a[ka][0], "order", {
                    "event": ka[1], "before": kb[1],
                    "before_at": [_where(pa_, a[kb][0]), _where(pb, b[kb][0])],
                }))
        a, b = events[i], events[j]
        # missing, each way
        for x, y, px, py in ((a, b, i, j), (b, a, j, i)):
            stamps_y = sorted(s for s in (_stamp(k) for k in y) if s is not None)
            if not stamps_y:
                continue
            lo, hi = stamps_y[0], stamps_y[-1]
            by_stamp = sorted((_stamp(k) or 0, parts[py].rows.line[v[0]], v[0]) for k, v in y.items())
            times = [r[0] for r in by_stamp]
            for key in sorted(x.keys() - y.keys(), key=lambda k: (_stamp(k) or 0, k[1])):
                t = _stamp(key)
                if t is None or not lo < t < hi:
                    continue
                after = by_stamp[min(bisect.bisect_left(times, t), len(by_stamp) - 1)][2]
                found.append((py, after, px, x[key][0], "missing", {"event": key[1], "stamp_ns": t}))
    links = []
    for n, (pm, near, po, other, what, data) in enumerate(found):
        part = parts[pm]
        rows = part.rows
        payload = {"disagreement": what, "other": _where(parts[po], other),
                   "here": _where(part, near), **data}
        detail = what + (":" + ",".join(data["fields"]) if what == "content" else "")
        at = rows.add(
            "qmp_event", rows.ts[near], rows.line[near], tid=rows.tid[near],
            name=f"{MARKER}:{detail}",
            payload=json.dumps(payload, sort_keys=True), key=("marker", MARKER, pm, n),
        )
        links.append((pm, at, po, other))
    return links
