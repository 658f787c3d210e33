"""The rule catalogue: every rule, collected from the modules that declare it, in a fixed order,
and what a check asks of it (which rules, whether they apply, which columns, their findings).

A rule is declared once, beside the function that decides it (`analyzer.rules.rule`); this
module only collects the declarations, so a rule cannot be listed without its function nor a
function run without being listed. The order is the order of `RULE_MODULES`, then of the
declarations in each module, then the integrity rules the trace reader produces: every output
lists rules in this order. Ids are stable: CI configurations and suppressions refer to them.

`docs/rules.md` §3 is the definition of every rule; the explanations say it in a user's words.
`tests/analyzer/rules/test_catalogue.py` ties the catalogue to that table, the README, the
reference checker and the simulator's ground truth.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

from analyzer.outage import INCIDENT_PARAMS
from analyzer.params import Param, resolve
from analyzer.result import Finding, RuleInfo
from analyzer.rules import (
    action_matches_policy,
    cross_layer,
    input_fidelity,
    integrity_rules,
    ordering,
    patterns,
    query_replies,
    runstate_transition,
    sources,
    vm_stop_thread,
)
from analyzer.rules.rule import Rule, RuleFunction
from analyzer.steps import Steps
from tracer.errors import InputError
from tracer.schema import COLUMN_NAMES

#: The modules whose rule functions make the catalogue, in catalogue order.
RULE_MODULES: tuple[ModuleType, ...] = (
    ordering,
    vm_stop_thread,
    query_replies,
    action_matches_policy,
    runstate_transition,
    input_fidelity,
    sources,
    cross_layer,
    patterns,
)

#: Columns every check reads: replay order, integrity, evidence, episodes.
BASE_COLUMNS: tuple[str, ...] = (
    "seq", "ts_ns", "vm", "thread", "kind", "name", "device", "error_id", "action", "op",
    "errno", "policy", "src_file", "src_line",
)


def _rule_functions(modules: Iterable[ModuleType]) -> tuple[RuleFunction, ...]:
    """Every rule function defined in `modules`, in module order then definition order."""
    return tuple(
        value
        for module in modules
        for value in vars(module).values()
        if isinstance(value, RuleFunction) and value.fn.__module__ == module.__name__
    )


def _by_id(rules: Iterable[Rule]) -> dict[str, Rule]:
    out: dict[str, Rule] = {}
    for r in rules:
        if r.id in out:
            raise ValueError(f"rule id {r.id!r} is declared twice")
        out[r.id] = r
    return out


#: The functions deciding the rules over `Steps`, in catalogue order.
RULE_FUNCTIONS: tuple[RuleFunction, ...] = _rule_functions(RULE_MODULES)
#: Every rule, in catalogue order.
DECLARATIONS: dict[str, Rule] = _by_id(
    [*(r for fn in RULE_FUNCTIONS for r in fn.rules), *integrity_rules.PRODUCED_BY_READER]
)
#: The public description of every rule, by id, in catalogue order.
RULES: dict[str, RuleInfo] = {rid: r.info for rid, r in DECLARATIONS.items()}
RULE_IDS: tuple[str, ...] = tuple(DECLARATIONS)
#: The rules the trace reader produces (no function over `Steps`).
INTEGRITY_RULES: frozenset[str] = frozenset(r.id for r in integrity_rules.PRODUCED_BY_READER)

_FUNCTION_OF: dict[str, RuleFunction] = {r.id: fn for fn in RULE_FUNCTIONS for r in fn.rules}


def catalogue() -> list[RuleInfo]:
    """Every rule, in catalogue order."""
    return list(RULES.values())


def _unknown(ids: Iterable[str]) -> InputError:
    return InputError(f"unknown rule id {', '.join(ids)}; known rules: {', '.join(RULE_IDS)}")


def rule(rule_id: str) -> Rule:
    """The declaration of `rule_id`; an unknown id is an :class:`InputError`."""
    try:
        return DECLARATIONS[rule_id]
    except KeyError:
        raise _unknown([rule_id]) from None


def select(ids: Iterable[str] | None) -> list[RuleInfo]:
    """The rules named by `ids` in catalogue order (all when None); unknown ids are an error."""
    if ids is None:
        return catalogue()
    wanted = [i.strip() for i in ids if i and i.strip()]
    unknown = sorted(set(wanted) - set(RULES))
    if unknown:
        raise _unknown(unknown)
    if not wanted:
        raise InputError("no rule selected")
    chosen = set(wanted)
    return [r for r in RULES.values() if r.id in chosen]


def applicable(info: RuleInfo, present: Collection[str]) -> bool:
    """Whether a trace containing the step kinds / "kind:name" entries `present` can be judged
    by the rule `info` (see `Rule.needs`)."""
    return rule(info.id).applies_to(present)


def columns_for(rule_ids: Sequence[str]) -> tuple[str, ...]:
    """The trace columns to read for `rule_ids`, in schema order."""
    wanted = set(BASE_COLUMNS)
    for rid in rule_ids:
        wanted.update(rule(rid).columns)
    return tuple(c for c in COLUMN_NAMES if c in wanted)


#: Operational patterns (guarantee "pattern", `analyzer.rules.patterns`): warnings about how a
#: fleet behaves around errors, not about QEMU's guarantees.
PATTERN_RULES: frozenset[str] = frozenset(r for r, d in DECLARATIONS.items() if d.guarantee == "pattern")


def declared_params() -> dict[str, tuple[Param, ...]]:
    """Every rule's parameters (rules without any included), and the incident grouping's."""
    return {**{rid: d.params for rid, d in DECLARATIONS.items()}, "incidents": INCIDENT_PARAMS}


def resolve_params(given: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The value of every parameter (``{"RULE.KEY": value}`` overriding the defaults), by owner;
    an unknown rule or key or a bad value is an :class:`InputError`."""
    return resolve(declared_params(), given)


def run(steps: Steps, rule_ids: Sequence[str], params: Mapping[str, Mapping[str, Any]] | None = None) -> list[Finding]:
    """Every finding of the rules `rule_ids` decided over a batch of whole VMs, rule by rule in
    the order of `rule_ids` (the integrity rules come with the batch from the reader).
    BLOCK_IO_ERRORs are judged where they were raised (`Steps.raised`). `params`: parameter
    values by rule id (`resolve_params`; defaults where absent)."""
    for rid in rule_ids:
        rule(rid)
    steps = steps.raised
    wanted = set(rule_ids)
    called: set[int] = set()
    out: list[Finding] = []
    for rid in rule_ids:
        fn = _FUNCTION_OF.get(rid)
        if fn is None or id(fn) in called:
            continue
        called.add(id(fn))
        for declared, found in zip(fn.rules, fn(steps, params), strict=True):
            if declared.id in wanted:
                out.extend(found)
    return out
