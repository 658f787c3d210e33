"""The typer application: global options, error handling, and the registry of commands.

Each command lives in its own module of this package and exposes ``register(app)``; it parses
flags, calls one documented library function and prints the result with a renderer of
:mod:`analyzer.render` (or of :mod:`analyzer.report`). Every command module is imported here by
name: one that fails to import fails the whole command line, loudly, rather than going
missing. Errors the user caused (:class:`tracer.errors.BlkreplayError`) become one line on
stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import sys

import typer

from analyzer.cli import capture, check, console, import_, record, replay, report
from analyzer.cli import rules as rules_cli
from tracer import __version__
from tracer.errors import BlkreplayError

app = typer.Typer(
    name="blkreplay",
    help="Record, replay and audit block I/O error handling in QEMU traces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

#: Command modules, in the order `blkreplay --help` lists them.
COMMAND_MODULES = (record, capture, import_, check, replay, report, rules_cli)


def _version(value: bool) -> None:
    if value:
        console.out.print(f"blkreplay {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Record, replay and audit block I/O error handling in QEMU traces."""


for _module in COMMAND_MODULES:
    _module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: click handles usage errors (exit 2); ours become one line."""
    try:
        app(args=argv, prog_name="blkreplay")
    except BlkreplayError as exc:
        console.fail(exc.message, exc.exit_code)
    except KeyboardInterrupt:
        console.err.print("interrupted")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
