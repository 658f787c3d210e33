"""Reading traces: from paths to validated inputs, a plan of per-VM work, and `Steps` batches.

Accepted inputs: a Parquet file, a recorder trace directory (``seg-*.parquet`` + manifest), a
hive-partitioned dataset (``host=a/vm=b/*.parquet``: partition values fill columns the files
lack), a glob, or several of these. `load` validates every file and plans the work as units
of whole VMs; `scan_unit` / `read_unit` read a unit into `Steps` and integrity facts.

* `sources`   - which Parquet files the arguments name (globs, recorder dirs, partitions)
* `files`     - one Parquet file: the one door of Parquet input (footer and row-group
  validation: duplicate columns, schema version, UTF-8, integer ranges, hive partitions),
  reading row groups through one open file per file and thread
* `plan`      - `load`, the `Trace` and its `Unit` s of whole VMs
* `arrow`     - Arrow columns as integer codes (`Interner`)
* `decode`    - a unit's row groups as validated code arrays
* `scan`      - streaming a unit into `Steps` batches (`UnitData`)
* `integrity` - the facts about the recording itself (repeated seqs, clocks going back,
  truncated or interrupted inputs, recordings that differ from their manifest);
  `analyzer.rules.integrity` words them as findings

A VM is identified by (run, host, vm), carried as one opaque key (`analyzer.identity`) wherever
a VM name used to be (`RowGroup.vms`, `Unit.vms`, `Trace.vms`, `Steps.vm_names`). The host is
the `host` column, or a ``host=`` directory for files without that column. The run is the `run`
column, or a ``run=`` directory (which also names the run of null `run` rows), else the
recorder directory of a segment when another recorder directory read holds the same VM (two
recordings of vm0 are two runs; one recorder per VM names none), else none: plain files of the same (host, vm) are one VM, and their seqs must not
overlap. A VM with neither host nor run has its bare name as its key, so such traces read
exactly as before. `files.row_keys` derives per-row keys from the columns, vectorized.

A trace of no steps at all is read (an import of a log without QEMU events writes one), and
`Trace.empty` says so: a check words it as a `trace-empty` warning, never a silent PASS.

Nothing here knows the rules: which columns to read is the caller's `columns` argument.
"""

from analyzer.trace.arrow import Interner
from analyzer.trace.files import RowGroup, TraceFile, release_footers
from analyzer.trace.integrity import (
    ClockBackwards,
    RecordingProblem,
    RepeatedSeq,
    StepFact,
    TruncatedInput,
    clock_back,
)
from analyzer.trace.plan import UNIT_ROWS, Trace, Unit, load
from analyzer.trace.scan import UnitData, read_unit, scan_unit
from analyzer.trace.sources import PathArg

__all__ = [
    "UNIT_ROWS",
    "ClockBackwards",
    "Interner",
    "PathArg",
    "RecordingProblem",
    "RepeatedSeq",
    "RowGroup",
    "StepFact",
    "Trace",
    "TraceFile",
    "TruncatedInput",
    "Unit",
    "UnitData",
    "clock_back",
    "load",
    "read_unit",
    "release_footers",
    "scan_unit",
]
