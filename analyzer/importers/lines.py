"""Reading an input's lines, bounded, and the one policy for lines that cannot be read.

An input is read as a stream of lines (`InputText.lines`, iterated as often as a parser needs,
each time from the file), never whole: memory follows the rows an import makes, not the size
of its text. Everything about the bytes is bounded and checked here, before any parser sees
a line:

- a line longer than `MAX_LINE_BYTES` (16 MiB: far beyond any QMP reply) is an
  :class:`~tracer.errors.InputError` naming it, so ``/dev/zero`` fed through a pipe, or a
  2 GB file of zeros, fails at its first 16 MiB instead of filling the memory;
- a line that is not UTF-8 goes through the `LinePolicy` like any bad line (text in a trace
  must be text: silently turning Latin-1 into U+FFFD would change what a finding names);
- only regular files are read in place. A pipe or socket (``<(zcat log.gz)``, ``/dev/stdin``)
  is copied to a temporary file as it is read, with the same line bound, so that it can be
  read twice; a character or block device (``/dev/zero``, a terminal) is refused.

Every parser reports a bad line through `LinePolicy.bad`: without ``--skip-bad`` that raises
:class:`~tracer.errors.ImportFormatError` naming the file and line (the CLI prints it as one
line and exits 2 before anything is written); with it the line is skipped and counted. A last
line without its newline that fails to parse is reported as a truncated file.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from itertools import chain
from pathlib import Path
from typing import IO

from analyzer.importers.detect import classify_line
from analyzer.progress import ProgressCallback
from tracer.errors import ImportFormatError, InputError

#: Lines between two progress callbacks.
PROGRESS_EVERY = 1 << 16
#: Longest line accepted, in bytes (without its newline).
MAX_LINE_BYTES = 16 << 20
#: Bytes read at a time.
CHUNK_BYTES = 4 << 20
#: Largest input read from a pipe or socket (copied to a temporary file as it is read).
MAX_STREAM_BYTES = 64 << 30


class _Lines:
    """The lines of an input file (str, without newlines), read in bounded chunks each time it
    is iterated. ``len()`` is the number of lines (known before the first iteration)."""

    def __init__(self, text: InputText) -> None:
        self._text = text

    def __len__(self) -> int:
        return self._text.line_count

    def __iter__(self) -> Iterator[str]:
        return chain.from_iterable(self._text.iter_blocks())


class InputText:
    """An input file's identity (path, sha256, size, line count) and its lines, streamed."""

    def __init__(self, path: str, handle: IO[bytes], *, size: int) -> None:
        self.path = path
        self._handle = handle
        #: Size in bytes (of the file, or of what a pipe gave).
        self.size = size
        #: The rest is known once `scan` has read the whole input.
        self.sha256 = ""
        #: Lines in the file (a last line without its newline counts).
        self.line_count = 0
        #: True when the file does not end with a newline (its last line may be cut).
        self.unterminated = False
        #: True when the file has carriage returns (CRLF line ends, or CRs inside records).
        self.crlf = False
        #: Where a line that is not UTF-8 is reported (`LinePolicy` sets it); None: replaced.
        self.on_bad: Callable[[int, str, str], None] | None = None
        self.lines = _Lines(self)

    def close(self) -> None:
        self._handle.close()

    def scan(self) -> InputText:
        """Read the whole input once, in bounded chunks, for its sha256, line count, whether it
        ends mid-line and holds CRs (after `detect` looked at a prefix: junk fails first)."""
        digest = hashlib.sha256()
        size = newlines = 0
        crlf = False
        last = b""
        f = self._handle
        f.seek(0)
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
            newlines += chunk.count(b"\n")
            crlf = crlf or b"\r" in chunk
            last = chunk[-1:]
        self.size, self.sha256, self.crlf = size, digest.hexdigest(), crlf
        self.unterminated = size > 0 and last != b"\n"
        self.line_count = newlines + self.unterminated
        return self

    def iter_lines(self, max_bytes: int | None = None) -> Iterator[str]:
        """Every line, in order; with `max_bytes`, only the lines that start within them."""
        return chain.from_iterable(self.iter_blocks(max_bytes))

    def iter_blocks(self, max_bytes: int | None = None) -> Iterator[list[str]]:
        """The lines of `iter_lines`, a chunk's worth at a time (iterating lists costs no
        Python frame per line)."""
        f = self._handle
        f.seek(0)
        number = read = 0
        carry = b""
        eof = False
        while max_bytes is None or read < max_bytes:
            chunk = f.read(CHUNK_BYTES)
            if not chunk:
                eof = True
                break
            read += len(chunk)
            data = carry + chunk if carry else chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                self._bound(len(carry), number + 1)
                continue
            block = data[:cut]
            count = block.count(b"\n") + 1
            carry = data[cut + 1 :]
            self._bound(len(carry), number + count + 1)
            if len(block) > MAX_LINE_BYTES:  # only then can a line inside it be too long
                lengths = [len(line) for line in block.split(b"\n")]
                longest = max(range(len(lengths)), key=lengths.__getitem__)
                self._bound(lengths[longest], number + longest + 1)
            yield self._decode(block, number)
            number += count
        if carry and eof:
            yield self._decode(carry, number)

    def _bound(self, length: int, number: int) -> None:
        if length > MAX_LINE_BYTES:
            raise InputError(
                f"line longer than {MAX_LINE_BYTES >> 20} MiB: not a log or QMP line", path=self.path, line=number
            )

    def _decode(self, block: bytes, number: int) -> list[str]:
        """The lines of `block` (line `number` + 1 first) as text; one that is not UTF-8 goes
        to `on_bad` and is read as an empty line when skipped."""
        try:
            return block.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            pass
        out = []
        for k, line in enumerate(block.split(b"\n"), number + 1):
            try:
                out.append(line.decode("utf-8"))
            except UnicodeDecodeError as exc:
                text = line.decode("utf-8", "replace")
                if self.on_bad is not None:
                    self.on_bad(k, text, f"not UTF-8 text (byte 0x{line[exc.start]:02x} at column {exc.start + 1})")
                    text = ""
                out.append(text)
        return out


def read_text(path: str | Path, *, scan: bool = True) -> InputText:
    """Open `path` for streaming its lines, and (`scan`) read its sha256 and line count
    (`InputText.scan`). Inputs are never modified. The caller closes it (`InputText.close`)."""
    name = str(path)
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise InputError("is a directory, not a file to import", path=name)
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            kind = "a character device" if stat.S_ISCHR(st.st_mode) else "a block device"
            raise InputError(f"is {kind}, not a file to import", path=name)
        handle: IO[bytes] = open(path, "rb")  # noqa: SIM115 (InputText.close)
    except FileNotFoundError:
        raise InputError("no such file", path=name) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a file to import", path=name) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=name) from None
    try:
        size = st.st_size
        if not stat.S_ISREG(st.st_mode):  # a pipe or socket: keep a copy to read it again
            handle = _spool(handle, name)
            size = handle.seek(0, os.SEEK_END)
        text = InputText(name, handle, size=size)
        return text.scan() if scan else text
    except BaseException:
        handle.close()
        raise


def _spool(stream: IO[bytes], name: str) -> IO[bytes]:
    """A temporary copy of a stream, refusing a line beyond `MAX_LINE_BYTES` as it goes."""
    copy = tempfile.TemporaryFile()  # noqa: SIM115 (returned)
    try:
        total = run = lines = 0
        while chunk := stream.read(CHUNK_BYTES):
            total += len(chunk)
            if total > MAX_STREAM_BYTES:
                raise InputError(f"more than {MAX_STREAM_BYTES >> 30} GiB from a pipe", path=name)
            first = chunk.find(b"\n")
            if run + (len(chunk) if first < 0 else first) > MAX_LINE_BYTES:
                raise InputError(
                    f"line longer than {MAX_LINE_BYTES >> 20} MiB: not a log or QMP line", path=name, line=lines + 1
                )
            if first < 0:
                run += len(chunk)
            else:
                lines += chunk.count(b"\n")
                run = len(chunk) - chunk.rfind(b"\n") - 1
            copy.write(chunk)
    except BaseException:
        copy.close()
        raise
    finally:
        stream.close()
    return copy


class LinePolicy:
    """Counts skipped lines, or raises on the first bad one; reports progress."""

    def __init__(
        self,
        text: InputText,
        fmt: str,
        *,
        skip_bad: bool,
        progress: ProgressCallback | None = None,
        progress_base: int = 0,
        progress_total: int | None = None,
    ) -> None:
        self.path = text.path
        self.fmt = fmt
        self.skip_bad = skip_bad
        self.skipped = 0
        self.truncated = False
        self._last = text.line_count if text.unterminated else -1
        self._progress = progress
        self._base = progress_base
        self._total = progress_total
        self._size = text.size
        self._nlines = max(text.line_count, 1)
        text.on_bad = self.bad

    def bad(self, number: int, line: str, reason: str) -> None:
        """Line `number` cannot be imported because of `reason`."""
        other = classify_line(line)
        if other is not None and other != self.fmt:
            reason = f"a {other} line in a {self.fmt} input (mixed formats)"
        if number == self._last:
            reason = f"truncated: the file ends mid-line ({reason})"
            if self.skip_bad:
                self.truncated = True
        if not self.skip_bad:
            raise ImportFormatError(reason, path=self.path, line=number)
        self.skipped += 1

    def progress(self, number: int) -> None:
        """Called by parsers every `PROGRESS_EVERY` lines."""
        if self._progress is not None:
            self._progress(self._base + self._size * number // self._nlines, self._total)


__all__ = ["MAX_LINE_BYTES", "InputText", "LinePolicy", "read_text"]
