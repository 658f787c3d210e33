"""What `blkreplay rules list / show / explain` say: every rule, built-in or loaded, where it
is defined, and each in the file format. Pure functions returning data or text; the CLI only
prints them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from analyzer.lang.compile import ExampleSpec, RuleFile, RuleSpec
from analyzer.lang.ruleset import (
    BUILTIN_NAME,
    builtin_text,
    compile_builtin,
    load_rules,
)
from analyzer.rules.catalogue import DECLARATIONS, INTEGRITY_RULES, RULE_FUNCTIONS
from tracer.errors import InputError

#: Why each built-in rule not in builtin.yaml stays in Python (docs/rules-language.md §6).
NOT_RESTATED: dict[str, str] = {
    "event-before-stop": (
        "its half for imports without error ids needs emission order plus exceptions found by "
        "other searches (a retried request's BLOCK_IO_ERROR served by the first STOP after a "
        "RESUME; a stop from another monitor known by the run state after the STOP)"),
    "stop-follows-error": (
        "it follows served_by: which error's stop request a vm_stop/vm_start consumed, a join "
        "through QEMU's single request slot, and the positional exceptions of imports"),
    "stop-pending-at-end": "decided in the same served_by search as stop-follows-error",
    "resume-before-retry-error": (
        "three rows ordered across the served_by join (BLOCK_IO_ERROR, RESUME, the STOP of the "
        "error that served it)"),
    "query-matches-events": (
        "it compares a reply's value with the replayed io-status of the same device at the "
        "moment the command was sent: a comparison between two rows' values"),
    "query-matches-runstate": (
        "it compares a query-status reply with the replayed io-status of every device at the "
        "command's moment (a comparison across devices)"),
    "iostatus-reset-on-cont": (
        "it relates a query-block reply to the cont reply before the command and to the "
        "io-status changes in between: a comparison between rows' values"),
    "action-matches-policy": (
        "the expected action is a function of two columns (policy, errno), and its io-status "
        "half looks up the errno of the error's error_action row (a join by error id)"),
    "runstate-transition": (
        "QEMU's transition table is a relation over two columns, checked against the replayed "
        "previous state"),
    "seq-unique": "decided by the trace reader over every row, before the rules' steps exist",
    "ts-monotonic-per-thread": "decided by the trace reader over every row, before the rules' steps exist",
    "trace-truncated": "decided by the trace reader from the files and their manifests",
    **{rid: ("an operational pattern with parameters (--param): chains of rows each within a "
             "window of the previous, counted in a sliding window, or a duration to the next row")
       for rid in ("pause-storm", "io-error-event-storm", "enospc-pause-loop",
                   "resume-before-storage-back", "paused-over-slo")},
    "error-policy-not-stop": "an operational pattern with a parameter (--param policies=...)",
}


@dataclass(frozen=True)
class RuleEntry:
    id: str
    severity: str
    title: str
    #: "python:MODULE", "builtin.yaml:LINE" or "FILE:LINE".
    source: str
    #: Whether the rule is also stated in the default rule file (restated built-in).
    restated: bool
    spec: RuleSpec | None = None
    #: The rule file it is stated in (None: Python only).
    file: RuleFile | None = None

    @property
    def tests(self) -> tuple[ExampleSpec, ...]:
        return self.file.tests if self.file is not None else ()


def _python_source(rule_id: str) -> str:
    if rule_id in INTEGRITY_RULES:
        return "python:analyzer.rules.integrity_rules"
    for fn in RULE_FUNCTIONS:
        if any(r.id == rule_id for r in fn.rules):
            return f"python:{fn.fn.__module__}"
    return "python"  # pragma: no cover


def entries(rule_files: Sequence[str | Path] = ()) -> list[RuleEntry]:
    """Every built-in rule (catalogue order), then every rule of `rule_files` (file order)."""
    builtin = compile_builtin()
    restated = {r.id: r for r in builtin.rules}
    out = [RuleEntry(r.id, r.severity, r.title, _python_source(r.id), r.id in restated,
                     restated.get(r.id), builtin if r.id in restated else None)
           for r in DECLARATIONS.values()]
    for f in load_rules(list(rule_files)).files:
        for s in f.rules:
            out.append(RuleEntry(s.id, s.severity, s.title, s.source, False, s, f))
    return out


def _find(rule_id: str, rule_files: Sequence[str | Path]) -> RuleEntry:
    found = [e for e in entries(rule_files) if e.id == rule_id]
    if not found:
        raise InputError(f"unknown rule id {rule_id}; blkreplay rules list shows them")
    return found[-1]


def show(ids: Sequence[str] = (), rule_files: Sequence[str | Path] = (), *, builtin: bool = False) -> str:
    """Rules in the file format. `builtin`: the default rule file itself (which
    `check --rules-file` accepts as is). Rules decided in Python are shown as comments."""
    if builtin:
        return builtin_text()
    chosen = [_find(i, rule_files) for i in ids] if ids else entries(rule_files)
    parts = ["version: 1", *_library([e.file for e in chosen if e.file is not None]), "rules:"]
    for e in chosen:
        if e.spec is not None:
            parts.append(f"  # {e.spec.source}")
            parts.extend("    " + line if i else "  - " + line
                         for i, line in enumerate(e.spec.text.splitlines()))
        else:
            d = DECLARATIONS[e.id]
            body = yaml.safe_dump({"id": d.id, "severity": d.severity, "guarantee": d.guarantee,
                                   "title": d.title, "explanation": d.explanation},
                                  sort_keys=False, width=96, allow_unicode=True)
            parts.append(f"  # {e.id}: decided in Python ({e.source}); not expressible in the "
                         f"language: {NOT_RESTATED.get(e.id, 'see docs/rules-language.md')}")
            parts.extend("  # " + line for line in body.splitlines())
    return "\n".join(parts) + "\n"


def _library(files: list[RuleFile]) -> list[str]:
    """The `lists:` and `macros:` of the files the shown rules come from (so that the output
    loads as a rule file of its own)."""
    merged: dict[str, dict] = {"lists": {}, "macros": {}}
    for f in {f.path: f for f in files}.values():
        for key, values in f.library:
            if isinstance(values, dict):
                merged[key].update(values)
    out = []
    for key, values in merged.items():
        if values:
            text = yaml.safe_dump({key: values}, sort_keys=False, default_flow_style=None, width=96)
            out.extend(text.rstrip("\n").splitlines())
    return out


def explain(rule_id: str, rule_files: Sequence[str | Path] = ()) -> str:
    """What a rule checks: title, guarantee, explanation, its definition and where it lives."""
    e = _find(rule_id, rule_files)
    if e.spec is not None and not e.source.startswith("python"):
        s = e.spec
        head = [f"{s.id} ({s.severity}, guarantee {s.guarantee}): {s.title}", "", s.explanation, "",
                f"defined at {s.source} as {s.form} over scope {s.scope}:", ""]
        body = ["  " + x for x in s.text.splitlines()]
        if e.tests:
            body += ["", f"examples (blkreplay rules test {s.source.rsplit(':', 1)[0]}):"]
            body += [f"  {t.trace}: {dict(t.expect).get(s.id, 0)} finding(s)" for t in e.tests]
        return "\n".join(head + body) + "\n"
    d = DECLARATIONS[e.id]
    lines = [f"{d.id} ({d.severity}, guarantee {d.guarantee}): {d.title}", "", d.explanation, "",
             f"decided in Python: {e.source} (docs/rules.md §3 defines it)"]
    if e.spec is not None:
        lines += [f"also stated in the default rule file, {e.spec.source.replace(BUILTIN_NAME, 'analyzer/lang/' + BUILTIN_NAME)}:", ""]
        lines += ["  " + x for x in e.spec.text.splitlines()]
    elif e.id in NOT_RESTATED:
        lines.append(f"not in the rule language: {NOT_RESTATED[e.id]}")
    if d.needs:
        lines.append(f"needs: {', '.join(d.needs)}")
    if d.params:
        lines.append(f"parameters (--param {d.id}.KEY=VALUE), with their defaults:")
        lines += [f"  {p.describe()}" for p in d.params]
    return "\n".join(lines) + "\n"
