"""What ``blkreplay check`` and ``blkreplay replay`` print, as library functions.

Each renderer is a pure function of a library result, so that a notebook, a CI script and the
command line get the same bytes::

    from analyzer import check
    from analyzer.render import render_check
    print(render_check(check(["traces/sync-stop"]), "json"), end="")

A :class:`~analyzer.result.CheckResult`, one module per format (:data:`CHECK_FORMATS`):

- :mod:`~analyzer.render.text`: the rich summary table, the findings and the verdict line;
- :mod:`~analyzer.render.json`: the stable ``blkreplay.findings/1`` document;
- :mod:`~analyzer.render.junit`: JUnit XML, one test case per rule, for CI systems.

The replayed steps (the frame of :func:`analyzer.replay`): :mod:`~analyzer.render.replay`
(aligned text lines, or JSON lines).

The audit report (HTML, Markdown, JSON with statistics) is a different, larger document with
its own renderers in :mod:`analyzer.report`. Only the command line imports this package; the
analysis never does (``tests/test_architecture.py``).
"""

from __future__ import annotations

from analyzer.render.json import render_json
from analyzer.render.junit import render_junit
from analyzer.render.replay import REPLAY_FORMATS, print_replay, render_jsonl
from analyzer.render.text import print_text, render_text
from analyzer.result import CheckResult
from tracer.errors import check_format

__all__ = [
    "CHECK_FORMATS",
    "REPLAY_FORMATS",
    "print_replay",
    "print_text",
    "render_check",
    "render_json",
    "render_jsonl",
    "render_junit",
    "render_text",
]

#: The formats of `blkreplay check -f`, in the order its help lists them.
CHECK_FORMATS: tuple[str, ...] = ("text", "json", "junit")


def render_check(result: CheckResult, fmt: str, *, quiet: bool = False) -> str:
    """`result` as `fmt` (one of :data:`CHECK_FORMATS`), as a file written by ``-o`` holds it.

    An unknown `fmt` is a :class:`~tracer.errors.UnknownFormatError`; `quiet` keeps only the
    verdict line of the text format."""
    fmt = check_format(fmt, CHECK_FORMATS)
    if fmt == "json":
        return render_json(result)
    if fmt == "junit":
        return render_junit(result)
    return render_text(result, quiet=quiet)
