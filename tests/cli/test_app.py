"""The command registry: every command is there, and a command that cannot load is an error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer.main

from analyzer.cli.app import app

REPO = Path(__file__).resolve().parents[2]


def test_every_command_is_registered_in_help_order():
    names = [c.name for c in typer.main.get_command(app).commands.values()]
    assert names == ["record", "capture", "import", "check", "replay", "report", "export", "rules"]


def test_a_command_module_that_fails_to_import_is_an_error_not_a_missing_command():
    # `replay` made unimportable: loading the CLI must fail loudly, not drop the command
    code = "import sys; sys.modules['analyzer.cli.replay'] = None; import analyzer.cli"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode != 0
    assert "analyzer.cli.replay" in proc.stderr
