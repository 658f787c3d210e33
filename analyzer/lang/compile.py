"""Compiling a rule file's located tree into rule specifications, collecting every mistake.

The compiler never stops at the first mistake: each one becomes a one-line problem
"file:line:col: what is wrong" (unknown kind, column or value, unbound scope or role, a window
without a unit, a cycle in macros, ...), so that `blkreplay rules lint` lists them all. A file
with any problem compiles to nothing (`RuleFileError`).

What it produces is plain frozen data (`RuleSpec`, predicates of `analyzer.lang.predicates`):
picklable, so compiled rules travel to Dask workers like the built-in ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analyzer.lang import predicates as P
from analyzer.lang import schema as S
from analyzer.lang.loader import Loc, RuleFileError, Y
from analyzer.lang.message import Template, parse


@dataclass(frozen=True)
class RuleSpec:
    """One compiled rule of a rule file."""

    id: str
    severity: str
    title: str
    explanation: str
    guarantee: str
    needs: tuple[str, ...]
    scope: str
    order: str
    form: str
    #: The form's predicates, by key (first, then, since, trigger, ...).
    preds: tuple[tuple[str, P.Pred], ...]
    within_ns: int | None
    within_text: str | None
    more_than: int | None
    #: precedes: judge only the B rows that have a C before them.
    require_since: bool
    message: Template | None
    at_end_message: Template | None
    finding_device: str
    #: "file:line" where the rule is written, and its text there.
    source: str
    text: str

    def pred(self, key: str) -> P.Pred | None:
        return dict(self.preds).get(key)


@dataclass(frozen=True)
class ExampleSpec:
    """A `tests:` entry: a trace beside the rule file and the findings expected per rule."""

    trace: str
    expect: tuple[tuple[str, int], ...]
    loc: str


@dataclass(frozen=True)
class RuleFile:
    path: str
    rules: tuple[RuleSpec, ...]
    tests: tuple[ExampleSpec, ...]
    #: The file's `lists:` and `macros:` as written (plain values), for `rules show`.
    library: tuple[tuple[str, Any], ...] = ()


def _kind_of(v: Any) -> str:
    return {dict: "a mapping", list: "a list"}.get(type(v), f"{type(v).__name__} {v!r}")


class Compiler:
    """Compiles one rule file (see the module doc)."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.lines = text.splitlines()
        self.problems: list[tuple[Loc, str]] = []
        self.lists: dict[str, tuple[Any, ...]] = {}
        self.macro_nodes: dict[str, Y] = {}
        self.macros: dict[str, P.Pred] = {}
        self._resolving: list[str] = []

    def problem(self, loc: Loc, text: str) -> None:
        self.problems.append((loc, text))

    # ------------------------------------------------------------------ the file

    def compile(self, tree: Y | None) -> RuleFile:
        loc0 = Loc(self.file, 1, 1)
        if tree is None or not tree.is_map:
            self.problem(tree.loc if tree else loc0, "a rule file is a mapping with a 'rules:' list")
            return self._done([], [])
        top = tree.value
        for k, kloc in tree.keys.items():
            if k not in S.FILE_KEYS:
                self.problem(kloc, f"unknown key {k!r}; a rule file has: {', '.join(S.FILE_KEYS)}")
        if "version" in top and top["version"].value != S.LANGUAGE_VERSION:
            self.problem(top["version"].loc, f"version must be {S.LANGUAGE_VERSION}")
        if "lists" in top:
            self._lists(top["lists"])
        if "macros" in top:
            self._macro_table(top["macros"])
        for name in self.macro_nodes:
            self._macro(name, self.macro_nodes[name].loc)
        rules: list[RuleSpec] = []
        if "rules" not in top:
            self.problem(tree.loc, "no 'rules:' list")
        elif not top["rules"].is_list:
            self.problem(top["rules"].loc, "'rules' must be a list")
        else:
            items = top["rules"].value
            if len(items) > S.MAX_RULES:
                self.problem(top["rules"].loc, f"more than {S.MAX_RULES} rules")
                items = []
            seen: dict[str, Loc] = {}
            for item in items:
                spec = self._rule(item)
                if spec is None:
                    continue
                if spec.id in seen:
                    self.problem(item.value["id"].loc, f"rule id {spec.id!r} given twice (first at {seen[spec.id]})")
                    continue
                seen[spec.id] = item.value["id"].loc
                rules.append(spec)
        tests = self._tests(top["tests"], {r.id for r in rules}) if "tests" in top else []
        library = tuple((k, top[k].plain()) for k in ("lists", "macros") if k in top)
        return self._done(rules, tests, library)

    def _done(self, rules: list[RuleSpec], tests: list[ExampleSpec],
              library: tuple[tuple[str, Any], ...] = ()) -> RuleFile:
        if self.problems:
            ordered = sorted(self.problems, key=lambda p: (p[0].line, p[0].col, p[1]))
            raise RuleFileError([f"{loc}: {text}" for loc, text in ordered])
        return RuleFile(self.file, tuple(rules), tuple(tests), library)

    # ------------------------------------------------------------------ lists and macros

    def _names(self, node: Y, what: str, limit: int) -> list[tuple[str, Y]]:
        if not node.is_map:
            self.problem(node.loc, f"'{what}' must be a mapping of names")
            return []
        if len(node.value) > limit:
            self.problem(node.loc, f"more than {limit} {what}")
            return []
        out = []
        for name, value in node.value.items():
            if not S.NAME.match(name):
                self.problem(node.keys[name], f"bad {what[:-1]} name {name!r}: letters, digits, _ and -")
                continue
            out.append((name, value))
        return out

    def _lists(self, node: Y) -> None:
        for name, value in self._names(node, "lists", S.MAX_MACROS):
            if not value.is_list or any(v.is_map or v.is_list for v in value.value):
                self.problem(value.loc, f"list {name!r} must be a list of plain values")
                continue
            if len(value.value) > S.MAX_LIST:
                self.problem(value.loc, f"list {name!r} has more than {S.MAX_LIST} values")
                continue
            self.lists[name] = tuple(v.value for v in value.value)

    def _macro_table(self, node: Y) -> None:
        for name, value in self._names(node, "macros", S.MAX_MACROS):
            self.macro_nodes[name] = value

    def _macro(self, name: str, loc: Loc) -> P.Pred:
        if name in self.macros:
            return self.macros[name]
        if name not in self.macro_nodes:
            self.problem(loc, f"unknown macro {name!r}" + (f"; macros: {', '.join(self.macro_nodes)}" if self.macro_nodes else ""))
            return P.Always()
        if name in self._resolving:
            cycle = " -> ".join([*self._resolving[self._resolving.index(name):], name])
            self.problem(loc, f"cycle in macros: {cycle}")
            return P.Always()
        self._resolving.append(name)
        try:
            pred = self.predicate(self.macro_nodes[name])
        finally:
            self._resolving.pop()
        self.macros[name] = pred
        return pred

    # ------------------------------------------------------------------ predicates

    def predicate(self, node: Y) -> P.Pred:
        """A predicate: a macro name, or a mapping whose entries all hold."""
        if isinstance(node.value, str):
            return self._macro(node.value, node.loc)
        if not node.is_map:
            self.problem(node.loc, f"a predicate is a mapping (or a macro name), not {_kind_of(node.plain())}")
            return P.Always()
        parts: list[P.Pred] = []
        for key, value in node.value.items():
            kloc = node.keys[key]
            if key in S.COLUMNS:
                parts.append(self._column(key, value))
            elif key in S.NAMED:
                names, negate = self._values(value, "name")
                pred: P.Pred = P.Named(S.NAMED[key], tuple(str(n) for n in names if n is not None))
                parts.append(P.Not(pred) if negate else pred)
            elif key == "state":
                parts.extend(self._state(value))
            elif key in ("all", "any"):
                if not value.is_list or not value.value:
                    self.problem(value.loc, f"'{key}' takes a non-empty list of predicates")
                    continue
                subs = tuple(self.predicate(v) for v in value.value)
                parts.append(P.All(subs) if key == "all" else P.AnyOf(subs))
            elif key == "not":
                parts.append(P.Not(self.predicate(value)))
            elif key == "use":
                if not isinstance(value.value, str):
                    self.problem(value.loc, "'use' takes a macro name")
                    continue
                parts.append(self._macro(value.value, value.loc))
            elif key in S.FLAGS:
                if not isinstance(value.value, bool):
                    self.problem(value.loc, f"'{key}' takes true or false")
                    continue
                parts.append(P.Flag(key, value.value))
            else:
                self.problem(kloc, f"unknown column or key {key!r}; predicates use: {', '.join(S.PREDICATE_KEYS)}")
        if not parts:
            self.problem(node.loc, "empty predicate")
            return P.Always()
        return parts[0] if len(parts) == 1 else P.All(tuple(parts))

    def _values(self, node: Y, column: str) -> tuple[tuple[Any, ...], bool]:
        """A value, a list of values, "$list", or {not: one of those}."""
        negate = False
        if node.is_map:
            if set(node.value) != {"not"}:
                self.problem(node.loc, f"a value of {column!r} is a value, a list, a $list or {{not: ...}}")
                return (), False
            negate, node = True, node.value["not"]
            if node.is_map:
                self.problem(node.loc, "{not: ...} takes a value, a list or a $list")
                return (), True
        if isinstance(node.value, str) and node.value.startswith("$"):
            name = node.value[1:]
            if name not in self.lists:
                self.problem(node.loc, f"unknown list {name!r}")
                return (), negate
            values = self.lists[name]
        elif node.is_list:
            if any(v.is_map or v.is_list for v in node.value):
                self.problem(node.loc, "a list of values holds plain values only")
                return (), negate
            values = tuple(v.value for v in node.value)
            if len(values) > S.MAX_LIST:
                self.problem(node.loc, f"more than {S.MAX_LIST} values")
                return (), negate
        else:
            values = (node.value,)
        self._check_values(node, column, values)
        return values, negate

    def _check_values(self, node: Y, column: str, values: tuple[Any, ...]) -> None:
        for v in values:
            if v is None:
                continue
            if isinstance(v, bool | float):
                self.problem(node.loc, f"{column}: {v!r} is not a valid value")
            elif column == "kind" and v not in S.KIND_NAMES:
                self.problem(node.loc, f"unknown kind {v!r}; kinds: {', '.join(S.KIND_NAMES)}")
            elif column in S.CLOSED and column != "kind" and v not in S.CLOSED[column]:
                self.problem(node.loc, f"unknown {column} {v!r}; values: {', '.join(S.CLOSED[column])}")
            elif column in S.INTS and not isinstance(v, int):
                self.problem(node.loc, f"{column} takes integers, not {v!r}")
            elif column in S.INTS and not 0 <= v < 2**31:
                self.problem(node.loc, f"{column} {v} is out of range (0 to 2147483647)")
            elif column not in S.INTS and isinstance(v, int):
                self.problem(node.loc, f"{column} takes text, not the number {v!r}")

    def _column(self, key: str, node: Y) -> P.Pred:
        values, negate = self._values(node, key)
        return P.Column(S.COLUMNS[key], tuple(values), negate)

    def _state(self, node: Y) -> list[P.Pred]:
        if not node.is_map or not node.value:
            self.problem(node.loc, f"'state' takes a mapping of: {', '.join(S.STATE_KEYS)}")
            return []
        out: list[P.Pred] = []
        for key, value in node.value.items():
            if key not in S.STATE_KEYS:
                self.problem(node.keys[key], f"unknown state {key!r}; state has: {', '.join(S.STATE_KEYS)}")
                continue
            if key == "stop_pending":
                if not isinstance(value.value, bool):
                    self.problem(value.loc, "'stop_pending' takes true or false")
                    continue
                out.append(P.State(key, ("true" if value.value else "false",)))
                continue
            values, negate = self._values(value, f"state {key}")
            for v in values:
                if v not in S.STATE_VALUES[key]:
                    self.problem(value.loc, f"unknown {key} state {v!r}; values: {', '.join(S.STATE_VALUES[key])}")
            out.append(P.State(key, tuple(str(v) for v in values), negate))
        return out

    # ------------------------------------------------------------------ rules

    def _text(self, rule: Y, key: str, required: bool) -> str | None:
        node = rule.value.get(key)
        if node is None:
            if required:
                self.problem(rule.loc, f"rule has no {key!r}")
            return None
        if not isinstance(node.value, str) or not node.value.strip():
            self.problem(node.loc, f"{key!r} must be text")
            return None
        if len(node.value) > S.MAX_TEXT:
            self.problem(node.loc, f"{key!r} is longer than {S.MAX_TEXT} characters")
            return None
        return node.value

    def _choice(self, rule: Y, key: str, choices: tuple[str, ...], default: str | None) -> str | None:
        node = rule.value.get(key)
        if node is None:
            if default is None:
                if key == "scope":
                    self.problem(rule.loc, f"unbound scope: the rule needs 'scope:' ({' | '.join(choices)})")
                else:
                    self.problem(rule.loc, f"rule has no {key!r}")
            return default
        if node.value == "host" and key == "scope":
            self.problem(node.loc, "scope 'host' is not supported: rules judge whole VMs one unit at a "
                                   "time, so nothing may span VMs")
            return None
        if node.value not in choices:
            self.problem(node.loc, f"unknown {key} {node.value!r}; choose: {', '.join(choices)}")
            return None
        return node.value

    def duration(self, node: Y) -> tuple[int | None, str | None]:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            self.problem(node.loc, f"a window is a duration such as 30s, not {_kind_of(node.plain())}")
            return None, None
        if isinstance(v, int | float):
            self.problem(node.loc, f"window {v!r} has no unit: write e.g. {v}s ({', '.join(S.UNITS_NS)})")
            return None, None
        m = S.DURATION.match(v)
        if not m:
            self.problem(node.loc, f"bad window {v!r}: a number and a unit, e.g. 30s, 10m, 500ms")
            return None, None
        if m.group(2) not in S.UNITS_NS:
            self.problem(node.loc, f"unknown unit {m.group(2)!r} in window {v!r}; units: {', '.join(S.UNITS_NS)}")
            return None, None
        if len(m.group(1)) > 20:
            self.problem(node.loc, f"window {v!r} is too long a number")
            return None, None
        ns = round(float(m.group(1)) * S.UNITS_NS[m.group(2)])
        if ns <= 0:
            self.problem(node.loc, f"window {v!r} must be longer than zero")
            return None, None
        if ns > S.MAX_WINDOW_NS:
            self.problem(node.loc, f"window {v!r} is longer than 30 days")
            return None, None
        return int(ns), v.strip()

    def _rule(self, rule: Y) -> RuleSpec | None:
        if not rule.is_map:
            self.problem(rule.loc, "a rule is a mapping")
            return None
        before = len(self.problems)
        forms = [k for k in rule.value if k in S.FORMS]
        for k, kloc in rule.keys.items():
            if k not in S.FORMS and k not in S.RULE_KEYS:
                self.problem(kloc, f"unknown rule key {k!r}; forms: {', '.join(S.FORMS)}; keys: {', '.join(S.RULE_KEYS)}")
        rid = None
        if "id" not in rule.value:
            self.problem(rule.loc, "rule has no 'id'")
        elif not isinstance(rule.value["id"].value, str) or not S.RULE_ID.match(rule.value["id"].value):
            self.problem(rule.value["id"].loc, "a rule id is lower-case letters, digits and '-'")
        else:
            rid = rule.value["id"].value
        severity = self._choice(rule, "severity", S.SEVERITIES, None)
        title = self._text(rule, "title", True)
        explanation = self._text(rule, "explanation", True)
        guarantee = self._text(rule, "guarantee", False) or "user"
        scope = self._choice(rule, "scope", S.SCOPES, None)
        order = self._choice(rule, "order", S.ORDERS, "arrival")
        fdev = self._choice(rule, "finding_device", S.FINDING_DEVICES, "anchor")
        needs = self._needs(rule.value["needs"]) if "needs" in rule.value else ()
        if len(forms) != 1:
            self.problem(rule.loc, f"a rule has exactly one form ({', '.join(S.FORMS)}); found "
                                   f"{', '.join(forms) if forms else 'none'}")
            return None
        form = forms[0]
        body = rule.value[form]
        preds: list[tuple[str, P.Pred]] = []
        within_ns = more_than = None
        within_text = None
        require_since = False
        if not body.is_map:
            self.problem(body.loc, f"{form} takes a mapping of: {', '.join(S.FORMS[form][0] + S.FORMS[form][1])}")
            return None
        required, optional = S.FORMS[form]
        for k, kloc in body.keys.items():
            if k not in required and k not in optional:
                self.problem(kloc, f"unknown key {k!r} of {form}; it takes: {', '.join(required + optional)}")
        for k in required:
            if k not in body.value:
                self.problem(body.loc, f"{form} needs {k!r}")
        for k in (*required, *optional):
            if k not in body.value:
                continue
            node = body.value[k]
            if k == "within":
                within_ns, within_text = self.duration(node)
            elif k == "require_since":
                if not isinstance(node.value, bool):
                    self.problem(node.loc, "require_since takes true or false")
                elif "since" not in body.value:
                    self.problem(node.loc, "require_since needs 'since'")
                else:
                    require_since = node.value
            elif k == "more_than":
                v = node.value
                if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= S.MAX_COUNT:
                    self.problem(node.loc, f"more_than is a whole number from 0 to {S.MAX_COUNT}")
                else:
                    more_than = v
            else:
                preds.append((k, self.predicate(node)))
        roles = S.ROLES[form]
        message = self._template(rule, "message", roles)
        at_end = self._template(rule, "at_end_message", roles)
        if at_end is not None and form != "responds":
            self.problem(rule.keys["at_end_message"], "at_end_message is for responds rules only")
        if len(self.problems) > before or rid is None:
            return None
        lines = self.lines[rule.loc.line - 1: max(rule.end_line, rule.loc.line)]
        return RuleSpec(
            id=rid, severity=severity or "error", title=title or "", explanation=explanation or "",
            guarantee=guarantee, needs=needs, scope=scope or "vm", order=order or "arrival",
            form=form, preds=tuple(preds), within_ns=within_ns, within_text=within_text,
            more_than=more_than, require_since=require_since, message=message, at_end_message=at_end,
            finding_device=fdev or "anchor", source=f"{rule.loc.file}:{rule.loc.line}",
            text=_dedent(lines, rule.loc.col),
        )

    def _template(self, rule: Y, key: str, roles: tuple[str, ...]) -> Template | None:
        text = self._text(rule, key, False)
        if text is None:
            return None
        template, problems = parse(text, roles)
        node = rule.value[key]
        for _offset, what in problems:
            self.problem(node.loc, f"{key}: {what}")
        return template

    def _needs(self, node: Y) -> tuple[str, ...]:
        if not node.is_list:
            self.problem(node.loc, "'needs' is a list of step kinds or kind:name entries")
            return ()
        out = []
        for item in node.value:
            v = item.value
            if not isinstance(v, str):
                self.problem(item.loc, f"unknown kind {v!r}")
                continue
            kind = v.split(":", 1)[0]
            if kind not in S.KIND_NAMES:
                self.problem(item.loc, f"unknown kind {kind!r}; kinds: {', '.join(S.KIND_NAMES)}")
                continue
            out.append(v)
        return tuple(out)

    # ------------------------------------------------------------------ tests

    def _tests(self, node: Y, ids: set[str]) -> list[ExampleSpec]:
        if not node.is_list:
            self.problem(node.loc, "'tests' is a list of {trace: PATH, findings: {RULE: N}}")
            return []
        if len(node.value) > S.MAX_TESTS:
            self.problem(node.loc, f"more than {S.MAX_TESTS} tests")
            return []
        out = []
        for t in node.value:
            if not t.is_map or "trace" not in t.value or not isinstance(t.value["trace"].value, str):
                self.problem(t.loc, "a test is {trace: PATH, findings: {RULE: N}}")
                continue
            for k, kloc in t.keys.items():
                if k not in ("trace", "findings"):
                    self.problem(kloc, f"unknown test key {k!r}; a test has trace and findings")
            path = t.value["trace"].value
            if path.startswith("/") or ".." in path.replace("\\", "/").split("/"):
                self.problem(t.value["trace"].loc, "a test trace is a path inside the rule file's folder")
                continue
            expect: list[tuple[str, int]] = []
            f = t.value.get("findings")
            if f is not None:
                if not f.is_map:
                    self.problem(f.loc, "findings is a mapping {RULE: N}")
                    continue
                for rid, n in f.value.items():
                    if rid not in ids:
                        self.problem(f.keys[rid], f"unknown rule {rid!r} in this file")
                    elif isinstance(n.value, bool) or not isinstance(n.value, int) or n.value < 0:
                        self.problem(n.loc, "a finding count is a whole number")
                    else:
                        expect.append((rid, n.value))
            out.append(ExampleSpec(path, tuple(expect), str(t.loc)))
        return out


def _dedent(lines: list[str], col: int) -> str:
    """The rule's lines as written, its first line starting at the rule's column."""
    if not lines:
        return ""
    first = " " * (col - 1) + lines[0][col - 1:]
    body = [first, *lines[1:]]
    # The node ends where the next one starts: drop the lines that belong to what follows.
    while body and (not body[-1].strip() or len(body[-1]) - len(body[-1].lstrip()) < col - 1):
        body.pop()
    cut = min((len(x) - len(x.lstrip()) for x in body if x.strip()), default=0)
    return "\n".join(x[cut:] for x in body)


def compile_text(text: str, file: str, tree: Y | None) -> RuleFile:
    """The compiled rule file (raises `RuleFileError` listing every problem)."""
    return Compiler(file, text).compile(tree)
