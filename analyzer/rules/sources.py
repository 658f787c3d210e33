"""What the inputs of one VM say against each other, and what an input could not say
(docs/rules.md §3: sources-disagree, trace-lines-unknown).

Both are warnings about the inputs, like `input_fidelity`'s: the importer marks what it saw
with ``qmp_event`` rows of names no QAPI event has (`analyzer.importers.disagree.MARKER`,
`analyzer.importers.qemu_log.UNKNOWN_LINES_MARKER`), and these rules word them. A
disagreement names both places (its marker's ``src_file:src_line``, and the other source's row
its ``cmd_seq`` names), so a user can open both files at the lines that contradict.
"""

from __future__ import annotations

import numpy as np

from analyzer.importers.disagree import MARKER
from analyzer.importers.qemu_log import UNKNOWN_LINES_MARKER
from analyzer.result import Finding, RuleInfo
from analyzer.rules.evidence import findings, source_refs
from analyzer.rules.rule import Rule, decides
from analyzer.steps import NULL, K, Steps


def _named(s: Steps, prefix: str) -> np.ndarray:
    codes = np.array([i for i, n in enumerate(s.names) if n.startswith(prefix)], dtype=np.int64)
    return np.flatnonzero((s.kind == K["qmp_event"]) & np.isin(s.name, codes))


@decides(Rule(
    id="sources-disagree",
    severity="warning",
    guarantee="input",
    title="the inputs of a VM agree on the events they share",
    explanation=(
        "Several inputs of one VM (a trace log, a QMP transcript, libvirt's log) see the same "
        "QMP events: QEMU sends each to every monitor. When one shows an event with other "
        "data, in another order, or within the time another covers while that one lacks it, "
        "an input is incomplete, edited or from another run: blkreplay merges the rows but "
        "says where the two disagree, instead of silently keeping one side."
    ),
    needs=("qmp_event",),
    columns=("cmd_seq",),
))
def sources_disagree(s: Steps, rule: RuleInfo) -> list[Finding]:
    """One warning per marker row: the marker (this input's place) and the row of the other
    input it names."""
    rows = _named(s, MARKER + ":")
    other = np.where(s.has_cmd[rows], s.find_seq(rows, s.cmd_seq[rows]), NULL) if len(rows) else rows

    def message(k: int, _: list[int]) -> str:
        r, o = int(rows[k]), int(other[k])
        detail = (s.text("name", r) or "")[len(MARKER) + 1:]
        here = ", ".join(source_refs(s, [r])) or f"seq {int(s.seq[r])}"
        there = ", ".join(source_refs(s, [o])) if o >= 0 else "another input"
        event = s.text("name", o) if o >= 0 else "an event"
        if detail.startswith("content:"):
            fields = detail[len("content:"):].replace(",", ", ")
            return (f"{event} differs between the inputs ({fields}): {there} and {here}; the "
                    f"trace keeps the first input's values")
        if detail == "order":
            return (f"{event} comes in another order in {here} than in {there}: the inputs "
                    f"disagree about the order of events QEMU sent")
        return (f"{event} at {there} (sent within the time the other input covers) is missing "
                f"from that input (around {here}): one input lost it or is of another run")

    return findings(s, rule, [rows, other], device=np.full(len(rows), NULL), error_id=None,
                    message=message)


@decides(Rule(
    id="trace-lines-unknown",
    severity="warning",
    guarantee="input",
    title="every line of a QEMU trace log is in a format blkreplay reads",
    explanation=(
        "A line of a trace event blkreplay interprets (monitor_protocol_event_queue, "
        "monitor_protocol_event, a failed virtio_blk_rw_complete) whose arguments match no format of the QEMU versions it "
        "knows is not read as that event (a newer QEMU, an edited or damaged log): it is "
        "counted, not kept, and the rules that need that event judge without it."
    ),
    needs=("qmp_event",),
))
def trace_lines_unknown(s: Steps, rule: RuleInfo) -> list[Finding]:
    """One warning per input with such lines (its marker row: the first line, the count)."""
    rows = _named(s, UNKNOWN_LINES_MARKER)

    def message(k: int, _: list[int]) -> str:
        r = int(rows[k])
        count = (s.text("name", r) or "")[len(UNKNOWN_LINES_MARKER):]
        where = ", ".join(source_refs(s, [r])) or f"seq {int(s.seq[r])}"
        n = int(count) if count.isdigit() else 0
        return (f"{n} line{'s' if n != 1 else ''} of this trace log match no known format of "
                f"their trace event (first at {where}): not read as events (counted in the "
                f"trace's metadata, inputs[].unknown_lines)")

    return findings(s, rule, [rows], device=np.full(len(rows), NULL), error_id=None,
                    message=message)
