"""Fast strict bounded JSON for one line: the importers parse millions of small documents.

``json.loads`` spends, per call, more time in its Python layers (type checks, the decoder
object, the whitespace regex) than a short QMP message costs to scan. Every line of an
import goes through here, so these call the C scanner that ``json`` itself uses directly,
with the same strictness (one document, nothing after it) and the same `json.JSONDecodeError`.

The input is hostile until proven otherwise, so the parsers are bounded like
:func:`tracer.safejson.loads`: nesting deeper than `MAX_DEPTH` (100,000 brackets raise
RecursionError in the C scanner), ``NaN`` / ``Infinity``, floats that overflow (``1e400``)
and lone surrogate escapes (``"\\ud800"``, a string no UTF-8 writer can store) are all a
`tracer.errors.JSONBoundError`, a ValueError, so that every caller's ``except ValueError``
turns them into one bad line. The price on ordinary input is two C-level counts of brackets
and one substring test per document.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tracer.errors import JSONBoundError
from tracer.safejson import check_text, check_tree, finite_float, reject_constant

#: Deepest nesting accepted (QMP messages are a few levels deep; query-block about 6).
MAX_DEPTH = 64

#: ``scan_string(text, end) -> (string, index after its closing quote)``: the C JSON string
#: decoder, for `end` just after an opening quote (a transcript record's ``"line"`` field).
_scan_string: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


def scan_string(text: str, end: int) -> tuple[str, int]:
    """`_scan_string`, refusing a string that holds a lone surrogate (JSONBoundError)."""
    value, after = _scan_string(text, end)
    if not value.isascii():
        check_text(value)
    return value, after


def _finite_text(text: str) -> str:
    """A number with a fraction or exponent kept as its text, once it is known to be finite."""
    finite_float(text)
    return text


def _document_parser(decoder: json.JSONDecoder) -> Callable[[str], Any]:
    """A strict, bounded one-document JSON parser without json.loads' per-call Python layers."""
    scan = decoder.scan_once

    def parse(text: str) -> Any:
        try:
            obj, end = scan(text, 0)
        except StopIteration as exc:
            raise json.JSONDecodeError("Expecting value", text, exc.value) from None
        except RecursionError:
            raise JSONBoundError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
        except ValueError as exc:  # an integer of more than 4,300 digits, or a bound above
            if isinstance(exc, JSONBoundError | json.JSONDecodeError):
                raise
            raise JSONBoundError("JSON number out of range (too many digits)") from None
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
        escapes = "\\u" in text
        if escapes or text.count("[") + text.count("{") > MAX_DEPTH:
            try:
                check_tree(obj, MAX_DEPTH, check_strings=escapes)
            except JSONBoundError as exc:
                raise JSONBoundError(f"JSON {exc}" if "nested" in str(exc) else str(exc)) from None
        return obj

    return parse


_DECODER = json.JSONDecoder(parse_float=finite_float, parse_constant=reject_constant)
_EXACT = json.JSONDecoder(parse_float=_finite_text, parse_constant=reject_constant)

def json_error(exc: json.JSONDecodeError) -> str:
    """What the decoder said of a document it refused, for a bad line's message: its message
    and column (``Invalid control character at column 20``: Python's message for that one
    already ends in "at")."""
    return f"{exc.msg.removesuffix(' at')} at column {exc.colno}"


#: Parse one JSON document (no surrounding whitespace).
parse_json = _document_parser(_DECODER)
#: The same, keeping numbers with a fraction as their text (exact transcript times).
parse_json_exact = _document_parser(_EXACT)
