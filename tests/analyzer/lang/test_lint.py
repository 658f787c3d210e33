"""`lint`: one precise line per mistake, file:line:col, every mistake of the file at once."""

from __future__ import annotations

import pytest

from analyzer.lang import lint

GOOD_RULE = """\
  - id: r1
    severity: error
    title: t
    explanation: e
    scope: vm
"""


def problems(text: str, tmp_path) -> list[str]:
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    return [p.removeprefix(f"{path}:") for p in lint(path)]


def one_rule(form: str, tmp_path, extra: str = "") -> list[str]:
    return problems("version: 1\n" + extra + "rules:\n" + GOOD_RULE + form, tmp_path)


def test_a_sound_file_has_no_problems(tmp_path):
    assert one_rule("    absent:\n      what: {event: STOP}\n", tmp_path) == []


def test_unknown_kind(tmp_path):
    assert one_rule("    absent:\n      what: {kind: vm_stopp}\n", tmp_path) == [
        "9:20: unknown kind 'vm_stopp'; kinds: " + ", ".join(__import__("tracer.schema").schema.KINDS)
    ]


def test_unknown_column(tmp_path):
    got = one_rule("    absent:\n      what: {kind: vm_stop, colour: red}\n", tmp_path)
    assert len(got) == 1 and got[0].startswith("9:29: unknown column or key 'colour'; predicates use: kind, name,")


def test_unknown_value_of_a_closed_vocabulary(tmp_path):
    got = one_rule("    absent:\n      what: {kind: vm_stop, thread_kind: iothred}\n", tmp_path)
    assert got == ["9:42: unknown thread_kind 'iothred'; values: main, vcpu, iothread, worker, mgmt, unknown"]


def test_unbound_scope(tmp_path):
    text = "rules:\n  - id: r1\n    severity: error\n    title: t\n    explanation: e\n    absent: {what: {event: STOP}}\n"
    assert problems(text, tmp_path) == ["2:5: unbound scope: the rule needs 'scope:' (vm | device | error_id)"]


def test_host_scope_says_why(tmp_path):
    text = "rules:\n" + GOOD_RULE.replace("scope: vm", "scope: host") + "    absent: {what: {event: STOP}}\n"
    assert problems(text, tmp_path) == [
        "6:12: scope 'host' is not supported: rules judge whole VMs one unit at a time, so nothing may span VMs"
    ]


@pytest.mark.parametrize("window, col, what", [
    ("30", 15, "window 30 has no unit: write e.g. 30s (ns, us, ms, s, m, h, d)"),
    ("30 parsecs", 15, "unknown unit 'parsecs' in window '30 parsecs'; units: ns, us, ms, s, m, h, d"),
    ("0s", 15, "window '0s' must be longer than zero"),
    ("100000d", 15, "window '100000d' is longer than 30 days"),
    ("soon", 15, "bad window 'soon': a number and a unit, e.g. 30s, 10m, 500ms"),
])
def test_windows(tmp_path, window, col, what):
    form = f"    count_in_window:\n      what: {{event: STOP}}\n      more_than: 3\n      within: {window}\n"
    assert one_rule(form, tmp_path) == [f"11:{col}: {what}"]


def test_pathological_counts(tmp_path):
    form = "    count_in_window:\n      what: {event: STOP}\n      more_than: 1000000000\n      within: 1s\n"
    assert one_rule(form, tmp_path) == ["10:18: more_than is a whole number from 0 to 10000"]


def test_a_cycle_in_macros(tmp_path):
    macros = "macros:\n  a: {use: b}\n  b: {any: [{event: STOP}, c]}\n  c: a\n"
    got = one_rule("    absent:\n      what: a\n", tmp_path, macros)
    assert got == ["5:6: cycle in macros: a -> b -> c -> a"]


def test_unknown_macro_and_list(tmp_path):
    got = one_rule("    absent:\n      what: {use: nope, name: $missing}\n", tmp_path)
    assert got == ["9:19: unknown macro 'nope'", "9:31: unknown list 'missing'"]


def test_templates_bind_only_the_forms_roles(tmp_path):
    form = "    message: '{trigger.seq} {row.colour} {oops} {if later}x'\n    absent:\n      what: {event: STOP}\n"
    got = one_rule(form, tmp_path)
    assert len(got) == 5 and all(g.startswith("8:14: message: ") for g in got)
    assert got == sorted(got)
    text = "\n".join(got)
    for what in ("unbound role 'trigger'; this form binds: row, after", "unknown field 'colour'",
                 "unknown placeholder {oops}", "unbound role 'later' in {if}", "{if ROLE} without {end}"):
        assert what in text


def test_every_mistake_is_listed_in_file_order(tmp_path):
    text = (
        "version: 2\n"
        "rules:\n"
        "  - id: Bad_Id\n"
        "    severity: fatal\n"
        "    title: t\n"
        "    explanation: e\n"
        "    scope: vm\n"
        "    precedes: {first: {kind: nope}}\n"
        "  - id: ok-id\n"
        "    severity: error\n"
        "    title: t\n"
        "    explanation: e\n"
        "    scope: device\n"
        "    responds: {trigger: {event: X}, response: {event: Y}, within: 5}\n"
        "    frobnicate: 1\n"
    )
    assert problems(text, tmp_path) == [
        "1:10: version must be 1",
        "3:9: a rule id is lower-case letters, digits and '-'",
        "4:15: unknown severity 'fatal'; choose: error, warning",
        "8:15: precedes needs 'then'",
        "8:30: unknown kind 'nope'; kinds: " + ", ".join(__import__("tracer.schema").schema.KINDS),
        "14:67: window 5 has no unit: write e.g. 5s (ns, us, ms, s, m, h, d)",
        "15:5: unknown rule key 'frobnicate'; forms: precedes, responds, absent, count_in_window; "
        "keys: id, severity, title, explanation, guarantee, needs, scope, order, message, "
        "at_end_message, finding_device",
    ]


def test_a_rule_needs_exactly_one_form(tmp_path):
    got = one_rule("    absent: {what: {event: A}}\n    precedes: {first: {event: A}, then: {event: B}}\n", tmp_path)
    assert got == ["3:5: a rule has exactly one form (precedes, responds, absent, count_in_window); found absent, precedes"]


def test_duplicate_rule_ids(tmp_path):
    text = "rules:\n" + GOOD_RULE + "    absent: {what: {event: A}}\n" + GOOD_RULE + "    absent: {what: {event: B}}\n"
    assert problems(text, tmp_path) == ["8:9: rule id 'r1' given twice (first at " + str(tmp_path / "r.yaml") + ":2:9)"]


def test_too_many_rules(tmp_path):
    rule = GOOD_RULE + "    absent: {what: {event: A}}\n"
    text = "rules:\n" + "".join(rule.replace("id: r1", f"id: r{i}") for i in range(1001))
    assert problems(text, tmp_path) == ["2:3: more than 1000 rules"]


def test_unknown_needs(tmp_path):
    got = one_rule("    needs: [qmp_event:STOP, vm_stopp]\n    absent: {what: {event: A}}\n", tmp_path)
    assert got == ["8:29: unknown kind 'vm_stopp'; kinds: " + ", ".join(__import__("tracer.schema").schema.KINDS)]


def test_integers_out_of_range(tmp_path):
    got = one_rule("    absent:\n      what: {event: BLOCK_IO_ERROR, errno: 100000000000000000000000}\n", tmp_path)
    assert got == ["9:44: errno 100000000000000000000000 is out of range (0 to 2147483647)"]
