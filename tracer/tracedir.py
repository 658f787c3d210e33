"""The on-disk trace format: trace directories of Parquet segments, and single Parquet files.

A *trace directory* is what the recorder writes::

    OUT/
      seg-000000.parquet     each a complete Parquet file of schema v1, written atomically
      seg-000001.parquet
      ...
      manifest.json          written last, on clean close: marks the trace complete

A directory without ``manifest.json`` is a *truncated* trace (the recorder was killed): every
segment in it is still readable. A single Parquet file (an import, a converted trace) is complete
unless its metadata says ``blkreplay.truncated = "true"``.

Everything here writes atomically (temporary file in the same directory, fsync, then
``os.replace``), so a reader never sees half a file under a final name; the file gets the
permissions the user's umask gives (``0666 & ~umask``), like any file a program creates.

A recording can be checked against its manifest (:func:`verify_trace_dir`): every segment
listed is there, inside the directory, with its rows and SHA-256, and nothing else is. The
answer is plain facts (:class:`TraceProblem`) that the analyzer turns into integrity findings.
A recorder stopped by Ctrl-C or an error writes a manifest marked ``"complete": false,
"interrupted": true``: what it holds is intact, but the run did not finish.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from tracer import safejson
from tracer.errors import TraceFormatError
from tracer.schema import COLUMNS

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = "blkreplay.manifest/1"
SEGMENT_PREFIX = "seg-"
SEGMENT_SUFFIX = ".parquet"
TMP_SUFFIX = ".tmp"
#: The largest manifest read (a million segments take about 150 MB; far beyond any recording).
MANIFEST_MAX_BYTES = 256 << 20

#: Columns of about one value a row (order keys, times, lines, payloads), written plain: a
#: dictionary of them only costs a hash a row before the writer gives it up for plain
#: encoding (measured on an import's row groups: 7% of the writing, 14-17% of the file).
PLAIN_COLUMNS = frozenset({"seq", "ts_ns", "src_line", "event_ts_ns", "payload"})

#: Parquet writer settings shared by every producer (zstd; dictionary encoding but for
#: `PLAIN_COLUMNS`). Statistics only where readers prune with them (row ranges by seq, time,
#: vm).
PARQUET_OPTIONS: dict[str, object] = {
    "compression": "zstd",
    "use_dictionary": [c.name for c in COLUMNS if c.name not in PLAIN_COLUMNS],
    "write_statistics": ["seq", "ts_ns", "vm"],
}


@dataclass(frozen=True)
class Segment:
    file: str
    rows: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What a cleanly closed recording contains."""

    rows: int
    source: str
    segments: tuple[Segment, ...]
    metadata: dict[str, object] = field(default_factory=dict)
    complete: bool = True
    schema: str = MANIFEST_SCHEMA
    #: The recorder was stopped (Ctrl-C, SIGTERM, an error) before the run ended.
    interrupted: bool = False

    def to_json(self) -> str:
        doc = asdict(self)
        doc["segments"] = [asdict(s) for s in self.segments]
        if not self.interrupted:  # a clean manifest keeps the bytes it always had
            del doc["interrupted"]
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def segment_name(index: int) -> str:
    return f"{SEGMENT_PREFIX}{index:06d}{SEGMENT_SUFFIX}"


def segment_paths(trace_dir: str | Path) -> list[Path]:
    """The finished segment files of a trace directory, in index order (temp files excluded)."""
    d = Path(trace_dir)
    return sorted(
        p
        for p in d.iterdir()
        if p.name.startswith(SEGMENT_PREFIX) and p.name.endswith(SEGMENT_SUFFIX) and p.is_file()
    )


def read_manifest(trace_dir: str | Path) -> Manifest | None:
    """The manifest of a trace directory, or None when the recording did not finish.

    Raises :class:`TraceFormatError` naming ``manifest.json`` for a manifest that cannot be
    used: not a regular file, unreadable, not JSON, too deep or too large, numbers out of
    range, fields of the wrong type.
    """
    path = Path(trace_dir) / MANIFEST_NAME
    if not os.path.lexists(path):
        return None
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise TraceFormatError("unreadable manifest: not a regular file", path=path)
        if st.st_size > MANIFEST_MAX_BYTES:
            raise TraceFormatError(
                f"unreadable manifest: {st.st_size:,} bytes (limit {MANIFEST_MAX_BYTES:,})", path=path
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise TraceFormatError(f"unreadable manifest ({exc.strerror or exc})", path=path) from None
    try:
        doc = safejson.loads(raw, max_chars=MANIFEST_MAX_BYTES)
        return _manifest_from(doc)
    except ValueError as exc:
        raise TraceFormatError(f"unreadable manifest: {exc}", path=path) from None


def _manifest_from(doc: object) -> Manifest:
    """A Manifest from parsed JSON, every field type-checked (ValueError naming the field)."""
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    schema = _field(doc, "schema", str, MANIFEST_SCHEMA)
    if schema != MANIFEST_SCHEMA:
        raise ValueError(f"unsupported manifest schema {schema[:60]!r} (expected {MANIFEST_SCHEMA})")
    segments = _field(doc, "segments", list)
    parsed = []
    for i, seg in enumerate(segments):
        if not isinstance(seg, dict):
            raise ValueError(f"segments[{i}] is not an object")
        parsed.append(Segment(
            file=_field(seg, "file", str, where=f"segments[{i}]."),
            rows=_count(_field(seg, "rows", int, where=f"segments[{i}]."), f"segments[{i}].rows"),
            sha256=_field(seg, "sha256", str, where=f"segments[{i}]."),
        ))
    return Manifest(
        rows=_count(_field(doc, "rows", int), "rows"),
        source=_field(doc, "source", str),
        segments=tuple(parsed),
        metadata=_field(doc, "metadata", dict, {}),
        complete=_field(doc, "complete", bool, True),
        schema=schema,
        interrupted=_field(doc, "interrupted", bool, False),
    )


_MISSING = object()


def _field(doc: dict, key: str, kind: type, default: object = _MISSING, *, where: str = "") -> object:
    value = doc.get(key, default)
    if value is _MISSING:
        raise ValueError(f"missing field '{where}{key}'")
    # bool is an int in Python; a count given as true/false is still wrong
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"field '{where}{key}' must be {kind.__name__}, got {type(value).__name__}")
    return value


def _count(value: int, name: str) -> int:
    if not 0 <= value < 2**63:
        raise ValueError(f"field '{name}' out of range: {value}")
    return value


def is_trace_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and ((p / MANIFEST_NAME).exists() or any(segment_paths(p)))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def umask() -> int:
    """The process's umask.

    Read from /proc (the umask cannot be read without setting it, which would race with other
    threads creating files); where /proc is not mounted, set it and put it back at once.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The permission bits of a newly created file: ``0o666 & ~umask``."""
    return 0o666 & ~umask()


@contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to write that appears at `path` complete, or not at all.

    It is a temporary file in `path`'s directory; on a clean exit it is flushed, fsynced,
    given the umask's permissions and renamed over `path`. On any exception it is removed
    and the exception propagates (OSError as raised: the caller names the output). The
    directory must exist: nothing here creates directories.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            os.fchmod(f.fileno(), file_mode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _suppress_oserror():
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes | memoryview) -> None:
    """Write `data` to `path` so that `path` is either absent/old or complete."""
    with atomic_file(path) as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def parquet_bytes(table: pa.Table, *, row_group_size: int | None = None) -> pa.Buffer:
    """`table` serialized as a complete Parquet file in memory (zstd, dictionary encoding)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=row_group_size, **PARQUET_OPTIONS)
    return sink.getvalue()


def write_table(
    table: pa.Table, path: str | Path, *, row_group_size: int | None = None
) -> tuple[int, str]:
    """Write `table` as one Parquet file atomically. Returns (rows, sha256 of the file)."""
    buf = parquet_bytes(table, row_group_size=row_group_size)
    atomic_write_bytes(path, memoryview(buf))
    return table.num_rows, hashlib.sha256(memoryview(buf)).hexdigest()


# ---------------------------------------------------------------------------------------------
# Verifying a recording against its manifest
# ---------------------------------------------------------------------------------------------

ProblemKind = Literal[
    "manifest-unreadable",  # manifest.json is not a usable manifest (the reason in `detail`)
    "segment-name",  # a listed name that is not a plain file name in the directory
    "segment-duplicate",  # a name listed twice
    "segment-missing",  # a listed segment that is not there
    "segment-outside",  # a listed segment that resolves outside the directory (a symlink out)
    "segment-unreadable",  # not a regular file, or no readable Parquet footer
    "segment-rows",  # rows differ from the manifest's
    "segment-sha256",  # content differs from the manifest's digest
    "rows-total",  # the manifest's total differs from the sum of its segments
    "segment-extra",  # a Parquet file in the directory that the manifest does not list
]


@dataclass(frozen=True)
class TraceProblem:
    """One way a trace directory differs from what its manifest promises."""

    kind: ProblemKind
    #: The segment's name as listed (or found), None for the manifest as a whole.
    segment: str | None
    detail: str

    @property
    def severity(self) -> Literal["error", "warning"]:
        """Always ``error``: a segment missing or altered loses or changes data, and an extra
        (unlisted) one is read and judged with the recording although it is not part of it (a
        foreign segment dropped into the directory changes the verdict)."""
        return "error"


def verify_trace_dir(
    trace_dir: str | Path,
    *,
    digests: Mapping[str, str] | None = None,
    rows: Mapping[str, int] | None = None,
) -> list[TraceProblem]:
    """Check a trace directory's segments against its ``manifest.json``; [] when they agree.

    Every listed segment must be a plain name inside the directory (no ``../x``, no absolute
    path, no symlink leading out), present, a readable Parquet file with the listed rows and
    SHA-256; the rows must add up; every ``*.parquet`` file of the directory must be listed
    (hidden temporary files excepted). A directory without a manifest (a truncated recording)
    has nothing to verify: []. A manifest that cannot be used is one ``manifest-unreadable``
    problem.

    Cheap: one pass over each segment's bytes (1 MiB at a time) plus its Parquet footer;
    `digests` (segment name -> SHA-256 hex, e.g. from hashing done anyway for provenance)
    skips the hashing of those segments, `rows` (segment name -> row count, from footers read
    anyway) the reading of their footers.
    """
    d = Path(trace_dir)
    try:
        manifest = read_manifest(d)
    except TraceFormatError as exc:
        return [TraceProblem("manifest-unreadable", None, exc.reason)]
    if manifest is None:
        return []
    root = os.path.realpath(d)
    problems: list[TraceProblem] = []
    listed: set[str] = set()
    total = 0
    for seg in manifest.segments:
        name = seg.file
        total += seg.rows
        if not _plain_name(name):
            problems.append(TraceProblem("segment-name", name, "not a plain file name in the directory"))
            continue
        if name in listed:
            problems.append(TraceProblem("segment-duplicate", name, "listed more than once"))
            continue
        listed.add(name)
        problems.extend(_verify_segment(d / name, root, seg, digests, rows))
    if total != manifest.rows:
        problems.append(TraceProblem(
            "rows-total", None, f"manifest says {manifest.rows} rows, its segments add up to {total}"
        ))
    for path in sorted(d.iterdir(), key=lambda p: p.name):
        if path.name.endswith(SEGMENT_SUFFIX) and not path.name.startswith(".") and path.name not in listed:
            problems.append(TraceProblem("segment-extra", path.name, "not listed in the manifest"))
    return problems


def _plain_name(name: str) -> bool:
    return (
        name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
        and not os.path.isabs(name)
    )


def _verify_segment(
    path: Path, root: str, seg: Segment, digests: Mapping[str, str] | None,
    known_rows: Mapping[str, int] | None,
) -> list[TraceProblem]:
    name = seg.file
    if not os.path.lexists(path):
        return [TraceProblem("segment-missing", name, "listed in the manifest but not in the directory")]
    real = os.path.realpath(path)
    if os.path.dirname(real) != root:
        return [TraceProblem("segment-outside", name, "resolves outside the trace directory")]
    try:
        if not stat.S_ISREG(os.stat(real).st_mode):
            return [TraceProblem("segment-unreadable", name, "not a regular file")]
        rows = known_rows.get(name) if known_rows is not None else None
        if rows is None:
            rows = pq.read_metadata(pa.OSFile(os.fsencode(real))).num_rows
        digest = digests.get(name) if digests is not None else None
        if digest is None:
            digest = sha256_file(real)
    except (OSError, pa.ArrowException, ValueError) as exc:
        text = str(exc).strip().splitlines()
        return [TraceProblem("segment-unreadable", name, text[0][:200] if text else type(exc).__name__)]
    problems = []
    if rows != seg.rows:
        problems.append(TraceProblem("segment-rows", name, f"manifest says {seg.rows} rows, the file has {rows}"))
    if digest != seg.sha256:
        problems.append(TraceProblem("segment-sha256", name, "content differs from the manifest's SHA-256"))
    return problems


class _suppress_oserror:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        return exc_type is not None and issubclass(exc_type, OSError)
