"""A rule file is data: hostile YAML is a one-line error naming file:line:col, never a hang or
an object of an arbitrary type."""

from __future__ import annotations

import pytest

from analyzer.lang import RuleFileError, compile_file, lint
from analyzer.lang.loader import MAX_BYTES, MAX_DEPTH, load_text
from tracer.errors import InputError

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def problems(text: str, tmp_path) -> list[str]:
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    return lint(path)


@pytest.mark.timeout(10)
def test_billion_laughs_is_refused_at_the_first_anchor(tmp_path):
    assert problems(BILLION_LAUGHS, tmp_path) == [
        f"{tmp_path / 'r.yaml'}:1:4: YAML anchors are not allowed in a rule file (use macros or lists)"
    ]


def test_an_alias_without_anchor_is_refused(tmp_path):
    got = problems("rules: *x\n", tmp_path)
    assert len(got) == 1 and got[0].startswith(f"{tmp_path / 'r.yaml'}:1:8: ")


@pytest.mark.timeout(10)
def test_deep_nesting_is_an_error_not_a_recursion_crash(tmp_path):
    got = problems("a: " + "[" * 10_000 + "]" * 10_000 + "\n", tmp_path)
    assert got == [f"{tmp_path / 'r.yaml'}:1:{4 + MAX_DEPTH - 1}: nested deeper than {MAX_DEPTH} levels"]


def test_a_huge_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * (MAX_BYTES + 1))
    assert lint(path) == [f"{path}:1:1: larger than {MAX_BYTES} bytes: a rule file this big is refused"]


@pytest.mark.parametrize("text, where, what", [
    ("a: !!python/object/apply:os.system ['true']\n", "1:4", "tag tag:yaml.org,2002:python/object/apply:os.system is not allowed"),
    ("a: 2001-01-01\n", "1:4", "tag tag:yaml.org,2002:timestamp is not allowed"),
    ("a: !custom x\n", "1:4", "tag !custom is not allowed"),
    ("a: 1\nb: 2\na: 3\n", "3:1", "key 'a' given twice (first at"),
    ("base: {x: 1}\nother:\n  <<: {x: 2}\n", "3:3", "YAML merge keys are not allowed"),
    ("a: [1, 2\n", "2:1", "not valid YAML"),
])
def test_non_data_yaml_names_its_position(tmp_path, text, where, what):
    got = problems(text, tmp_path)
    assert len(got) == 1
    assert got[0].startswith(f"{tmp_path / 'r.yaml'}:{where}: {what}")


def test_not_utf8(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_bytes(b"rules: [\xff]\n")
    assert lint(path) == [f"{path}:1:1: not UTF-8 text (byte 8)"]


def test_a_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read rule file"):
        compile_file(tmp_path / "nope.yaml")


def test_errors_are_input_errors_with_one_line():
    with pytest.raises(RuleFileError) as exc:
        load_text("a: &x 1\n", "f.yaml")
    assert isinstance(exc.value, InputError)
    assert "\n" not in str(exc.value) and exc.value.exit_code == 2


def test_positions_are_kept_for_every_value():
    tree = load_text("rules:\n  - id: x\n    title: 'y'\n", "f.yaml")
    rule = tree.value["rules"].value[0]
    assert str(rule.value["title"].loc) == "f.yaml:3:12"
    assert str(rule.keys["title"]) == "f.yaml:3:5"


@pytest.mark.timeout(60)
def test_too_many_values_is_refused_while_composing(tmp_path):
    from analyzer.lang.loader import MAX_NODES

    got = problems("a: [" + ",".join(["1"] * (MAX_NODES + 10)) + "]\n", tmp_path)
    assert len(got) == 1
    assert got[0].endswith(f"more than {MAX_NODES} values: a rule file this big is refused")
