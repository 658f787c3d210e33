"""The catalogue is complete and agrees with every other place that names the rules.

A rule is declared once, beside its function (`analyzer.rules.rule`); what cannot be derived
from that declaration is checked here: docs/rules.md §3, the README's Rules table, the reference
checker and the simulator's ground truth name exactly the catalogue's rules, with the same
severities and in the same order.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import analyzer.rules
from analyzer.result import RuleInfo
from analyzer.rules import catalogue
from analyzer.rules.catalogue import INTEGRITY_RULES, PATTERN_RULES, RULE_FUNCTIONS, RULE_IDS, RULES
from analyzer.rules.rule import Rule, RuleFunction, decides
from analyzer.steps import Steps
from tests.analyzer.builders import TraceBuilder, by_rule, check_rows
from tracer.errors import InputError
from tracer.sim.truth import NEEDS_IOSTATUS_SET, TRUTH_RULES

ROOT = Path(__file__).resolve().parents[3]


def _table(markdown: str, heading: str) -> list[list[str]]:
    """The body rows (cells stripped) of the tables in the section under `heading`."""
    lines = markdown.splitlines()
    start = lines.index(heading)
    level = heading.split(" ")[0]
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("#") and line.split(" ")[0] <= level:
            break
        if line.startswith("|") and not re.match(r"^\|[-| ]+\|$", line):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows[1:] if rows and rows[0][0] == "id" else rows


def _id_and_severity(rows: list[list[str]]) -> list[tuple[str, str]]:
    out = []
    for cells in rows:
        m = re.fullmatch(r"`([a-z0-9-]+)`", cells[0])
        assert m, f"not a rule row: {cells}"
        out.append((m.group(1), cells[1]))
    return out


def _catalogue() -> list[tuple[str, str]]:
    return [(r.id, r.severity) for r in catalogue.catalogue()]


def test_docs_rules_table_lists_every_rule_in_catalogue_order() -> None:
    text = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    assert _id_and_severity(_table(text, "## 3. The rules")) == _catalogue()


def test_readme_rules_table_lists_every_rule_in_catalogue_order() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = _table(text, "## Rules")
    assert _id_and_severity(rows) == _catalogue()
    # The guarantee column starts with the rule's guarantee (I1..I6) or says integrity.
    for (rid, _), cells in zip(_id_and_severity(rows), rows, strict=True):
        guarantee = RULES[rid].guarantee
        if guarantee.startswith("I") or guarantee == "integrity":
            assert cells[2].startswith(guarantee), (rid, cells[2])


def test_reference_checker_decides_every_rule_over_steps() -> None:
    path = ROOT / "tests" / "analyzer" / "rules" / "reference_checker.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    added = {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "add"
        and node.args and isinstance(node.args[0], ast.Constant)
    }
    assert added == set(RULE_IDS) - INTEGRITY_RULES - INPUT_RULES - LIBVIRT_RULES - PATTERN_RULES


#: Rules about how faithfully an imported input shows QEMU (guarantee "input"): simulated
#: traces never carry what they judge, so the reference checker has nothing to decide there.
INPUT_RULES = {r.id for r in catalogue.catalogue() if r.guarantee == "input"}
#: Cross-layer rules (guarantee "libvirt": libvirt's view against QEMU's): simulated traces
#: have no management layer, so neither the reference checker nor ground truth speaks of them.
LIBVIRT_RULES = {r.id for r in catalogue.catalogue() if r.guarantee == "libvirt"}


def test_libvirt_rules_are_the_cross_layer_rules() -> None:
    assert {"libvirt-reports-io-error", "libvirt-event-has-cause",
                             "libvirt-delivers-events"} == LIBVIRT_RULES


def test_input_rules_are_warnings_about_imports() -> None:
    assert {"event-names-unknown", "qom-path-swapped", "sources-disagree",
            "trace-lines-unknown"} == INPUT_RULES
    assert {RULES[r].severity for r in INPUT_RULES} == {"warning"}


def test_pattern_rules_are_warnings_with_documented_parameters() -> None:
    assert {"pause-storm", "io-error-event-storm", "enospc-pause-loop",
                             "resume-before-storage-back", "paused-over-slo", "error-policy-not-stop"} == PATTERN_RULES
    assert {RULES[r].severity for r in PATTERN_RULES} == {"warning"}
    text = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    for rid in PATTERN_RULES:
        params = catalogue.rule(rid).params
        assert params, rid
        for p in params:
            assert f"`{rid}.{p.key}" in text or f"/ `.{p.key}`" in text, (rid, p.key)


def test_ground_truth_speaks_about_every_error_rule_over_steps() -> None:
    # docs/rules.md §3: truth lists the error-severity rules other than the integrity rules.
    expected = tuple(r.id for r in catalogue.catalogue()
                     if r.severity == "error" and r.id not in INTEGRITY_RULES
                     and r.id not in LIBVIRT_RULES)
    assert expected == TRUTH_RULES
    assert set(NEEDS_IOSTATUS_SET) == {r.id for r in catalogue.catalogue() if "iostatus_set" in r.needs}


def _rule_modules() -> list:
    return [importlib.import_module(f"analyzer.rules.{m.name}")
            for m in pkgutil.iter_modules(analyzer.rules.__path__)]


def test_every_rule_function_and_declaration_is_in_the_catalogue() -> None:
    functions = [v for m in _rule_modules() for v in vars(m).values()
                 if isinstance(v, RuleFunction) and v.fn.__module__ == m.__name__]
    assert {id(f) for f in functions} == {id(f) for f in RULE_FUNCTIONS}
    declared = [v for m in _rule_modules() for v in vars(m).values() if isinstance(v, Rule)]
    from_functions = {r.id for f in RULE_FUNCTIONS for r in f.rules}
    # A Rule outside a function is one the reader produces, and those are all listed.
    assert {r.id for r in declared} == INTEGRITY_RULES
    assert from_functions | INTEGRITY_RULES == set(RULE_IDS)
    assert not from_functions & INTEGRITY_RULES
    assert len(RULE_IDS) == len(set(RULE_IDS)) == 30


def test_catalogue_order_is_the_order_of_the_rule_modules() -> None:
    assert list(RULE_IDS) == [
        "iostatus-before-event", "iostatus-before-stop", "event-before-stop", "stop-follows-error",
        "stop-pending-at-end", "resume-before-retry-error", "vm-stop-thread",
        "query-matches-events", "query-matches-runstate", "iostatus-reset-on-cont",
        "action-matches-policy", "runstate-transition", "event-names-unknown", "qom-path-swapped",
        "sources-disagree", "trace-lines-unknown", "libvirt-reports-io-error", "libvirt-event-has-cause", "libvirt-delivers-events",
        "pause-storm", "io-error-event-storm", "enospc-pause-loop", "resume-before-storage-back",
        "paused-over-slo", "error-policy-not-stop",
        "seq-unique", "ts-monotonic-per-thread", "trace-truncated", "recording-intact",
        "trace-empty",
    ]
    assert list(RULES) == list(RULE_IDS)


def test_rule_info_is_the_public_description_of_the_declaration() -> None:
    for rid, info in RULES.items():
        decl = catalogue.rule(rid)
        assert info == RuleInfo(decl.id, decl.severity, decl.title, decl.explanation,
                                decl.guarantee, decl.needs)
        assert info.severity in ("error", "warning") and info.title and info.explanation
    assert catalogue.select(None) == catalogue.catalogue() == list(RULES.values())


def test_unknown_rule_ids_are_input_errors() -> None:
    message = "unknown rule id nosuch; known rules: " + ", ".join(RULE_IDS)
    for call in (
        lambda: catalogue.select(["vm-stop-thread", "nosuch"]),
        lambda: catalogue.run(Steps.empty(), ["vm-stop-thread", "nosuch"]),
        lambda: catalogue.columns_for(["nosuch"]),
        lambda: catalogue.rule("nosuch"),
    ):
        with pytest.raises(InputError) as exc:
            call()
        assert str(exc.value) == message
    with pytest.raises(InputError) as exc:
        catalogue.select([" ", ""])
    assert str(exc.value) == "no rule selected"
    with pytest.raises(ValueError):
        decides()


def test_reader_rules_have_no_function_and_no_findings_over_steps() -> None:
    assert catalogue.run(Steps.empty(), sorted(INTEGRITY_RULES)) == []
    assert catalogue.run(Steps.empty(), RULE_IDS) == []


def test_one_pass_decides_two_rules_and_reports_only_the_selected(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.start()
    lost = b.error(1)
    # lost-stop: vm_start consumes the request while running but emits no STOP/RESUME
    cmd = b.step("qmp_command", "mgmt", name="cont")
    b.step("iostatus_reset", "main", device="drive0", iostatus="ok")
    b.step("vm_start", "main", error_id=1)
    b.step("qmp_reply", "mgmt", name="cont", cmd_seq=cmd)
    b.slot = None
    pending = b.error(2)
    both = check_rows(b.rows, tmp_path, rules=["stop-follows-error", "stop-pending-at-end"])
    assert [(f.rule, f.seq[0]) for f in both.findings] == [
        ("stop-follows-error", lost["event"]), ("stop-pending-at-end", pending["event"]),
    ]
    only_lost = check_rows(b.rows, tmp_path, "a.parquet", rules=["stop-follows-error"])
    assert [f.rule for f in only_lost.findings] == ["stop-follows-error"]
    only_pending = check_rows(b.rows, tmp_path, "b.parquet", rules=["stop-pending-at-end"])
    assert [f.rule for f in only_pending.findings] == ["stop-pending-at-end"]
    assert by_rule(only_pending, "stop-pending-at-end")[0].severity == "warning"
