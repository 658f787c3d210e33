"""One schema-v1 table per VM from parsed inputs, with what the import records about them.

The inputs are put in a canonical order first (source order, then content), so that the
tables do not depend on the order the files were given in. Each table's schema metadata
records every input (path, format, sha256, lines, skipped), the lines skipped, whether an
input was truncated, and the QEMU release its inputs announced: ``qemu_version`` for the VM,
``qemu_versions`` for every VM of the import (what the rules may expect of that QEMU,
`tracer.qemu.throttles`), and ``throttled_vms``: the VMs whose trace log showed BLOCK_IO_ERROR
rate-limited.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pyarrow as pa

from analyzer.importers.detect import BASE_FORMAT
from analyzer.importers.merge import SOURCE_ORDER, VmRows, build_rows, part_sort_key
from analyzer.importers.rows import ParsedInput, Part
from analyzer.importers.vm_groups import group_by_vm
from tracer.errors import ImportFormatError
from tracer.schema import validate


def vm_tables(parsed: Sequence[ParsedInput], *, vm: str | None, host: str | None) -> dict[str, pa.Table]:
    """`vm_rows` as whole tables."""
    return {name: rows.to_table() for name, rows in vm_rows(parsed, vm=vm, host=host).items()}


def vm_rows(parsed: Sequence[ParsedInput], *, vm: str | None, host: str | None) -> dict[str, VmRows]:
    """Group the parts by VM and build the rows of each VM (sorted by VM name), each row group
    checked as `check` would as it is made; the parts are consumed (`merge.build_rows`).

    `vm` names the VM of QMP / trace-log inputs and selects one VM of a libvirt log; `host`
    fills the host column (else the host a libvirt log names).
    """
    canonical = sorted(parsed, key=lambda p: (SOURCE_ORDER[BASE_FORMAT.get(p.format, p.format)], p.sha256, p.path))
    for order, p in enumerate(canonical):
        for part in p.parts:
            part.order = order
    groups = group_by_vm(parsed, vm)
    source = canonical[0].format if len({p.format for p in parsed}) == 1 and len(parsed) == 1 else "merged"
    metadata = _import_metadata(canonical)
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
    throttled = sorted(name for name, parts in groups.items() if any(p.throttles for p in parts))
    if throttled:
        # The VMs whose trace log showed BLOCK_IO_ERROR rate-limited (tracer.qemu.throttles).
        metadata["throttled_vms"] = json.dumps(throttled)
    tables = {}
    for name in sorted(groups):
        parts = groups[name]
        vm_host = host or next((p.host for p in sorted(parts, key=part_sort_key) if p.host), None)
        vm_meta = dict(metadata)
        if versions[name] is not None:
            vm_meta["qemu_version"] = versions[name]
        tables[name] = build_rows(parts, name, host=vm_host, source=source, metadata=vm_meta,
                                  check=_ensure_checkable)
    return tables


def _ensure_checkable(table: pa.Table) -> None:
    """Refuse to write a table (a row group of one VM) that `check` would refuse (the one
    schema validation both use), naming the input line of the first offending row: an import
    writes what check accepts, or nothing (the output is discarded: `analyzer.outputs`)."""
    problems = validate(table)
    if not problems:
        return
    first = problems[0]
    if first.row is None:
        raise ImportFormatError(f"the imported rows break the trace schema: {first}")
    src_file = table.column("src_file")[first.row].as_py()
    src_line = table.column("src_line")[first.row].as_py()
    col = f"{first.column}: " if first.column else ""
    raise ImportFormatError(f"cannot be imported as a valid trace ({col}{first.message})", path=src_file, line=src_line)


def _import_metadata(canonical: Sequence[ParsedInput]) -> dict[str, object]:
    """What every table of the import records about its inputs (in canonical order)."""
    inputs_meta = [
        {"path": p.path, "format": p.format, "sha256": p.sha256, "lines": p.lines, "skipped": p.skipped,
         **({"unknown_lines": p.unknown_lines} if p.unknown_lines else {})}
        for p in canonical
    ]
    metadata: dict[str, object] = {
        "inputs": json.dumps(inputs_meta, sort_keys=True),
        "skipped_lines": sum(p.skipped for p in canonical),
    }
    if any(p.truncated for p in canonical):
        metadata["truncated"] = "true"
    if any(p.unknown_lines for p in canonical):
        metadata["unknown_lines"] = sum(p.unknown_lines for p in canonical)
    return metadata


def _qemu_version(parts: list[Part]) -> str | None:
    """The QEMU release one VM's inputs announce (the first input in source order that does)."""
    return next((p.qemu_version for p in sorted(parts, key=part_sort_key) if p.qemu_version), None)
