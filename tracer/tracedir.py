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

Everything here writes atomically (temporary file in the same directory, then ``os.replace``),
so a reader never sees half a file under a final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tracer.errors import TraceFormatError

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = "blkreplay.manifest/1"
SEGMENT_PREFIX = "seg-"
SEGMENT_SUFFIX = ".parquet"
TMP_SUFFIX = ".tmp"

#: Parquet writer settings shared by every producer (zstd, dictionary encoding).
#: Statistics only where readers prune with them (row ranges by seq, time, vm).
PARQUET_OPTIONS: dict[str, object] = {
    "compression": "zstd",
    "use_dictionary": True,
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

    def to_json(self) -> str:
        doc = asdict(self)
        doc["segments"] = [asdict(s) for s in self.segments]
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
    """The manifest of a trace directory, or None when the recording did not finish."""
    path = Path(trace_dir) / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return Manifest(
            rows=int(doc["rows"]),
            source=str(doc["source"]),
            segments=tuple(Segment(**s) for s in doc["segments"]),
            metadata=dict(doc.get("metadata", {})),
            complete=bool(doc.get("complete", True)),
            schema=str(doc.get("schema", MANIFEST_SCHEMA)),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise TraceFormatError(f"unreadable manifest: {exc}", path=path) from None


def is_trace_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and ((p / MANIFEST_NAME).exists() or any(segment_paths(p)))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes | memoryview) -> None:
    """Write `data` to `path` so that `path` is either absent/old or complete."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with _suppress_oserror():
            os.unlink(tmp)
        raise


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


class _suppress_oserror:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        return exc_type is not None and issubclass(exc_type, OSError)
