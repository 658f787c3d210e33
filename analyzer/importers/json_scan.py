"""Fast strict JSON for one line: the importers parse millions of small documents.

``json.loads`` spends, per call, more time in its Python layers (type checks, the decoder
object, the whitespace regex) than a short QMP message costs to scan. Every line of an
import goes through here, so these call the C scanner that ``json`` itself uses directly,
with the same strictness (one document, nothing after it) and the same `json.JSONDecodeError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

#: ``scan_string(text, end) -> (string, index after its closing quote)``: the C JSON string
#: decoder, for `end` just after an opening quote (a transcript record's ``"line"`` field).
scan_string: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


def _document_parser(decoder: json.JSONDecoder) -> Callable[[str], Any]:
    """A strict one-document JSON parser without json.loads' per-call Python layers."""
    scan = decoder.scan_once

    def parse(text: str) -> Any:
        try:
            obj, end = scan(text, 0)
        except StopIteration as exc:
            raise json.JSONDecodeError("Expecting value", text, exc.value) from None
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
        return obj

    return parse


#: Parse one JSON document (no surrounding whitespace).
parse_json = _document_parser(json.JSONDecoder())
#: The same, keeping numbers with a fraction as their text (exact transcript times).
parse_json_exact = _document_parser(json.JSONDecoder(parse_float=str))
