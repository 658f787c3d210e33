"""`--help` that reads well: no ``<bool>`` / ``<str>`` type labels, a metavar for every value.

typer labels every parameter with its Python type (``--quiet <bool>``, ``--vm <str>``,
``paths... <list[Path]>``), which says nothing to a user and crowds an 80-column terminal.
The root group's class (:class:`HelpGroup`) tidies every command reachable from it once, when
click looks it up: a flag shows no value, an argument its metavar alone, and an option that
declares no metavar gets one from its type (``TEXT``, ``N``, ``X``, ``PATH``). Options whose
values are a closed set declare them as their metavar (``text|json|junit``). Help paragraphs
are reflowed to the terminal's width.
"""

from __future__ import annotations

import inspect
from typing import Any

from typer.core import TyperArgument, TyperGroup, TyperOption

_BY_TYPE = {"int": "N", "float": "X", "str": "TEXT", "Path": "PATH"}


def _no_type(ctx: Any) -> None:
    return None


def _tidy_param(param: Any) -> None:
    if isinstance(param, TyperOption):
        if param.is_flag or param.count:
            if param.metavar is None:
                param.metavar = ""
        elif param.metavar is None:
            bare = param.bare_type().split("[")[-1].rstrip("]").split(".")[-1]
            param.metavar = _BY_TYPE.get(bare, "VALUE")
    elif isinstance(param, TyperArgument):
        param.display_type_rich = _no_type  # the name column shows the metavar already


def reflow(text: str | None) -> str | None:
    """A docstring's paragraphs as single lines (typer's rich mode keeps the source's line
    breaks, which wrap into ragged fragments on a narrow terminal); a ``\\b`` paragraph (click's
    "keep as is") is kept."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)


def tidy(command: Any, ctx: Any) -> Any:
    """`command` (and, for a group, every command under it) with tidy help labels and
    reflowed help text."""
    if getattr(command, "_blkreplay_tidy", False):
        return command
    command.help = reflow(command.help)
    for param in command.params:
        _tidy_param(param)
    helper = command.get_help_option(ctx)
    if helper is not None:
        _tidy_param(helper)
    for sub in getattr(command, "commands", {}).values():  # a group: its commands too
        tidy(sub, ctx)
    command._blkreplay_tidy = True  # type: ignore[attr-defined]
    return command


class HelpGroup(TyperGroup):
    """The root group: every command it hands out has tidy help (see the module doc)."""

    def get_params(self, ctx: Any) -> list[Any]:
        tidy(self, ctx)
        return super().get_params(ctx)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        return tidy(command, ctx) if command is not None else None
