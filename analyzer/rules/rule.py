"""How a rule is declared: once, beside the function that decides it.

A rule module holds, for each of its rules, one `Rule` declaration (id, severity, title,
explanation, guarantee, the step kinds it needs, the columns it reads) attached to the
function that decides it by the `decides` decorator::

    @decides(Rule(
        id="vm-stop-thread", severity="error", guarantee="I5",
        title="...", explanation="...",
        needs=("vm_stop",), columns=("thread_kind",),
    ))
    def vm_stop_thread(s: Steps, rule: RuleInfo) -> list[Finding]:
        ...

The decorated name is a `RuleFunction`; `analyzer.rules.catalogue` collects them from the
rule modules. Since the declaration *is* the decorator, a rule cannot exist without its
function, nor a rule function without its declaration. One function may decide several rules
in one pass (`stop-follows-error` and `stop-pending-at-end` share their search): it is given
each rule's `RuleInfo` and returns one list of findings per rule, in declaration order.

`Rule` is the analyzer's working declaration; `RuleInfo` (analyzer.result) is the public,
immutable description that results and renderers carry.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from analyzer.params import Param
from analyzer.result import Finding, RuleInfo, Severity
from analyzer.steps import Steps


@dataclass(frozen=True)
class Rule:
    """One rule of the catalogue, declared once (docs/rules.md §3 defines it)."""

    #: Stable id: CI configurations and suppressions refer to it.
    id: str
    severity: Severity
    #: The guarantee it checks (I1..I6 of docs/rules.md, "cont", "policy", "runstate",
    #: "integrity").
    guarantee: str
    title: str
    #: Why the rule exists, in a user's words.
    explanation: str
    #: What a trace must all contain for the rule to apply: step kinds, or "kind:name" for
    #: events, commands and replies. A rule that cannot be judged is *not applicable*, never
    #: passed (a QMP-only import has no `iostatus_set` rows).
    needs: tuple[str, ...] = ()
    #: Alternatives: the rule applies only when at least one entry of each group is present.
    needs_one_of: tuple[tuple[str, ...], ...] = ()
    #: Trace columns the rule reads beyond `analyzer.rules.catalogue.BASE_COLUMNS`.
    columns: tuple[str, ...] = ()
    #: Thresholds a user may set (``--param RULE.KEY=VALUE``, `analyzer.params`): the function
    #: is then called with ``params=`` the values of its rule's (a dict by key).
    params: tuple[Param, ...] = ()
    #: The public description of the rule.
    info: RuleInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        info = RuleInfo(self.id, self.severity, self.title, self.explanation, self.guarantee,
                        self.needs)
        object.__setattr__(self, "info", info)

    def applies_to(self, present: Collection[str]) -> bool:
        """Whether a trace containing the step kinds / "kind:name" entries `present` can be
        judged by this rule."""
        have = set(present)
        if not all(need in have for need in self.needs):
            return False
        return all(any(alt in have for alt in group) for group in self.needs_one_of)


@dataclass(frozen=True)
class RuleFunction:
    """A pure function over a batch of whole VMs (`Steps`) deciding the rules it declares."""

    rules: tuple[Rule, ...]
    #: Called with the batch and each rule's `RuleInfo`; returns the findings of a single rule,
    #: or a tuple of one list per rule when it decides several.
    fn: Callable[..., Any]

    def __call__(self, steps: Steps, params: Mapping[str, Mapping[str, Any]] | None = None) -> list[list[Finding]]:
        """The findings of each declared rule over `steps`, in declaration order. `params`: the
        values of the rules' parameters by rule id (their defaults where not given)."""
        infos = (r.info for r in self.rules)
        if any(r.params for r in self.rules):
            values = {r.id: {p.key: p.default for p in r.params} | dict((params or {}).get(r.id, {}))
                      for r in self.rules}
            arg = values[self.rules[0].id] if len(self.rules) == 1 else values
            found = self.fn(steps, *infos, params=arg)
        else:
            found = self.fn(steps, *infos)
        return [found] if len(self.rules) == 1 else list(found)


def decides(*rules: Rule) -> Callable[[Callable[..., Any]], RuleFunction]:
    """Attach the declarations `rules` to the function deciding them (see the module doc)."""
    if not rules:
        raise ValueError("decides() needs at least one Rule")

    def bind(fn: Callable[..., Any]) -> RuleFunction:
        return RuleFunction(tuple(rules), fn)

    return bind
