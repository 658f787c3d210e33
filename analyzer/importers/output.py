"""Where an import's per-VM tables go: one table (one Parquet file), or one file per VM.

An output named ``*.parquet`` is one file with every VM; any other output is a directory of
``vm=<name>/part-0.parquet`` files, for a fleet (tables keyed by (host, name)) under
``host=<host>/`` for a VM whose host is known (hive style, names URI-encoded, so that a VM or
host name can never name another path): the files of a fleet imported at once are one
dataset, and the same VM name on two hosts two files.

Both go through :mod:`analyzer.outputs`, checked by :func:`check_output` before anything is
parsed: never an input (or a directory holding one), never half written. A file is replaced
atomically. A directory is built beside the target and renamed into place only when every VM
is written; an existing directory is refused unless `replace` (``import --force``), and then
swapped out whole, so the ``vm=*`` parts of an older import never mix with the new ones.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from analyzer import outputs
from analyzer.importers import freed_memory
from analyzer.importers.merge import VmRows
from analyzer.progress import ProgressCallback
from tracer.errors import OutputError
from tracer.tracedir import PARQUET_OPTIONS

_QEMU_VERSION = b"blkreplay.qemu_version"
_QEMU_VERSIONS = b"blkreplay.qemu_versions"
_INPUTS = b"blkreplay.inputs"
_SKIPPED = b"blkreplay.skipped_lines"
_UNKNOWN = b"blkreplay.unknown_lines"


def one_table(tables: Sequence[pa.Table]) -> pa.Table:
    """The tables of several VMs (at least one) as one table (`one_schema`)."""
    if len(tables) == 1:
        return tables[0]
    out = pa.concat_tables(tables).unify_dictionaries().combine_chunks()
    return out.replace_schema_metadata(one_schema([t.schema for t in tables]).metadata)


def one_schema(schemas: Sequence[pa.Schema]) -> pa.Schema:
    """The schema of one file of several VMs' tables (at least one): per-VM metadata
    (``qemu_version``) stays only where every VM agrees; ``qemu_versions`` has each VM's."""
    if len(schemas) == 1:
        return schemas[0]
    meta = dict(schemas[0].metadata or {})
    if len({(t.metadata or {}).get(_QEMU_VERSION) for t in schemas}) > 1:
        meta.pop(_QEMU_VERSION, None)
    meta.update(_fleet_inputs([t.metadata or {} for t in schemas]))
    return schemas[0].with_metadata(meta)


def _fleet_inputs(metas: Sequence[Mapping[bytes, bytes]]) -> dict[bytes, bytes]:
    """The tables of several hosts (`fleet_rows`) each record only their host's inputs: one
    file of them all records every input once (in the order first seen), the lines they
    skipped and the QEMU release of each VM name (first host's, where two disagree)."""
    seen: dict[tuple, dict] = {}
    versions: dict[str, str] = {}
    for m in metas:
        for entry in json.loads(m.get(_INPUTS, b"[]")):
            seen.setdefault((entry.get("path"), entry.get("sha256")), entry)
        for vm, v in json.loads(m.get(_QEMU_VERSIONS, b"{}")).items():
            versions.setdefault(vm, v)
    if len(seen) == len(json.loads(metas[0].get(_INPUTS, b"[]"))):
        return {}
    inputs = list(seen.values())
    out = {
        _INPUTS: json.dumps(inputs, sort_keys=True).encode(),
        _SKIPPED: json.dumps(sum(e.get("skipped", 0) for e in inputs)).encode(),
    }
    unknown = sum(e.get("unknown_lines", 0) for e in inputs)
    if unknown:
        out[_UNKNOWN] = json.dumps(unknown).encode()
    if versions:
        out[_QEMU_VERSIONS] = json.dumps(versions, sort_keys=True).encode()
    return out


@dataclass(frozen=True)
class OutputPlan:
    """Where an import goes, checked: one Parquet file, or a directory of one file per VM."""

    path: Path
    directory: bool
    inputs: tuple[str, ...]
    parents: bool = False
    replace: bool = False


def is_directory_output(out: str | os.PathLike[str]) -> bool:
    """A ``.parquet`` name is one file; any other name is a directory of one file per VM."""
    return not os.fspath(out).endswith(".parquet")


def check_output(
    out: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str]],
    parents: bool = False,
    replace: bool = False,
) -> OutputPlan:
    """`out` checked against the `inputs` and its place (see :mod:`analyzer.outputs`), before
    any input is read; raises :class:`tracer.errors.OutputError`. Writes nothing."""
    ins = tuple(os.fspath(i) for i in inputs)
    if is_directory_output(out):
        path = outputs.check_output_dir(out, inputs=ins, parents=parents, replace=replace)
        return OutputPlan(path, True, ins, parents, replace)
    path = outputs.check_output(out, inputs=ins, kind="parquet", parents=parents)
    assert path is not None  # no stdout for a trace
    return OutputPlan(path, False, ins, parents, replace)


#: Rows of a Parquet row group (pyarrow's default, what `tracer.tracedir.parquet_bytes` writes);
#: each is written from a slice of the VM's columns (`merge.VmRows.batches`).
ROW_GROUP_ROWS = 1 << 20


def part_path(key: str | tuple[str | None, str]) -> Path:
    """Where one VM's file goes in a directory output: ``[host=H/]vm=V/part-0.parquet``."""
    host, name = (None, key) if isinstance(key, str) else key
    part = Path(f"vm={urllib.parse.quote(name, safe='')}") / "part-0.parquet"
    return part if host is None else Path(f"host={urllib.parse.quote(host, safe='')}") / part


def write_tables(
    tables: Mapping[str, VmRows] | Mapping[tuple[str | None, str], VmRows],
    plan: OutputPlan,
    progress: ProgressCallback | None = None,
) -> list[str]:
    """Write the rows of each VM (by name, or by (host, name)) where `plan` says; returns the
    files written.

    Each VM's rows are streamed to its file one row group at a time (the same bytes as
    writing its whole table); several VMs in one file are streamed one after another, in
    row groups of `ROW_GROUP_ROWS` rows whatever VM they hold (the rows of one row group, not
    the tables of all the VMs, are in memory at once). `progress` is told the rows written."""
    written = _Written(sum(t.num_rows for t in tables.values()), progress)
    if not plan.directory:
        with outputs.open_output(plan.path, inputs=plan.inputs, kind="parquet", parents=plan.parents) as f:
            _write_parquet(list(tables.values()), f, written)
        return [str(plan.path)]
    files = []
    with outputs.output_dir(plan.path, inputs=plan.inputs, parents=plan.parents,
                            replace=plan.replace) as work:
        for key, table in tables.items():
            part = part_path(key)
            _write_part(table, work, part, plan.path, written)
            files.append(str(plan.path / part))
    return files


class _Written:
    """The rows written so far, told to a progress callback (rows of every VM, in total)."""

    def __init__(self, total: int, progress: ProgressCallback | None) -> None:
        self.done, self.total, self._progress = 0, total, progress
        if progress is not None:
            progress(0, total)

    def add(self, rows: int) -> None:
        self.done += rows
        if self._progress is not None:
            self._progress(self.done, self.total)


def _row_groups(vms: Sequence[VmRows], schema: pa.Schema) -> Iterator[pa.Table]:
    """The rows of `vms`, one after another, in tables of `ROW_GROUP_ROWS` rows (the last
    fewer): one VM's row groups as it makes them; several VMs' put together (as
    `one_table` would make the whole, sliced)."""
    if len(vms) == 1:
        yield from vms[0].batches(ROW_GROUP_ROWS)
        return
    pending: list[pa.Table] = []
    held = 0
    for vm in vms:
        for batch in vm.batches(ROW_GROUP_ROWS):
            pending.append(batch.replace_schema_metadata(schema.metadata))
            held += batch.num_rows
            while held >= ROW_GROUP_ROWS:
                whole = pa.concat_tables(pending).unify_dictionaries().combine_chunks()
                yield whole.slice(0, ROW_GROUP_ROWS)
                pending, held = [whole.slice(ROW_GROUP_ROWS)], whole.num_rows - ROW_GROUP_ROWS
    if held or not any(vm.num_rows for vm in vms):
        yield pa.concat_tables(pending).unify_dictionaries().combine_chunks()


def _write_parquet(vms: VmRows | Sequence[VmRows], sink: BinaryIO | outputs.OutputFile, written: _Written) -> None:
    """The rows of `vms` as one Parquet file into `sink`, as `tracer.tracedir.parquet_bytes`
    makes it of their whole table."""
    vms = [vms] if isinstance(vms, VmRows) else list(vms)
    schema = one_schema([vm.schema for vm in vms])
    adapter = _Sink(sink)
    try:
        with pq.ParquetWriter(pa.PythonFile(adapter, mode="w"), schema, **PARQUET_OPTIONS) as writer:
            for group in _row_groups(vms, schema):
                writer.write_table(group, row_group_size=ROW_GROUP_ROWS)
                written.add(group.num_rows)
                del group
                freed_memory.release()  # (each row group's buffers, before the next is made)
        adapter.drain()
    except Exception:
        if adapter.error is not None:  # the output's own error (disk full), not pyarrow's wrapping
            raise adapter.error from None
        raise


class _Sink:
    """A write-only file for pyarrow over `OutputFile`, handing it pieces of at least
    `PIECE` bytes: pyarrow writes a few bytes at a time, and a failed small write (disk full)
    would leave data in the file's buffer that fails again when the file is discarded."""

    PIECE = 1 << 20
    closed = False

    def __init__(self, file: BinaryIO | outputs.OutputFile) -> None:
        self._file = file
        self._at = 0
        self._pending = bytearray()
        self.error: Exception | None = None

    def write(self, data: bytes | memoryview) -> int:
        self._pending += data
        self._at += len(data)
        if len(self._pending) >= self.PIECE:
            self.drain()
        return len(data)

    def drain(self) -> None:
        """Hand everything written so far to the file."""
        pending, self._pending = self._pending, bytearray()
        try:
            self._file.write(pending)
        except Exception as exc:
            self.error = exc
            raise

    def tell(self) -> int:
        return self._at

    def flush(self) -> None:
        pass  # `drain` once the file is complete; the caller flushes the file

    def close(self) -> None:  # the caller closes the file
        pass


def _write_part(table: VmRows, work: Path, part: Path, final: Path, written: _Written) -> None:
    """One VM's file inside the directory being built; a failure names the final output."""
    try:
        (work / part).parent.mkdir(parents=True)  # host=H/ shared by its VMs; vm=V/ always new
        with open(work / part, "wb") as f:  # a fresh directory: the rename of the whole is atomic
            _write_parquet(table, f, written)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise OutputError(f"cannot write ({reason}); nothing written", path=final / part) from None
