"""Arrow columns as numpy arrays of small integer codes: the primitives of decoding a trace.

Rules work on integer codes (`analyzer.steps`), Parquet gives dictionary-encoded Arrow columns.
The conversion must cost next to nothing per row: every function here works on a column's
*dictionary* (a handful of distinct values) and maps its indices with one numpy gather, never
touching the strings of individual rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class Interner:
    """Stable small-integer codes for the strings of one unit (encounter order)."""

    def __init__(self, initial: Iterable[str] = ()) -> None:
        self.names: list[str] = []
        self.codes: dict[str, int] = {}
        for v in initial:
            self.code(v)

    def code(self, value: str | None) -> int:
        if value is None:
            return -1
        c = self.codes.get(value)
        if c is None:
            c = self.codes[value] = len(self.names)
            self.names.append(value)
        return c


def codes(col: pa.ChunkedArray | pa.Array, lookup: Callable[[str | None], int]) -> np.ndarray:
    """Integer codes of a string column via `lookup` on its dictionary values (-1: null)."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    parts = []
    for chunk in chunks:
        if pa.types.is_null(chunk.type):
            parts.append(np.full(len(chunk), -1, dtype=np.int32))
            continue
        if not pa.types.is_dictionary(chunk.type):
            chunk = pc.dictionary_encode(chunk)
        values = chunk.dictionary.to_pylist()
        mapping = np.array([lookup(v) for v in values] + [-1], dtype=np.int32)
        idx = chunk.indices
        if idx.null_count:
            idx = pc.fill_null(idx, len(values))
        parts.append(mapping[idx.to_numpy(zero_copy_only=False)])
    if not parts:
        return np.zeros(0, dtype=np.int32)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def dictionary(col: pa.ChunkedArray) -> tuple[np.ndarray, list[str | None]]:
    """(dictionary indices as int32, dictionary values) of a string column without nulls."""
    chunks = col.chunks
    if not chunks:
        return np.zeros(0, dtype=np.int32), []
    if len(chunks) == 1:
        arr = chunks[0]
    elif pa.types.is_dictionary(col.type):
        arr = col.unify_dictionaries().combine_chunks()
    else:
        arr = pa.concat_arrays(chunks)
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr)
    idx = np.asarray(arr.indices.to_numpy(zero_copy_only=False), dtype=np.int32)
    return idx, arr.dictionary.to_pylist()


def ints(col: pa.ChunkedArray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(values with nulls as -1, validity mask) of an integer column (all null when absent)."""
    if col is None or pa.types.is_null(col.type):
        return np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=bool)
    if col.null_count == 0:
        return np.asarray(col.to_numpy(), dtype=np.int64), np.ones(n, dtype=bool)
    valid = np.asarray(pc.is_valid(col).to_numpy(zero_copy_only=False), dtype=bool)
    return np.asarray(pc.fill_null(col, -1).to_numpy(), dtype=np.int64), valid


def plain(table: pa.Table) -> pa.Table:
    """Dictionary columns as plain strings (for concatenating tables of different files)."""
    cols = []
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def source_location(table: pa.Table, row: int) -> str | None:
    """``file:line`` (or ``file``) of QEMU's source a row names, None when it names none."""
    if "src_file" not in table.column_names:
        return None
    f = table.column("src_file")[row].as_py()
    if f is None:
        return None
    line = table.column("src_line")[row].as_py() if "src_line" in table.column_names else None
    return f"{f}:{line}" if line is not None else str(f)
