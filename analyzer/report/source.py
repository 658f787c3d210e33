"""Reading the step columns a report needs, once per report.

The check itself (`analyzer.check`) reads the trace its own way and keeps only what the rules
need; the report additionally needs a few columns of every step, for the timeline, the
integrity facts and the replay view around each listed finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analyzer.report.context import VIEW_COLUMNS
from analyzer.stats import STEP_COLUMNS
from tracer.schema import COLUMN_BY_NAME

#: Every column a report reads: the statistics' and the replay view's, in schema order.
REPORT_COLUMNS: tuple[str, ...] = tuple(
    c for c in COLUMN_BY_NAME if c in set(STEP_COLUMNS) | set(VIEW_COLUMNS)
)


def read_steps(paths: Sequence[str | Path], columns: Sequence[str] = REPORT_COLUMNS) -> pd.DataFrame:
    """`columns` of every step of every input, in replay order (vm, seq).

    Inputs are whatever :func:`analyzer.trace.load` accepts (files, trace directories,
    partitioned datasets, globs), with its errors. String columns come back as pandas
    categoricals (cheap for a million steps); a column no input has is all null.
    """
    from analyzer.trace import load

    table = load([str(p) for p in paths]).table(columns=list(columns))
    n = table.num_rows
    arrays = []
    for name in columns:
        col = COLUMN_BY_NAME[name]
        if name in table.column_names:
            arr = table.column(name).combine_chunks()
        else:
            arr = pa.nulls(n, pa.string() if col.is_string else col.type)
        if col.is_string:
            arr = pc.dictionary_encode(arr.cast(pa.string()))
        arrays.append(arr)
    frame = pa.table(arrays, names=list(columns)).to_pandas()
    for name, arr in zip(columns, arrays, strict=True):
        col = COLUMN_BY_NAME[name]
        if not col.required and pa.types.is_integer(col.type):
            # nullable integers stay integers (pandas would make them floats)
            values = pc.fill_null(arr, 0).to_numpy(zero_copy_only=False).astype(np.int64)
            mask = pc.is_null(arr).to_numpy(zero_copy_only=False)
            frame[name] = pd.arrays.IntegerArray(values, mask)
    return frame


