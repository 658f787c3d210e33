"""A log carried inside another one: unwrap it, parse it with its own parser, keep the lines.

Production hosts rarely keep a libvirt daemon log or a QEMU trace log as a plain file: the
journal holds virtqemud's messages (``journalctl -o json|export|short-precise``), a KubeVirt
pod log wraps each libvirt line in JSON, SystemTap prints QEMU's trace events in its own
layout. Each of those wrappers is taken apart by its own module (`journald`, `kubevirt`,
`stap`), which writes the carried lines, as the plain log would have them, into a
`CarriedText` with the line of the *original* file each came from. The carried text is then
parsed by the plain log's parser (`libvirt_log`, `qemu_log`: one parser per log format, never
a second copy of its rules), and every row's ``src_line`` -- and every bad line it reports --
is mapped back to the original file. So a finding points at the journal record or pod log line
a user can open, and the import equals the import of the plain log.

The carried text is a temporary file (the parsers stream their input and may read it twice),
and the map is one int64 per carried line: memory follows the rows, not the wrapper's size.
"""

from __future__ import annotations

import tempfile
import time
from array import array
from collections.abc import Callable

import numpy as np

from analyzer.importers.lines import InputText, LinePolicy
from analyzer.importers.rows import ParsedInput

#: Carried lines buffered before they are written to the temporary file.
_FLUSH_LINES = 8192
#: libvirt's log levels by syslog priority (``virLogPrioritySyslog``).
LEVELS = {"7": "debug", "6": "info", "5": "info", "4": "warning", "3": "error", "2": "error", "1": "error", "0": "error"}
_SECONDS: dict[int, str] = {}


def libvirt_head(us: int, thread: int | str, level: str) -> str:
    """The head of a libvirt log line, ``YYYY-MM-DD HH:MM:SS.ffffff+0000: TID: LEVEL : ``, for a
    message logged at `us` microseconds since the epoch (UTC); ValueError beyond year 9999."""
    sec, frac = divmod(us, 1_000_000)
    day = _SECONDS.get(sec)
    if day is None:
        if not 0 <= sec < 253402300800:
            raise ValueError(f"time {us} us is out of range (years 1970 to 9999)")
        day = _SECONDS[sec] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(sec))
        if len(_SECONDS) > 4096:
            _SECONDS.clear()
    return f"{day}.{frac:06d}+0000: {thread}: {level} : "


class CarriedText:
    """The lines of a carried log, each with the original line it came from."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by `parse`)
        #: Original line number of each carried line (carried line k+1 -> origin[k]).
        self.origin = array("q")
        self._pending: list[str] = []

    def __len__(self) -> int:
        return len(self.origin)

    def add(self, line: str, origin: int) -> None:
        """Append carried `line` that came from original line `origin` (a line with newlines in
        it, a record's continuation, is several carried lines from the same origin)."""
        if "\n" in line:
            for piece in line.split("\n"):
                self.add(piece, origin)
            return
        self._pending.append(line)
        self.origin.append(origin)
        if len(self._pending) >= _FLUSH_LINES:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._file.write(("\n".join(self._pending) + "\n").encode("utf-8", "surrogatepass"))
            self._pending = []

    def parse(
        self,
        outer: InputText,
        outer_policy: LinePolicy,
        parser: Callable[[InputText, LinePolicy], ParsedInput],
        inner_format: str,
        fmt: str,
    ) -> ParsedInput:
        """Parse the carried lines with `parser` (of `inner_format`) as input `outer` of format
        `fmt`: rows and bad lines name the original file and its lines."""
        self._flush()
        size = self._file.seek(0, 2)
        self._file.seek(0)
        inner = InputText(outer.path, self._file, size=size, source=outer.source).scan()
        inner.sha256 = outer.sha256
        policy = _MappedPolicy(inner, inner_format, outer_policy, self.origin)
        try:
            parsed = parser(inner, policy)
        finally:
            inner.close()
        origin = np.frombuffer(self.origin, dtype=np.int64) if len(self.origin) else np.zeros(0, np.int64)
        for part in parsed.parts:
            part.rows.map_lines(origin)
        return ParsedInput(
            path=outer.path, format=fmt, sha256=outer.sha256, lines=outer.line_count,
            skipped=outer_policy.skipped + policy.skipped,
            truncated=outer_policy.truncated or policy.truncated, parts=parsed.parts,
        )


class _MappedPolicy(LinePolicy):
    """The inner parser's line policy: a bad carried line is reported at its original line."""

    def __init__(self, inner: InputText, fmt: str, outer: LinePolicy, origin: array) -> None:
        super().__init__(inner, fmt, skip_bad=outer.skip_bad)
        self.path = outer.path
        self._outer = outer
        self._origin = origin

    def last_if_cut(self) -> int:
        return self._outer.last_if_cut()  # the original file's (a cut record is "truncated")

    def _original(self, number: int) -> int:
        return self._origin[number - 1] if 0 < number <= len(self._origin) else number

    def bad(self, number: int, line: str, reason: str) -> None:
        super().bad(self._original(number), line, reason)

    def progress(self, number: int) -> None:
        self._outer.progress(self._original(number))


__all__ = ["LEVELS", "CarriedText", "libvirt_head"]
