"""Reading an input's lines, and the one policy for lines that cannot be read.

Every parser reports a bad line through `LinePolicy.bad`: without ``--skip-bad`` that raises
:class:`~tracer.errors.ImportFormatError` naming the file and line (the CLI prints it as one
line and exits 2 before anything is written); with it the line is skipped and counted. A last
line without its newline that fails to parse is reported as a truncated file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from analyzer.importers.detect import classify_line
from analyzer.progress import ProgressCallback
from tracer.errors import ImportFormatError, InputError

#: Lines between two progress callbacks.
PROGRESS_EVERY = 1 << 16


@dataclass
class InputText:
    """An input file's lines (without their newlines) and identity."""

    path: str
    lines: list[str]
    sha256: str
    size: int
    #: True when the file does not end with a newline (its last line may be cut).
    unterminated: bool
    #: True when the file has carriage returns (CRLF line ends, or CRs inside records).
    crlf: bool = False


def read_text(path: str | Path) -> InputText:
    """Read `path` whole: its lines, sha256 and whether it ends mid-line. Inputs are never modified."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", path=str(path)) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a file to import", path=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    text = data.decode("utf-8", errors="replace")
    lines = text.split("\n")
    unterminated = bool(lines) and lines[-1] != ""
    if not unterminated:
        lines.pop()
    return InputText(
        path=str(path),
        lines=lines,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        unterminated=unterminated,
        crlf="\r" in text,
    )


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
        self._last = len(text.lines) if text.unterminated else -1
        self._progress = progress
        self._base = progress_base
        self._total = progress_total
        self._size = text.size
        self._nlines = max(len(text.lines), 1)

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
