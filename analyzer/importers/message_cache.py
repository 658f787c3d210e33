"""Parsing each QMP poll once: a cache of commands and replies by everything but their id.

Management polls: a capture is mostly the same few commands and replies (``query-block``
returning the same kilobyte of JSON), differing only in their trailing ``"id"``. Parsing and
interpreting each of them again would cost most of an import's time; `MessageCache` parses a
command or reply once per shape (`Shape`), and a `Shape` keeps what it means once worked out
(`Shape.meaning`), so that the thousandth identical reply costs no more than its row appends.

This module knows only where a QMP message keeps its id; what the messages mean is
`analyzer.importers.qmp_semantics`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from analyzer.importers.json_scan import parse_json

T = TypeVar("T")


class Shape:
    """A command or reply but for its id: what it says, parsed once while management polls."""

    __slots__ = ("_meanings", "command", "failed", "msg", "name", "ret")
    #: How many meanings (one per command name the reply answers) a shape keeps.
    MAX_MEANINGS = 8

    def __init__(self, msg: dict, command: bool) -> None:
        #: The first message of this shape (its "id" is that message's; only the rest is read).
        self.msg = msg
        self.command = command
        name = msg.get("execute", msg.get("exec-oob")) if command else None
        self.name: str | None = name if isinstance(name, str) else None
        self.failed = "error" in msg
        self.ret = msg.get("return")
        self._meanings: dict[str | None, Any] = {}

    def meaning(self, name: str | None, interpret: Callable[[str | None, Any], T]) -> T:
        """``interpret(name, self.ret)``, worked out once per `name`: a reply means what the
        command it answers (named `name`) asked for."""
        found = self._meanings.get(name)
        if found is None:
            found = interpret(name, self.ret)
            if len(self._meanings) < self.MAX_MEANINGS:
                self._meanings[name] = found
        return found


class MessageCache:
    """Parse QMP messages, reusing the `Shape` of a reply or command seen before but for its id.

    QEMU and libvirt put the id last, so the text before ``, "id": `` (libvirt's compact
    ``,"id":``) identifies the rest of the message; a message whose id is not last, or whose
    tail is no JSON value, is simply parsed in full. (Inside a JSON string every quote is
    escaped, so ``, "id": `` can only be a key; and a tail that is one JSON value right before
    the last ``}`` means the key is a top-level one.) Bounded: messages up to `MAX_TEXT`
    characters, at most `LIMIT` shapes (then it starts over). A shape is what a message says,
    not a verdict on it: whoever uses one judges the message again (`QmpState.known`).
    """

    LIMIT = 4096
    MAX_TEXT = 16384
    _STARTS = ('{"return"', '{"execute"', '{"error"')

    def __init__(self) -> None:
        self._cache: dict[str, Shape] = {}
        #: The same heads as a transcript record escapes them: head as in the record ->
        #: (shape, head as QMP sent it), so that a repeated record skips unescaping too.
        self._escaped: dict[str, tuple[Shape, str]] = {}

    def lookup(self, text: str) -> tuple[Shape, Any] | None:
        """(shape, QMP id) of a command or reply whose shape was seen before, else None."""
        if len(text) > self.MAX_TEXT or not text.startswith(self._STARTS) or text[-1] != "}":
            return None
        cut, tail_at = _id_key_at(text)
        if cut <= 0:
            return None
        shape = self._cache.get(text[:cut])
        if shape is None:
            return None
        tail = text[tail_at:-1]
        if tail.isdigit() and tail.isascii() and len(tail) <= 20 and (tail[0] != "0" or len(tail) == 1):
            return shape, int(tail)  # the usual counter id, without the JSON scanner
        if _plain_string(tail):
            return shape, tail[1:-1]  # libvirt's "libvirt-N", likewise
        try:
            return shape, parse_json(tail)
        except ValueError:
            return None

    def lookup_record(self, record: str, start: int) -> tuple[Shape, int, str] | None:
        """(shape, id, message text) of a transcript record whose "line" string opens at `start`,
        when it is a command or reply of a known shape with a counter id, else None.

        The record must end with that string (``...\\"id\\": 12}"}``). A known escaped head is
        a valid string prefix ending between two escapes (`remember_record` took it from a
        record unescaped in full, where ``, \\"`` followed it), so head + id is a valid string.
        """
        if not record.endswith('}"}'):
            return None
        cut = record.rfind(', \\"id\\": ', start)
        if cut < 0:
            return None
        known = self._escaped.get(record[start:cut])
        if known is None:
            return None
        tail = record[cut + 10 : -3]
        if not (tail.isdigit() and tail.isascii() and len(tail) <= 20 and (tail[0] != "0" or len(tail) == 1)):
            return None  # (a 5,000-digit id is for the full parser to refuse)
        return known[0], int(tail), f'{known[1]}, "id": {tail}}}'

    def remember_record(self, record: str, start: int, text: str) -> None:
        """After `text` was unescaped from `record` (see `lookup_record`): remember its head."""
        if not record.endswith('}"}') or len(record) > 2 * self.MAX_TEXT:
            return
        cut = record.rfind(', \\"id\\": ', start)
        if cut < 0:
            return
        tail = record[cut + 10 : -3]
        id_text = f', "id": {tail}}}'
        if not (tail.isdigit() and tail.isascii() and text.endswith(id_text)):
            return
        head = text[: len(text) - len(id_text)]
        shape = self._cache.get(head)
        if shape is not None:
            if len(self._escaped) >= self.LIMIT:
                self._escaped.clear()
            self._escaped[record[start:cut]] = (shape, head)

    def shape_of_head(self, head: str) -> Shape | None:
        """The shape of the messages whose text before ``, "id": `` is `head`, if seen."""
        return self._cache.get(head)

    def known_head(self, escaped: str) -> tuple[Shape, str] | None:
        """(shape, head as QMP sent it) of a head as a transcript record escapes it, if
        `remember_record` remembered it."""
        return self._escaped.get(escaped)

    def parse(self, text: str) -> Any:
        """Parse one message in full, remembering its shape if it is a command or reply."""
        msg = parse_json(text)
        if (
            isinstance(msg, dict)
            and "id" in msg
            and "event" not in msg
            and len(text) <= self.MAX_TEXT
            and text.startswith(self._STARTS)
            and text[-1] == "}"
        ):
            cut = _id_key_at(text)[0]
            reply = "return" in msg or "error" in msg
            if cut > 0 and (reply or "execute" in msg or "exec-oob" in msg):
                if len(self._cache) >= self.LIMIT:
                    self._cache.clear()
                self._cache[text[:cut]] = Shape(msg, command=not reply)
        return msg


def _plain_string(text: str) -> bool:
    """Whether `text` is a JSON string without escapes (printable ASCII between its quotes),
    whose value is what lies between them."""
    return (
        len(text) >= 2 and text[0] == '"' == text[-1] and text.isascii() and text.isprintable()
        and '"' not in text[1:-1] and "\\" not in text
    )


def _id_key_at(text: str) -> tuple[int, int]:
    """Where the last ``"id"`` key of `text` starts (its comma) and where its value starts:
    ``, "id": `` as QEMU writes it, or ``,"id":`` as libvirt does (compact JSON), whichever
    comes last; (-1, -1) if neither is there."""
    spaced = text.rfind(', "id": ')
    compact = text.rfind(',"id":', spaced + 1)  # (only one after the spaced key can come last)
    if spaced < 0 and compact < 0:
        return -1, -1
    return (spaced, spaced + 8) if spaced > compact else (compact, compact + 6)
