"""Where every command's ``-o`` goes: checked against the inputs first, then written atomically.

A command that writes where it reads can destroy its own evidence: ``check t.parquet -o
t.parquet``, a report named ``seg-000001.parquet`` written into a recording, an import into a
directory that holds its input. And a write that fails half-way (disk full, file size limit,
a missing directory) must not leave a truncated file under the final name, a stray temporary
file, or a traceback. So every output goes through this module:

- :func:`check_output` refuses an output that is an input (same real path, or the same file
  by ``(st_dev, st_ino)``, a hard link), that lies inside an input directory, that gives a
  non-Parquet output a ``*.parquet`` name (a later check of its directory would read it as a
  trace), or that would add a segment or manifest to an existing recording. It also names
  what is wrong with the place itself: an empty path, a directory, a parent that is missing
  or is not a directory. It writes nothing.
- :func:`open_output` / :func:`write_output` then write atomically through
  :func:`tracer.tracedir.atomic_file` (temporary file in the target's directory, fsync,
  rename; the umask's permissions). Any failure is one :class:`tracer.errors.OutputError`
  naming the output and the reason; no temporary file is left behind and an existing output
  keeps its old content.
- :func:`output_dir` does the same for a directory output (an import of several VMs): it is
  built beside the target and renamed into place only when complete; an existing directory
  is refused unless replaced as a whole (:func:`check_output_dir` checks without writing).
- :func:`output_path` is for a writer that opens the file by name and writes it over a long
  time (a live capture): a temporary file beside the target, renamed into place once it is
  worth more than the file it replaces.

Parent directories are created only when the caller passes ``parents=True``. ``-`` means
standard output where the caller allows it (``allow_stdout=True``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Literal

from tracer import tracedir
from tracer.errors import OutputError

PathArg = str | os.PathLike[str]

#: What an output holds. Only "parquet" may carry a ``.parquet`` name inside a trace directory.
OutputKind = Literal["parquet", "report", "findings", "text", "transcript"]
OUTPUT_KINDS: tuple[str, ...] = ("parquet", "report", "findings", "text", "transcript")

#: The path that means standard output.
STDOUT = "-"

_GLOB_CHARS = frozenset("*?[")


def check_output(
    path: PathArg,
    *,
    inputs: Iterable[PathArg],
    kind: OutputKind,
    parents: bool = False,
    allow_stdout: bool = False,
) -> Path | None:
    """The output `path` checked against `inputs` and its place; None for ``-`` (stdout).

    Raises :class:`OutputError` naming the output and what is wrong. Writes nothing; with
    `parents`, a missing parent directory is allowed (it will be created on writing).
    """
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    target = _place(path, allow_stdout=allow_stdout, parents=parents, directory=False)
    if target is None:
        return None
    _not_an_input(target, inputs)
    _not_into_a_recording(target, kind)
    return target


@contextmanager
def open_output(
    path: PathArg,
    *,
    inputs: Iterable[PathArg],
    kind: OutputKind,
    parents: bool = False,
    allow_stdout: bool = False,
) -> Iterator[OutputFile]:
    """An :class:`OutputFile` to write `path` through; the file appears complete on a clean
    exit of the block, or not at all.

    An exception inside the block discards what was written and propagates unchanged; a
    failure to write, sync or rename is an :class:`OutputError`. For ``-`` (with
    `allow_stdout`) the writes go straight to standard output.
    """
    target = check_output(path, inputs=inputs, kind=kind, parents=parents, allow_stdout=allow_stdout)
    if target is None:
        sink = OutputFile(sys.stdout.buffer, STDOUT)
        yield sink
        sink.flush()
        return
    if parents:
        _make_parents(target)
    writer = tracedir.atomic_file(target)
    try:
        f = writer.__enter__()
    except OSError as exc:
        raise _failed(target, exc, f"cannot create a file in {target.parent}") from None
    sink = OutputFile(f, target)
    try:
        yield sink
    except BaseException:
        writer.__exit__(*sys.exc_info())  # removes the temporary file; the exception goes on
        raise
    try:
        writer.__exit__(None, None, None)
    except OSError as exc:
        raise _failed(target, exc) from None


def write_output(
    path: PathArg,
    data: bytes | bytearray | memoryview | str,
    *,
    inputs: Iterable[PathArg],
    kind: OutputKind,
    parents: bool = False,
    allow_stdout: bool = False,
) -> Path | None:
    """Write `data` (str as UTF-8) to `path` as :func:`open_output` does; returns the path
    written, None for stdout. A Parquet output is written as its bytes
    (:func:`tracer.tracedir.parquet_bytes`)."""
    with open_output(path, inputs=inputs, kind=kind, parents=parents, allow_stdout=allow_stdout) as f:
        f.write(data)
    return None if f.path == STDOUT else Path(f.path)


class PendingOutput:
    """A file being written under a temporary name beside its target (see :func:`output_path`).

    `path` is the name to write; :meth:`publish` renames it to `target` (with the umask's
    permissions) once what it holds is worth more than the output it replaces: a writer that
    keeps its file open goes on writing to the same file under its final name.
    """

    def __init__(self, path: Path, target: Path) -> None:
        self.path = path
        self.target = target
        self.published = False

    def publish(self) -> None:
        if self.published:
            return
        try:
            os.chmod(self.path, tracedir.file_mode())
            os.replace(self.path, self.target)
        except OSError as exc:
            raise _failed(self.target, exc) from None
        self.published = True


@contextmanager
def output_path(
    path: PathArg,
    *,
    inputs: Iterable[PathArg],
    kind: OutputKind,
    parents: bool = False,
) -> Iterator[PendingOutput]:
    """A :class:`PendingOutput` for a writer that opens its file by name and writes it over a
    long time (a live capture).

    The file is published (renamed to `path`) when the writer calls
    :meth:`PendingOutput.publish`, or at the latest on a clean exit of the block. An exception
    before that removes it and leaves an existing `path` as it was; after it, the file stays
    (it holds what was written until the failure).
    """
    target = check_output(path, inputs=inputs, kind=kind, parents=parents)
    assert target is not None  # no stdout here
    if parents:
        _make_parents(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=tracedir.TMP_SUFFIX,
                                   dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise _failed(target, exc, f"cannot create a file in {target.parent}") from None
    pending = PendingOutput(Path(tmp), target)
    try:
        yield pending
        pending.publish()
    except BaseException:
        if not pending.published:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise


def check_output_dir(
    path: PathArg,
    *,
    inputs: Iterable[PathArg],
    parents: bool = False,
    replace: bool = False,
) -> Path:
    """The directory output `path` checked as :func:`output_dir` will check it; writes nothing.

    So that a command can refuse a bad output before it spends minutes on its inputs.
    """
    target = _place(path, allow_stdout=False, parents=parents, directory=True)
    assert target is not None
    _not_an_input(target, inputs, contains_inputs=True)
    if os.path.lexists(target):
        if not target.is_dir():
            raise OutputError("exists and is not a directory", path=target)
        if not replace:
            what = "is not empty (old files would mix with new)" if _entries(target) else \
                "already exists"
            raise OutputError(f"directory {what}; --force replaces it as a whole", path=target)
        if target.is_symlink() or os.path.ismount(target):
            raise OutputError("is a symbolic link or a mount point: it cannot be replaced as a whole",
                              path=target)
    return target


#: The files a recording directory holds (the recorder's, and the simulator's truth file).
_RECORDING_FILES = (tracedir.MANIFEST_NAME, "truth.json")


def check_recording_dir(
    path: PathArg,
    *,
    inputs: Iterable[PathArg],
    parents: bool = False,
    replace: bool = False,
) -> Path:
    """The output directory of a recorder (written in place, segment by segment), checked.

    Its place as for :func:`check_output_dir`; an existing non-empty directory is left to the
    recorder to refuse unless `replace`, and `replace` (``record --force``, which deletes the
    old directory) is refused for a directory that holds anything but a recording's files:
    ``record -o ~ --force`` must not delete a home directory.
    """
    target = _place(path, allow_stdout=False, parents=parents, directory=True)
    assert target is not None
    _not_an_input(target, inputs, contains_inputs=True)
    if os.path.lexists(target) and not target.is_dir():
        raise OutputError("exists and is not a directory", path=target)
    if replace and target.is_dir():
        foreign = sorted(p.name for p in _entries(target) if not _recording_file(p))
        if foreign:
            raise OutputError(f"holds files that are not a recording ({foreign[0]}, ...): "
                              "--force replaces only a recording", path=target)
    return target


def _entries(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except OSError as exc:
        raise OutputError(f"cannot list it ({exc.strerror or exc})", path=directory) from None


def _recording_file(p: Path) -> bool:
    name = p.name
    if p.is_symlink() or not p.is_file():
        return False
    return name in _RECORDING_FILES or name.endswith(tracedir.TMP_SUFFIX) or (
        name.startswith(tracedir.SEGMENT_PREFIX) and name.endswith(tracedir.SEGMENT_SUFFIX))


@contextmanager
def output_dir(
    path: PathArg,
    *,
    inputs: Iterable[PathArg],
    parents: bool = False,
    replace: bool = False,
) -> Iterator[Path]:
    """A fresh directory to fill, renamed to `path` on a clean exit of the block.

    An existing `path` is refused unless `replace` is given: then the old directory is
    swapped out and removed only once the new one is complete (so old and new files never
    mix, and an interrupted run leaves the old one as it was). An existing empty directory is
    refused too: replacing it would silently change its inode, owner and permissions. The
    directory must not be, lie inside or contain an input. On any exception the new
    directory is removed and `path` is left as it was.
    """
    target = check_output_dir(path, inputs=inputs, parents=parents, replace=replace)
    if parents:
        _make_parents(target)
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=tracedir.TMP_SUFFIX,
                                     dir=target.parent))
    except OSError as exc:
        raise _failed(target, exc, f"cannot create a directory in {target.parent}") from None
    try:
        os.chmod(work, 0o777 & ~tracedir.umask())
        yield work
        _swap_in(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


class OutputFile:
    """The write side of an output: ``write(bytes | str)`` (str as UTF-8), ``flush()``.

    Errors of the underlying file (disk full, file too large, ...) come out as
    :class:`OutputError` naming the output.
    """

    def __init__(self, file: BinaryIO, path: Path | str) -> None:
        self._file = file
        self.path = str(path)

    def write(self, data: bytes | bytearray | memoryview | str) -> int:
        raw = data.encode("utf-8") if isinstance(data, str) else data
        try:
            return self._file.write(raw)
        except OSError as exc:
            raise _failed(self.path, exc) from None

    def flush(self) -> None:
        try:
            self._file.flush()
        except OSError as exc:
            raise _failed(self.path, exc) from None


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------


def _place(path: PathArg, *, allow_stdout: bool, parents: bool, directory: bool) -> Path | None:
    """`path` as a Path to create, after the checks of the place alone (not of the inputs)."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if text == "":
        raise OutputError("output path is empty")
    if text == STDOUT:
        if allow_stdout:
            return None
        raise OutputError("this output cannot go to standard output; name a file", path=text)
    if "\0" in text:
        raise OutputError("output path contains a NUL character", path=repr(text))
    target = Path(text)
    if not directory:
        if text.endswith(os.sep) or text.endswith("/."):
            raise OutputError("names a directory; name a file", path=text)
        if target.is_dir():
            raise OutputError("is a directory; name a file inside it", path=text)
    parent = target.parent
    if parent.is_dir():
        return target
    # Find the nearest ancestor that exists: it must be a directory.
    existing = parent
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if os.path.lexists(existing) and not existing.is_dir():
        raise OutputError(f"cannot create it: {existing} is not a directory", path=text)
    if not parents:
        raise OutputError(f"directory {parent} does not exist (--parents creates it)", path=text)
    return target


def _expand_inputs(inputs: Iterable[PathArg]) -> list[str]:
    """The inputs as paths; a glob pattern that names no file stands for what it matches."""
    out: list[str] = []
    for raw in inputs:
        text = os.fspath(raw)
        if isinstance(text, bytes):
            text = os.fsdecode(text)
        if not os.path.lexists(text) and _GLOB_CHARS & set(text):
            out.extend(sorted(glob.glob(text, recursive=True)))
        else:
            out.append(text)
    return out


def _inside(child: str, parent: str) -> bool:
    return child != parent and child.startswith(parent.rstrip(os.sep) + os.sep)


def _not_an_input(target: Path, inputs: Iterable[PathArg], *, contains_inputs: bool = False) -> None:
    real = os.path.realpath(target)
    try:
        out_id: tuple[int, int] | None = _file_id(os.stat(target))
    except OSError:
        out_id = None
    for inp in _expand_inputs(inputs):
        inp_real = os.path.realpath(inp)
        if real == inp_real:
            raise OutputError(f"is the input {inp}: refusing to overwrite an input", path=target)
        if out_id is not None:
            try:
                same = _file_id(os.stat(inp)) == out_id
            except OSError:
                same = False
            if same:
                raise OutputError(f"is the same file as the input {inp} (a link to it)", path=target)
        if os.path.isdir(inp_real) and _inside(real, inp_real):
            raise OutputError(f"lies inside the input directory {inp}: refusing to write into an input",
                              path=target)
        if contains_inputs and _inside(inp_real, real):
            raise OutputError(f"contains the input {inp}: refusing to replace an input", path=target)


def _not_into_a_recording(target: Path, kind: str) -> None:
    parent = target.parent
    name = target.name
    in_recording = parent.is_dir() and tracedir.is_trace_dir(parent)
    if in_recording and (name == tracedir.MANIFEST_NAME or (
        name.startswith(tracedir.SEGMENT_PREFIX) and name.endswith(tracedir.SEGMENT_SUFFIX)
    )):
        raise OutputError(f"would alter the recording in {parent} (a name the recorder owns)",
                          path=target)
    if kind != "parquet" and name.lower().endswith(".parquet"):
        # a later `check DIR` (or a glob) would read it as a trace
        where = f"inside the trace directory {parent}" if in_recording else "(it would be read as a trace)"
        raise OutputError(f"a {kind} named like a Parquet file {where}", path=target)


def _file_id(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def _failed(target: Path | str, exc: OSError, what: str = "cannot write") -> OutputError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return OutputError(f"{what} ({reason}); nothing written", path=target)


def _make_parents(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create directory {target.parent} ({exc.strerror or exc})",
                          path=target) from None


def _swap_in(work: Path, target: Path) -> None:
    """Rename the finished `work` directory to `target`, swapping out an old one."""
    old: Path | None = None
    try:
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.rmdir(old)
            os.rename(target, old)
        os.rename(work, target)
    except OSError as exc:
        if old is not None and not target.exists():
            os.rename(old, target)  # put the old output back
        raise _failed(target, exc) from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
