"""Where an import's per-VM tables go: one table (one Parquet file), or one file per VM.

An output named ``*.parquet`` is one file with every VM; any other output is a directory of
``vm=<name>/part-0.parquet`` files (hive style, the name URI-encoded, so that a VM name can
never name another path). Files are written atomically (`tracer.tracedir.write_table`).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa

from tracer.tracedir import write_table

_QEMU_VERSION = b"blkreplay.qemu_version"


def one_table(tables: Sequence[pa.Table]) -> pa.Table:
    """The tables of several VMs (at least one) as one table.

    Per-VM metadata (``qemu_version``) stays only where every VM agrees; ``qemu_versions``
    has each VM's.
    """
    if len(tables) == 1:
        return tables[0]
    out = pa.concat_tables(tables).unify_dictionaries().combine_chunks()
    meta = dict(tables[0].schema.metadata or {})
    if len({(t.schema.metadata or {}).get(_QEMU_VERSION) for t in tables}) > 1:
        meta.pop(_QEMU_VERSION, None)
    return out.replace_schema_metadata(meta)


def write_tables(tables: Mapping[str, pa.Table], out: Path) -> list[str]:
    """Write the tables of each VM (by name) to `out`; returns the files written."""
    if out.suffix == ".parquet":
        _write(one_table(list(tables.values())), out)
        return [str(out)]
    files = []
    for name, table in tables.items():
        target = out / f"vm={urllib.parse.quote(name, safe='')}" / "part-0.parquet"
        _write(table, target)
        files.append(str(target))
    return files


def _write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_table(table, path)
