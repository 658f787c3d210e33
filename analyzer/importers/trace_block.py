"""A block of QEMU trace-log lines read in bulk: thread, time, event name and payload of every
plain line at once, with numpy and Arrow instead of a Python loop.

A QEMU trace log is mostly events no rule interprets (``blk_co_preadv``, ``virtio_blk_req_complete``,
``monitor_suspend``...): each becomes a ``trace_event`` row with its arguments as payload. Read
one line at a time, each costs a few microseconds of Python; a day of block tracing is
hundreds of millions of lines. `TraceBlock` reads the lines of a block that have the shape
QEMU prints with ``-msg timestamp=on`` (``qemu_log("%d@%zu.%06zu:", tid, sec, usec)``: a
TID of at most 8 digits, 10 digits of seconds, 6 of microseconds, an ASCII identifier, then
a space and the arguments) all at once:

- the shape is checked at fixed offsets from each line's first ``@`` (digits eight at a
  time, two punctuation bytes), and the name once per distinct name;
- numbers are read eight digits at a time from 64-bit words at any byte offset (a strided
  view of the block; "SWAR" digit parsing), never through Python ints;
- event names are fingerprinted by the 64-bit words they span; each distinct name is decoded
  once, and every line is checked word for word against its name's first line;
- payloads (``{"args": "..."}``) are built by Arrow from string views into the block.

Any line not in exactly that shape -- no timestamp, a longer TID, a control character in its
arguments (a tab), a time beyond int64 ns -- is left to the
line-by-line parser (`qemu_log`), which reads it as it always did: the bulk path is only
ever a faster way to the same rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analyzer.importers.byte_lines import ByteLines
from analyzer.importers.byte_words import PAD, U64, ByteWords, low_mask

#: An event name: what follows ``TID@SECONDS.MICROS:`` up to a space or the end of the line
#: (its ``\\r`` in a CRLF file) in the shape read in bulk.
_NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
#: Longer names (none of QEMU's trace events) are left to the line-by-line reader.
_MAX_NAME = 128
#: Seconds beyond which seconds * 10^9 + micros * 1000 leaves int64.
_MAX_SECONDS = ((1 << 63) - 1) // 1_000_000_000 - 1
#: A poll's id key as QEMU writes it.
_POLL_ID = b', "id": '


@dataclass
class PollMessages:
    """The poll messages `TraceBlock.messages` found: per message its index among the lines
    asked about, head (the text before its id key: an index into `heads`), id and text."""

    taken: np.ndarray
    head: np.ndarray
    heads: list[str]
    id: np.ndarray
    texts: pa.Array


class TraceBlock:
    """The plain lines of one block (`plain`) with their TID, time, name and payload pieces."""

    def __init__(self, lines: ByteLines, crlf: bool) -> None:
        self.lines = lines
        block = lines.block
        self._words = ByteWords(block)
        line_array = lines.array()
        shaped, at, tid, seconds, micros = self._stamped(pc.find_substring(line_array, "@").to_numpy().astype(np.int64))
        starts, ends = lines.starts[shaped], lines.ends[shaped]
        if crlf:
            data = np.frombuffer(block, dtype=np.uint8)
            filled = ends > starts
            cr = np.zeros(len(ends), dtype=bool)
            cr[filled] = data[ends[filled] - 1] == 13
            ends = ends - cr
        name_start = starts + at + 19
        space = pc.find_substring(line_array, " ").to_numpy()[shaped].astype(np.int64)
        name_end = np.where(space >= 0, starts + space, ends)
        args_start = np.where(space >= 0, starts + space + 1, ends)
        keep = (seconds <= _MAX_SECONDS) & ~self._control(crlf)[shaped] & (name_end - name_start <= _MAX_NAME)
        name_end = np.where(keep, name_end, name_start)  # (a name too long is not fingerprinted)
        codes, names, agree = self._names(name_start, name_end)
        keep &= agree
        k = np.flatnonzero(keep)
        #: Indices (in the block) of the plain lines, and per plain line its values.
        self.plain = shaped[k]
        self.tid = tid[k]
        self.ts = seconds[k] * 1_000_000_000 + micros[k] * 1000
        self.codes = codes[k]
        #: The distinct event names (`codes` index them).
        self.names = names
        self._args = (args_start[k], ends[k])

    def _stamped(self, at: np.ndarray) -> tuple[np.ndarray, ...]:
        """The lines that start ``TID@SECONDS.MICROS:`` and then at least a byte (a TID of 1-8
        digits, 10 of seconds, 6 of microseconds), with where their ``@`` is and their TID,
        seconds and microseconds; from where each line's first ``@`` is (-1: none)."""
        lines, number = self.lines, self._words.checked_number
        candidate = np.flatnonzero((at >= 1) & (at <= 8) & (lines.ends - lines.starts >= at + 20))
        start, at = lines.starts[candidate], at[candidate]
        data = np.frombuffer(lines.block, dtype=np.uint8)
        ok = (data[start + at + 11] == ord(".")) & (data[start + at + 18] == ord(":"))
        tid, tid_ok = number(start + at, at)
        low, low_ok = number(start + at + 11, 8)
        high, high_ok = number(start + at + 3, 2)
        micros, micros_ok = number(start + at + 18, 6)
        k = np.flatnonzero(ok & tid_ok & low_ok & high_ok & micros_ok)
        return candidate[k], at[k], tid[k], low[k] + high[k] * 100_000_000, micros[k]

    def _control(self, crlf: bool) -> np.ndarray:
        """Whether each line of the block holds a control character (but its newline and, in a
        CRLF file, its final ``\\r``): JSON escapes it as ``\\uXXXX`` or ``\\n``, which the
        line-by-line parser writes. (``"`` and ``\\`` are escaped here, `payloads`.)"""
        lines = self.lines
        data = np.frombuffer(lines.block, dtype=np.uint8)
        control = data < 32
        if np.count_nonzero(control) == len(lines) - 1:
            return np.zeros(len(lines), dtype=bool)  # the newlines only
        control[data == 10] = False
        if crlf:
            filled = lines.ends > lines.starts
            last = lines.ends[filled] - 1
            control[last[data[last] == 13]] = False
        out = np.zeros(len(lines), dtype=bool)
        inside = lines.starts < len(data)
        if len(data):
            out[inside] = np.logical_or.reduceat(control, lines.starts[inside])
        return out & (lines.ends > lines.starts)

    def _names(self, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, list[str], np.ndarray]:
        """(code per line, distinct names, whether each line's name is one -- an identifier,
        ``""`` in `names` when not -- and equals its code's name)."""
        length = end - start
        if not len(start):
            return np.zeros(0, np.int64), [], np.zeros(0, bool)
        words = []
        fingerprint = length.astype(np.uint64)
        for offset in range(0, int(length.max()), 8):
            at = np.minimum(start + offset + PAD, len(self._words.words) - 1)  # (past a name: masked out)
            w = self._words.words[at] & low_mask(np.clip(length - offset, 0, 8))
            words.append(w)
            fingerprint = (fingerprint * U64(0x100000001B3)) ^ w
        # codes in order of first appearance (Arrow's hash encoding numbers values as it meets them)
        codes = pa.array(fingerprint).dictionary_encode().indices.to_numpy()
        seen = np.maximum.accumulate(codes)
        first = np.flatnonzero(np.concatenate(([True], seen[1:] > seen[:-1])))
        agree = length == length[first][codes]
        for w in words:
            agree &= w == w[first][codes]
        raw = [self.lines.block[start[i] : end[i]] for i in first.tolist()]
        named = np.array([_NAME.fullmatch(r) is not None for r in raw], dtype=bool)
        names = [r.decode("ascii") if ok else "" for r, ok in zip(raw, named.tolist(), strict=True)]
        return codes.astype(np.int64), names, agree & named[codes]

    def heads(self, pick: np.ndarray) -> tuple[list[bool], list[int], list[int], list[str], list[int]]:
        """Per line of the block `pick` (-1: not a plain line) whether it is plain, and if so
        its TID, time, name and where its arguments start in it: what the line-by-line reader
        would find (for the plain lines it still reads one by one, `qemu_log` handlers)."""
        known = pick >= 0
        at = np.where(known, pick, 0)
        if not len(self.plain):  # (no plain line: nothing is known)
            zeros = np.zeros(len(pick), dtype=np.int64).tolist()
            return known.tolist(), zeros, zeros, [""] * len(pick), zeros
        names = self.names
        return (
            known.tolist(), self.tid[at].tolist(), self.ts[at].tolist(),
            [names[c] for c in self.codes[at].tolist()],
            (self._args[0][at] - self.lines.starts[self.plain[at]]).tolist(),
        )

    def line_numbers(self, pick: np.ndarray) -> np.ndarray:
        """The numbers (1-based, in the block) of the plain lines `pick`."""
        return self.plain[pick] + 1

    def contains(self, pick: np.ndarray, literal: str) -> np.ndarray:
        """Whether each of the plain lines `pick` contains `literal`."""
        picked = self.lines.array().take(pa.array(self.plain[pick]))
        return pc.match_substring(picked, literal).to_numpy(zero_copy_only=False)

    def requests(self, pick: np.ndarray) -> tuple[pa.Array, np.ndarray]:
        """The request pointer of each plain ``virtio_blk_handle_*`` line `pick` (the word after
        its first ``req ``), and whether it has one."""
        at = self.plain[pick]
        found = pc.find_substring(self.lines.array().take(pa.array(at)), "req ").to_numpy().astype(np.int64)
        has = found >= 0
        end = self._args[1][pick]
        start = np.where(has, self.lines.starts[at] + found + 4, end)
        data = np.frombuffer(self.lines.block, dtype=np.uint8)
        spaces = np.flatnonzero(data == 32)
        after = np.searchsorted(spaces, start)
        next_space = np.where(after < len(spaces), spaces[np.minimum(after, max(len(spaces) - 1, 0))] if len(spaces) else end, end)
        stop = np.minimum(next_space, end)
        return self._words.strings(start, np.maximum(stop, start)), has

    def messages(self, pick: np.ndarray, marker: str, most: int) -> PollMessages:
        """The QMP messages of the plain lines `pick` (``handle_qmp_command``'s after ``req: ``,
        ``monitor_qmp_respond``'s after ``resp: ``, `marker` with its spaces) in the shape of
        a management poll: everything after the line's first marker, `most` bytes at most,
        from ``{`` to a last ``}`` right after ``, "id": N`` (N 1-16 digits, no leading
        zero). Lines in any other shape are for the line-by-line reader."""
        at = self.plain[pick]
        words = self._words
        found = pc.find_substring(self.lines.array().take(pa.array(at)), marker).to_numpy().astype(np.int64)
        body = self.lines.starts[at] + found + len(marker)
        end = self._args[1][pick]
        ok = (found >= 0) & (end - body >= len(_POLL_ID) + 3) & (end - body <= most)

        def where(offsets: np.ndarray) -> np.ndarray:  # (offsets of the lines still in the running)
            return np.where(ok, offsets, 0)

        ok &= words.equal(where(body), b"{") & words.equal(where(end - 1), b"}")
        id_end = end - 1
        ok, head_end, id_len = words.trailing_id(body, id_end, _POLL_ID, ok)
        taken = np.flatnonzero(ok)
        heads = words.views(body[taken], head_end[taken]).dictionary_encode()  # (heads not copied)
        return PollMessages(
            taken=taken, head=heads.indices.to_numpy().astype(np.int64), heads=heads.dictionary.to_pylist(),
            id=words.long_number(id_end[taken], id_len[taken]), texts=words.strings(body[taken], end[taken]),
        )

    def payloads(self, pick: np.ndarray) -> pa.Array:
        """``{"args": "<arguments>"}`` of the plain lines `pick`, as `json.encoder`'s
        ``encode_basestring`` writes it: their arguments hold no control character, so JSON
        escapes only their backslashes and quotes."""
        args = self._words.strings(self._args[0][pick], self._args[1][pick])
        if b"\\" in self.lines.block:
            args = pc.replace_substring(args, "\\", "\\\\")
        if b'"' in self.lines.block:
            args = pc.replace_substring(args, '"', '\\"')
        return pc.binary_join_element_wise('{"args": "', args, '"}', "")


__all__ = ["PollMessages", "TraceBlock"]
