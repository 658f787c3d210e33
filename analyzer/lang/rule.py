"""A compiled rule of the language: the same face as a built-in rule (a `RuleInfo`, the step
kinds it needs, the columns it reads) and a function from a `Steps` batch to `Finding`s."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

from analyzer.lang import forms
from analyzer.lang.compile import RuleSpec
from analyzer.lang.message import Template, field_text, parse
from analyzer.lang.predicates import Pred, columns_read, mask
from analyzer.lang.schema import ROLES
from analyzer.lang.scope import Scope
from analyzer.result import Finding, RuleInfo
from analyzer.rules.evidence import eids, findings
from analyzer.steps import NULL, Steps

_DEFAULT = {
    "precedes": "{row.describe} is not preceded by the step the rule requires{if since} since "
                "{since.describe}{end}{if later}; it comes only later, {later.describe}{end}",
    "responds": "{trigger.describe} got no response{if before} before {before.describe}{end}"
                "{if response} in time: it came only at {response.describe}{end}",
    "absent": "{row.describe} is forbidden here{if after}: it follows {after.describe}{end}",
    "count_in_window": "{count} steps within {within}, from {first.describe} to {row.describe}: "
                       "more than {more_than}",
}
_AT_END = "{trigger.describe} was still waiting for its response when the trace ended"


def _template(text: str, form: str) -> Template:
    t, problems = parse(text, ROLES[form])
    assert t is not None, problems
    return t


@dataclass(frozen=True)
class LangRule:
    """A rule written in the language (see `analyzer.lang`)."""

    spec: RuleSpec
    info: RuleInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        s = self.spec
        object.__setattr__(self, "info", RuleInfo(s.id, s.severity, s.title, s.explanation,  # type: ignore[arg-type]
                                                  s.guarantee, s.needs))

    @property
    def id(self) -> str:
        return self.spec.id

    def applies_to(self, present: Collection[str]) -> bool:
        have = set(present)
        return all(n in have for n in self.spec.needs)

    @property
    def columns(self) -> tuple[str, ...]:
        cols: set[str] = set()
        for _, p in self.spec.preds:
            cols |= columns_read(p)
        if self.spec.order == "emission":
            cols |= {"event_ts_ns", "cmd_seq"}
        if self.spec.message is not None:
            for part in self.spec.message.parts:
                if part[0] == "field" and part[2] in ("thread_kind", "iostatus", "runstate", "prev_runstate"):
                    cols.add(part[2])
        return tuple(sorted(cols))

    def verdict(self, s: Steps, cache: dict[Pred, np.ndarray]) -> forms.Verdict:
        spec = self.spec
        e, to_s = s.emitted if spec.order == "emission" else (s, None)

        def m(key: str) -> np.ndarray | None:
            p = spec.pred(key)
            return None if p is None else mask(e, p, cache if to_s is None else {})

        scope = Scope(e, spec.scope)
        if spec.form == "precedes":
            v = forms.precedes(e, scope, m("first"), m("then"), m("since"), spec.require_since)
        elif spec.form == "responds":
            v = forms.responds(e, scope, m("trigger"), m("response"), m("before"), spec.within_ns)
        elif spec.form == "absent":
            v = forms.absent(e, scope, m("what"), m("after"), m("until"))
        else:
            v = forms.count_in_window(e, scope, m("what"), spec.more_than or 0, spec.within_ns or 1)
        return v if to_s is None or e is s else v.map_rows(to_s)

    def __call__(self, s: Steps, cache: dict[Pred, np.ndarray] | None = None) -> list[Finding]:
        """Every finding of this rule over the batch `s`."""
        spec = self.spec
        v = self.verdict(s, {} if cache is None else cache)
        device = v.device
        if spec.finding_device == "error":
            named = s.by_eid(s.device >= 0).first(s.vm[v.anchor], s.eid[v.anchor], s.has_eid[v.anchor])
            device = np.where(named >= 0, s.device[np.maximum(named, 0)], NULL)
        evidence = [v.roles[r] for r in v.evidence] + v.extra
        if not evidence:
            evidence = [v.anchor]
        message = spec.message or _template(_DEFAULT[spec.form], spec.form)
        at_end_message = spec.at_end_message or (
            _template(_AT_END, spec.form) if spec.form == "responds" else message)
        out: list[Finding] = []
        for end in (False, True):
            pick = np.flatnonzero(v.at_end == end)
            if not len(pick):
                continue
            info = dataclasses.replace(self.info, severity="warning") if end else self.info
            template = at_end_message if end else message
            roles = {k: a[pick].tolist() for k, a in v.roles.items()}
            out.extend(findings(
                s, info, [a[pick] for a in evidence], device=device[pick],
                error_id=eids(s, v.anchor[pick]),
                message=lambda k, _rows, t=template, roles=roles: self._render(s, t, roles, k),
            ))
        return out

    def _render(self, s: Steps, t: Template, roles: dict[str, list[int]], k: int) -> str:
        def value(role: str, name: str) -> str | None:
            row = roles[role][k] if role in roles else -1
            return None if row < 0 else field_text(s, row, name)

        def rule_value(name: str) -> str:
            spec = self.spec
            return {
                "within": spec.within_text or "",
                "more_than": str(spec.more_than) if spec.more_than is not None else "",
                "count": str((spec.more_than or 0) + 1),
                "id": spec.id,
            }[name]

        return t.render(value, rule_value)
