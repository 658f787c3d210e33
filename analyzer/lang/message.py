"""Message templates: `{ROLE.FIELD}` placeholders and `{if ROLE}...{end}` sections, nothing else.

A template is parsed once, when the rule is compiled, into literal text and placeholders; it is
*not* a Python format string (no attribute or index access, no conversions) nor a template
engine: nothing in it can run. Rendering fills in values of the few offending rows only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from analyzer.rules.evidence import describe
from analyzer.steps import Steps

#: What a placeholder can show of a role's row.
FIELDS = ("seq", "ts_ns", "vm", "thread", "thread_kind", "kind", "name", "device", "error_id",
          "op", "errno", "policy", "action", "iostatus", "runstate", "prev_runstate", "describe")
#: Values of the rule itself.
RULE_FIELDS = ("within", "more_than", "count", "id")

_TOKEN = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class Template:
    """Parsed template: a tuple of parts (text, ("field", role, name), ("if", role), ("end",))."""

    source: str
    parts: tuple[tuple[str, ...], ...]

    def roles(self) -> set[str]:
        return {p[1] for p in self.parts if p[0] in ("field", "if")}

    def render(self, value: Callable[[str, str], str | None], rule_value: Callable[[str], str]) -> str:
        """The text, `value(role, field)` giving a row's field (None: the role has no row)."""
        out: list[str] = []
        skipping = False
        for part in self.parts:
            tag = part[0]
            if tag == "end":
                skipping = False
            elif skipping:
                continue
            elif tag == "text":
                out.append(part[1])
            elif tag == "if":
                skipping = value(part[1], "seq") is None
            elif tag == "rule":
                out.append(rule_value(part[1]))
            else:
                got = value(part[1], part[2])
                out.append("?" if got is None else got)
        return "".join(out)


def parse(text: str, roles: tuple[str, ...]) -> tuple[Template | None, list[tuple[int, str]]]:
    """A template over `roles`, or None with (character offset, problem) pairs."""
    problems: list[tuple[int, str]] = []
    parts: list[tuple[str, ...]] = []
    pos = 0
    open_if: int | None = None
    for m in _TOKEN.finditer(text):
        if m.start() > pos:
            literal = text[pos:m.start()]
            if "{" in literal or "}" in literal:
                problems.append((pos, "unbalanced brace"))
            parts.append(("text", literal))
        pos = m.end()
        body = m.group(1).strip()
        if body == "end":
            if open_if is None:
                problems.append((m.start(), "{end} without {if ROLE}"))
            open_if = None
            parts.append(("end",))
        elif body.startswith("if "):
            role = body[3:].strip()
            if open_if is not None:
                problems.append((m.start(), "{if} sections do not nest"))
            if role not in roles:
                problems.append((m.start(), f"unbound role {role!r} in {{if}}; this form binds: {', '.join(roles)}"))
            open_if = m.start()
            parts.append(("if", role))
        elif "." in body:
            role, _, field = body.partition(".")
            if role not in roles:
                problems.append((m.start(), f"unbound role {role!r}; this form binds: {', '.join(roles)}"))
            elif field not in FIELDS:
                problems.append((m.start(), f"unknown field {field!r}; fields: {', '.join(FIELDS)}"))
            parts.append(("field", role, field))
        elif body in RULE_FIELDS:
            parts.append(("rule", body))
        else:
            problems.append((m.start(), f"unknown placeholder {{{body}}}: use {{ROLE.FIELD}}, "
                                        f"{{if ROLE}}..{{end}} or one of {', '.join(RULE_FIELDS)}"))
    if "{" in text[pos:] or "}" in text[pos:]:
        problems.append((pos, "unbalanced brace"))
    if pos < len(text):
        parts.append(("text", text[pos:]))
    if open_if is not None:
        problems.append((open_if, "{if ROLE} without {end}"))
    return (None if problems else Template(text, tuple(parts))), problems


def field_text(s: Steps, row: int, field: str) -> str | None:
    """One field of row `row` as text (None for null)."""
    if field == "describe":
        return describe(s, row)
    if field == "seq":
        return str(int(s.seq[row]))
    if field == "ts_ns":
        return str(int(s.ts[row]))
    if field == "error_id":
        return str(int(s.eid[row])) if s.has_eid[row] else None
    if field == "errno":
        v = int(s.errno[row])
        return str(v) if v >= 0 else None
    return s.text(field, row)
