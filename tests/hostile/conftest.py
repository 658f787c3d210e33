"""The hostile-input contract (issue #12, "Nothing lost, nothing crashes"), shared by every door.

Whatever a user feeds blkreplay, the command ends in one of two ways:

- exit 0 or 1 with a valid result (a findings document, a report, a schema-v1 trace), or
- exit 2 with exactly one line on stderr that names the file (and the line or row where one
  applies), never a traceback;

and the inputs are byte for byte what they were. :func:`run_cli` runs a command in-process
(fast enough for fuzzing) and records an exception that escapes ``main`` as a crash;
:func:`run_process` runs the installed console script (signals, resource limits, timeouts);
:func:`assert_contract` asserts the above; :func:`digests` / :class:`Unchanged` prove the
inputs unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import resource
import shutil
import subprocess
import sys
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO_ROOT

#: A small complete recording shipped with the repository (3 VMs, 5,606 steps, verdict pass).
SAMPLE = REPO_ROOT / "traces" / "sample"


@dataclass
class Outcome:
    """What a command did: its exit status, what it printed, and a traceback if it crashed."""

    code: int | None
    out: str
    err: str
    crash: str | None = None

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def run_cli(argv: Sequence[str | os.PathLike[str]]) -> Outcome:
    """Run ``blkreplay ARGV`` in-process through the console-script entry point."""
    from analyzer.cli import main

    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    code: int | None = 0
    crash = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([os.fsdecode(a) for a in argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        except BaseException:  # a crash: what a user would see as a traceback
            code = None
            crash = traceback.format_exc()
    return Outcome(code, _text(out), _text(err), crash)


def _text(stream: io.TextIOWrapper) -> str:
    stream.flush()
    return stream.buffer.getvalue().decode("utf-8", "backslashreplace")


def blkreplay_exe() -> str:
    exe = Path(sys.executable).parent / "blkreplay"
    if exe.exists():
        return str(exe)
    found = shutil.which("blkreplay")
    if found is None:
        pytest.skip("the blkreplay console script is not installed in this environment")
    return found


def run_process(
    argv: Sequence[str | os.PathLike[str]],
    *,
    timeout: float = 120,
    memory_bytes: int | None = None,
    file_size_bytes: int | None = None,
    cwd: Path | None = None,
) -> Outcome:
    """Run the installed ``blkreplay ARGV`` as a user would, optionally under resource limits
    (address space, file size: a write beyond it fails with EFBIG)."""

    def limits() -> None:
        if memory_bytes is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        if file_size_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_bytes, file_size_bytes))

    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [blkreplay_exe(), *(os.fsdecode(a) for a in argv)], capture_output=True, timeout=timeout,
        preexec_fn=limits, env=env, cwd=cwd,
    )
    err = proc.stderr.decode("utf-8", "backslashreplace")
    crash = err if "Traceback (most recent call last)" in err else None
    return Outcome(proc.returncode, proc.stdout.decode("utf-8", "backslashreplace"), err, crash)


def assert_contract(
    outcome: Outcome,
    *,
    names: str | os.PathLike[str] | None = None,
    line: int | None = None,
    row: bool = False,
) -> None:
    """Exit 0/1, or exit 2 with exactly one stderr line naming `names` (and `line` / a row)."""
    assert outcome.crash is None, f"crashed: {crash_summary(outcome.crash)}\n{outcome.crash}"
    assert "Traceback" not in outcome.err, outcome.err
    assert outcome.code in (0, 1, 2), f"exit status {outcome.code}; stderr: {outcome.err!r}"
    if outcome.code != 2:
        return
    lines = outcome.err_lines
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{outcome.err}"
    if names is not None:
        name = os.fsdecode(names)
        assert name in lines[0] or Path(name).name in lines[0], f"{name!r} not named in {lines[0]!r}"
    if line is not None:
        assert f"line {line}" in lines[0], f"line {line} not named in {lines[0]!r}"
    if row:
        assert "row " in lines[0], f"no row named in {lines[0]!r}"


def crash_summary(tb: str) -> str:
    """'<exception line> at <deepest blkreplay frame>' of a traceback's text."""
    lines = [line for line in tb.strip().splitlines() if line.strip()]
    frames = [line.strip() for line in lines
              if line.strip().startswith("File ") and ("/analyzer/" in line or "/tracer/" in line)]
    where = frames[-1].replace("File ", "") if frames else "?"
    return f"{lines[-1][:200]} at {where.replace(str(REPO_ROOT) + '/', '')}"


def digests(paths: Iterable[str | os.PathLike[str]]) -> dict[str, str]:
    """SHA-256 of every file under `paths` (files, or directories walked), by path."""
    out: dict[str, str] = {}
    for p in paths:
        p = os.fsdecode(p)
        if os.path.isdir(p) and not os.path.islink(p):
            for root, _dirs, files in os.walk(p):
                for f in files:
                    full = os.path.join(root, f)
                    out[full] = _digest(full)
        elif os.path.lexists(p):
            out[p] = _digest(p)
        else:
            out[p] = "absent"
    return out


def _digest(path: str) -> str:
    if os.path.islink(path) or not os.path.isfile(path):
        return f"special:{os.path.realpath(path)}"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


class Unchanged:
    """``with Unchanged(paths):`` asserts that no file under `paths` changed, appeared or went."""

    def __init__(self, *paths: str | os.PathLike[str]) -> None:
        self.paths = paths

    def __enter__(self) -> Unchanged:
        self.before = digests(self.paths)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            assert digests(self.paths) == self.before, "an input was modified"


def check_json(outcome: Outcome) -> dict:
    """The findings document of a `check -f json` that exited 0 or 1."""
    import json

    assert outcome.code in (0, 1), outcome.err
    return json.loads(outcome.out)


# ---------------------------------------------------------------------------------------------
# Fixtures: traces to corrupt
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sample_table() -> pa.Table:
    """The shipped sample recording as one table (schema v1, with its metadata)."""
    return pq.read_table(SAMPLE / "seg-000000.parquet")


@pytest.fixture
def trace_dir(tmp_path: Path) -> Path:
    """A copy of the shipped sample recording (manifest and one segment)."""
    out = tmp_path / "rec"
    shutil.copytree(SAMPLE, out)
    return out


@pytest.fixture
def trace_file(tmp_path: Path, sample_table: pa.Table) -> Path:
    """The sample as one Parquet file."""
    out = tmp_path / "trace.parquet"
    pq.write_table(sample_table, out)
    return out


def write_parquet(table: pa.Table, path: Path, **kwargs: object) -> Path:
    pq.write_table(table, path, **kwargs)
    return path


def vm_rows(table: pa.Table, vm: str = "vm0") -> pa.Table:
    """One VM's rows of `table` (a smaller trace that still passes)."""
    import pyarrow.compute as pc

    return table.filter(pc.equal(table.column("vm").cast(pa.string()), vm))


# ---------------------------------------------------------------------------------------------
# The work list: tests that fail today are strict xfails (tests/hostile/known_broken.py)
# ---------------------------------------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from tests.hostile.known_broken import KNOWN_BROKEN

    here = Path(__file__).parent
    for item in items:
        try:
            rel = Path(item.path).relative_to(here)
        except ValueError:
            continue
        key = f"{rel.as_posix()}::{item.name}"
        reason = KNOWN_BROKEN.get(key)
        if reason is not None:
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"#12: {reason}"))
