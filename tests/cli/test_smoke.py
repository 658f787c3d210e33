"""The installed console script works as a user would run it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _blkreplay() -> list[str]:
    exe = Path(sys.executable).parent / "blkreplay"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("blkreplay")
    if found is None:
        pytest.skip("the blkreplay console script is not installed in this environment")
    return [found]


def test_help_lists_the_commands():
    out = subprocess.run([*_blkreplay(), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Usage: blkreplay" in out.stdout
    assert "Record, replay and audit" in out.stdout


def test_version_and_unknown_command_exit_codes():
    version = subprocess.run([*_blkreplay(), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("blkreplay ")
    bad = subprocess.run([*_blkreplay(), "no-such-command"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
