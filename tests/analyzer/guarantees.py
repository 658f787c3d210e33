"""`check` judging QEMU's guarantees only, for the tests of real captures: their faults are
deliberate (blkdebug failing writes in a row, a client resuming 0.2-1.5 s after each stop,
`report` policies), which the operational pattern rules rightly warn about; those warnings are
pinned in tests/analyzer/rules/test_patterns.py."""

from __future__ import annotations

from typing import Any

from analyzer import check
from analyzer.result import CheckResult
from analyzer.rules.catalogue import PATTERN_RULES, RULE_IDS

#: Every rule but the operational patterns.
GUARANTEE_RULES: list[str] = [r for r in RULE_IDS if r not in PATTERN_RULES]


def check_guarantees(paths: Any, **kwargs: Any) -> CheckResult:
    """`analyzer.check` over `GUARANTEE_RULES` (unless `rules` is given)."""
    kwargs.setdefault("rules", GUARANTEE_RULES)
    return check(paths, **kwargs)
