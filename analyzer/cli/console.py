"""Terminal output for the CLI: consoles, progress bars that stay quiet when piped, errors.

Everything a command shows goes through here: results on stdout (:data:`out`), status and
errors on stderr (:data:`err`), so that ``blkreplay check -f json | jq`` gets clean JSON.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from analyzer import outputs
from analyzer.progress import ProgressCallback
from analyzer.text import terminal


class _Console(Console):
    """A rich console whose closed pipe is a BrokenPipeError for :func:`analyzer.cli.main` to
    map (rich's own handling exits 1, which means "findings")."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError("standard output closed")


out = _Console(highlight=False, soft_wrap=False)
err = _Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    """Print `message` as one escaped line on stderr and exit with `code`."""
    err.print(f"[bold red]blkreplay: error:[/] {terminal(message)}")
    raise SystemExit(code)


def note(message: str, *, quiet: bool = False) -> None:
    """A status line on stderr (so stdout stays clean for piped output)."""
    if not quiet:
        err.print(message)


def write(
    text: str,
    output: str | Path | None,
    *,
    inputs: Iterable[str | Path] = (),
    kind: outputs.OutputKind = "findings",
    parents: bool = False,
) -> None:
    """`text` to stdout as is (`output` None or ``-``), or to the file `output` through
    :func:`analyzer.outputs.write_output`: atomically, never over one of `inputs`."""
    if output is None or str(output) == outputs.STDOUT:
        out.file.write(text)
        out.file.flush()
    else:
        outputs.write_output(output, text, inputs=inputs, kind=kind, parents=parents)


def progress_enabled(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def _ignore(done: int, total: int | None) -> None:
    pass


class _Phases:
    """The bar of the phase under way; a later phase's first update replaces it."""

    def __init__(self, progress: Progress, phases: tuple[tuple[str, str], ...]) -> None:
        self._progress = progress
        self._phases = phases
        self._index = 0
        self._task = self._start(0)

    def _start(self, index: int) -> TaskID:
        description, unit = self._phases[index]
        return self._progress.add_task(description, total=None, unit=unit)

    def callback(self, index: int) -> ProgressCallback:
        def update(done: int, total: int | None) -> None:
            if index < self._index:  # a phase that is over
                return
            if index > self._index:
                self._progress.remove_task(self._task)
                self._index, self._task = index, self._start(index)
            self._progress.update(self._task, completed=done, total=total)

        return update


@contextmanager
def progress_phases(
    *phases: tuple[str, str], quiet: bool = False
) -> Iterator[tuple[ProgressCallback, ...]]:
    """One ``callback(done, total)`` per ``(description, unit)`` phase of a long piece of work.

    On a terminal the first phase's bar shows at once; a later phase's bar replaces it with
    that phase's first update (the phases run one after another). Piped or `quiet`, the
    callbacks do nothing.
    """
    if not progress_enabled(quiet):
        yield tuple(_ignore for _ in phases)
        return
    columns = [
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err, transient=True) as progress:
        bars = _Phases(progress, phases)
        yield tuple(bars.callback(i) for i in range(len(phases)))


@contextmanager
def progress_bar(description: str, *, quiet: bool = False, unit: str = "steps") -> Iterator[ProgressCallback]:
    """Yield a ``callback(done, total)``: a rich progress bar on a terminal, nothing otherwise."""
    with progress_phases((description, unit), quiet=quiet) as (update,):
        yield update
