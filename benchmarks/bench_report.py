"""How long an audit report of a 1-million-step trace takes, and how big it is.

Builds a synthetic trace of N steps (default 1,000,000) over a few VMs: error/stop/cont cycles
recorded the way docs/rules.md says producers record them, one cycle in 50 without its STOP (a
`stop-follows-error` violation). Times the whole `build_report` (check included) and each
renderer, and prints seconds and file sizes.

    /work/venv/bin/python benchmarks/bench_report.py [--steps 1000000] [--vms 4] [--keep DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from tracer.schema import SCHEMA, schema_with_metadata
from tracer.tracedir import write_table

# One error cycle: (kind, thread, name, runstate, prev_runstate, action, iostatus, gap_ns).
_COMMON = [
    ("io_complete", "iothread0", None, None, None, None, None, 40_000),
    ("error_action", "iothread0", None, None, None, "stop", None, 1_000),
    ("iostatus_set", "iothread0", None, None, None, None, "failed", 1_000),
    ("vmstop_prepare", "iothread0", None, None, None, None, None, 1_000),
    ("qmp_event", "iothread0", "BLOCK_IO_ERROR", None, None, "stop", None, 3_000),
    ("vmstop_request", "iothread0", None, "io-error", None, None, None, 1_000),
    ("vm_stop", "main", None, "io-error", None, None, None, 20_000),
]
_STOPPED = [
    ("runstate", "main", None, "io-error", "running", None, None, 1_000),
    ("qmp_event", "main", "STOP", None, None, None, None, 50_000),
    ("qmp_command", "mgmt", "cont", None, None, None, None, 300_000),
    ("iostatus_reset", "main", None, None, None, None, "ok", 1_000),
    ("vm_start", "main", None, None, None, None, None, 1_000),
    ("qmp_event", "main", "RESUME", None, None, None, None, 1_000),
    ("runstate", "main", None, "running", "io-error", None, None, 1_000),
    ("qmp_reply", "main", "cont", None, None, None, None, 1_000),
]
TEMPLATES = [[*_COMMON, *_STOPPED], [*_COMMON, ("io_submit", "vcpu0", None, None, None, None, None, 9_000)]]
THREAD_KIND = {"main": "main", "iothread0": "iothread", "mgmt": "mgmt", "vcpu0": "vcpu"}


def synthetic_trace(steps: int, vms: int, seed: int = 1) -> pd.DataFrame:
    """A frame of about `steps` rows (whole cycles), columns of schema v1 plus `cycle`."""
    rng = np.random.default_rng(seed)
    lens = np.array([len(t) for t in TEMPLATES])
    cycles = int(steps // (0.98 * lens[0] + 0.02 * lens[1]))
    variant = (rng.random(cycles) < 0.02).astype(np.int64)
    flat = [row for t in TEMPLATES for row in t]
    base = np.concatenate([[0], np.cumsum(lens)[:-1]])
    n_rows = lens[variant]
    start = np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    offset = np.arange(n_rows.sum()) - start
    cycle = np.repeat(np.arange(cycles), n_rows)
    idx = base[variant][cycle] + offset
    cols = list(zip(*flat, strict=True))
    frame = pd.DataFrame({name: np.asarray(col, dtype=object)[idx] for name, col in zip(
        ("kind", "thread", "name", "runstate", "prev_runstate", "action", "iostatus", "gap"), cols,
        strict=True)})
    vm_of_cycle = rng.integers(0, vms, cycles)
    frame["gap"] = frame["gap"].astype(np.int64)
    frame["vm"] = np.array([f"vm{i}" for i in range(vms)], dtype=object)[vm_of_cycle[cycle]]
    frame["cycle"] = cycle
    frame["error_id"] = cycle.astype(np.int64)
    frame.loc[frame["kind"].isin(["qmp_command", "iostatus_reset", "vm_start", "qmp_reply", "runstate"])
              & (frame["prev_runstate"] != "running"), "error_id"] = pd.NA
    frame["error_id"] = frame["error_id"].astype("Int64")
    frame = frame.sort_values(["vm", "cycle"], kind="mergesort").reset_index(drop=True)
    frame["seq"] = frame.groupby("vm").cumcount().astype(np.int64)
    jitter = rng.integers(0, 500, len(frame))
    frame["ts_ns"] = frame.groupby("vm")["gap"].cumsum().astype(np.int64) + jitter.cumsum() // 1000
    frame["thread_kind"] = frame["thread"].map(THREAD_KIND)
    is_io = frame["kind"].isin(["io_complete", "error_action", "qmp_event"]) & frame["thread"].eq("iothread0")
    frame["device"] = np.where(is_io | frame["kind"].isin(["iostatus_set", "iostatus_reset"]), "drive0", None)
    frame["op"] = np.where(is_io, "write", None)
    frame["errno"] = pd.Series(5, index=frame.index, dtype="Int32").where(is_io, pd.NA)
    frame["policy"] = np.where(frame["kind"] == "error_action", "stop", None)
    return frame


def to_table(frame: pd.DataFrame) -> pa.Table:
    arrays = []
    for field in SCHEMA:
        if field.name in frame:
            col = frame[field.name]
            plain = pa.string() if pa.types.is_dictionary(field.type) else field.type
            arr = pa.array(col.astype(object).where(col.notna(), None).tolist()
                           if plain == pa.string() else col, type=plain, from_pandas=True)
            arrays.append(arr.cast(field.type))
        else:
            arrays.append(pa.nulls(len(frame), field.type))
    return pa.Table.from_arrays(arrays, schema=schema_with_metadata("sim", {"generator": "bench_report"}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--vms", type=int, default=4)
    ap.add_argument("--keep", type=Path, help="write the trace and reports here")
    args = ap.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        run(args, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
            run(args, Path(tmp))


def run(args: argparse.Namespace, out: Path) -> None:

    t = time.perf_counter()
    frame = synthetic_trace(args.steps, args.vms)
    trace = out / "trace.parquet"
    write_table(to_table(frame), trace)
    print(f"trace: {len(frame):,} steps, {args.vms} VMs, {trace.stat().st_size / 1e6:.1f} MB "
          f"(generated in {time.perf_counter() - t:.1f} s)")

    from analyzer.check import check
    from analyzer.report import build_report, render

    render(build_report([trace], max_findings=0), "html")  # warm up: imports, template, fonts
    t = time.perf_counter()
    check([trace])
    t_check = time.perf_counter() - t
    print(f"check: {t_check:.2f} s")
    t = time.perf_counter()
    rep = build_report([trace], command=f"blkreplay report {trace}")
    t_build = time.perf_counter() - t
    what = "build_report (check + statistics + context windows)"
    print(f"{what}: {t_build:.2f} s; "
          f"{len(rep.result.findings):,} findings, {len(rep.result.episodes):,} error actions")
    t_html = 0.0
    for fmt in ("html", "md", "json"):
        t = time.perf_counter()
        data = render(rep, fmt)
        elapsed = time.perf_counter() - t
        t_html = elapsed if fmt == "html" else t_html
        (out / f"report.{fmt}").write_bytes(data)
        print(f"render {fmt:4s}: {elapsed:.2f} s, {len(data) / 1e3:,.0f} kB")
    print(f"report html / check: {(t_build + t_html) / t_check:.2f} (target: <= 2; in process, "
          f"imports excluded: bench_report_memory.py times the commands)")
    if args.keep:
        print(f"files in {out}")


if __name__ == "__main__":
    main()
