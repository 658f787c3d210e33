"""Which Parquet files a trace argument names: files, recorder directories, hive datasets, globs.

A user points blkreplay at whatever they have: one file, a recorder trace directory
(``seg-*.parquet`` + manifest), a hive-partitioned dataset (``host=a/vm=b/*.parquet``), a glob,
or several of these. This module turns those arguments into one sorted, de-duplicated list of
files, each with the *input* it belongs to (a recorder directory counts as one input, complete
or not by its manifest) and the partition values its directory names carry. Nothing here opens
a Parquet file: that is `analyzer.trace.files`.
"""

from __future__ import annotations

import glob as _glob
import os
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from tracer import tracedir
from tracer.errors import InputError
from tracer.schema import COLUMN_BY_NAME

PathArg = str | os.PathLike[str]

_GLOB_CHARS = set("*?[")


class SourceFile(NamedTuple):
    """One Parquet file named by the arguments."""

    path: Path
    #: The input it belongs to: its recorder directory, or the file itself.
    group: str
    #: Whether that input is complete (a recorder directory's manifest says so).
    complete: bool
    #: Its manifest says the recorder was stopped (Ctrl-C, SIGTERM, an error) before the end.
    interrupted: bool = False


def expand(paths: Iterable[PathArg]) -> list[SourceFile]:
    """Every Parquet file named by `paths`, sorted by path, each once."""
    out: dict[str, SourceFile] = {}
    given = list(paths)
    if not given:
        raise InputError("no input given")
    for raw in given:
        text = os.fspath(raw)
        p = Path(text)
        if p.exists():
            targets = [p]
        elif _GLOB_CHARS & set(text):
            targets = [Path(m) for m in sorted(_glob.glob(text, recursive=True))]
            if not targets:
                raise InputError("no file matches this pattern", path=text)
        else:
            raise InputError("no such file or directory", path=text)
        for t in targets:
            for source in _files_of(t):
                out.setdefault(os.path.normpath(str(source.path)), source)
    if not out:
        raise InputError("no Parquet file found", path=os.fspath(given[0]))
    return [out[k] for k in sorted(out)]


def _files_of(p: Path) -> list[SourceFile]:
    if p.is_file():
        return [SourceFile(p, str(p), True)]
    if not p.is_dir():
        raise InputError("not a file or directory", path=p)
    found: list[SourceFile] = []
    for root, dirs, files in os.walk(p):
        dirs.sort()
        rootp = Path(root)
        recorder = tracedir.is_trace_dir(rootp)
        complete, interrupted = True, False
        if recorder:
            manifest = tracedir.read_manifest(rootp)
            complete = manifest is not None and manifest.complete
            interrupted = manifest is not None and manifest.interrupted
        for name in sorted(files):
            if not name.endswith(".parquet") or name.startswith("."):
                continue
            f = rootp / name
            is_segment = recorder and name.startswith(tracedir.SEGMENT_PREFIX)
            found.append(SourceFile(f, str(rootp) if is_segment else str(f),
                                    complete if is_segment else True, interrupted and is_segment))
    if not found:
        raise InputError("no Parquet files in this directory", path=p)
    return found


def partition_values(path: Path) -> dict[str, str]:
    """``key=value`` directory names of `path` whose key is a schema string column."""
    out: dict[str, str] = {}
    for part in path.parent.parts:
        if "=" in part:
            key, _, value = part.partition("=")
            col = COLUMN_BY_NAME.get(key)
            if col is not None and col.is_string:
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise InputError(f"partition directory {key}=... is not UTF-8 text",
                                     path=path.parent) from None
                out[key] = value
    return out
