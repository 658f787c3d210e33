"""A block of an input's lines as bytes, for finding the few lines that matter in bulk.

A host's debug log is mostly lines no importer reads (a libvirt daemon logs its event loop,
its RPC calls, its locks: nine lines in ten have nothing about the monitor). Decoding each of
them into a Python string and asking it a few questions costs microseconds a line: a Python
loop, however tight, cannot read a million lines a second. So an importer that knows which
lines it reads asks the whole block instead: `ByteLines` splits a block of lines at its
newlines with numpy (its line bounds), and answers per-line questions over every line at once
(which contain one of these literals, RE2 over the lines as one Arrow array; which start with
these bytes), then decodes only the lines it picked.

Bytes, not text: a block is what `lines.InputText.iter_byte_blocks` read (whole lines, the
last without its newline). Whether it is UTF-8 is the caller's question (`is_utf8`): a line
that is not is a bad line wherever it is, so a block that is not valid UTF-8 is read the slow
way, line by line, where that line is reported.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_NEWLINE = 10


class ByteLines:
    """The lines of `block` (bytes of whole lines, no final newline): bounds and bulk tests."""

    __slots__ = ("_array", "_bytes", "block", "ends", "starts")

    def __init__(self, block: bytes) -> None:
        self.block = block
        self._bytes = np.frombuffer(block, dtype=np.uint8)
        newlines = np.flatnonzero(self._bytes == _NEWLINE)
        #: Offset of each line's first byte, and one past its last (its newline excluded).
        self.starts = np.concatenate(([0], newlines + 1)).astype(np.int64)
        self.ends = np.concatenate((newlines, [len(block)])).astype(np.int64)
        self._array: pa.Array | None = None

    def __len__(self) -> int:
        return len(self.starts)

    def line(self, i: int) -> str:
        """Line `i` as text (the block is known to be UTF-8: `is_utf8`)."""
        return self.block[self.starts[i] : self.ends[i]].decode("utf-8")

    def texts(self, pick: np.ndarray) -> list[str]:
        """Lines `pick` as text, like `line` for each (an ASCII block is decoded once and
        sliced: no decoding, nor numpy scalar, per line)."""
        starts, ends = self.starts[pick].tolist(), self.ends[pick].tolist()
        if self.block.isascii():
            whole = self.block.decode("ascii")
            return [whole[a:b] for a, b in zip(starts, ends, strict=True)]
        block = self.block
        return [block[a:b].decode("utf-8") for a, b in zip(starts, ends, strict=True)]

    def first_bytes(self) -> np.ndarray:
        """Each line's first byte (0 for an empty line)."""
        out = np.zeros(len(self), dtype=np.uint8)
        filled = self.ends > self.starts
        out[filled] = self._bytes[self.starts[filled]]
        return out

    def shaped(self, shape: bytes, wildcard: int) -> np.ndarray:
        """Whether each line starts with `shape`'s bytes wherever `shape` is not `wildcard`
        (``b"????-??-?? "``): a fixed-width prefix's punctuation, one gather per byte."""
        long_enough = np.flatnonzero(self.ends - self.starts >= len(shape))
        at = self.starts[long_enough]
        ok = np.ones(len(at), dtype=bool)
        for offset, byte in enumerate(shape):
            if byte != wildcard:
                ok &= self._bytes[at + offset] == byte
        out = np.zeros(len(self), dtype=bool)
        out[long_enough[ok]] = True
        return out

    def array(self) -> pa.Array:
        """The lines as one Arrow binary array over the block (no copy); each line with its
        newline, which no question asked here looks for."""
        if self._array is None:
            large = len(self.block) >= (1 << 31)
            offsets = np.append(self.starts, len(self.block)).astype(np.int64 if large else np.int32)
            binary = pa.large_binary() if large else pa.binary()
            self._array = pa.Array.from_buffers(binary, len(self), [None, pa.py_buffer(offsets), pa.py_buffer(self.block)])
        return self._array

    def contains(self, pattern: str) -> np.ndarray:
        """Whether each line contains a match of RE2 `pattern` (unanchored; ``^`` is the line's
        start)."""
        return pc.match_substring_regex(self.array(), pattern).to_numpy(zero_copy_only=False)


def is_utf8(block: bytes) -> bool:
    """Whether `block` is UTF-8 text (ASCII answered without decoding)."""
    if block.isascii():
        return True
    try:
        block.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def is_digit(values: np.ndarray) -> np.ndarray:
    return (values >= ord("0")) & (values <= ord("9"))


__all__ = ["ByteLines", "is_digit", "is_utf8"]
