"""The exception hierarchy shared by every part of blkreplay.

Every error a user can cause (a bad trace, a bad scenario file, a bad flag value) is a
:class:`BlkreplayError`. The command line turns one into a single line on stderr and exit
status :attr:`BlkreplayError.exit_code` (2), never a traceback. Library users catch the class
that fits::

    BlkreplayError
    ├── InputError              unusable input: names the file, the row or line, what is wrong
    │   ├── TraceSchemaError    a table that breaks schema v1
    │   ├── TraceFormatError    a file that is not a trace at all (not Parquet, empty, unreadable)
    │   ├── ImportFormatError   a QMP / QEMU log / libvirt log line that cannot be parsed
    │   ├── UnknownFormatError  a format name (``--format``) that is not one of the choices
    │   └── RuleFileError       a rule file (docs/rules-language.md) with mistakes: one
    │                           "file:line:col: what" line each
    ├── ScenarioError           a bad scenario file or simulation parameter
    │   └── FieldError          a bad value for one configuration field (names the field)
    ├── RecorderError           misuse of the recorder (unknown kind, closed recorder, failed write)
    ├── CaptureError            a live QMP connection that could not be made or used
    ├── OutputError             an output that cannot be written, or would overwrite an input
    └── UsageError              a command line that cannot be parsed (unknown option, ...)

    Exit statuses (:func:`exit_code_for`): 0 no error finding, 1 error findings and nothing
    else, 2 any BlkreplayError, 3 an internal error (a bug: "please report"), 130 interrupted,
    141 standard output closed early.

    JSONBoundError (a ValueError, not a BlkreplayError): JSON beyond the accepted depth or size;
    each reader turns it into its own InputError naming the file and line

Every class lives here, so that one import finds any of them and the tree above stays whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class BlkreplayError(Exception):
    """Base of every error blkreplay raises on purpose."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(BlkreplayError):
    """Input that cannot be used. The message names where (file, row or line) and what."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        row: int | None = None,
        line: int | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.row = row
        self.line = line
        where = []
        if self.path is not None:
            where.append(self.path)
        if line is not None:
            where.append(f"line {line}")
        if row is not None:
            where.append(f"row {row}")
        prefix = ":".join(where[:1]) + (", " + ", ".join(where[1:]) if len(where) > 1 else "")
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.reason = message


class TraceSchemaError(InputError):
    """A table that does not follow trace schema v1."""


class TraceFormatError(InputError):
    """A file that cannot be read as a trace at all."""


class ImportFormatError(InputError):
    """A line of real QEMU / libvirt output that cannot be parsed or recognised."""


class UnknownFormatError(InputError):
    """A format name that is not one of `choices`; every command words it the same way."""

    def __init__(self, value: str, choices: Sequence[str]) -> None:
        super().__init__(f"unknown format {value!r} (choose from {', '.join(choices)})")
        self.value = value
        self.choices = tuple(choices)


class RuleFileError(InputError):
    """A rule file that cannot be used: `problems` are one-line "file:line:col: what" texts,
    all of them (`blkreplay rules lint` prints each); the message is the first."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        more = len(self.problems) - 1
        tail = f" (and {more} more: blkreplay rules lint shows all)" if more > 0 else ""
        super().__init__(self.problems[0] + tail)


def check_format(value: str, choices: Sequence[str]) -> str:
    """`value` if it is one of `choices`, else :class:`UnknownFormatError`."""
    if value not in choices:
        raise UnknownFormatError(value, choices)
    return value


class ScenarioError(BlkreplayError):
    """A scenario file or simulation parameter that makes no sense."""


class FieldError(ScenarioError):
    """A bad value for one configuration field; `field` names it, `reason` says what is wrong."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.field = name
        self.reason = message


class RecorderError(BlkreplayError):
    """Misuse of the recorder (an unknown kind, a closed recorder, a failed write)."""


class CaptureError(BlkreplayError):
    """A live QMP monitor that could not be reached or spoke something unexpected."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its class name if it has none), at most
    `limit` characters: what a one-line error shows of a library's long, multi-line message."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


# ---------------------------------------------------------------------------------------------
# Outputs (issue #12, "Nothing lost, nothing crashes"): kept in its own block so that it merges
# cleanly with the classes other work moves into this module.
# ---------------------------------------------------------------------------------------------


class OutputError(BlkreplayError):
    """An output (``-o``) that cannot or must not be written: it is an input, it lies inside
    one, its directory is missing, the disk is full, ... The message names the output and what
    is wrong; nothing is left behind (no temporary file, no half-written output)."""

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class JSONBoundError(ValueError):
    """JSON that is well-formed or not, but outside what blkreplay accepts (depth, size,
    non-finite numbers). A ValueError, so that readers catch it with other bad JSON."""


# ---------------------------------------------------------------------------------------------
# Exit statuses: the one mapping from how a command ended to the status it exits with, so
# that a CI job can trust 1 to mean "findings" and nothing else. Kept in its own block.
# ---------------------------------------------------------------------------------------------

#: No error finding.
EXIT_OK = 0
#: Error findings (check, report): never anything else.
EXIT_FINDINGS = 1
#: Unusable input, a bad command line, an output that cannot be written: a BlkreplayError.
EXIT_ERROR = BlkreplayError.exit_code
#: A bug in blkreplay (an exception nobody raised on purpose): "internal error, please report".
EXIT_INTERNAL = 3
#: `blkreplay rules test`: a rule file's own examples did not give what they expect (the
#: rule is wrong, not the trace), so not 1.
EXIT_TESTS_FAILED = 4
#: Interrupted (Ctrl-C), as a shell reports SIGINT.
EXIT_INTERRUPTED = 130
#: Standard output closed early (``blkreplay check | head``), as a shell reports SIGPIPE: not
#: 0, which would hide findings from ``set -o pipefail``, and not 1.
EXIT_BROKEN_PIPE = 141


class UsageError(BlkreplayError):
    """A command line that cannot be parsed: an unknown option, a missing argument, a value
    of the wrong type. `command` is the command path (``blkreplay check``) for the hint."""

    def __init__(self, message: str, *, command: str = "blkreplay") -> None:
        super().__init__(message)
        self.command = command


def exit_code_for(exc: BaseException) -> int:
    """The exit status of a command that ended with `exc`."""
    if isinstance(exc, BlkreplayError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        return EXIT_BROKEN_PIPE
    return EXIT_INTERNAL
