"""Importers of real QEMU and libvirt output: QMP traffic, QEMU trace logs, libvirt debug logs.

Production traces do not come from the simulator. These importers read what a real QEMU and
its management write and convert it to trace schema v1, so that the analyzer can audit a VM
that was "paused (I/O error)" in production::

    from analyzer.importers import import_traces
    summary = import_traces(["trace.log", "qmp-transcript.jsonl"], "vm.parquet")

Formats (recognised from the content unless given): ``qmp`` (a raw QMP stream or the
timestamped transcript of a capture client, see `analyzer.importers.qmp`), ``qemu-log``
(QEMU's ``log`` trace backend, see `analyzer.importers.qemu_log`), ``libvirt-log`` (a libvirt
daemon debug log, see `analyzer.importers.libvirt_log`), and what production hosts keep
instead: the journal's and a KubeVirt pod's libvirt log (`journald`, `kubevirt`), QEMU's
SystemTap trace (`stap`), virsh's relayed QMP events (`monitor_event`), each read through
`carried` by the plain log's parser. Several inputs of one VM merge into
one trace (`analyzer.importers.merge`). Imported rows name their ``src_file`` and
``src_line``, so a finding points at the original line.

Modules: `pipeline` runs an import (read, detect, parse, group by VM, merge, write); the
format parsers `qmp`, `qemu_log`, `libvirt_log` share `qmp_semantics` (what a QMP message
means as rows), `json_scan` and `message_cache` (parsing each line fast, bounded), `qmp_types` (the types
and ranges of the fields read), `thread_hints`
(which TID is which QEMU thread) and `qapi_events` (trace-log event numbers); the lines that
need no Python are read in bulk (`byte_lines`, `byte_words`, `trace_block`,
`transcript_block`), and a transcript's commands and replies become rows as columns
(`qmp_pairing`, `qmp_messages`); `rows` is the form they fill, `vm_groups` / `vm_tables` /
`merge` turn it into one table per VM, `output` writes them.

Bad input (a malformed line, an unknown or mixed format, a truncated file, JSON beyond
`json_scan`'s bounds, a field of the wrong type (`qmp_types`), a number no column can hold, a
line that is not UTF-8 or longer than 16 MiB, see `lines`) raises
:class:`tracer.errors.ImportFormatError` (an InputError) naming the file and line, before
anything is written; with ``skip_bad`` such lines are skipped and counted in the output's metadata
(``blkreplay.skipped_lines``, ``blkreplay.truncated``).
"""

from analyzer.importers.detect import FORMATS
from analyzer.importers.pipeline import (
    ImportSummary,
    InputSummary,
    import_traces,
    parse_input,
    read_input,
)

__all__ = [
    "FORMATS",
    "ImportSummary",
    "InputSummary",
    "import_traces",
    "parse_input",
    "read_input",
]
