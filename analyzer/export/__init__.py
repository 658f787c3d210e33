"""Exports: the facts of a check in other tools' formats, so a user looks at them where they
already work — a Perfetto timeline, Parquet tables for SQL and Grafana, OpenMetrics for
Prometheus.

One module per format, each a library function that `blkreplay export --to FORMAT` wraps::

    import analyzer.export as export
    export.perfetto(["trace-dir/"], "fleet.pftrace")     # ui.perfetto.dev
    export.tables(analyzer.check(["trace-dir/"]), "tables/")   # DIR/episodes.parquet ...
    export.openmetrics("trace-dir/", "blkreplay.prom")   # node-exporter textfile collector

Each takes paths (as `analyzer.load` does), a loaded `analyzer.Trace` or an
`analyzer.CheckResult` (whose inputs are read again for what the result does not hold), and
writes through `analyzer.outputs` (checked against the inputs first, atomic, umask). Each
returns an :class:`ExportSummary`. As with `analyzer.replay`, the functions are the names of
this package; their modules are imported as ``from analyzer.export.openmetrics import render``.

* `source`      - the input resolved: check result, trace, each VM's identity (run, host,
                  vm: `analyzer.identity`) and time span
* `spool`       - per-VM pieces put in VM order (deterministic whatever the layout)
* `perfetto`    - the Perfetto trace (extra ``export``: the `perfetto` package's protos)
* `tables`      - the Parquet tables
* `openmetrics` - the OpenMetrics text
"""

from __future__ import annotations

from analyzer import outputs
from analyzer.export.openmetrics import openmetrics
from analyzer.export.perfetto import perfetto
from analyzer.export.source import ExportSource
from analyzer.export.summary import ExportSummary
from analyzer.export.tables import tables

#: The formats of `blkreplay export --to`.
FORMATS: tuple[str, ...] = ("perfetto", "parquet", "openmetrics")


def export(
    source: ExportSource,
    out: outputs.PathArg,
    *,
    to: str,
    parents: bool = False,
    replace: bool = False,
) -> ExportSummary:
    """Export `source` to `out` in the format `to` (one of FORMATS). `replace` applies to
    the Parquet directory (an existing one is replaced as a whole); files are always
    replaced atomically."""
    if to == "perfetto":
        return perfetto(source, out, parents=parents)
    if to == "parquet":
        return tables(source, out, parents=parents, replace=replace)
    if to == "openmetrics":
        return openmetrics(source, out, parents=parents)
    raise ValueError(f"unknown export format {to!r}")


__all__ = ["FORMATS", "ExportSource", "ExportSummary", "export", "openmetrics", "perfetto", "tables"]
