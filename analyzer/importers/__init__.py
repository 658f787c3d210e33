"""Importers of real QEMU and libvirt output: QMP traffic, QEMU trace logs, libvirt debug logs.

Production traces do not come from the simulator. These importers read what a real QEMU and
its management write and convert it to trace schema v1, so that the analyzer can audit a VM
that was "paused (I/O error)" in production::

    from analyzer.importers import import_traces
    summary = import_traces(["trace.log", "qmp-transcript.jsonl"], "vm.parquet")

Formats (recognised from the content unless given): ``qmp`` (a raw QMP stream or the
timestamped transcript of a capture client, see `analyzer.importers.qmp`), ``qemu-log``
(QEMU's ``log`` trace backend, see `analyzer.importers.qemu_log`), ``libvirt-log`` (a libvirt
daemon debug log, see `analyzer.importers.libvirt_log`). Several inputs of one VM merge into
one trace (`analyzer.importers.merge`). Imported rows name their ``src_file`` and
``src_line``, so a finding points at the original line.

Bad input (a malformed line, an unknown or mixed format, a truncated file) raises
:class:`tracer.errors.ImportFormatError` naming the file and line, before anything is
written; with ``skip_bad`` such lines are skipped and counted in the output's metadata
(``blkreplay.skipped_lines``, ``blkreplay.truncated``).
"""

from __future__ import annotations

import gc
import json
import os
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from analyzer.importers import libvirt_log, qemu_log, qmp
from analyzer.importers.detect import FORMATS, detect_format
from analyzer.importers.lines import InputText, LinePolicy, read_text
from analyzer.importers.merge import SOURCE_ORDER, build_table, part_sort_key
from analyzer.importers.rows import ParsedInput, Part
from analyzer.progress import ProgressCallback
from tracer.errors import ImportFormatError, InputError

__all__ = [
    "FORMATS",
    "ImportSummary",
    "InputSummary",
    "import_traces",
    "parse_input",
    "read_input",
]

#: VM name for QMP / trace-log inputs that do not name their VM (no --vm, no query-name).
DEFAULT_VM = "vm0"

_PARSERS: dict[str, Callable[[InputText, LinePolicy], ParsedInput]] = {
    "qmp": qmp.parse,
    "qemu-log": qemu_log.parse,
    "libvirt-log": libvirt_log.parse,
}


@dataclass(frozen=True)
class InputSummary:
    """What one input gave: the format recognised, its lines, the rows made, lines skipped."""

    path: str
    format: str
    sha256: str
    lines: int
    rows: int
    skipped: int
    truncated: bool
    #: The VMs its rows belong to.
    vms: tuple[str, ...]


@dataclass(frozen=True)
class ImportSummary:
    """The result of `import_traces`."""

    inputs: tuple[InputSummary, ...]
    out: str
    #: Files written (one, or one per VM for a directory output).
    files: tuple[str, ...]
    #: Rows written per VM (after merging the inputs).
    vm_rows: dict[str, int]

    @property
    def rows(self) -> int:
        return sum(self.vm_rows.values())

    @property
    def skipped(self) -> int:
        return sum(i.skipped for i in self.inputs)

    @property
    def truncated(self) -> bool:
        return any(i.truncated for i in self.inputs)


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause the cyclic garbage collector while building millions of small objects.

    Parsing creates no reference cycles, but each row's dicts and tuples would trigger
    collections that scan every live object again and again (5x slower on 1M lines).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse_input(
    path: str | Path,
    format: str = "auto",
    *,
    skip_bad: bool = False,
    progress: ProgressCallback | None = None,
    progress_base: int = 0,
    progress_total: int | None = None,
) -> ParsedInput:
    """Read and parse one input into its parts (one per VM), without merging or writing."""
    if format != "auto" and format not in FORMATS:
        raise InputError(f"unknown format {format!r}; expected auto or one of: {', '.join(FORMATS)}")
    text = read_text(path)
    fmt = format if format != "auto" else detect_format(text.lines, text.path, skip_bad=skip_bad)
    if not any(line.strip() for line in text.lines):
        raise ImportFormatError("empty input: no line to import", path=text.path)
    policy = LinePolicy(
        text, fmt, skip_bad=skip_bad, progress=progress,
        progress_base=progress_base, progress_total=progress_total,
    )
    return _PARSERS[fmt](text, policy)


def read_input(
    path: str | Path,
    format: str = "auto",
    *,
    vm: str | None = None,
    host: str | None = None,
    skip_bad: bool = False,
    progress: ProgressCallback | None = None,
) -> pa.Table:
    """One input as a schema-v1 table (every VM it holds, each with seq 0..)."""
    with _no_cycle_collection():
        parsed = parse_input(path, format, skip_bad=skip_bad, progress=progress)
        tables = _tables([parsed], vm=vm, host=host)
        return _concat(list(tables.values()))


def import_traces(
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    format: str = "auto",
    vm: str | None = None,
    host: str | None = None,
    skip_bad: bool = False,
    progress: ProgressCallback | None = None,
) -> ImportSummary:
    """Import `inputs` (of one VM, or a libvirt log of several) and write schema v1 to `out`.

    `out` ending in ``.parquet``: one Parquet file with every VM. Otherwise a directory with
    one file per VM, ``vm=<name>/part-0.parquet`` (hive style, the name URI-encoded). Nothing
    is written when any input is bad (unless `skip_bad`). `vm` names the VM of QMP and trace
    log inputs, and selects one VM of a libvirt log; `host` fills the host column.
    """
    if not inputs:
        raise InputError("no input to import")
    sizes = []
    for p in inputs:
        try:
            sizes.append(os.stat(p).st_size)
        except OSError:
            sizes.append(0)
    total = sum(sizes)
    parsed: list[ParsedInput] = []
    base = 0
    with _no_cycle_collection():
        for p, size in zip(inputs, sizes, strict=True):
            parsed.append(
                parse_input(
                    p, format, skip_bad=skip_bad, progress=progress,
                    progress_base=base, progress_total=total,
                )
            )
            base += size
        tables = _tables(parsed, vm=vm, host=host)
    summaries = tuple(
        InputSummary(
            path=p.path, format=p.format, sha256=p.sha256, lines=p.lines, rows=p.rows,
            skipped=p.skipped, truncated=p.truncated,
            vms=tuple(sorted({part.vm for part in p.parts if part.vm is not None})),
        )
        for p in parsed
    )
    del parsed  # the rows now live in `tables`
    out_path = Path(out)
    files: list[str] = []
    if out_path.suffix == ".parquet":
        _write(_concat(list(tables.values())), out_path)
        files.append(str(out_path))
    else:
        for name, table in tables.items():
            target = out_path / f"vm={urllib.parse.quote(name, safe='')}" / "part-0.parquet"
            _write(table, target)
            files.append(str(target))
    if progress is not None:
        progress(total, total)
    return ImportSummary(
        inputs=summaries, out=str(out_path), files=tuple(files),
        vm_rows={name: t.num_rows for name, t in tables.items()},
    )


def _tables(parsed: list[ParsedInput], *, vm: str | None, host: str | None) -> dict[str, pa.Table]:
    """Group the parts by VM and build one table per VM (sorted by VM name)."""
    canonical = sorted(parsed, key=lambda p: (SOURCE_ORDER[p.format], p.sha256, p.path))
    for order, p in enumerate(canonical):
        for part in p.parts:
            part.order = order
    groups = _group(parsed, vm)
    source = canonical[0].format if len({p.format for p in parsed}) == 1 and len(parsed) == 1 else "merged"
    inputs_meta = [
        {"path": p.path, "format": p.format, "sha256": p.sha256, "lines": p.lines, "skipped": p.skipped}
        for p in canonical
    ]
    metadata: dict[str, object] = {
        "inputs": json.dumps(inputs_meta, sort_keys=True),
        "skipped_lines": sum(p.skipped for p in parsed),
    }
    if any(p.truncated for p in parsed):
        metadata["truncated"] = "true"
    if not groups:
        raise ImportFormatError(
            "no QMP traffic to import (a libvirt log needs QEMU_MONITOR_* lines: debug logging of qemu)",
            path=canonical[0].path,
        )
    versions = {name: _qemu_version(groups[name]) for name in sorted(groups)}
    known = {name: v for name, v in versions.items() if v is not None}
    if known:
        # Per VM, so that one file of several VMs keeps each VM's version.
        metadata["qemu_versions"] = json.dumps(known, sort_keys=True)
    tables = {}
    for name in sorted(groups):
        parts = groups[name]
        vm_host = host or next((p.host for p in sorted(parts, key=part_sort_key) if p.host), None)
        vm_meta = dict(metadata)
        if versions[name] is not None:
            vm_meta["qemu_version"] = versions[name]
        tables[name] = build_table(parts, name, host=vm_host, source=source, metadata=vm_meta)
    return tables


def _qemu_version(parts: list[Part]) -> str | None:
    """The QEMU release one VM's inputs announce (the first input in source order that does)."""
    return next((p.qemu_version for p in sorted(parts, key=part_sort_key) if p.qemu_version), None)


def _group(parsed: list[ParsedInput], vm: str | None) -> dict[str, list[Part]]:
    """Which VM each part belongs to.

    A libvirt log names its VMs (one per monitor); `vm` keeps only that one. QMP and trace-log
    inputs belong to one VM: `vm` if given, else the libvirt VM they share the most events with
    (the only one, if there is one), else the name a ``query-name`` reply gave, else ``vm0``.
    """
    named: dict[str, list[Part]] = {}
    unnamed: list[Part] = []
    for p in parsed:
        for part in p.parts:
            if p.format == "libvirt-log":
                named.setdefault(part.vm or DEFAULT_VM, []).append(part)
            else:
                unnamed.append(part)
    if vm is not None and named:
        if vm not in named:
            found = ", ".join(sorted(named)) or "none"
            raise InputError(f"no VM named {vm!r} in the libvirt log (found: {found})")
        named = {vm: named[vm]}
    if not unnamed:
        return named
    if vm is not None:
        target = vm
    elif len(named) == 1:
        target = next(iter(named))
    elif named:
        target = max(sorted(named), key=lambda name: _shared_events(named[name], unnamed))
    else:
        target = next((part.vm for part in sorted(unnamed, key=part_sort_key) if part.vm), DEFAULT_VM)
    for part in unnamed:
        part.vm = target
    named.setdefault(target, []).extend(unnamed)
    return named


def _shared_events(a: list[Part], b: list[Part]) -> int:
    def events(parts: list[Part]) -> set:
        return {k for part in parts for k in part.rows.sparse["key"].values() if k[0] == "event"}

    return len(events(a) & events(b))


def _concat(tables: list[pa.Table]) -> pa.Table:
    if len(tables) == 1:
        return tables[0]
    if not tables:
        from tracer.schema import empty_table

        return empty_table("merged")
    out = pa.concat_tables(tables).unify_dictionaries().combine_chunks()
    # Per-VM metadata (qemu_version) stays only where every VM agrees; qemu_versions has all.
    meta = dict(tables[0].schema.metadata or {})
    key = b"blkreplay.qemu_version"
    if len({(t.schema.metadata or {}).get(key) for t in tables}) > 1:
        meta.pop(key, None)
    return out.replace_schema_metadata(meta)


def _write(table: pa.Table, path: Path) -> None:
    from tracer.tracedir import write_table

    path.parent.mkdir(parents=True, exist_ok=True)
    write_table(table, path)
