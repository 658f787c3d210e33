"""Parsed payloads kept on disk from the end of an input's parse until its row groups are written.

An import parses every input before it builds and writes any VM (a bad input writes nothing),
and a payload -- the text of a trace line's arguments, a transcript's message -- is most of a
parsed row's bytes: 0.8 GB of a 1.2 GB trace log's 10 M rows, 1.7 GB of a 2.6 GB transcript's.
Held in memory, the payloads of every input of a fleet would be too, and each VM's build and
write would come on top of them. So once an input is parsed, the payloads of the rows it
read in bulk (`rows.Segment`) go to a temporary Arrow IPC file, LZ4-compressed, one record
batch per segment, and the segment keeps a `Spilled` reference in their place; a row group
reads back only the batches it takes rows from (`merge._Taken`), and lets go of them once
written. The rows are the same, byte for byte; only where they wait changes.

The files live in a private temporary directory of the import (`spill_directory`), removed
when it ends, whatever the outcome. Worker processes write theirs there too and hand the
references back. A spill that cannot be written (a full disk) is an `OutputError` naming it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from tracer.errors import OutputError

if TYPE_CHECKING:
    from analyzer.importers.rows import ParsedInput

#: Segments of fewer rows keep their payloads in memory (a file read costs more than they weigh).
MIN_ROWS = 4096

_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


@dataclass(frozen=True)
class Spilled:
    """A payload column written to a spill file: batch `index` of `path`, `rows` long."""

    path: str
    index: int
    rows: int

    def __len__(self) -> int:
        return self.rows

    def load(self) -> pa.Array:
        """The column, read back (its own buffers: nothing stays mapped once it is let go)."""
        with pa.OSFile(self.path) as f:
            return pa.ipc.open_file(f).get_batch(self.index).column(0)


def is_spilled(column: object) -> bool:
    return isinstance(column, Spilled)


def loaded(column: pa.Array | Spilled) -> pa.Array:
    """`column` itself, or read back if it was spilled."""
    return column.load() if isinstance(column, Spilled) else column


@contextlib.contextmanager
def spill_directory() -> Iterator[Path]:
    """A private temporary directory for one import's spill files, removed at its end."""
    with tempfile.TemporaryDirectory(prefix="blkreplay-spill-") as tmp:
        yield Path(tmp)


def spill_payloads(parsed: ParsedInput, directory: Path) -> None:
    """Move the payloads of `parsed`'s bulk-read rows to one spill file in `directory`."""
    segments = [seg for part in parsed.parts for seg in part.rows.segments
                if len(seg) >= MIN_ROWS and not is_spilled(seg.payload)]
    if not segments:
        return
    fd, path = tempfile.mkstemp(suffix=".arrow", dir=directory)
    os.close(fd)
    schema = pa.schema([("payload", pa.large_string())])
    try:
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, schema, options=_OPTIONS) as writer:
            for seg in segments:
                writer.write_batch(pa.record_batch([seg.payload.cast(pa.large_string())], schema=schema))
    except OSError as exc:
        raise OutputError(f"cannot keep the parsed rows on disk ({exc.strerror or exc})", path=directory) from None
    for index, seg in enumerate(segments):
        seg.payload = Spilled(path, index, len(seg))  # type: ignore[assignment]


__all__ = ["MIN_ROWS", "Spilled", "is_spilled", "loaded", "spill_directory", "spill_payloads"]
