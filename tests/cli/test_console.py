"""Progress on a terminal: one bar per phase of a long piece of work, nothing when piped."""

from __future__ import annotations

import io
import re

from rich.console import Console

from analyzer.cli import console


def _frames(raw: str) -> list[str]:
    """The successive renderings of the live display, without colour codes."""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    return [f.strip() for f in plain.split("\r") if f.strip()]


def test_a_later_phase_replaces_the_bar_of_the_one_before(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(console, "err", Console(file=buf, force_terminal=True, width=100))
    monkeypatch.setattr(console, "progress_enabled", lambda quiet: True)
    with console.progress_phases(("capturing", "lines"), ("importing", "bytes")) as (cap, imp):
        cap(5, None)
        imp(10, 100)
        cap(7, None)  # a phase that is over no longer shows
    frames = _frames(buf.getvalue())
    assert frames[0].startswith("capturing")
    assert frames[-1].startswith("importing") and "10/100 bytes" in frames[-1]
    assert "capturing" not in frames[-1]


def test_piped_or_quiet_progress_prints_nothing(capsys):
    with console.progress_phases(("a", "x"), ("b", "y")) as (first, second):
        first(1, 2)
        second(3, 4)
    with console.progress_bar("checking", quiet=True) as update:
        update(1, 1)
    assert capsys.readouterr() == ("", "")
