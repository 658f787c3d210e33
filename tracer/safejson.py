"""JSON from untrusted input, parsed with bounds: size, nesting depth, finite numbers, real text.

Python's :func:`json.loads` accepts things that crash whoever uses the result later or the
parser itself: ``1e400`` becomes ``inf`` (then ``int(inf)`` raises OverflowError), ``NaN`` and
``Infinity`` are accepted, a lone surrogate escape ``"\\ud800"`` becomes a string that cannot
be encoded as UTF-8 (Arrow, ``print``), and 100,000 nested brackets raise RecursionError (not
a ValueError). :func:`loads` turns every one of these into :class:`JSONBoundError`, a
``ValueError``, so code that already handles malformed JSON (``except ValueError``) handles
hostile JSON the same way, with one line saying what is wrong.

The cost on well-formed input is one C-level count of brackets (and, only when the text holds
``\\u`` escapes, a walk over its strings).
"""

from __future__ import annotations

import json
import math

from tracer.errors import JSONBoundError

#: Default nesting limit: far above any manifest, QMP message or transcript record.
MAX_DEPTH = 64
#: Default size limit of one JSON text, in characters.
MAX_CHARS = 64 << 20


def reject_constant(name: str) -> float:
    """``parse_constant`` hook: NaN and Infinity are not JSON numbers a trace may hold."""
    raise JSONBoundError(f"non-finite number {name}")


def finite_float(text: str) -> float:
    """``parse_float`` hook: a float that overflows (``1e400``) is refused, not read as inf."""
    value = float(text)
    if not math.isfinite(value):
        raise JSONBoundError(f"number out of range: {text[:40]}")
    return value


_DECODER = json.JSONDecoder(parse_float=finite_float, parse_constant=reject_constant)


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH, max_chars: int = MAX_CHARS) -> object:
    """Parse `text` as JSON within the bounds; raises :class:`JSONBoundError` (a ValueError)
    for anything outside them and ValueError for malformed JSON, never anything else."""
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONBoundError(f"not UTF-8 (byte {exc.start})") from None
    if len(text) > max_chars:
        raise JSONBoundError(f"JSON text too large ({len(text):,} characters; limit {max_chars:,})")
    # Brackets inside strings count too: an over-estimate that only costs the exact walk below.
    brackets = text.count("[") + text.count("{")
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise JSONBoundError(f"nested deeper than {max_depth} levels") from None
    except OverflowError as exc:  # an integer literal too long for int(), or similar
        raise JSONBoundError(f"number out of range ({exc})") from None
    if brackets > max_depth or "\\u" in text:
        check_tree(value, max_depth, check_strings="\\u" in text)
    return value


def check_tree(value: object, max_depth: int, *, check_strings: bool) -> None:
    """Depth and string check of a parsed value, iteratively (no recursion on hostile input);
    JSONBoundError when it is nested deeper than `max_depth` or (`check_strings`) holds a lone
    surrogate. Public for parsers that scan JSON themselves (`analyzer.importers.json_scan`)."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth >= max_depth:
                raise JSONBoundError(f"nested deeper than {max_depth} levels")
            for key, item in node.items():
                if check_strings:
                    check_text(key)
                stack.append((item, depth + 1))
        elif isinstance(node, list):
            if depth >= max_depth:
                raise JSONBoundError(f"nested deeper than {max_depth} levels")
            stack.extend((item, depth + 1) for item in node)
        elif check_strings and isinstance(node, str):
            check_text(node)


def check_text(text: str) -> None:
    """JSONBoundError when `text` holds a lone surrogate (it cannot be written as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise JSONBoundError(
            f"string holds a lone surrogate escape (\\u{ord(text[exc.start]):04x})"
        ) from None

