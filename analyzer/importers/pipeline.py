"""The import pipeline: inputs -> parsed parts -> one table per VM -> Parquet.

Each step is its own module; this one runs them in order and keeps the bookkeeping:

1. open the input as a stream of bounded lines (`lines.read_text`) and recognise its format
   from a bounded prefix (`detect`);
2. parse it with that format's parser (`qmp`, `qemu_log`, `libvirt_log`, `domain_log`,
   `virsh_events`; a compressed input decompressed first, `compressed`) into parts, one per
   VM it shows, every bad line going through one `lines.LinePolicy`;
3. check every integer fits its column (`rows.first_out_of_range`), give each part its VM
   and build one table per VM (`vm_tables`, `vm_groups`, `merge`), refusing one that
   `check` would refuse;
4. write them (`output`), only once every input has parsed: a bad input writes nothing.

Parsing is Python per line and builds millions of small objects, so it runs with the cyclic
garbage collector paused (`_no_cycle_collection`).
"""

from __future__ import annotations

import gc
import glob
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from analyzer.importers import (
    domain_log,
    journald,
    kubevirt,
    libvirt_log,
    monitor_event,
    qemu_log,
    qmp,
    stap,
    virsh_events,
)
from analyzer.importers.detect import DETECT_BYTES, FORMATS, detect_format
from analyzer.importers.lines import InputText, LinePolicy, read_text
from analyzer.importers.output import check_output, one_table, write_tables
from analyzer.importers.rows import ParsedInput, first_out_of_range
from analyzer.importers.vm_tables import vm_rows, vm_tables
from analyzer.progress import ProgressCallback
from tracer.errors import ImportFormatError, InputError

#: The parser of each format (`detect.FORMATS`).
PARSERS: dict[str, Callable[[InputText, LinePolicy], ParsedInput]] = {
    "qmp": qmp.parse,
    "qemu-log": qemu_log.parse,
    "libvirt-log": libvirt_log.parse,
    "domain-log": domain_log.parse,
    "virsh-events": virsh_events.parse,
    "journal-json": journald.parse_json,
    "journal-export": journald.parse_export,
    "journal-short": journald.parse_short,
    "kubevirt-log": kubevirt.parse,
    "qemu-stap": stap.parse,
    "qemu-monitor-event": monitor_event.parse,
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
    stdin_name: str | None = None,
) -> ParsedInput:
    """Read and parse one input into its parts (one per VM), without merging or writing.

    `path` may be compressed (`compressed`: named by its logical name) or ``-``, standard
    input, named `stdin_name` (default `lines.STDIN_NAME`)."""
    if format != "auto" and format not in FORMATS:
        raise InputError(f"unknown format {format!r}; expected auto or one of: {', '.join(FORMATS)}")
    text = read_text(path, scan=False, stdin_name=stdin_name, skip_bad=skip_bad)
    try:
        if format != "auto":
            fmt = format
            if not any(line.strip() for line in text.iter_lines()):
                raise ImportFormatError("empty input: no line to import", path=text.source)
        else:  # from a bounded prefix: a huge file of junk is refused at its first megabytes
            fmt = detect_format(
                text.iter_lines(DETECT_BYTES), text.source, skip_bad=skip_bad, whole=text.size <= DETECT_BYTES,
            )
        text.scan()
        policy = LinePolicy(
            text, fmt, skip_bad=skip_bad, progress=progress,
            progress_base=progress_base, progress_total=progress_total,
        )
        parsed = PARSERS[fmt](text, policy)
    finally:
        text.close()
    _check_ranges(parsed)
    return parsed


def _check_ranges(parsed: ParsedInput) -> None:
    """ImportFormatError naming the line of the first value no schema column can hold."""
    for part in parsed.parts:
        bad = first_out_of_range(part.rows)
        if bad is not None:
            line, column, value = bad
            big = isinstance(value, int) and abs(value) >= 10**30
            shown = f"about 2^{abs(value).bit_length() - 1}" if big else repr(value)[:30]
            raise ImportFormatError(f"{column} {shown} is out of range for the trace", path=parsed.path, line=line)


def read_input(
    path: str | Path,
    format: str = "auto",
    *,
    vm: str | None = None,
    host: str | None = None,
    skip_bad: bool = False,
    progress: ProgressCallback | None = None,
    stdin_name: str | None = None,
) -> pa.Table:
    """One input as a schema-v1 table (every VM it holds, each with seq 0..)."""
    with _no_cycle_collection():
        parsed = parse_input(path, format, skip_bad=skip_bad, progress=progress, stdin_name=stdin_name)
        return one_table(list(vm_tables([parsed], vm=vm, host=host).values()))


def import_traces(
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    format: str = "auto",
    vm: str | None = None,
    host: str | None = None,
    skip_bad: bool = False,
    progress: ProgressCallback | None = None,
    parents: bool = False,
    replace: bool = False,
    stdin_name: str | None = None,
) -> ImportSummary:
    """Import `inputs` (of one VM, or a libvirt log of several) and write schema v1 to `out`.

    `out` ending in ``.parquet``: one Parquet file with every VM. Otherwise a directory with
    one file per VM, ``vm=<name>/part-0.parquet`` (hive style, the name URI-encoded). Nothing
    is written when any input is bad (unless `skip_bad`). `vm` names the VM of QMP and trace
    log inputs, and selects one VM of a libvirt log; `host` fills the host column.

    `out` is checked before any input is read (:func:`analyzer.importers.output.check_output`):
    never an input, parents created only with `parents`, an existing directory replaced (as a
    whole, once the new one is complete) only with `replace`.
    """
    if not inputs:
        raise InputError("no input to import")
    if sum(str(p) == "-" for p in inputs) > 1:
        raise InputError("standard input (-) given more than once")
    plan = check_output(out, inputs=[p for p in inputs if str(p) != "-"], parents=parents, replace=replace)
    sizes = [_size(p) for p in inputs]
    total = sum(sizes)
    parsed: list[ParsedInput] = []
    base = 0
    with _no_cycle_collection():
        for p, size in zip(inputs, sizes, strict=True):
            parsed.append(
                parse_input(
                    p, format, skip_bad=skip_bad, progress=progress,
                    progress_base=base, progress_total=total, stdin_name=stdin_name,
                )
            )
            base += size
        counts = [p.rows for p in parsed]  # before the tables consume the rows
        tables = vm_rows(parsed, vm=vm, host=host)  # (names each part's VM)
    summaries = tuple(_summary(p, rows) for p, rows in zip(parsed, counts, strict=True))
    del parsed  # the rows now live in `tables`, written one row group at a time
    files = write_tables(tables, plan)
    if progress is not None:
        progress(total, total)
    return ImportSummary(
        inputs=summaries, out=str(plan.path), files=tuple(files),
        vm_rows={name: t.num_rows for name, t in tables.items()},
    )


def expand_inputs(inputs: Sequence[str | Path]) -> list[str]:
    """`inputs` with every glob pattern (``*``, ``?``, ``[``) that names no file expanded, in
    sorted order (a shell that did not expand it: quoted, or Windows); a pattern matching
    nothing is an InputError. ``-`` (standard input) stays."""
    out: list[str] = []
    for p in inputs:
        name = str(p)
        if name == "-" or os.path.lexists(name) or not glob.has_magic(name):
            out.append(name)
            continue
        found = sorted(glob.glob(name))
        if not found:
            raise InputError("no file matches this pattern", path=name)
        out += found
    return out


def _size(path: str | Path) -> int:
    """The input's size in bytes for the progress bar (0 if it cannot be read: parsing says why)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _summary(p: ParsedInput, rows: int) -> InputSummary:
    return InputSummary(
        path=p.path, format=p.format, sha256=p.sha256, lines=p.lines, rows=rows,
        skipped=p.skipped, truncated=p.truncated,
        vms=tuple(sorted({part.vm for part in p.parts if part.vm is not None})),
    )
