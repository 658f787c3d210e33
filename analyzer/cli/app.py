"""The typer application: global options, error handling, and the registry of commands.

Each command lives in its own module of this package and exposes ``register(app)``; it parses
flags, calls one documented library function and prints the result with a renderer of
:mod:`analyzer.render` (or of :mod:`analyzer.report`). Every command module is imported here by
name: one that fails to import fails the whole command line, loudly, rather than going
missing.

How a command ends maps to its exit status through :func:`tracer.errors.exit_code_for`, so
that 1 always means findings: an error the user caused (:class:`tracer.errors.BlkreplayError`,
including a command line click cannot parse) is one line on stderr and exit 2; any other
exception is a bug, one line "internal error, please report" and exit 3, with the traceback
only under ``--debug`` (or ``BLKREPLAY_DEBUG=1``).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

import typer
import typer.main

from analyzer.cli import capture, check, console, export, import_, record, replay, report
from analyzer.cli import rules as rules_cli
from analyzer.text import terminal
from tracer import __version__
from tracer.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    BlkreplayError,
    UsageError,
    exit_code_for,
    first_line,
)

app = typer.Typer(
    name="blkreplay",
    help="Record, replay and audit block I/O error handling in QEMU traces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

#: Command modules, in the order `blkreplay --help` lists them.
COMMAND_MODULES = (record, capture, import_, check, replay, report, export, rules_cli)


#: Set by ``--debug`` (or BLKREPLAY_DEBUG=1): an internal error shows its traceback.
DEBUG_ENV = "BLKREPLAY_DEBUG"
_debug = False


def _version(value: bool) -> None:
    if value:
        console.out.print(f"blkreplay {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
    debug: bool = typer.Option(
        False, "--debug", help=f"Show the traceback of an internal error (or {DEBUG_ENV}=1)."
    ),
) -> None:
    """Record, replay and audit block I/O error handling in QEMU traces."""
    global _debug
    _debug = _debug or debug


for _module in COMMAND_MODULES:
    _module.register(app)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point: run one command and exit with the status its end maps to.

    Always ends in SystemExit (0 pass, 1 error findings, 2 unusable input / usage / output,
    3 internal error, 130 interrupted, 141 stdout closed early)."""
    global _debug
    _debug = os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    args = sys.argv[1:] if argv is None else [str(a) for a in argv]
    try:
        code = _run(args)
    except BlkreplayError as exc:
        if isinstance(exc, UsageError):
            _usage(exc)
        console.fail(exc.message, exit_code_for(exc))
    except (KeyboardInterrupt, typer.Abort):
        console.err.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError as exc:
        _quiet_stdout()
        sys.exit(exit_code_for(exc))
    except Exception as exc:  # the fallback: a bug, never a traceback that looks like a finding
        _internal_error(exc)
    sys.exit(code)


def _run(args: list[str]) -> int:
    """Parse `args` and run the command; its exit status. Usage errors become UsageError."""
    command = typer.main.get_command(app)
    try:
        with command.make_context("blkreplay", args) as ctx:
            command.invoke(ctx)
    except typer.Exit as done:
        return done.exit_code
    except typer.TyperException as exc:  # click's usage errors (unknown option, missing argument)
        ctx_ = getattr(exc, "ctx", None)
        path = getattr(ctx_, "command_path", None) or "blkreplay"
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx_ is not None:
            help_text = ctx_.get_help()  # typer's rich formatter prints it itself
            if help_text:
                console.out.print(help_text, markup=False, highlight=False)
            return exit_code_for(UsageError("no command given"))
        raise UsageError(_one_line(exc.format_message()), command=path) from None
    return EXIT_OK


def _one_line(message: str) -> str:
    """click's message as one line in our style: lower-case start, no final period."""
    text = " ".join(message.split()).rstrip(".")
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def _usage(exc: UsageError) -> NoReturn:
    """``blkreplay check: no such option: --foo (see blkreplay check --help)``, exit 2."""
    console.err.print(f"{terminal(exc.command)}: {terminal(exc.message)} "
                      f"(see {terminal(exc.command)} --help)")
    raise SystemExit(exit_code_for(exc))


def _internal_error(exc: Exception) -> NoReturn:
    if _debug:
        lines = "".join(traceback.format_exception(exc)).rstrip("\n").split("\n")
        console.err.print("\n".join(terminal(line) for line in lines), highlight=False)
    hint = "" if _debug else f" (run with --debug or {DEBUG_ENV}=1 for the traceback)"
    name, text = type(exc).__name__, first_line(exc)
    what = name if text == name else f"{name}: {text}"
    console.err.print(f"[bold red]blkreplay: internal error, please report:[/] {terminal(what)}{hint}")
    raise SystemExit(exit_code_for(exc))


def _quiet_stdout() -> None:
    """After a closed pipe, send what is still buffered for stdout nowhere (no second error)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
