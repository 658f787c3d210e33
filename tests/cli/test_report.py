"""`blkreplay report` on the command line (the real check on small traces): files, exit codes,
and a terminal summary that never passes markup or escape sequences from a trace through."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from analyzer.cli import console, main
from tests.analyzer.report.fixtures import HOSTILE_VM, clean_trace, failing_trace


def run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_clean_trace_exits_0_and_writes_the_report(tmp_path, capsys):
    _, _, path = clean_trace(tmp_path)
    out = tmp_path / "audit.html"
    code, stdout, _ = run(["report", str(path), "-o", str(out)], capsys)
    assert code == 0
    assert "PASS" in stdout and "audit.html" in stdout
    html = out.read_text()
    assert "verdict pass" in html
    # The reproduce command is the canonical one, with the format made explicit.
    assert f"blkreplay report {path} -o {out} --format html" in html


@pytest.mark.parametrize("fmt,ext", [("md", "md"), ("json", "json"), ("html", "report")])
def test_failing_trace_exits_1_in_every_format(tmp_path, capsys, fmt, ext):
    _, _, path = failing_trace(tmp_path)
    out = tmp_path / f"audit.{ext}"
    code, stdout, _ = run(["report", str(path), "-o", str(out), "--format", fmt, "-q"], capsys)
    assert code == 1
    assert stdout == ""  # --quiet
    assert out.stat().st_size > 0


def test_same_command_twice_gives_the_same_bytes(tmp_path, capsys):
    _, _, path = failing_trace(tmp_path)
    out = tmp_path / "audit.html"
    run(["report", str(path), "-o", str(out), "-q"], capsys)
    first = out.read_bytes()
    run(["report", str(path), "-o", str(out), "-q"], capsys)
    assert out.read_bytes() == first
    run(["report", str(path), "-o", str(out), "-q", "--timestamp"], capsys)
    assert out.read_bytes() != first and b"--timestamp" in out.read_bytes()


def test_unusable_input_exits_2_with_one_line(tmp_path, capsys):
    missing = tmp_path / "nope"
    out = tmp_path / "audit.html"
    code, _, stderr = run(["report", str(missing), "-o", str(out)], capsys)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and "blkreplay: error:" in stderr
    assert not out.exists()


def test_unknown_extension_without_format_exits_2(tmp_path, capsys):
    code, _, stderr = run(["report", str(tmp_path), "-o", str(tmp_path / "r.txt")], capsys)
    assert code == 2 and "--format" in stderr


def test_terminal_summary_escapes_markup_and_ansi_from_the_trace(tmp_path, capsys, monkeypatch):
    _, _, path = failing_trace(tmp_path, vm=HOSTILE_VM)
    buf = io.StringIO()
    monkeypatch.setattr(console, "out", Console(file=buf, force_terminal=True, color_system="standard",
                                                width=200, highlight=False))
    code, _, _ = run(["report", str(path), "-o", str(tmp_path / "r.md")], capsys)
    assert code == 1
    shown = buf.getvalue()
    assert "VM vm-[bold red]x[/]\\x1b[31m|`*_#: 1 finding(s)" in _strip_our_styles(shown)
    assert "\x1b[31m|" not in shown  # the trace's escape sequence is not passed through


def _strip_our_styles(text: str) -> str:
    """Remove the SGR sequences rich emits for our own styling (the FAIL label)."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@pytest.mark.parametrize("fmt", ["html", "md"])
def test_progress_covers_every_phase_to_its_end(tmp_path, capsys, monkeypatch, fmt):
    """The bar never sits at 100 % of one phase while another runs: the check, the statistics
    and the writing of the report each have their own, each driven to its end in order."""
    from contextlib import contextmanager

    seen: list[tuple[str, int, int | None]] = []

    @contextmanager
    def phases(*described, quiet=False):
        yield tuple((lambda d, t, name=name: seen.append((name, d, t))) for name, _ in described)

    monkeypatch.setattr(console, "progress_phases", phases)
    _, _, path = failing_trace(tmp_path)
    run(["report", str(path), "-o", str(tmp_path / f"a.{fmt}")], capsys)
    names = [n for n, _, _ in seen]
    assert list(dict.fromkeys(names)) == ["checking", "statistics", "writing"]  # in this order
    assert names == sorted(names, key=["checking", "statistics", "writing"].index)
    for name in ("checking", "statistics", "writing"):
        done, total = [(d, t) for n, d, t in seen if n == name][-1]
        assert total and done == total
    assert (tmp_path / f"a.{fmt}").exists()
