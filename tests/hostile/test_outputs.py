"""Outputs (``-o``): never an input, never half a file, one line when it cannot be written.

The first part tests :mod:`analyzer.outputs` itself (the function every command's ``-o`` is to
go through); the second runs the commands, black-box. As root, ``chmod`` does not make a
directory read-only, so the read-only case mounts a read-only tmpfs (and falls back to a path
under /proc/sys when mounting is not allowed); ENOSPC needs a tiny tmpfs and is skipped where
none can be mounted; EFBIG comes from ``RLIMIT_FSIZE`` in a subprocess.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.outputs import open_output, output_dir, write_output
from tests.hostile.conftest import Unchanged, assert_contract, run_cli, run_process
from tracer import tracedir
from tracer.errors import BlkreplayError, OutputError

IS_ROOT = os.geteuid() == 0


def leftovers(directory: Path) -> list[str]:
    """Temporary files an atomic write left behind."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(tracedir.TMP_SUFFIX))


@contextlib.contextmanager
def tmpfs(where: Path, *options: str):
    """A tmpfs mounted at `where` (root only), unmounted afterwards; skips when impossible."""
    if not IS_ROOT:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir()
    opts = ",".join(("size=64k", *options))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# ---------------------------------------------------------------------------------------------
# analyzer.outputs: refusing outputs that would destroy an input
# ---------------------------------------------------------------------------------------------


def test_output_error_is_a_one_line_exit_2_error():
    err = OutputError("directory x does not exist", path="x/y.json")
    assert isinstance(err, BlkreplayError) and err.exit_code == 2
    assert str(err) == "x/y.json: directory x does not exist"


def test_refuses_the_input_itself(tmp_path):
    inp = tmp_path / "trace.parquet"
    inp.write_bytes(b"PAR1")
    for out in (inp, tmp_path / "." / "trace.parquet", tmp_path / "sub" / ".." / "trace.parquet"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with Unchanged(inp), pytest.raises(OutputError, match="is the input"):
            write_output(out, "x", inputs=[inp], kind="findings")


def test_refuses_a_symlink_or_hard_link_to_the_input(tmp_path):
    inp = tmp_path / "in.log"
    inp.write_text("data\n")
    (tmp_path / "sym.log").symlink_to(inp)
    os.link(inp, tmp_path / "hard.log")
    with Unchanged(inp):
        with pytest.raises(OutputError, match="is the input"):
            write_output(tmp_path / "sym.log", "x", inputs=[inp], kind="text")
        with pytest.raises(OutputError, match="same file as the input"):
            write_output(tmp_path / "hard.log", "x", inputs=[inp], kind="text")


def test_refuses_an_output_inside_an_input_directory(trace_dir):
    with Unchanged(trace_dir):
        for name in ("report.html", "seg-000001.parquet", "manifest.json", "x.parquet"):
            with pytest.raises(OutputError, match="inside the input directory"):
                write_output(trace_dir / name, "x", inputs=[trace_dir], kind="report")
    assert leftovers(trace_dir) == []


def test_refuses_an_output_inside_an_input_given_as_a_glob(trace_dir):
    with Unchanged(trace_dir), pytest.raises(OutputError, match="inside the input directory"):
        write_output(trace_dir / "r.json", "x", inputs=[str(trace_dir.parent / "re*")], kind="report")


def test_refuses_recorder_names_in_any_trace_directory(trace_dir, tmp_path):
    other = tmp_path / "other.parquet"
    with Unchanged(trace_dir):
        for name in ("seg-000001.parquet", "manifest.json"):
            with pytest.raises(OutputError, match="would alter the recording"):
                write_output(trace_dir / name, b"PAR1", inputs=[other], kind="parquet")


def test_refuses_a_non_parquet_output_named_parquet_in_a_trace_directory(trace_dir, tmp_path):
    with Unchanged(trace_dir), pytest.raises(OutputError, match="a report named like a Parquet file"):
        write_output(trace_dir / "audit.parquet", "<html>", inputs=[tmp_path / "x"], kind="report")
    # a Parquet output of another name is a file like any other
    write_output(trace_dir / "extra.parquet", b"PAR1", inputs=[tmp_path / "x"], kind="parquet")


def test_allows_an_output_beside_its_inputs(tmp_path):
    inp = tmp_path / "in.log"
    inp.write_text("x\n")
    assert write_output(tmp_path / "out.parquet", b"PAR1", inputs=[inp], kind="parquet") == (
        tmp_path / "out.parquet"
    )
    assert (tmp_path / "out.parquet").read_bytes() == b"PAR1"


def test_output_dir_must_not_contain_an_input(tmp_path):
    inp = tmp_path / "d" / "in.log"
    inp.parent.mkdir()
    inp.write_text("x\n")
    with Unchanged(tmp_path), pytest.raises(OutputError, match="contains the input"):  # noqa: SIM117
        with output_dir(tmp_path / "d", inputs=[inp], replace=True):
            pass


# ---------------------------------------------------------------------------------------------
# analyzer.outputs: atomic, with the umask's permissions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_get_the_umasks_permissions(tmp_path, mask, mode):
    with umask(mask):
        write_output(tmp_path / "a.json", "{}", inputs=[], kind="findings")
        tracedir.atomic_write_text(tmp_path / "b.json", "{}")
        with output_dir(tmp_path / "d", inputs=[]) as d:
            (d / "x").write_text("1")
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == mode
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == mode  # the recorder's writer too
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~mask


def test_a_failing_writer_keeps_the_old_output_and_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "findings.json"
    out.write_text("old\n")
    with pytest.raises(RuntimeError, match="renderer broke"):  # noqa: SIM117
        with open_output(out, inputs=[], kind="findings") as f:
            f.write("new, half")
            raise RuntimeError("renderer broke")
    assert out.read_text() == "old\n"
    assert leftovers(tmp_path) == []


def test_open_output_streams_text_and_bytes(tmp_path):
    with open_output(tmp_path / "o.txt", inputs=[], kind="text") as f:
        f.write("é\n")
        f.write(b"raw\n")
    assert (tmp_path / "o.txt").read_bytes() == "é\nraw\n".encode()


def test_dash_is_stdout_only_where_allowed(tmp_path, capfdbinary):
    with pytest.raises(OutputError, match="standard output"):
        write_output("-", "x", inputs=[], kind="report")
    assert write_output("-", "to stdout\n", inputs=[], kind="findings", allow_stdout=True) is None
    sys.stdout.flush()
    assert capfdbinary.readouterr().out.endswith(b"to stdout\n")


def test_parents_are_created_only_when_asked(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        write_output(tmp_path / "a" / "b" / "o.json", "{}", inputs=[], kind="findings")
    assert not (tmp_path / "a").exists()
    write_output(tmp_path / "a" / "b" / "o.json", "{}", inputs=[], kind="findings", parents=True)
    assert (tmp_path / "a" / "b" / "o.json").read_text() == "{}"


def test_output_dir_replaces_only_when_complete(tmp_path):
    out = tmp_path / "ds"
    with output_dir(out, inputs=[]) as d:
        (d / "vm=old").mkdir()
        (d / "vm=old" / "part-0.parquet").write_text("old")
    with pytest.raises(OutputError, match="not empty"), output_dir(out, inputs=[]):
        pass
    with pytest.raises(RuntimeError), output_dir(out, inputs=[], replace=True) as d:
        (d / "vm=new").mkdir()
        raise RuntimeError("import failed")
    assert sorted(p.name for p in out.iterdir()) == ["vm=old"]  # untouched
    with output_dir(out, inputs=[], replace=True) as d:
        (d / "vm=new").mkdir()
    assert sorted(p.name for p in out.iterdir()) == ["vm=new"]  # old and new never mix
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


# ---------------------------------------------------------------------------------------------
# analyzer.outputs: every bad place is one OutputError, nothing left behind
# ---------------------------------------------------------------------------------------------


def _bad_place(tmp_path: Path, case: str) -> tuple[Path | str, str]:
    (tmp_path / "file").write_text("a regular file\n")
    (tmp_path / "dir").mkdir()
    return {
        "missing-dir": (tmp_path / "nope" / "o.json", "does not exist"),
        "existing-dir": (tmp_path / "dir", "is a directory"),
        "trailing-slash": (f"{tmp_path}/new/", "names a directory"),
        "under-a-file": (tmp_path / "file" / "o.json", "is not a directory"),
        "deep-under-a-file": (tmp_path / "file" / "a" / "b" / "o.json", "is not a directory"),
        "proc": ("/proc/version", "cannot"),
        "proc-sys": ("/proc/sys/kernel/blkreplay-out", "cannot"),
        "empty": ("", "empty"),
    }[case]


@pytest.mark.parametrize(
    "case", ["missing-dir", "existing-dir", "trailing-slash", "under-a-file", "deep-under-a-file",
             "proc", "proc-sys", "empty"],
)
def test_a_bad_place_is_one_output_error(tmp_path, case):
    out, why = _bad_place(tmp_path, case)
    with Unchanged(tmp_path), pytest.raises(OutputError, match=why) as info:
        write_output(out, "{}\n", inputs=[], kind="findings")
    message = str(info.value)
    assert "\n" not in message
    if out:
        assert str(out).rstrip("/") in message
    assert leftovers(tmp_path) == [] and not (tmp_path / "nope").exists()


def test_read_only_directory(tmp_path):
    if IS_ROOT:
        try:
            with tmpfs(tmp_path / "ro", "ro") as ro:
                target: Path = ro / "o.json"
                with pytest.raises(OutputError, match="Read-only file system"):
                    write_output(target, "{}", inputs=[], kind="findings")
                return
        except pytest.skip.Exception:
            # no mount: /proc/sys refuses new files even to root
            with pytest.raises(OutputError, match="cannot create a file"):
                write_output("/proc/sys/blkreplay.json", "{}", inputs=[], kind="findings")
            return
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="Permission denied"):
            write_output(ro / "o.json", "{}", inputs=[], kind="findings")
    finally:
        ro.chmod(0o755)


def test_disk_full_is_one_output_error_and_keeps_the_old_file(tmp_path):
    with tmpfs(tmp_path / "small") as small:
        out = small / "o.json"
        out.write_text("old\n")
        with pytest.raises(OutputError, match="No space left on device"):
            write_output(out, "x" * (1 << 20), inputs=[], kind="findings")
        assert out.read_text() == "old\n"
        assert leftovers(small) == []


def test_file_too_large_is_one_output_error(tmp_path):
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "from analyzer.outputs import write_output\n"
        "from tracer.errors import OutputError\n"
        "try:\n"
        "    write_output(sys.argv[1], 'x' * 100000, inputs=[], kind='findings')\n"
        "except OutputError as exc:\n"
        "    print(exc)\n"
    )
    out = tmp_path / "big.json"
    done = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{out}: cannot write (File too large); nothing written"
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# The commands, black-box
# ---------------------------------------------------------------------------------------------


def _log(tmp_path: Path) -> Path:
    log = tmp_path / "trace.log"
    log.write_text("1@1.000000:runstate_set current_run_state 6 (prelaunch) new_state 9 (running)\n")
    return log


def _command(kind: str, tmp_path: Path, trace: Path, out: str | Path) -> list[str | Path]:
    if kind == "check":
        return ["check", trace, "-f", "json", "-o", out]
    if kind == "check-text":
        return ["check", trace, "-o", out]
    if kind == "report":
        return ["report", trace, "-f", "json", "-o", out]
    return ["import", _log(tmp_path), "-o", out]


@pytest.mark.parametrize("kind", ["check", "check-text", "report", "import"])
def test_output_equal_to_the_input_is_refused(kind, trace_file, tmp_path):
    inp = _log(tmp_path) if kind == "import" else trace_file
    with Unchanged(inp):
        outcome = run_cli(_command(kind, tmp_path, trace_file, inp))
    assert_contract(outcome, names=inp)
    assert outcome.code == 2


def test_report_named_like_a_segment_into_the_trace_dir_is_refused(trace_dir):
    with Unchanged(trace_dir):
        outcome = run_cli(["report", trace_dir, "-f", "html", "-o", trace_dir / "seg-000001.parquet"])
    assert_contract(outcome, names="seg-000001.parquet")
    assert outcome.code == 2


def test_check_into_the_manifest_is_refused(trace_dir):
    with Unchanged(trace_dir):
        outcome = run_cli(["check", trace_dir, "-f", "json", "-o", trace_dir / "manifest.json"])
    assert_contract(outcome, names="manifest.json")
    assert outcome.code == 2


def test_report_into_another_recording_as_a_parquet_name_is_refused(trace_dir, trace_file):
    with Unchanged(trace_dir):
        outcome = run_cli(["report", trace_file, "-f", "md", "-o", trace_dir / "notes.parquet"])
    assert_contract(outcome, names="notes.parquet")
    assert outcome.code == 2


_PLACES = ["missing-dir", "existing-dir", "trailing-slash", "under-a-file", "deep-under-a-file",
           "proc", "proc-sys", "empty"]


# `import -o new/` names a new directory, import's directory output: a valid place (tested below)
_BAD_OUTPUTS = [pytest.param(command, place, id=f"{command}-{place}")
                for command in ("check", "report", "import") for place in _PLACES
                if (command, place) != ("import", "trailing-slash")]


@pytest.mark.parametrize("command,place", _BAD_OUTPUTS)
def test_every_bad_output_is_one_line_and_exit_2(command, place, trace_file, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # '' must not write into the test's own directory
    out, _ = _bad_place(work, place)
    if command == "import" and place in ("missing-dir",):
        out = work / "nope" / "o.parquet"
    if command == "report" and place in ("missing-dir", "under-a-file", "deep-under-a-file"):
        out = Path(str(out).replace(".json", ".html"))
    before = sorted(os.listdir(work))
    with Unchanged(trace_file):
        outcome = run_cli(_command(command, tmp_path, trace_file, out))
    assert_contract(outcome)
    assert outcome.code == 2
    if out:
        assert str(out).rstrip("/") in outcome.err_lines[0]
    assert sorted(os.listdir(work)) == before  # nothing created, no temporary file


def test_import_into_a_new_directory_named_with_a_trailing_slash(tmp_path):
    outcome = run_cli(["import", _log(tmp_path), "-o", f"{tmp_path}/new/", "-q"])
    assert (outcome.code, outcome.err) == (0, "")
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["vm=vm0"]
    assert leftovers(tmp_path) == []


def test_check_output_beyond_the_file_size_limit(trace_file, tmp_path):
    out = tmp_path / "f.json"
    outcome = run_process(["check", trace_file, "-f", "json", "-o", out], file_size_bytes=256)
    assert_contract(outcome, names=out)
    assert outcome.code == 2 and not out.exists() and leftovers(tmp_path) == []


def test_report_output_beyond_the_file_size_limit(trace_file, tmp_path):
    out = tmp_path / "r.html"
    outcome = run_process(["report", trace_file, "-o", out], file_size_bytes=1024)
    assert_contract(outcome, names=out)
    assert outcome.code == 2 and not out.exists() and leftovers(tmp_path) == []


def test_import_output_beyond_the_file_size_limit(tmp_path):
    log = tmp_path / "trace.log"
    log.write_text("".join(
        f"1@{i}.000000:runstate_set current_run_state 9 (running) new_state 9 (running)\n"
        for i in range(1, 20000)
    ))
    out = tmp_path / "o.parquet"
    outcome = run_process(["import", log, "-o", out], file_size_bytes=512)
    assert_contract(outcome, names=out)
    assert outcome.code == 2 and not out.exists() and leftovers(tmp_path) == []


def test_import_into_an_existing_output_dir_does_not_mix_old_parts(tmp_path):
    out = tmp_path / "ds"
    stale = out / "vm=old-vm" / "part-0.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"stale")
    outcome = run_cli(["import", _log(tmp_path), "-o", out, "-q"])
    assert_contract(outcome, names=out)
    if outcome.code == 0:  # replaced as a whole ...
        assert not stale.exists()
    else:  # ... or refused, untouched
        assert stale.read_bytes() == b"stale"


# ---------------------------------------------------------------------------------------------
# capture -o: an earlier capture survives until a new one is complete
# ---------------------------------------------------------------------------------------------


def _capture(argv: list, sock: Path, *, greeting: bytes | None = None):
    """`blkreplay capture --qmp unix:SOCK ARGV` against a fake QEMU that shuts down at once
    (or greets with `greeting`: not QMP)."""
    import threading

    from tests.tracer.fake_qmp import FakeQmp, wait_for

    kwargs = {} if greeting is None else {"greeting": greeting}
    with FakeQmp(sock, **kwargs) as fake:
        if greeting is None:
            t = threading.Thread(
                target=lambda: (wait_for(lambda: "query-status" in fake.sent_names()), fake.shutdown()),
                daemon=True,
            )
            t.start()
        outcome = run_cli(["capture", "--qmp", f"unix:{sock}", "--poll", "50", "--duration", "10", *argv])
    return outcome


def test_capture_keeps_an_earlier_transcript_when_the_endpoint_is_not_qmp(tmp_path):
    old = tmp_path / "old.jsonl"
    old.write_text('{"t": 1.0, "dir": "recv", "line": "{}"}\n')
    with Unchanged(old):
        outcome = _capture(["-o", old], tmp_path / "s", greeting=b"SSH-2.0-OpenSSH_9.2\r")
    assert_contract(outcome)
    assert outcome.code == 2 and "not a QMP monitor" in outcome.err_lines[0]
    assert leftovers(tmp_path) == []


def test_capture_replaces_an_earlier_transcript_only_when_complete(tmp_path):
    old = tmp_path / "old.jsonl"
    old.write_text("earlier capture\n")
    with umask(0o027):
        outcome = _capture(["-o", old, "-q"], tmp_path / "s")
    assert (outcome.code, outcome.err) == (0, "")
    lines = old.read_text().splitlines()
    assert "earlier capture" not in lines and any("SHUTDOWN" in line for line in lines)
    assert old.stat().st_mode & 0o777 == 0o640
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("place", ["missing-dir", "existing-dir", "under-a-file", "empty"])
def test_capture_refuses_a_bad_output_before_connecting(place, tmp_path):
    out, _ = _bad_place(tmp_path, place)
    if place == "missing-dir":
        out = tmp_path / "nope" / "c.jsonl"
    # nothing listens there: a refused output must be said before any connection attempt
    outcome = run_cli(["capture", "--qmp", f"unix:{tmp_path}/no.sock", "-o", out])
    assert_contract(outcome)
    assert outcome.code == 2 and "connect" not in outcome.err_lines[0]
    if out:
        assert str(out) in outcome.err_lines[0]
    assert not (tmp_path / "nope").exists() and leftovers(tmp_path) == []


def test_capture_into_an_existing_trace_directory_needs_force(tmp_path):
    out = tmp_path / "vm0"
    (out / "vm=old").mkdir(parents=True)
    (out / "vm=old" / "part-0.parquet").write_bytes(b"stale")
    outcome = run_cli(["capture", "--qmp", f"unix:{tmp_path}/no.sock", "-o", out])
    assert_contract(outcome, names=out)
    assert outcome.code == 2 and "--force" in outcome.err_lines[0]
    outcome = _capture(["-o", out, "--force", "-q"], tmp_path / "s")
    assert (outcome.code, outcome.err) == (0, "")
    assert [p.name for p in out.iterdir()] == ["vm=vm0"]  # the stale VM is gone, not mixed in
    assert (tmp_path / "vm0.qmp.jsonl").is_file()


def test_capture_parents_only_when_asked(tmp_path):
    out = tmp_path / "a" / "b" / "c.jsonl"
    outcome = _capture(["-o", out, "--parents", "-q"], tmp_path / "s")
    assert outcome.code == 0 and out.is_file()


# ---------------------------------------------------------------------------------------------
# '-' is standard output where the format allows it; umask everywhere
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "junit", "text"])
def test_check_dash_is_stdout(fmt, trace_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcome = run_cli(["check", trace_file, "-f", fmt, "-o", "-", "-q"])
    assert outcome.code == 0, outcome.err
    assert not (tmp_path / "-").exists()
    if fmt == "json":
        import json

        assert json.loads(outcome.out)["verdict"] == "pass"
    elif fmt == "junit":
        assert outcome.out.startswith("<?xml")
    else:
        assert outcome.out.startswith("PASS")


def test_report_dash_is_stdout_and_the_summary_goes_to_stderr(trace_file, tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    outcome = run_cli(["report", trace_file, "-f", "json", "-o", "-"])
    assert outcome.code == 0, outcome.err
    assert json.loads(outcome.out)["schema"] == "blkreplay.report/1"
    assert "written to standard output" in outcome.err
    assert not (tmp_path / "-").exists()
    outcome = run_cli(["report", trace_file, "-o", "-"])  # the format cannot come from '-'
    assert_contract(outcome)
    assert outcome.code == 2 and "--format" in outcome.err_lines[0]


@pytest.mark.parametrize("command", ["import", "capture"])
def test_dash_is_refused_where_the_output_is_a_trace(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = (["import", _log(tmp_path)] if command == "import"
            else ["capture", "--qmp", f"unix:{tmp_path}/no.sock"])
    outcome = run_cli([*argv, "-o", "-"])
    assert_contract(outcome)
    assert outcome.code == 2 and "standard output" in outcome.err_lines[0]
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_every_command_output_gets_the_umasks_permissions(mask, mode, trace_file, tmp_path):
    with umask(mask):
        for argv in (["check", trace_file, "-f", "json", "-o", tmp_path / "f.json"],
                     ["check", trace_file, "-o", tmp_path / "f.txt"],
                     ["check", trace_file, "-f", "junit", "-o", tmp_path / "f.xml"],
                     ["report", trace_file, "-o", tmp_path / "r.html"],
                     ["report", trace_file, "-o", tmp_path / "r.md"],
                     ["report", trace_file, "-o", tmp_path / "r.json"],
                     ["import", _log(tmp_path), "-o", tmp_path / "t.parquet"],
                     ["import", _log(tmp_path), "-o", tmp_path / "ds"]):
            outcome = run_cli([*argv, "-q"])
            assert outcome.code == 0, (argv, outcome.err)
    for name in ("f.json", "f.txt", "f.xml", "r.html", "r.md", "r.json", "t.parquet",
                 "ds/vm=vm0/part-0.parquet"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name
    for directory in ("ds", "ds/vm=vm0"):
        assert (tmp_path / directory).stat().st_mode & 0o777 == 0o777 & ~mask, directory


def test_an_existing_output_keeps_its_content_when_the_command_fails(trace_file, tmp_path):
    out = tmp_path / "f.json"
    out.write_text("previous findings\n")
    outcome = run_cli(["check", tmp_path / "missing.parquet", "-f", "json", "-o", out])
    assert outcome.code == 2 and out.read_text() == "previous findings\n"
    assert leftovers(tmp_path) == []


def test_a_capture_can_be_watched_under_its_name_once_qmp_has_spoken(tmp_path):
    import threading

    from tests.tracer.fake_qmp import FakeQmp, wait_for

    out = tmp_path / "live.jsonl"
    out.write_text("earlier capture\n")
    seen: list[bool] = []

    def drive(fake: FakeQmp) -> None:
        wait_for(lambda: "query-status" in fake.sent_names())
        # the capture is running: its transcript is already the file under its name
        seen.append(wait_for(lambda: "query-status" in out.read_text(), timeout=3))
        fake.shutdown()

    with FakeQmp(tmp_path / "s") as fake:
        t = threading.Thread(target=drive, args=(fake,), daemon=True)
        t.start()
        outcome = run_cli(["capture", "--qmp", f"unix:{tmp_path}/s", "--poll", "50", "-o", out, "-q"])
        t.join(5)
    assert (outcome.code, seen) == (0, [True])
    assert "earlier capture" not in out.read_text()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("command", ["check", "report", "import", "import-dir"])
def test_disk_full_is_one_line_for_every_command(command, trace_file, tmp_path):
    with tmpfs(tmp_path / "small") as small:
        name = {"check": "f.json", "report": "r.html", "import": "t.parquet", "import-dir": "ds"}[command]
        out = small / name
        if command != "import-dir":
            out.write_text("old\n")
        with contextlib.suppress(OSError), open(small / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        argv = {
            "check": ["check", trace_file, "-f", "json", "-o", out],
            "report": ["report", trace_file, "-o", out],
        }.get(command, ["import", _log(tmp_path), "-o", out])
        outcome = run_cli([*argv, "-q"])
        assert_contract(outcome)
        assert outcome.code == 2
        assert str(out) in outcome.err_lines[0] and "No space left on device" in outcome.err_lines[0]
        if command == "import-dir":
            assert not out.exists()
        else:
            assert out.read_text() == "old\n"
        left = sorted(p.name for p in small.iterdir())
        assert left == (["filler"] if command == "import-dir" else sorted(["filler", name]))


def test_a_non_parquet_output_named_parquet_is_refused_anywhere(trace_file, tmp_path):
    ds = tmp_path / "dataset" / "vm=a"
    ds.mkdir(parents=True)
    for argv in (["check", trace_file, "-f", "json", "-o", ds / "findings.parquet"],
                 ["report", trace_file, "-f", "md", "-o", ds / "notes.PARQUET"]):
        outcome = run_cli(argv)
        assert_contract(outcome, names=argv[-1])
        assert outcome.code == 2 and "would be read as a trace" in outcome.err_lines[0]
    assert list(ds.iterdir()) == []


def test_import_force_replaces_an_existing_directory_as_a_whole(tmp_path):
    out = tmp_path / "ds"
    stale = out / "vm=old-vm" / "part-0.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"stale")
    refused = run_cli(["import", _log(tmp_path), "-o", out, "-q"])
    assert_contract(refused, names=out)
    assert refused.code == 2 and "--force" in refused.err_lines[0] and stale.read_bytes() == b"stale"
    replaced = run_cli(["import", _log(tmp_path), "-o", out, "-q", "--force"])
    assert (replaced.code, replaced.err) == (0, "")
    assert [p.name for p in out.iterdir()] == ["vm=vm0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "trace.log"]  # no old copy left


def test_import_force_never_replaces_a_directory_holding_its_input(tmp_path):
    inside = tmp_path / "ds" / "trace.log"
    inside.parent.mkdir()
    inside.write_text(_log(tmp_path).read_text())
    with Unchanged(tmp_path / "ds"):
        outcome = run_cli(["import", inside, "-o", tmp_path / "ds", "--force"])
    assert_contract(outcome, names=tmp_path / "ds")
    assert outcome.code == 2 and "contains the input" in outcome.err_lines[0]


@pytest.mark.parametrize("command", ["check", "report", "import", "import-dir"])
def test_parents_are_created_only_with_the_flag(command, trace_file, tmp_path):
    out = tmp_path / "a" / "b" / {"check": "f.json", "report": "r.html", "import": "t.parquet",
                                  "import-dir": "ds"}[command]
    argv = {"check": ["check", trace_file, "-f", "json"], "report": ["report", trace_file]}.get(
        command, ["import", _log(tmp_path)])
    refused = run_cli([*argv, "-o", out, "-q"])
    assert_contract(refused, names=out)
    assert refused.code == 2 and "does not exist" in refused.err_lines[0]
    assert not (tmp_path / "a").exists()
    done = run_cli([*argv, "-o", out, "-q", "--parents"])
    assert done.code == 0, done.err
    assert out.is_dir() if command == "import-dir" else out.is_file()
