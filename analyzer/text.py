"""Making text that came from a trace safe to show.

Device and thread names, QMP payloads and log lines are attacker-controlled as far as we are
concerned: they may hold rich markup (``[red]``), ANSI escape sequences or HTML. Everything
printed from a trace passes through :func:`printable` (control characters become visible
escapes); the terminal layer also escapes rich markup (:func:`terminal`), the Markdown renderer
uses :func:`markdown_cell`, and HTML relies on Jinja2's autoescape.
"""

from __future__ import annotations

import re

from rich.markup import escape as _rich_escape

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape_char(m: re.Match[str]) -> str:
    code = ord(m.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object) -> str:
    """`value` as text with every control / bidi character shown as a visible escape."""
    text = "" if value is None else str(value)
    return _CONTROL.sub(_escape_char, text.replace("\n", "\\n").replace("\t", "\\t"))


def terminal(value: object) -> str:
    """`value` made safe for a rich console string: printable, with markup escaped."""
    return _rich_escape(printable(value))


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~&])")


def markdown_cell(value: object) -> str:
    """`value` made safe for a Markdown table cell or paragraph (no HTML, no links, no pipes)."""
    return _MD_SPECIAL.sub(r"\\\1", printable(value))
