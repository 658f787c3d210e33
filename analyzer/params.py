"""Tunable thresholds: the parameters a rule (or the incident grouping) declares, and how a
user's ``RULE.KEY=VALUE`` becomes a checked value.

Operational patterns (a pause storm, a resume that came too early) have no single right
threshold: a fleet's SLO decides. Each such rule declares its parameters once, beside its
function (`analyzer.rules.rule.Rule.params`), with a default that is documented
(docs/rules.md, `blkreplay rules explain`); `blkreplay check --param RULE.KEY=VALUE` and
``check(params={"RULE.KEY": value})`` override them. Anything else (an unknown rule or key, a
value of the wrong type or out of range) is an :class:`~tracer.errors.InputError`, one line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tracer.errors import InputError


@dataclass(frozen=True)
class Param:
    """One threshold: its key, default (its type is the parameter's: int, float or str), what
    it means, and for numbers the lowest value allowed; for str a comma list of `choices`."""

    key: str
    default: int | float | str
    help: str
    minimum: float = 0
    choices: tuple[str, ...] = ()

    def parse(self, value: Any, name: str) -> int | float | str:
        """`value` (a string from the command line, or a Python value) as this parameter's
        type; raises InputError naming `name` when it is not one."""
        kind = type(self.default)
        try:
            if isinstance(value, bool):
                raise ValueError
            if kind is str:
                if not isinstance(value, str):
                    raise ValueError
                items = [v.strip() for v in value.split(",") if v.strip()]
                bad = [v for v in items if self.choices and v not in self.choices]
                if bad or not items:
                    raise ValueError
                return ",".join(items)
            if kind is int:
                out: int | float = int(value, 10) if isinstance(value, str) else value
                if not isinstance(out, int):
                    raise ValueError
            else:
                out = float(value)
                if not math.isfinite(out):
                    raise ValueError
            if out < self.minimum:
                raise ValueError
            return out
        except (TypeError, ValueError):
            raise InputError(f"parameter {name}: {value!r} is not {self.expects()}") from None

    def expects(self) -> str:
        if isinstance(self.default, str):
            return f"a comma list of {', '.join(self.choices)}" if self.choices else "a text"
        what = "an integer" if isinstance(self.default, int) else "a number"
        return f"{what} >= {self.minimum:g}"

    def describe(self) -> str:
        """``window_s = 60 (help)`` for listings."""
        return f"{self.key} = {self.default} ({self.help})"


def resolve(declared: Mapping[str, tuple[Param, ...]], given: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Every declared parameter's value by owner then key: the defaults, overridden by
    `given` (``{"OWNER.KEY": value}``). Unknown owners or keys and bad values raise InputError."""
    out = {owner: {p.key: p.default for p in params} for owner, params in declared.items()}
    for name in sorted(given or {}):
        owner, dot, key = str(name).partition(".")
        if not dot or owner not in declared:
            known = ", ".join(o for o, ps in declared.items() if ps)
            raise InputError(f"unknown parameter {name!r}: use RULE.KEY, RULE one of {known}")
        by_key = {p.key: p for p in declared[owner]}
        if key not in by_key:
            raise InputError(f"unknown parameter {name!r}: {owner} has {', '.join(by_key) or 'no parameters'}")
        out[owner][key] = by_key[key].parse(given[name], name)  # type: ignore[index]
    return out


def parse_assignment(text: str) -> tuple[str, str]:
    """``RULE.KEY=VALUE`` (a command-line ``--param``) as (``RULE.KEY``, ``VALUE``)."""
    name, eq, value = text.partition("=")
    if not eq or "." not in name or not name.strip() or not value.strip():
        raise InputError(f"--param {text!r}: expected RULE.KEY=VALUE (blkreplay rules explain RULE lists them)")
    return name.strip(), value.strip()


__all__ = ["Param", "parse_assignment", "resolve"]
