"""The ``blkreplay.findings/1`` JSON document of a check: what scripts and dashboards read.

The document itself is :meth:`analyzer.result.CheckResult.to_dict` (its keys and their order
are the stable contract); this module fixes its bytes: two-space indent, non-ASCII kept as is,
one trailing newline.
"""

from __future__ import annotations

import json

from analyzer.result import CheckResult


def render_json(result: CheckResult) -> str:
    """The `blkreplay.findings/1` document, stable key order, two-space indent."""
    return json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"
