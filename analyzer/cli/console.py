"""Terminal output for the CLI: consoles, progress bars that stay quiet when piped, errors."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from analyzer.text import terminal

ProgressCallback = Callable[[int, int | None], None]

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    """Print `message` as one escaped line on stderr and exit with `code`."""
    err.print(f"[bold red]blkreplay: error:[/] {terminal(message)}")
    raise SystemExit(code)


def note(message: str, *, quiet: bool = False) -> None:
    """A status line on stderr (so stdout stays clean for piped output)."""
    if not quiet:
        err.print(message)


def progress_enabled(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


@contextmanager
def progress_bar(description: str, *, quiet: bool = False, unit: str = "steps") -> Iterator[ProgressCallback]:
    """Yield a ``callback(done, total)``: a rich progress bar on a terminal, nothing otherwise."""
    if not progress_enabled(quiet):
        yield lambda done, total: None
        return
    columns = [
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield update
