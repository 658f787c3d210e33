"""How a command ends, as a user and a CI job see it: one line on stderr and the exit status of
the one mapping in `tracer.errors` (1 only for findings, 2 usage / input / output, 3 a bug)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import analyzer.cli.check as check_cli
from analyzer.cli import main
from tracer.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    InputError,
    OutputError,
    UsageError,
    exit_code_for,
)

TRACES = Path(__file__).resolve().parents[2] / "traces"


def run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    return exc.value.code, out.out, [line for line in out.err.splitlines() if line.strip()]


def test_the_one_mapping_of_exit_statuses():
    assert (EXIT_FINDINGS, EXIT_ERROR, EXIT_INTERNAL, EXIT_INTERRUPTED) == (1, 2, 3, 130)
    assert exit_code_for(InputError("x")) == exit_code_for(OutputError("x")) == 2
    assert exit_code_for(UsageError("x")) == 2
    assert exit_code_for(KeyboardInterrupt()) == 130
    assert exit_code_for(BrokenPipeError()) == EXIT_BROKEN_PIPE
    assert exit_code_for(ValueError()) == exit_code_for(MemoryError()) == 3


@pytest.mark.parametrize(
    "argv,line",
    [
        (["check", "--foo"], "blkreplay check: no such option: --foo"),
        (["check"], "blkreplay check: missing argument 'TRACE' (see blkreplay check --help)"),
        (["report", str(TRACES / "fixed")], "blkreplay report: missing option '--output' / '-o'"),
        (["check", str(TRACES / "fixed"), "--workers", "x"], "blkreplay check: invalid value for '--workers'"),
        (["no-such-command"], "blkreplay: no such command 'no-such-command' (see blkreplay --help)"),
        (["--bogus"], "blkreplay: no such option: --bogus (see blkreplay --help)"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(argv, line, capsys):
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert len(err) == 1, err
    assert err[0].startswith(line)
    assert err[0].endswith("--help)")
    assert "╭" not in err[0] and "Usage:" not in err[0]


def test_markup_in_a_bad_option_is_shown_not_interpreted(capsys):
    code, _, err = run(["check", "--[red]x[/]"], capsys)
    assert code == 2 and err == [
        "blkreplay check: no such option: --[red]x[/] (see blkreplay check --help)"
    ]


def _boom(*args, **kwargs):
    raise RuntimeError("boom\nsecond line of a long library message")


def test_an_unexpected_exception_is_one_line_and_exit_3(monkeypatch, capsys):
    monkeypatch.delenv("BLKREPLAY_DEBUG", raising=False)
    monkeypatch.setattr(check_cli, "check", _boom)
    code, out, err = run(["check", TRACES / "fixed"], capsys)
    assert code == 3 and out == ""
    assert err == ["blkreplay: internal error, please report: RuntimeError: boom "
                   "(run with --debug or BLKREPLAY_DEBUG=1 for the traceback)"]


def test_an_exception_without_a_message_is_named_once(monkeypatch, capsys):
    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.delenv("BLKREPLAY_DEBUG", raising=False)
    monkeypatch.setattr(check_cli, "check", out_of_memory)
    code, _, err = run(["check", TRACES / "fixed"], capsys)
    assert code == 3
    assert err == ["blkreplay: internal error, please report: MemoryError "
                   "(run with --debug or BLKREPLAY_DEBUG=1 for the traceback)"]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(how, monkeypatch, capsys):
    monkeypatch.setattr(check_cli, "check", _boom)
    argv: list = ["check", TRACES / "fixed"]
    if how == "flag":
        monkeypatch.delenv("BLKREPLAY_DEBUG", raising=False)
        argv.insert(0, "--debug")
    else:
        monkeypatch.setenv("BLKREPLAY_DEBUG", "1")
    code, _, err = run(argv, capsys)
    assert code == 3
    assert err[0] == "Traceback (most recent call last):"
    assert any("_boom" in line for line in err)
    assert err[-1] == "blkreplay: internal error, please report: RuntimeError: boom"


def test_debug_does_not_change_a_user_error(monkeypatch, capsys):
    monkeypatch.setenv("BLKREPLAY_DEBUG", "1")
    code, _, err = run(["check", "/nonexistent/trace.parquet"], capsys)
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0]


def test_ctrl_c_is_130(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(check_cli, "check", interrupted)
    code, _, err = run(["check", TRACES / "fixed"], capsys)
    assert (code, err) == (130, ["interrupted"])


def test_findings_are_the_only_exit_1(capsys):
    code, _, _ = run(["check", TRACES / "sync-stop", "-q"], capsys)
    assert code == 1


def test_a_closed_pipe_is_not_exit_0_or_1():
    exe = Path(sys.executable).parent / "blkreplay"
    if not exe.exists():
        pytest.skip("the blkreplay console script is not installed in this environment")
    proc = subprocess.Popen([str(exe), "replay", str(TRACES / "fixed")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == EXIT_BROKEN_PIPE
    assert "Traceback" not in err
