"""A block of bytes read as 64-bit words at any offset: numbers and strings of many lines at once.

The bulk readers (`trace_block`, `transcript_block`) know where each line's fields are (byte
offsets found with numpy and Arrow) and need their values without a Python loop:

- numbers are read eight ASCII digits at a time from the little-endian word that ends at
  them ("SWAR" digit parsing: three multiply-and-mask steps), never through Python ints;
- strings become Arrow string views into the block (a length and an offset per row, the
  first bytes inline), cast to a plain string array: one copy, by Arrow.

The block is padded on both sides so that a word may start before its first byte or end past
its last: every offset of the block, and a few around it, is a word.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PAD = 16
#: The most digits of an id read in bulk (`ByteWords.trailing_id`): every such id fits int64.
MAX_ID = 16
_ZEROS = np.uint64(0x3030303030303030)
_HIGH = np.uint64(0xF0F0F0F0F0F0F0F0)
_SIXES = np.uint64(0x0606060606060606)
U64 = np.uint64


def digits8(words: np.ndarray) -> np.ndarray:
    """The numbers that 8 ASCII digits make, one per little-endian word (first digit lowest)."""
    v = words - _ZEROS
    v = ((v * U64(10)) + (v >> U64(8))) & U64(0x00FF00FF00FF00FF)
    v = ((v * U64(100)) + (v >> U64(16))) & U64(0x0000FFFF0000FFFF)
    v = ((v * U64(10000)) + (v >> U64(32))) & U64(0x00000000FFFFFFFF)
    return v.astype(np.int64)


def _all_digits(words: np.ndarray) -> np.ndarray:
    """Whether each word's eight bytes are ASCII digits: a byte is one when its high nibble is
    3 both as it is and 6 higher (0x30..0x39)."""
    return ((words & _HIGH) == _ZEROS) & (((words + _SIXES) & _HIGH) == _ZEROS)


def low_mask(nbytes: np.ndarray) -> np.ndarray:
    """Words with the low `nbytes` bytes set (0..8)."""
    n = np.asarray(nbytes, dtype=np.uint64) * U64(8)
    full = n >= U64(64)
    return np.where(full, U64(0xFFFFFFFFFFFFFFFF), (U64(1) << np.where(full, U64(0), n)) - U64(1))


class ByteWords:
    """`block` as words: ``words[x + PAD]`` is the little-endian word of bytes x .. x+7."""

    __slots__ = ("block", "words")

    def __init__(self, block: bytes) -> None:
        self.block = block
        padded = bytes(PAD) + block + bytes(PAD)
        #: (a view: it keeps `padded` alive)
        self.words = np.ndarray(shape=(len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))

    def number(self, end: np.ndarray, ndigits: np.ndarray | int) -> np.ndarray:
        """The numbers of the `ndigits` (0..8) ASCII digits before each offset `end`."""
        return digits8(self._zero_padded(end, ndigits))

    def checked_number(self, end: np.ndarray, ndigits: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """(`number`, whether those bytes are all ASCII digits), from one read of the words."""
        w = self._zero_padded(end, ndigits)
        return digits8(w), _all_digits(w)

    def _zero_padded(self, end: np.ndarray, ndigits: np.ndarray | int) -> np.ndarray:
        """The word of the `ndigits` (0..8) bytes before each offset `end`, ``0`` digits
        before them."""
        words = self.words[end - 8 + PAD]
        pad = low_mask(8 - np.asarray(ndigits))
        return (words & ~pad) | (_ZEROS & pad)

    def long_number(self, end: np.ndarray, ndigits: np.ndarray) -> np.ndarray:
        """The numbers of the `ndigits` (0..16) ASCII digits before each offset `end`."""
        low = np.minimum(ndigits, 8)
        return self.number(end, low) + self.number(end - low, ndigits - low) * 100_000_000

    def digits(self, end: np.ndarray, ndigits: np.ndarray) -> np.ndarray:
        """Whether the `ndigits` (0..16) bytes before each offset `end` are all ASCII digits."""
        low = np.minimum(ndigits, 8)
        return self._all_digits8(end, low) & self._all_digits8(end - low, ndigits - low)

    def _all_digits8(self, end: np.ndarray, ndigits: np.ndarray) -> np.ndarray:
        return _all_digits(self._zero_padded(end, ndigits))

    def trailing_id(self, body: np.ndarray, id_end: np.ndarray, key: bytes, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where each message body..id_end (`ok`: the rows still in the running) ends in
        `key` then a decimal id -- 1 to `MAX_ID` digits, no leading zero, the last bytes before
        `id_end`, after a head of at least a byte: (ok, where the head ends, the id's digits).
        The id is ``long_number(id_end, digits)``; only the last bytes are searched."""
        def where(offsets: np.ndarray) -> np.ndarray:
            return np.where(ok, offsets, 0)

        tail = np.maximum(id_end - len(key) - MAX_ID, body)
        found = pc.find_substring(self.strings(where(tail), where(id_end)), key.decode()).to_numpy().astype(np.int64)
        head_end = tail + found
        id_at = head_end + len(key)
        ok = ok & (found >= 0) & (head_end > body) & (id_end - id_at >= 1) & (id_end - id_at <= MAX_ID)
        id_len = np.where(ok, id_end - id_at, 0)
        ok &= self.digits(where(id_end), id_len) & ((id_len == 1) | ~self.equal(where(id_at), b"0"))
        return ok, head_end, id_len

    def digit_run(self, start: np.ndarray, most: int) -> np.ndarray:
        """How many ASCII digits (up to `most`, at most 8) follow each offset `start`."""
        words = self.words[np.minimum(start + PAD, len(self.words) - 1)]
        run = np.ones(len(start), dtype=bool)
        count = np.zeros(len(start), dtype=np.int64)
        for k in range(most):
            byte = (words >> U64(8 * k)) & U64(0xFF)
            run &= (byte >= U64(ord("0"))) & (byte <= U64(ord("9")))
            count += run
        return count

    def equal(self, at: np.ndarray, literal: bytes) -> np.ndarray:
        """Whether `literal` is at each offset `at`, eight bytes at a time (an offset past the
        block's end answers no)."""
        ok = np.ones(len(at), dtype=bool)
        last = len(self.words) - 1
        for k in range(0, len(literal), 8):
            piece = literal[k : k + 8]
            mask = low_mask(np.array([len(piece)]))[0]
            ok &= (self.words[np.minimum(at + k + PAD, last)] & mask) == U64(int.from_bytes(piece, "little"))
        return ok & (at + len(literal) <= len(self.block))

    def strings(self, start: np.ndarray, end: np.ndarray) -> pa.Array:
        """The block's bytes start..end of each row as a string array (the block is UTF-8 and
        each range whole characters), through Arrow string views into the block (`views`)."""
        return self.views(start, end).cast(pa.string())

    def views(self, start: np.ndarray, end: np.ndarray) -> pa.Array:
        """The block's bytes start..end of each row as string views into it, not copied (for
        the kernels that take views: hashing, dictionary encoding)."""
        length = (end - start).astype(np.int64)
        views = np.zeros((len(start), 2), dtype=np.uint64)
        head = self.words[start + PAD]
        tail = self.words[start + 4 + PAD]
        views[:, 0] = length.astype(np.uint64) | ((head & low_mask(np.minimum(length, 4))) << U64(32))
        views[:, 1] = np.where(
            length <= 12,  # inline: the bytes themselves; else buffer 0 at offset `start`
            tail & low_mask(np.clip(length - 4, 0, 8)),
            start.astype(np.uint64) << U64(32),
        )
        data = pa.py_buffer(self.block)
        return pa.Array.from_buffers(pa.string_view(), len(start), [None, pa.py_buffer(views), data])


__all__ = ["MAX_ID", "PAD", "U64", "ByteWords", "digits8", "low_mask"]
