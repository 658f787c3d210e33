"""`--help` of every command reads well on an 80-column terminal: no Python type labels
(``<bool>``, ``<str>``, ``<list[Path]>``), closed choices shown, nothing wider than the screen."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from analyzer.cli.app import app


def _commands() -> list[list[str]]:
    root = typer.main.get_command(app)
    out = [[]]
    for name, cmd in sorted(root.commands.items()):
        out.append([name])
        for sub in sorted(getattr(cmd, "commands", {})):
            out.append([name, sub])
    return out


COMMANDS = _commands()


def _help(args: list[str]) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "80", "TERM": "dumb"},
                                terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_listed() -> None:
    names = {tuple(c) for c in COMMANDS}
    assert {("check",), ("replay",), ("report",), ("import",), ("record",), ("capture",),
            ("rules",), ("rules", "lint")} <= names


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "blkreplay")
def test_help_at_80_columns_has_no_type_labels(args: list[str]) -> None:
    text = _help(args)
    assert not re.search(r"<(bool|str|int|float|list\[\w+\]|Path|int range)>", text), text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_closed_choices_are_shown() -> None:
    assert "text|json|junit" in _help(["check"])
    assert "text|jsonl" in _help(["replay"])
    assert "html|md|json" in _help(["report"])


def test_replay_help_says_what_is_observed_and_what_is_inferred() -> None:
    text = " ".join(_help(["replay"]).split())
    assert "inferred from the events" in text and "observed" in text
    assert 'what "info block"' not in text
    for flag in ("--episode", "--event", "--nth", "--since", "--until"):
        assert flag in text


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "blkreplay")
def test_help_paragraphs_are_reflowed_not_ragged(args: list[str]) -> None:
    """A docstring's line breaks do not survive into the help: every line of a description
    paragraph but its last fills most of the 80 columns."""
    text = _help(args)
    description = text.split("╭")[0].splitlines()[3:]  # after the usage line
    paragraph: list[str] = []
    for line in [*description, ""]:
        if line.strip():
            paragraph.append(line.strip())
            continue
        for inner in paragraph[:-1]:
            assert len(inner) >= 55, (inner, text)
        paragraph = []
