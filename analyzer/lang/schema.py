"""The vocabulary of the rule language: forms, their keys, scopes, columns, units and bounds.

One table per concept, so that the compiler, the linter's messages and docs/rules-language.md
all name the same things.
"""

from __future__ import annotations

import re

from analyzer.state import RUNSTATE_NAMES
from analyzer.steps import VOCABULARIES
from tracer.schema import IOSTATUSES, KINDS

#: Top-level keys of a rule file.
FILE_KEYS = ("version", "lists", "macros", "rules", "tests")
LANGUAGE_VERSION = 1

#: The forms, each with its required and optional keys (predicates unless said otherwise).
FORMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "precedes": (("first", "then"), ("since", "require_since")),
    "responds": (("trigger", "response"), ("before", "within")),
    "absent": (("what",), ("after", "until")),
    "count_in_window": (("what", "more_than", "within"), ()),
}
#: Template roles each form binds (the rows a message can name with {ROLE.FIELD}).
ROLES: dict[str, tuple[str, ...]] = {
    "precedes": ("row", "later", "since"),
    "responds": ("trigger", "response", "before"),
    "absent": ("row", "after"),
    "count_in_window": ("first", "row"),
}

#: Keys of a rule besides its form.
RULE_KEYS = ("id", "severity", "title", "explanation", "guarantee", "needs", "scope", "order",
             "message", "at_end_message", "finding_device")
SEVERITIES = ("error", "warning")
#: vm: the whole VM; device: rows naming the same device (rows naming none are VM-wide and
#: count in every device's scope); error_id: rows of the same error (rows without an id belong
#: to no error).
SCOPES = ("vm", "device", "error_id")
ORDERS = ("arrival", "emission")
FINDING_DEVICES = ("anchor", "error")
RULE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")

#: Predicate keys that compare one column of the step, and the trace column each reads.
COLUMNS: dict[str, str] = {
    "kind": "kind", "name": "name", "vm": "vm", "thread": "thread", "thread_kind": "thread_kind",
    "device": "device", "op": "op", "errno": "errno", "policy": "policy", "action": "action",
    "iostatus": "iostatus", "runstate": "runstate", "prev_runstate": "prev_runstate",
}
#: Sugar: `event: STOP` is kind qmp_event and name STOP (`reply` matches a reply by the name
#: of the command it answers).
NAMED = {"event": "qmp_event", "command": "qmp_command", "reply": "qmp_reply"}
#: Predicates over the replayed state just before the step.
STATE_KEYS = ("run", "iostatus", "stop_pending")
STATE_VALUES: dict[str, tuple[str, ...]] = {
    "run": (*RUNSTATE_NAMES, "unknown"),
    "iostatus": (*IOSTATUSES, "not-ok"),
}
COMBINATORS = ("all", "any", "not", "use")
FLAGS = ("has_error_id", "vm_has_error_ids")
PREDICATE_KEYS = (*COLUMNS, *NAMED, "state", *COMBINATORS, *FLAGS)

#: Closed vocabularies (a value outside is a lint error) and integer columns.
CLOSED: dict[str, tuple[str, ...]] = {c: VOCABULARIES[c] for c in VOCABULARIES}
INTS = ("errno",)
KIND_NAMES = KINDS

#: Time units of a window.
UNITS_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
            "h": 3_600_000_000_000, "d": 86_400_000_000_000}
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$")
#: Bounds: a window of at most 30 days, counts of at most 10,000, at most 1,000 rules,
#: macros and lists each, 1,000 values in a list, messages of 1,000 characters.
MAX_WINDOW_NS = 30 * UNITS_NS["d"]
MAX_COUNT = 10_000
MAX_RULES = 1_000
MAX_MACROS = 1_000
MAX_LIST = 1_000
MAX_TEXT = 4_000
MAX_TESTS = 200
