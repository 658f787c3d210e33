"""The import pipeline: inputs -> parsed parts -> one table per VM -> Parquet.

Each step is its own module; this one runs them in order and keeps the bookkeeping:

1. open the input as a stream of bounded lines (`lines.read_text`) and recognise its format
   from a bounded prefix (`detect`);
2. parse it with that format's parser (`qmp`, `qemu_log`, `libvirt_log`, `domain_log`,
   `virsh_events`; a compressed input decompressed first, `compressed`) into parts, one per
   VM it shows, every bad line going through one `lines.LinePolicy`;
3. check every integer fits its column (`rows.first_out_of_range`), give each input its host
   (`hosts`: a fleet's files at once) and each part its VM, and build one table per (host,
   VM) (`vm_tables`, `vm_groups`, `merge`), refusing one that `check` would refuse;
4. write them (`output`), only once every input has parsed: a bad input writes nothing.

Between the steps, the memory the allocators hold free goes back to the system
(`freed_memory`), so that a step's peak does not come on top of the garbage of the one before;
from the block that read them until they are written, the payloads of the rows read in bulk
wait on disk (`spill`).

Several inputs may be parsed at once in worker processes (`workers`, `_parse_all`): each
worker parses whole files and hands back its `ParsedInput` (our own dataclasses of parsed
strings and integers, between our own processes); the parent takes them in input order, so
the output, and which bad input is reported, are those of one process.

Parsing is Python per line and builds millions of small objects, so it runs with the cyclic
garbage collector paused and a shorter thread switch interval (`_parsing`).
"""

from __future__ import annotations

import contextlib
import gc
import glob
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from analyzer.importers import (
    domain_log,
    freed_memory,
    journald,
    kubevirt,
    libvirt_log,
    monitor_event,
    qemu_log,
    qmp,
    spill,
    stap,
    virsh_events,
)
from analyzer.importers.detect import DETECT_BYTES, FORMATS, detect_format
from analyzer.importers.hosts import assign_hosts, check_pattern, is_pattern
from analyzer.importers.lines import InputText, LinePolicy, read_text
from analyzer.importers.merge import VmRows
from analyzer.importers.output import check_output, one_table, write_tables
from analyzer.importers.rows import ParsedInput, first_out_of_range
from analyzer.importers.vm_tables import vm_rows, vm_tables
from analyzer.progress import ProgressCallback
from tracer.errors import ImportFormatError, InputError, OutputError

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
    #: The host it belongs to (`hosts`), if known.
    host: str | None = None
    #: Lines of a trace event in none of its known formats (counted, not kept).
    unknown_lines: int = 0


@dataclass(frozen=True)
class ImportSummary:
    """The result of `import_traces`."""

    inputs: tuple[InputSummary, ...]
    out: str
    #: Files written (one, or one per VM for a directory output).
    files: tuple[str, ...]
    #: Rows written per VM name (after merging the inputs; VMs of one name on several hosts
    #: add up: `host_vm_rows` tells them apart).
    vm_rows: dict[str, int]
    #: Rows written per (host, VM), in output order (host None: unknown).
    host_vm_rows: dict[tuple[str | None, str], int] | None = None

    @property
    def hosts(self) -> tuple[str, ...]:
        """The hosts the import's VMs belong to (known ones), sorted."""
        return tuple(sorted({h for h, _ in (self.host_vm_rows or {}) if h is not None}))

    @property
    def rows(self) -> int:
        return sum(self.vm_rows.values())

    @property
    def skipped(self) -> int:
        return sum(i.skipped for i in self.inputs)

    @property
    def truncated(self) -> bool:
        return any(i.truncated for i in self.inputs)


#: How long a thread may hold the GIL while another waits for it, while parsing (s).
PARSING_SWITCH_INTERVAL = 0.001


@contextmanager
def _parsing() -> Iterator[None]:
    """Pause the cyclic garbage collector while building millions of small objects, and let
    the bulk readers' threads have the GIL back sooner.

    Parsing creates no reference cycles, but each row's dicts and tuples would trigger
    collections that scan every live object again and again (5x slower on 1M lines).

    The threads reading ahead (`ahead.ordered`) run numpy and Arrow without the GIL, but need
    it back between two calls, while the parser's Python loop holds it: at Python's default
    switch interval (5 ms) each of their dozens of calls per block may wait that long, and
    the parser then waits for their blocks (1.4 s of 11 s on a 10 M-line libvirt log). At
    1 ms that log takes 5% less time. Both settings are restored afterwards.
    """
    was_enabled = gc.isenabled()
    interval = sys.getswitchinterval()
    gc.disable()
    sys.setswitchinterval(min(interval, PARSING_SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
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
    spill_to: Path | None = None,
) -> ParsedInput:
    """Read and parse one input into its parts (one per VM), without merging or writing.

    `path` may be compressed (`compressed`: named by its logical name) or ``-``, standard
    input, named `stdin_name` (default `lines.STDIN_NAME`). With `spill_to` (a directory
    of `spill.spill_directory`), the payloads of the rows read in bulk wait there until they
    are written (`spill`)."""
    if format != "auto" and format not in FORMATS:
        raise InputError(f"unknown format {format!r}; expected auto or one of: {', '.join(FORMATS)}")
    text = read_text(path, scan=False, stdin_name=stdin_name, skip_bad=skip_bad)
    policy: LinePolicy | None = None
    try:
        if format != "auto":
            fmt = format
            if not any(line.strip() for line in text.iter_lines()):
                raise ImportFormatError("empty input: no line to import", path=text.source)
        else:  # from a bounded prefix: a huge file of junk is refused at its first megabytes
            fmt = detect_format(
                text.iter_lines(DETECT_BYTES), text.source, skip_bad=skip_bad, whole=text.size <= DETECT_BYTES,
            )
        text.start_scan()  # (beside the parsing: its sha256 and line count are for the end)
        policy = LinePolicy(
            text, fmt, skip_bad=skip_bad, progress=progress,
            progress_base=progress_base, progress_total=progress_total,
        )
        if spill_to is not None:
            policy.spill = spill.SpillFile(spill_to)
        parsed = PARSERS[fmt](text, policy)
        for part in parsed.parts:
            part.sha256 = parsed.sha256
        _check_ranges(parsed)
        if policy.spill is not None:
            spill.spill_payloads((seg for part in parsed.parts for seg in part.rows.segments), policy.spill)
            policy.spill.close()
    finally:
        text.close()
        if policy is not None and policy.spill is not None:  # (refused: its spill is not read)
            with contextlib.suppress(OutputError):
                policy.spill.close()
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
    check_pattern(host)
    with _parsing():
        parsed = parse_input(path, format, skip_bad=skip_bad, progress=progress, stdin_name=stdin_name)
        assign_hosts([parsed], host, [None if str(path) == "-" else str(path)])
        return one_table(list(vm_tables([parsed], vm=vm, host=None).values()))


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
    workers: int = 1,
    write_progress: ProgressCallback | None = None,
) -> ImportSummary:
    """Import `inputs` (of one VM, a libvirt log of several, or the files of many hosts) and
    write schema v1 to `out`.

    `out` ending in ``.parquet``: one Parquet file with every VM. Otherwise a directory with
    one file per VM, ``vm=<name>/part-0.parquet`` (hive style, names URI-encoded); for a
    fleet (VMs of several hosts, or `host` a pattern) ``host=<host>/vm=<name>/...`` for each
    VM whose host is known. Nothing is written when any input is bad
    (unless `skip_bad`). `vm` names the VM of QMP and trace log inputs, and selects one VM of
    a libvirt log; `host` is every row's host, or a pattern giving each input's from its path
    (``{dir}``, ``re:...``: `analyzer.importers.hosts`); without it a libvirt log's
    ``hostname:`` line names its host, and the files beside it take it. Inputs are grouped by
    host, then by VM: the same VM name on two hosts is two VMs.

    `out` is checked before any input is read (:func:`analyzer.importers.output.check_output`):
    never an input, parents created only with `parents`, an existing directory replaced (as a
    whole, once the new one is complete) only with `replace`.

    `workers` > 1 parses up to that many inputs at once, each in its own process; the output
    is the same whatever `workers`.

    `progress` is told the input bytes parsed; `write_progress`, then, the rows written (the
    rows of every VM are put together and written a row group at a time: `merge.VmRows`).
    """
    if workers < 1:
        raise InputError(f"workers must be at least 1, not {workers}")
    if not inputs:
        raise InputError("no input to import")
    if sum(str(p) == "-" for p in inputs) > 1:
        raise InputError("standard input (-) given more than once")
    check_pattern(host)
    plan = check_output(out, inputs=[p for p in inputs if str(p) != "-"], parents=parents, replace=replace)
    sizes = [_size(p) for p in inputs]
    total = sum(sizes)
    with spill.spill_directory() as spill_to:
        with _parsing():
            parsed = _parse_all(
                inputs, sizes, format, skip_bad=skip_bad, progress=progress, stdin_name=stdin_name,
                workers=workers, spill_to=spill_to,
            )
            if progress is not None:
                progress(total, total)
            freed_memory.release()  # (what parsing dropped, before the build's peak comes on top)
            counts = [p.rows for p in parsed]  # before the tables consume the rows
            hosts = assign_hosts(parsed, host, [None if str(p) == "-" else str(p) for p in inputs])
            tables = fleet_rows(parsed, hosts, vm=vm)  # (names each part's VM)
            freed_memory.release()
        summaries = tuple(_summary(p, rows, h) for p, rows, h in zip(parsed, counts, hosts, strict=True))
        del parsed  # the rows now live in `tables`, written one row group at a time
        if is_pattern(host) or len({h for h, _ in tables}) > 1:  # a fleet: host=H/vm=V/
            files = write_tables(tables, plan, write_progress)
        else:  # one host's (or none): vm=V/ as ever
            files = write_tables({name: t for (_, name), t in tables.items()}, plan, write_progress)
    by_name: dict[str, int] = {}
    for (_, name), t in tables.items():
        by_name[name] = by_name.get(name, 0) + t.num_rows
    return ImportSummary(
        inputs=summaries, out=str(plan.path), files=tuple(files), vm_rows=by_name,
        host_vm_rows={key: t.num_rows for key, t in tables.items()},
    )


def _parse_all(
    inputs: Sequence[str | Path],
    sizes: Sequence[int],
    format: str,
    *,
    skip_bad: bool,
    progress: ProgressCallback | None,
    stdin_name: str | None,
    workers: int,
    spill_to: Path | None,
) -> list[ParsedInput]:
    """Every input parsed, in input order: here one after the other, or with `workers` > 1
    the files in worker processes (standard input always here) and taken back in order, so
    that the first bad input in order is the one reported, as in one process."""
    files = [p for p in inputs if str(p) != "-"]
    if workers > 1 and len(files) > 1:
        try:
            return _parse_in_workers(inputs, sizes, format, skip_bad=skip_bad, progress=progress,
                                     stdin_name=stdin_name, workers=workers, spill_to=spill_to)
        except BrokenProcessPool:  # the workers died (a __main__ they cannot import): here
            if any(str(p) == "-" for p in inputs):  # read once already, perhaps
                raise InputError("the worker processes stopped; import with --workers 1") from None
    total = sum(sizes)
    parsed: list[ParsedInput] = []
    base = 0
    for p, size in zip(inputs, sizes, strict=True):
        parsed.append(
            parse_input(
                p, format, skip_bad=skip_bad, progress=progress,
                progress_base=base, progress_total=total, stdin_name=stdin_name, spill_to=spill_to,
            )
        )
        base += size
    return parsed


def _parse_in_workers(
    inputs: Sequence[str | Path],
    sizes: Sequence[int],
    format: str,
    *,
    skip_bad: bool,
    progress: ProgressCallback | None,
    stdin_name: str | None,
    workers: int,
    spill_to: Path | None,
) -> list[ParsedInput]:
    """`_parse_all` with the files parsed in up to `workers` processes."""
    total = sum(sizes)
    files = [p for p in inputs if str(p) != "-"]
    # forkserver: a clean process that imports what it needs, not a fork of this one's rows.
    context = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(files)), mp_context=context)
    try:
        futures: list[Future[ParsedInput] | None] = [
            None if str(p) == "-" else pool.submit(_parse_in_worker, str(p), format, skip_bad, spill_to)
            for p in inputs
        ]
        parsed = []
        base = 0
        for p, size, future in zip(inputs, sizes, futures, strict=True):
            if future is None:
                parsed.append(
                    parse_input(
                        p, format, skip_bad=skip_bad, progress=progress,
                        progress_base=base, progress_total=total, stdin_name=stdin_name, spill_to=spill_to,
                    )
                )
            else:
                parsed.append(future.result())
            base += size
            if progress is not None:
                progress(base, total)
        return parsed
    finally:  # on a bad input: the inputs not yet started are not parsed
        pool.shutdown(wait=True, cancel_futures=True)


def _parse_in_worker(path: str, format: str, skip_bad: bool, spill_to: Path | None) -> ParsedInput:
    """`parse_input` in a worker process (no progress: the parent reports each input done);
    its spill files stay in the parent's directory, for the parent to read."""
    with _parsing():
        return parse_input(path, format, skip_bad=skip_bad, spill_to=spill_to)


def fleet_rows(
    parsed: Sequence[ParsedInput], hosts: Sequence[str | None], *, vm: str | None,
) -> dict[tuple[str | None, str], VmRows]:
    """The rows of each (host, VM), in (host, VM) order (unknown host first): the inputs of
    each host grouped and merged on their own (`vm_tables.vm_rows`). With `vm`, a host whose
    inputs do not hold that VM is left out (an InputError only when no host holds it)."""
    groups: dict[str | None, list[ParsedInput]] = {}
    for p, h in zip(parsed, hosts, strict=True):
        groups.setdefault(h, []).append(p)
    out: dict[tuple[str | None, str], VmRows] = {}
    missing: InputError | None = None
    for h in sorted(groups, key=lambda x: (x is not None, x or "")):
        try:
            rows = vm_rows(groups[h], vm=vm, host=None)
        except InputError as exc:
            if vm is None or len(groups) == 1 or isinstance(exc, ImportFormatError):
                raise
            missing = missing or exc
            continue
        out.update({(h, name): r for name, r in rows.items()})
    if not out and missing is not None:
        raise missing
    return out


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


def _summary(p: ParsedInput, rows: int, host: str | None) -> InputSummary:
    return InputSummary(
        path=p.path, format=p.format, sha256=p.sha256, lines=p.lines, rows=rows,
        skipped=p.skipped, truncated=p.truncated,
        vms=tuple(sorted({part.vm for part in p.parts if part.vm is not None})), host=host,
        unknown_lines=p.unknown_lines,
    )
