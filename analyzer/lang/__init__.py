"""The rule language: ordering rules as data, compiled to the vectorized engine.

A rule file (YAML, docs/rules-language.md) states properties over one scope (vm, device,
error id) in one of four forms -- precedes, responds, absent, count_in_window -- with
predicates over step columns and the replayed state. The modules, one concept each:

* `loader`     - bounded, data-only YAML into a tree that keeps file:line:col of every value
* `schema`     - the vocabulary: forms, keys, scopes, columns, units, bounds
* `compile`    - located tree -> `RuleSpec` (frozen data), collecting every mistake
* `predicates` - predicate trees and their whole-column evaluation
* `scope`      - searches within a scope (keyed indexes, VM-wide rows)
* `forms`      - the four forms as whole-array searches
* `message`    - message templates (placeholders only, nothing runs)
* `rule`       - a compiled rule: RuleInfo, needs, columns, findings
* `ruleset`    - loading files, the default file of restated built-ins, running a set
* `examples`   - `rules test`: rule files against the example traces beside them

`analyzer.check(..., rule_files=[...])` runs loaded rules beside (or, with `only_files`,
instead of) the built-in catalogue.
"""

from __future__ import annotations

from analyzer.lang.loader import RuleFileError
from analyzer.lang.rule import LangRule
from analyzer.lang.ruleset import (
    BUILTIN_NAME,
    RuleSet,
    builtin_text,
    compile_builtin,
    compile_file,
    lint,
    load_rules,
)

__all__ = [
    "BUILTIN_NAME",
    "LangRule",
    "RuleFileError",
    "RuleSet",
    "builtin_text",
    "compile_builtin",
    "compile_file",
    "lint",
    "load_rules",
]
