"""blkreplay's analysis half: load traces, replay them deterministically, check the ordering
guarantees of QEMU's block I/O error path, and render audit reports.

The public surface (`load`, `replay`, `check`) is what the command line wraps; a notebook user
calls it directly::

    import analyzer
    result = analyzer.check(["trace-dir/"])          # CheckResult
    result.verdict, result.findings, result.episodes
    analyzer.findings_frame(result)                   # one row per finding (host, run too)
    analyzer.incidents(result)                        # correlated io-error pauses, one row each
    view = analyzer.replay("trace-dir/", vm="vm0", from_seq=100, to_seq=200)

Note: `analyzer.replay` and `analyzer.check` are the functions; their modules are imported as
``from analyzer.replay import steps_around`` and the like. The trace reader behind `load` is
the package `analyzer.trace`.
"""

from analyzer.check import check
from analyzer.frames import findings_frame, incidents
from analyzer.replay import EPISODE_COLUMNS, episodes, replay, steps_around
from analyzer.result import CheckResult, Finding, InputInfo, RuleInfo, Severity, Verdict
from analyzer.rules.catalogue import catalogue
from analyzer.trace import Trace, load

__all__ = [
    "EPISODE_COLUMNS",
    "CheckResult",
    "Finding",
    "InputInfo",
    "RuleInfo",
    "Severity",
    "Trace",
    "Verdict",
    "catalogue",
    "check",
    "episodes",
    "findings_frame",
    "incidents",
    "load",
    "replay",
    "steps_around",
]
