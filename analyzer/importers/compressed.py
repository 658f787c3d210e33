"""Compressed inputs (rotated logs: ``libvirtd.log.1.gz``), recognised from their magic bytes.

gzip, bzip2 and xz are read with Python's own modules, zstd with pyarrow's streaming codec
(already a dependency: no new package for it). Whatever the file is called, its first bytes
decide; a compressed input is decompressed, as it is read, into a temporary file with the
same bounds as a pipe (`lines._spool`: no line beyond 16 MiB, no more than 64 GiB), so memory
stays bounded and the parsers see plain text.

Naming (``src_file``, the summary and the import's metadata): a compressed file is named by
its *logical* name, its path without the compression suffix (``libvirtd.log.1.gz`` ->
``libvirtd.log.1``), and its sha256 and line numbers are those of the decompressed text. So a
log and its compressed copy, or the same log given on stdin (``-`` with
``--stdin-name NAME``), import to byte-identical Parquet. Errors name the file as given.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from typing import IO

import pyarrow as pa

#: Magic bytes of each codec (RFC 1952, bzip2, the xz format, RFC 8878).
MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
#: The suffixes a compressed file's logical name drops.
SUFFIXES = {"gzip": (".gz", ".gzip"), "bzip2": (".bz2",), "xz": (".xz",), "zstd": (".zst", ".zstd")}
#: What a decompressor raises on damaged or cut data.
DECOMPRESS_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError, ValueError, pa.ArrowException)


def codec_of(head: bytes) -> str | None:
    """The compression of a stream starting with `head` (at least 6 bytes), or None."""
    return next((codec for magic, codec in MAGIC if head.startswith(magic)), None)


def logical_name(path: str, codec: str) -> str:
    """`path` without its compression suffix (unchanged when it has none)."""
    lower = path.lower()
    for suffix in SUFFIXES[codec]:
        if lower.endswith(suffix) and len(path) > len(suffix):
            return path[: -len(suffix)]
    return path


def decompressing(handle: IO[bytes], codec: str) -> IO[bytes]:
    """A readable stream of the decompressed bytes of `handle` (read in chunks)."""
    if codec == "gzip":
        return gzip.GzipFile(fileobj=handle, mode="rb")
    if codec == "bzip2":
        return bz2.BZ2File(handle, mode="rb")
    if codec == "xz":
        return lzma.LZMAFile(handle, mode="rb")
    return pa.CompressedInputStream(pa.PythonFile(handle, mode="r"), "zstd")  # type: ignore[return-value]


def describe(codec: str, exc: BaseException) -> str:
    """What is wrong with damaged `codec` data, in one line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, EOFError) or "truncated" in text.lower() or "end-of-stream" in text.lower():
        return f"truncated {codec} data: the compressed stream ends early ({text})"
    return f"corrupt {codec} data ({text})"


__all__ = ["codec_of", "decompressing", "describe", "logical_name"]
