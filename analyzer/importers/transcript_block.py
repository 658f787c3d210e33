"""A block of a capture client's transcript read in bulk: the records of polls, taken apart with numpy.

The capture client writes each record as ``{"t": SECONDS.FRACTION, "dir": "send"|"recv",
"line": "MESSAGE"}``, the message JSON-escaped, and QEMU puts a message's id last: most
records are ``...\\"id\\": 12}"}`` where everything before ``, \\"id\\": `` (the *head*) is
one of the few commands and replies management polls with. `TranscriptBlock` finds, in every
line of a block at once, the records of that exact layout with a decimal id, and reads their
time, head and id:

- the fixed parts are compared byte by byte at their offsets (numpy gathers);
- the time's digits and the id's are read by `byte_words` (no Python int per line);
- heads become one Arrow string array, dictionary-encoded: a block's distinct heads are few,
  and each is judged once, by the caller (`qmp`), with the line-by-line reader's own rules.

A line of any other layout (spaces, a ``\\r``, an id that is a string or has more than 16
digits, a time beyond int64 ns) is simply not taken: the caller reads it one by one, as it
always did.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analyzer.importers.byte_lines import ByteLines
from analyzer.importers.byte_words import ByteWords
from analyzer.importers.json_scan import scan_string

_PREFIX = b'{"t": '
_DIR = ', "dir": "'
_LINE = b'", "line": "'
_ID = b', \\"id\\": '
_END = b'}"}'
_STAMP = b'{\\"timestamp\\": {\\"seconds\\": '
_USEC = b', \\"microseconds\\": '
_STAMP_END = b"}, "
#: Seconds beyond which seconds * 10^9 + fraction leaves int64.
_MAX_SECONDS = ((1 << 63) - 1) // 1_000_000_000 - 1
_MAX_TIME = 20  # "SSSSSSSSSS.FFFFFFFFF"
_POWERS = np.array([10 ** (9 - k) for k in range(10)], dtype=np.int64)


class TranscriptBlock:
    """The records of a block in the capture client's layout (`taken`), with their values."""

    def __init__(self, lines: ByteLines) -> None:
        words = ByteWords(lines.block)
        starts, ends = lines.starts, lines.ends
        array = lines.array()
        dir_at = pc.find_substring(array, _DIR).to_numpy().astype(np.int64)
        time_len = dir_at - len(_PREFIX)
        body = starts + dir_at + len(_DIR) + 4 + len(_LINE)
        ok = (time_len >= 1) & (time_len <= _MAX_TIME) & (ends - body >= len(_ID) + 1 + len(_END) + 1)

        def at(offsets: np.ndarray) -> np.ndarray:  # (offsets of the lines still in the running)
            return np.where(ok, offsets, 0)

        ok &= words.equal(at(starts), _PREFIX) & words.equal(at(ends - len(_END)), _END)
        direction = at(starts + dir_at + len(_DIR))
        ok &= (words.equal(direction, b"send") | words.equal(direction, b"recv")) & words.equal(direction + 4, _LINE)

        # the time: 1-10 digits, then optionally a dot and 1-9 digits (the line's first dot,
        # if it comes before "dir")
        time_at = starts + len(_PREFIX)
        dot = pc.find_substring(array, ".").to_numpy().astype(np.int64) - len(_PREFIX)
        has_dot = (dot >= 0) & (dot < time_len)
        whole = np.where(has_dot, dot, time_len)
        fraction = np.where(has_dot, time_len - dot - 1, 0)
        ok &= (whole >= 1) & (whole <= 10) & (~has_dot | (fraction >= 1)) & (fraction <= 9)
        whole, fraction = np.where(ok, whole, 0), np.where(ok, fraction, 0)
        ok &= words.digits(at(time_at + whole), whole) & words.digits(at(time_at + time_len), fraction)
        seconds = words.long_number(at(time_at + whole), np.where(ok, whole, 0))
        ok &= seconds <= _MAX_SECONDS
        frac = words.long_number(at(time_at + time_len), np.where(ok, fraction, 0))
        time_ns = seconds * 1_000_000_000 + frac * _POWERS[fraction]
        self._events(words, np.flatnonzero(ok & words.equal(at(body), _STAMP)), body, ends, time_ns)

        # the id: 1-16 digits (no leading zero) between ', \"id\": ' and the end, found in
        # the record's last bytes
        id_end = ends - len(_END)
        ok, head_end, id_len = words.trailing_id(body, id_end, _ID, ok)
        id_at = head_end + len(_ID)

        taken = np.flatnonzero(ok)
        #: Indices (in the block) of the records taken, and per record its values.
        self.taken = taken
        self.ts = time_ns[taken]
        self.id = words.long_number(id_end[taken], id_len[taken])
        encoded = words.views(body[taken], head_end[taken]).dictionary_encode()  # (heads not copied)
        #: Per record its head's index in `heads` (the head as escaped in the record).
        self.head = encoded.indices.to_numpy().astype(np.int64)
        self.heads: list[str] = encoded.dictionary.to_pylist()
        #: Per head, the head as QMP sent it (unescaped; None: no JSON string's start).
        self.sent_heads = [_unescaped(h) for h in self.heads]
        #: Per record its message text: the head as sent, then ``, "id": N}``.
        self.payloads = pc.binary_join_element_wise(
            pa.array([h or "" for h in self.sent_heads], pa.string()).take(encoded.indices), ', "id": ',
            words.strings(id_at[taken], id_end[taken]), "}", "",
        )

    def _events(self, words: ByteWords, candidates: np.ndarray, body: np.ndarray, ends: np.ndarray, time_ns: np.ndarray) -> None:
        """The event records among `candidates` (whose message starts with its timestamp):
        ``{\\"timestamp\\": {\\"seconds\\": S, \\"microseconds\\": U}, REST``, S of 1-16
        digits and U of 1-7, neither with a leading zero (JSON refuses one)."""
        sec_at = body[candidates] + len(_STAMP)
        end = ends[candidates] - len(_END) + 1  # (the message's last byte, its closing brace, is REST's)
        sec_len = pc.find_substring(words.strings(sec_at, np.maximum(end, sec_at)), _USEC.decode()).to_numpy().astype(np.int64)
        ok = (sec_len >= 1) & (sec_len <= 16)
        sec_len = np.where(ok, sec_len, 0)
        ok &= words.digits(sec_at + sec_len, sec_len) & ((sec_len == 1) | ~words.equal(sec_at, b"0"))
        usec_at = sec_at + sec_len + len(_USEC)
        usec_len = words.digit_run(np.where(ok, usec_at, 0), 8)
        rest_at = usec_at + usec_len + len(_STAMP_END)
        ok &= (usec_len >= 1) & (usec_len <= 7) & ((usec_len == 1) | ~words.equal(usec_at, b"0"))
        ok &= words.equal(np.where(ok, usec_at + usec_len, 0), _STAMP_END) & (end > rest_at)
        k = np.flatnonzero(ok)
        #: Indices (in the block) of the event records taken, and per record its values.
        self.event_taken = candidates[k]
        self.event_ts = time_ns[self.event_taken]
        self.event_seconds = words.long_number(sec_at[k] + sec_len[k], sec_len[k])
        self.event_micros = words.number(usec_at[k] + usec_len[k], usec_len[k])
        encoded = words.views(rest_at[k], end[k]).dictionary_encode()
        #: Per event record the index in `rests` of what follows its timestamp (as escaped).
        self.event_rest = encoded.indices.to_numpy().astype(np.int64)
        self.rests: list[str] = encoded.dictionary.to_pylist()


def _unescaped(head: str) -> str | None:
    """`head` (the escaped inside of a JSON string, up to a point between two escapes)
    unescaped, or None if it is not one."""
    try:
        value, end = scan_string(f'"{head}"', 1)
    except ValueError:
        return None
    return value if end == len(head) + 2 else None


__all__ = ["TranscriptBlock"]
