"""Why a rule did not apply to a trace, in words a user can act on.

A rule is not applicable when the trace lacks the steps it judges (`Rule.needs`): an import
of QMP alone has no `iostatus_set` rows, a `werror=report` run no STOP. A bare "n/a" leaves the
user guessing whether the rule was skipped, broken, or satisfied; the reason names what was
missing (``the trace has no STOP event``), and a PASS in which no ordering rule applied at
all is a PASS that exercised nothing (`CheckResult.exercised`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence


def describe_need(need: str) -> str:
    """``qmp_event:STOP`` -> ``STOP event``, ``qmp_reply:cont`` -> ``cont reply``,
    ``qmp_command:cont`` -> ``cont command``, a kind -> ``<kind> rows``."""
    kind, _, name = need.partition(":")
    if not name:
        return f"{kind} rows"
    word = {"qmp_event": "event", "qmp_reply": "reply", "qmp_command": "command"}.get(kind, kind)
    return f"{name} {word}"


def reason(needs: Sequence[str], needs_one_of: Sequence[Sequence[str]], present: Collection[str]) -> str:
    """Why a rule with these needs does not apply to a trace holding `present`."""
    have = set(present)
    missing = [describe_need(n) for n in needs if n not in have]
    for group in needs_one_of:
        if not any(alt in have for alt in group):
            missing.append(" or ".join(describe_need(a) for a in group))
    if not missing:
        return "the trace lacks the steps it judges"
    return "the trace has no " + ", no ".join(missing)
