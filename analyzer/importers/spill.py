"""Parsed payloads kept on disk from their parse until their row groups are written.

An import parses every input before it builds and writes any VM (a bad input writes nothing),
and a payload -- the text of a trace line's arguments, a transcript's message -- is most of a
parsed row's bytes: 0.8 GB of a 1.2 GB trace log's 10 M rows, 1.7 GB of a 2.6 GB transcript's.
Held in memory, the payloads of every input of a fleet would be too, and each VM's build and
write would come on top of them. So the payloads of the rows read in bulk (`rows.Segment`) go
to a temporary file as they are made -- a trace log's bulk rows and every input's commands
and replies as each block's are read (`qemu_log`, `qmp_messages`), the rest once the input is
parsed (`spill_payloads`) -- and a
`Spilled` reference takes their place; a row group reads back only the arrays it takes rows
from (`merge._Taken`), and lets go of them once written. The rows are the same, byte for
byte; only where they wait changes.

Each input has one spill file (`SpillFile`), a sequence of Arrow IPC streams of one array each
(LZ4-compressed), read back by offset. The files live in a private temporary directory of
the import (`spill_directory`), removed when it ends, whatever the outcome; worker processes
write theirs there too and hand the references back. A spill that cannot be written (a full
disk) is an `OutputError` naming the directory.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from tracer.errors import OutputError

#: Arrays of fewer rows stay in memory (a file read costs more than they weigh).
MIN_ROWS = 4096

_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


@dataclass(frozen=True)
class Spilled:
    """An array written to a spill file: `size` bytes at `offset` of `path`, `rows` long."""

    path: str
    offset: int
    size: int
    rows: int

    def __len__(self) -> int:
        return self.rows

    def load(self) -> pa.Array:
        """The array, read back (its own buffers: nothing stays mapped once it is let go)."""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.size)
        return pa.ipc.open_stream(pa.py_buffer(data)).read_next_batch().column(0)


def is_spilled(column: object) -> bool:
    return isinstance(column, Spilled)


def loaded(column: pa.Array | Spilled) -> pa.Array:
    """`column` itself, or read back if it was spilled."""
    return column.load() if isinstance(column, Spilled) else column


@contextlib.contextmanager
def spill_directory() -> Iterator[Path]:
    """A private temporary directory for one import's spill files, removed at its end."""
    try:
        holder = tempfile.TemporaryDirectory(prefix="blkreplay-spill-")
    except OSError as exc:
        raise _unwritable(exc, Path(tempfile.gettempdir())) from None
    with holder as tmp:
        yield Path(tmp)


class SpillFile:
    """One input's spill file in `directory`: arrays go in (`keep`), references come out."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._file: Any = None
        self._path = ""

    def keep(self, array: pa.Array) -> pa.Array | Spilled:
        """`array` written to the file and referenced, or itself when it is small."""
        if len(array) < MIN_ROWS:
            return array
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, pa.schema([("v", array.type)]), options=_OPTIONS) as writer:
            writer.write_batch(pa.record_batch([array], names=["v"]))
        data = sink.getvalue()
        try:
            if self._file is None:
                self._file = self._create()
            offset = self._file.tell()
            view = memoryview(data)
            while view:  # (an unbuffered write may take part of it)
                view = view[self._file.write(view):]
        except OSError as exc:
            raise _unwritable(exc, self.directory) from None
        return Spilled(self._path, offset, data.size, len(array))

    def _create(self) -> Any:
        fd, self._path = tempfile.mkstemp(suffix=".arrows", dir=self.directory)
        return os.fdopen(fd, "wb", buffering=0)  # (unbuffered: what is kept is readable at once)

    def close(self) -> None:
        """Finish the file (before anything is read back from it)."""
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError as exc:
                raise _unwritable(exc, self.directory) from None


def _unwritable(exc: OSError, where: Path) -> OutputError:
    return OutputError(f"cannot keep the parsed rows on disk ({exc.strerror or exc}); set TMPDIR elsewhere", path=where)


class _WithPayload(Protocol):
    payload: Any


def spill_payloads(segments: Iterable[_WithPayload], spill: SpillFile) -> None:
    """Move the payloads of `segments` (`rows.Segment`s of an input) not spilled yet to `spill`."""
    for seg in segments:
        if not is_spilled(seg.payload):
            seg.payload = spill.keep(seg.payload)


__all__ = ["MIN_ROWS", "SpillFile", "Spilled", "is_spilled", "loaded", "spill_directory", "spill_payloads"]
