"""The analyzer's result types: what `check` returns and every renderer consumes.

These are plain, typed, immutable records. The JSON document `blkreplay.findings/1` is their
`to_dict` form; the text, JUnit, Markdown and HTML renderers read the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import pandas as pd

from analyzer import identity
from analyzer.outage import Incident

Severity = Literal["error", "warning"]
Verdict = Literal["pass", "fail"]

FINDINGS_SCHEMA = "blkreplay.findings/1"


@dataclass(frozen=True)
class RuleInfo:
    """A rule of the catalogue: a stable id, its severity, and why it exists."""

    id: str
    severity: Severity
    title: str
    explanation: str
    #: The guarantee it checks (I1..I6 of docs/rules.md, or "integrity").
    guarantee: str
    #: Step kinds (or "kind:name" for events/commands) without which it is not applicable.
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Finding:
    """One violation (or warning), with the evidence a user needs to find it in the trace."""

    rule: str
    severity: Severity
    vm: str
    device: str | None
    error_id: int | None
    #: seq of every offending step, in replay order.
    seq: tuple[int, ...]
    #: ts_ns of the first offending step.
    ts_ns: int | None
    #: thread of the first offending step.
    thread: str | None
    message: str
    #: "file:line" of each offending step where the trace was imported from real output.
    src: tuple[str, ...] = ()
    #: The VM's host (the trace's `host` column) and run (see `analyzer.trace`), where known:
    #: a VM is identified by (run, host, vm), since VM names repeat across a fleet.
    host: str | None = None
    run: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The finding in `blkreplay.findings/1`; "host" and "run" (additive) appear when the
        trace names either for the VM, so a trace without hosts or runs keeps its bytes."""
        doc = {
            "rule": self.rule,
            "severity": self.severity,
            "vm": self.vm,
            "device": self.device,
            "error_id": self.error_id,
            "seq": list(self.seq),
            "ts_ns": self.ts_ns,
            "thread": self.thread,
            "message": self.message,
            "src": list(self.src),
        }
        if self.host or self.run:
            doc["host"] = self.host
            doc["run"] = self.run
        return doc

    def where(self) -> list[tuple[str, str]]:
        """(label, raw value) pairs that locate the finding, for one-line renderings.

        Values come from the trace: every renderer escapes them for its medium."""
        pairs = [("vm", self.vm)]
        if self.host:
            pairs.append(("host", self.host))
        if self.run:
            pairs.append(("run", self.run))
        if self.device is not None:
            pairs.append(("device", self.device))
        if self.error_id is not None:
            pairs.append(("error", str(self.error_id)))
        if self.seq:
            pairs.append(("seq", ",".join(str(s) for s in self.seq)))
        if self.thread is not None:
            pairs.append(("thread", self.thread))
        return pairs

    @property
    def vm_label(self) -> str:
        """The VM with its host and run, for a table's VM column: ``vm0 (host h1)``; the name
        alone when the trace names neither (raw: every renderer escapes it)."""
        return identity.display(self.vm, self.host, self.run)

    def sort_key(self) -> tuple:
        return (self.run or "", self.host or "", self.vm, self.seq[0] if self.seq else -1, self.rule,
                self.seq)

    def identified(self) -> Finding:
        """This finding with `vm` the VM's name and `host` / `run` set, when its `vm` is an
        identity key (`analyzer.identity`) naming a host or a run: how rules' findings, whose
        `vm` is the key of their batch, become what a user reads."""
        if not identity.is_composite(self.vm):
            return self
        vm, host, run = identity.split(self.vm)
        return replace(self, vm=vm, host=host, run=run)


@dataclass(frozen=True)
class InputInfo:
    """One input file, as the provenance of a result."""

    path: str
    sha256: str
    rows: int
    schema_version: str
    source: str
    #: False when the trace has no completion manifest (killed recorder) or says it is partial.
    complete: bool
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "rows": self.rows}


@dataclass
class CheckResult:
    """Everything `analyzer.check` found. Deterministic: same inputs, same object."""

    inputs: list[InputInfo]
    #: The rules that were run, in catalogue order.
    rules: list[RuleInfo]
    #: Findings sorted by Finding.sort_key.
    findings: list[Finding]
    #: Ids of the rules that were run but could not apply to this trace.
    not_applicable: list[str]
    steps: int
    vms: int
    #: One row per error action (see analyzer.replay.EPISODE_COLUMNS).
    episodes: pd.DataFrame
    #: Correlated io-error pauses across VMs and hosts (`analyzer.outage`), by start time.
    incidents: list[Incident] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        return "fail" if any(f.severity == "error" for f in self.findings) else "pass"

    @property
    def by_rule(self) -> dict[str, int]:
        counts = {r.id: 0 for r in self.rules if r.id not in self.not_applicable}
        for f in self.findings:
            counts[f.rule] = counts.get(f.rule, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        """The `blkreplay.findings/1` JSON document."""
        return {
            "schema": FINDINGS_SCHEMA,
            "verdict": self.verdict,
            "inputs": [i.to_dict() for i in self.inputs],
            "summary": {
                "steps": self.steps,
                "vms": self.vms,
                "episodes": len(self.episodes),
                "findings": len(self.findings),
                "by_rule": self.by_rule,
            },
            "findings": [f.to_dict() for f in self.findings],
            "not_applicable": list(self.not_applicable),
        }
