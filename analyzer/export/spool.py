"""Putting per-VM pieces of an export in VM order, in bounded memory.

A trace is read unit by unit, and which VMs share a unit depends on the file layout; an
export must be the same bytes whatever the layout. So each VM's piece (serialized Perfetto
packets, an Arrow IPC stream of its state rows) goes to a temporary spool file as soon as it
is made, and the writer reads the pieces back sorted by VM: memory holds one piece, the spool
holds the export once more on disk (the temporary directory), and it is removed on close.
The order is the VMs' identities' (`analyzer.identity.sort_key`: run, host, vm), as everywhere.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from types import TracebackType

from analyzer import identity
from tracer.errors import OutputError


class Spool:
    """``add(key, data)`` in any order; ``pieces()`` yields them by key (a VM's identity key,
    in `analyzer.identity.sort_key` order; stable within a key)."""

    def __init__(self) -> None:
        try:
            self._file = tempfile.TemporaryFile(prefix="blkreplay-export-")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise OutputError(f"cannot create a temporary file ({exc.strerror or exc})",
                              path=tempfile.gettempdir()) from None
        self._index: list[tuple[str, int, int, int]] = []
        self._end = 0

    def add(self, key: str, data: bytes) -> None:
        if not data:
            return
        try:
            self._file.write(data)
        except OSError as exc:
            raise OutputError(f"cannot write a temporary file ({exc.strerror or exc})",
                              path=tempfile.gettempdir()) from None
        self._index.append((key, len(self._index), self._end, len(data)))
        self._end += len(data)

    def pieces(self) -> Iterator[tuple[str, bytes]]:
        self._file.flush()
        for key, _, offset, size in sorted(self._index, key=lambda e: (identity.sort_key(e[0]), e[1])):
            self._file.seek(offset)
            yield key, self._file.read(size)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
