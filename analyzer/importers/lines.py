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
  read twice; a character or block device (``/dev/zero``, a terminal) is refused;
- ``-`` is standard input (copied like a pipe), named `STDIN_NAME` or the name given;
- a compressed input (gzip, bzip2, xz, zstd: `compressed`, recognised from its magic bytes,
  whatever its name) is decompressed into a temporary file the same way, and named by its
  logical name (``x.log.gz`` -> ``x.log``). Damaged or cut compressed data is one
  :class:`~tracer.errors.ImportFormatError` naming the file and the first line it could not
  give; with ``--skip-bad`` the lines before it are imported and the rest counted as one
  skipped line of a truncated input.

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
import threading
from collections.abc import Callable, Iterator
from itertools import chain
from pathlib import Path
from typing import IO

import numpy as np

from analyzer.importers.compressed import (
    DECOMPRESS_ERRORS,
    codec_of,
    decompressing,
    describe,
    logical_name,
)
from analyzer.importers.detect import classify_line
from analyzer.importers.spill import SpillFile
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
#: The name (``src_file``) of standard input when none is given.
STDIN_NAME = "<stdin>"


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

    def __init__(self, path: str, handle: IO[bytes], *, size: int, source: str | None = None) -> None:
        #: The input's name in rows and metadata (a compressed file's logical name).
        self.path = path
        #: The file as the user gave it, for messages (``x.log.gz``, ``-``).
        self.source = source or path
        #: (line, reason) where damaged compressed data ended the text (with skip_bad).
        self.damage: tuple[int, str] | None = None
        self._handle = handle
        #: Size in bytes (of the file, or of what a pipe gave; as read once `scan` is done).
        self.size = size
        #: Where a line that is not UTF-8 is reported (`LinePolicy` sets it); None: replaced.
        self.on_bad: Callable[[int, str, str], None] | None = None
        self.lines = _Lines(self)
        self._facts: _Facts | None = None
        self._scanning: _Scanning | None = None
        #: Bytes and lines `iter_byte_blocks` has given so far (`position` before the scan ends).
        self._read_bytes = self._read_lines = 0

    # What `scan` finds. Asking waits for a scan under way, or scans now if none was begun.

    @property
    def sha256(self) -> str:
        return self._scanned().sha256

    @sha256.setter
    def sha256(self, value: str) -> None:  # (a carried text is named by its outer file's)
        self._scanned().sha256 = value

    @property
    def line_count(self) -> int:
        """Lines in the file (a last line without its newline counts)."""
        return self._scanned().line_count

    @property
    def unterminated(self) -> bool:
        """True when the file does not end with a newline (its last line may be cut)."""
        return self._scanned().unterminated

    @property
    def crlf(self) -> bool:
        """True when the file has carriage returns (CRLF line ends, or CRs inside records)."""
        return self._scanned().crlf

    def close(self) -> None:
        if self._scanning is not None:  # (its reads use the handle's descriptor)
            self._scanning.stop()
        self._handle.close()

    def scan(self) -> InputText:
        """Read the whole input once, in bounded chunks, for its sha256, line count, whether it
        ends mid-line and holds CRs (after `detect` looked at a prefix: junk fails first)."""
        self._scanned()
        return self

    def start_scan(self) -> InputText:
        """`scan` on a thread of its own, while a parser reads the input: hashing releases the
        GIL, and the reads are ``pread`` at their own offsets, which leave the handle's
        position to the parser. What it finds is waited for when asked (`sha256`, ...), which
        the fast parsers do only once they have read every line. A handle without a file
        descriptor (an in-memory one) is scanned at once."""
        if self._facts is None and self._scanning is None:
            try:
                fd = self._handle.fileno()
            except (OSError, AttributeError, ValueError):  # io.BytesIO and the like
                return self.scan()
            self._scanning = _Scanning(fd, self.source)
        return self

    def _scanned(self) -> _Facts:
        if self._facts is None:
            if self._scanning is None:
                self._facts = _scan_handle(self._handle)
            else:
                self._facts = self._scanning.result()
            self.size = self._facts.size
        return self._facts

    def position(self, number: int) -> int:
        """About where in the input (bytes) line `number` ends, for a progress bar: from the
        line count once the scan has it, else from the lines and bytes read so far."""
        facts = self._facts
        if facts is None and self._scanning is not None and self._scanning.done():
            facts = self._scanned()
        if facts is not None:
            return self.size * number // max(facts.line_count, 1)
        return min(self.size, self._read_bytes * number // max(self._read_lines, 1))

    def iter_bytes(self) -> Iterator[bytes]:
        """The input's bytes from its start, a chunk at a time (for a binary-safe format,
        ``journalctl -o export``, whose lines may hold any byte)."""
        f = self._handle
        f.seek(0)
        while chunk := f.read(CHUNK_BYTES):
            yield chunk

    def iter_lines(self, max_bytes: int | None = None) -> Iterator[str]:
        """Every line, in order; with `max_bytes`, only the lines that start within them."""
        return chain.from_iterable(self.iter_blocks(max_bytes))

    def iter_blocks(self, max_bytes: int | None = None) -> Iterator[list[str]]:
        """The lines of `iter_lines`, a chunk's worth at a time (iterating lists costs no
        Python frame per line)."""
        for number, block in self.iter_byte_blocks(max_bytes):
            yield self.decode_block(block, number)

    def iter_byte_blocks(self, max_bytes: int | None = None) -> Iterator[tuple[int, bytes]]:
        """The input as blocks of whole lines, each without its last newline, with the number of
        lines before it: (0, lines 1..k), (k, lines k+1..), ... Every line is bounded by
        `MAX_LINE_BYTES` (an InputError naming it); with `max_bytes`, only the blocks that
        start within them."""
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
            cut = chunk.rfind(b"\n")
            if cut < 0:
                carry += chunk
                self._bound(len(carry), number + 1)
                continue
            block = b"".join((carry, memoryview(chunk)[:cut]))  # (one copy of the chunk)
            count = newlines_in(block) + 1
            carry = chunk[cut + 1 :]
            self._bound(len(carry), number + count + 1)
            if len(block) > MAX_LINE_BYTES:  # only then can a line inside it be too long
                lengths = [len(line) for line in block.split(b"\n")]
                longest = max(range(len(lengths)), key=lengths.__getitem__)
                self._bound(lengths[longest], number + longest + 1)
            number += count
            if max_bytes is None:
                self._read_bytes, self._read_lines = read, number
            yield number - count, block
        if carry and eof:
            yield number, carry

    def _bound(self, length: int, number: int) -> None:
        if length > MAX_LINE_BYTES:
            raise InputError(
                f"line longer than {MAX_LINE_BYTES >> 20} MiB: not a log or QMP line", path=self.source, line=number
            )

    def decode_block(self, block: bytes, number: int) -> list[str]:
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


def newlines_in(data: bytes) -> int:
    """How many newlines `data` holds (numpy: five times ``bytes.count``, and without the GIL)."""
    return int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == 10))


class _Facts:
    """What reading a whole input once tells (`InputText.scan`)."""

    __slots__ = ("crlf", "line_count", "sha256", "size", "unterminated")

    def __init__(self, sha256: str, size: int, newlines: int, last: bytes, crlf: bool) -> None:
        self.sha256, self.size, self.crlf = sha256, size, crlf
        self.unterminated = size > 0 and last != b"\n"
        self.line_count = newlines + self.unterminated


def _scan_chunks(chunks: Iterator[bytes]) -> _Facts:
    digest = hashlib.sha256()
    size = newlines = 0
    crlf = False
    last = b""
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        newlines += newlines_in(chunk)
        crlf = crlf or b"\r" in chunk
        last = chunk[-1:]
    return _Facts(digest.hexdigest(), size, newlines, last, crlf)


def _scan_handle(f: IO[bytes]) -> _Facts:
    """`_Facts` of a handle, read from its start here (it moves the handle's position)."""
    f.seek(0)
    return _scan_chunks(iter(lambda: f.read(CHUNK_BYTES), b""))


class _Scanning:
    """`_scan_chunks` of a file descriptor on a thread, by ``pread`` (no shared position)."""

    def __init__(self, fd: int, source: str) -> None:
        self._fd, self._source = fd, source
        self._stopping = False
        self._facts: _Facts | None = None
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="blkreplay-scan", daemon=True)
        self._thread.start()

    def _chunks(self) -> Iterator[bytes]:
        offset = 0
        while not self._stopping and (chunk := os.pread(self._fd, CHUNK_BYTES, offset)):
            offset += len(chunk)
            yield chunk

    def _run(self) -> None:
        try:
            self._facts = _scan_chunks(self._chunks())
        except OSError as exc:
            self._error = exc

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> _Facts:
        self._thread.join()
        if self._error is not None:
            raise InputError(f"cannot read: {self._error.strerror or self._error}", path=self._source)
        if self._facts is None:
            raise RuntimeError("the input was closed before its scan ended")
        return self._facts

    def stop(self) -> None:
        """Stop reading (before the descriptor is closed: it must not read another file's)."""
        self._stopping = True
        self._thread.join()


def read_text(
    path: str | Path, *, scan: bool = True, stdin_name: str | None = None, skip_bad: bool = False,
) -> InputText:
    """Open `path` (``-``: standard input, named `stdin_name`) for streaming its lines, and
    (`scan`) read its sha256 and line count (`InputText.scan`). Inputs are never modified.
    The caller closes it (`InputText.close`)."""
    name = str(path)
    if name == "-":
        return _open_stdin(stdin_name or STDIN_NAME, scan=scan, skip_bad=skip_bad)
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
        if not stat.S_ISREG(st.st_mode):  # a pipe or socket: keep a copy to read it again
            handle, _ = _spool(handle, name)
        return _opened(handle, name, name, scan=scan, skip_bad=skip_bad)
    except BaseException:
        handle.close()
        raise


def _open_stdin(name: str, *, scan: bool, skip_bad: bool) -> InputText:
    """Standard input, copied as it is read (a terminal is refused: nothing to import)."""
    try:
        fd = os.dup(0)
    except OSError as exc:
        raise InputError(f"cannot read standard input: {exc.strerror or exc}", path="-") from None
    stream = os.fdopen(fd, "rb")
    if stream.isatty():
        stream.close()
        raise InputError("standard input is a terminal, not a file to import", path="-")
    handle, _ = _spool(stream, "-")
    try:
        return _opened(handle, name, "-", scan=scan, skip_bad=skip_bad)
    except BaseException:
        handle.close()
        raise


def _opened(handle: IO[bytes], name: str, source: str, *, scan: bool, skip_bad: bool) -> InputText:
    """The `InputText` of a seekable `handle`, decompressed first if its magic bytes say so."""
    handle.seek(0)
    head = handle.read(8)
    handle.seek(0)
    codec = codec_of(head)
    damage = None
    if codec is not None:
        plain, damage = _spool(decompressing(handle, codec), source, codec=codec, skip_bad=skip_bad)
        handle.close()
        handle, name = plain, logical_name(name, codec) if source != "-" else name
    size = handle.seek(0, os.SEEK_END)
    handle.seek(0)
    text = InputText(name, handle, size=size, source=source)
    text.damage = damage
    return text.scan() if scan else text


def _spool(
    stream: IO[bytes], name: str, *, codec: str | None = None, skip_bad: bool = False,
) -> tuple[IO[bytes], tuple[int, str] | None]:
    """A temporary copy of a stream, refusing a line beyond `MAX_LINE_BYTES` as it goes.

    `codec`: the stream decompresses; data it cannot decompress is an ImportFormatError at
    the first line it could not give, or (`skip_bad`) the end of the copy, cut after its last
    whole line, returned as (line, reason)."""
    copy = tempfile.TemporaryFile()  # noqa: SIM115 (returned)
    damage = None
    # A decompressor's read1 gives what it has decompressed so far, so the lines before
    # damaged data are kept (read(n) would lose its whole chunk to the error).
    # pyarrow's zstd stream has no read1: small reads lose at most 64 KiB before the damage.
    read = stream.read
    if codec is not None:
        read = getattr(stream, "read1", None) or (lambda _n: stream.read(1 << 16))
    try:
        total = run = lines = 0
        while True:
            try:
                chunk = read(CHUNK_BYTES)
            except DECOMPRESS_ERRORS as exc:
                if codec is None:
                    raise
                reason = describe(codec, exc)
                if not skip_bad:
                    raise ImportFormatError(reason, path=name, line=lines + 1) from None
                copy.truncate(total - run)
                copy.seek(0, os.SEEK_END)
                damage = (lines + 1, reason)
                break
            if not chunk:
                break
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
    return copy, damage


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
        self.path = text.source
        self.fmt = fmt
        self.skip_bad = skip_bad
        #: Where the parser may keep its bulk rows' payloads until they are written (`spill`).
        self.spill: SpillFile | None = None
        self.skipped = 0
        self.truncated = False
        self._text = text
        self._progress = progress
        self._base = progress_base
        self._total = progress_total
        self._done = 0
        text.on_bad = self.bad
        if text.damage is not None:  # only with skip_bad: the rest of a damaged compressed input
            self.skipped += 1
            self.truncated = True

    def bad(self, number: int, line: str, reason: str) -> None:
        """Line `number` cannot be imported because of `reason`."""
        other = classify_line(line)
        if other is not None and other != self.fmt:
            reason = f"a {other} line in a {self.fmt} input (mixed formats)"
        if number == self.last_if_cut():
            reason = f"truncated: the file ends mid-line ({reason})"
            if self.skip_bad:
                self.truncated = True
        if not self.skip_bad:
            raise ImportFormatError(reason, path=self.path, line=number)
        self.skipped += 1

    def last_if_cut(self) -> int:
        """The input's last line when it ends mid-line (may be cut), else -1. Asked only of a
        bad line, so that the input's scan runs beside the parsing (`InputText.start_scan`)."""
        text = self._text
        return text.line_count if text.unterminated else -1

    def progress(self, number: int) -> None:
        """Called by parsers every `PROGRESS_EVERY` lines."""
        if self._progress is not None:  # (never back: an estimate may give way to the count)
            self._done = max(self._done, self._text.position(number))
            self._progress(self._base + self._done, self._total)


__all__ = ["MAX_LINE_BYTES", "STDIN_NAME", "InputText", "LinePolicy", "read_text"]
