"""Benchmark `blkreplay check` end to end (Parquet read included) on big synthetic traces.

For each size (default 5M, 20M and 50M steps of 1,000 VMs) it writes a trace with
`make_big_trace.py` under /tmp (reused when present), then runs `analyzer.check` in a fresh
process and prints the wall time, steps/s and the peak RSS of that process, so that memory
staying flat as the trace grows is visible. A plain Parquet read of the columns the check
needs is timed too, as the floor to compare with, and the CPU time of the check (user + system:
on a shared machine, wall time also measures the neighbours).

    python benchmarks/bench_check.py
    python benchmarks/bench_check.py --sizes 5e6,50e6 --vms 1000 --workers 2 --engine local
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from make_big_trace import make  # noqa: E402

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})
import pyarrow.parquet as pq
from analyzer import check, load
from analyzer.rules import columns_for
from analyzer.rules.catalogue import RULE_IDS
path, mode, engine, workers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
workers = None if workers == "0" else int(workers)
ru0 = resource.getrusage(resource.RUSAGE_SELF)
cpu0 = ru0.ru_utime + ru0.ru_stime
t0 = time.perf_counter()
if mode == "read":
    trace = load([path])
    cols = list(columns_for(RULE_IDS))
    rows = 0
    for f in trace.files:
        pf = pq.ParquetFile(f.path)
        for i in range(pf.metadata.num_row_groups):
            rows += pf.read_row_group(i, columns=cols).num_rows
    result = None
else:
    result = check([path], engine=engine, workers=workers)
    rows = result.steps
elapsed = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{
    "cpu_seconds": ru.ru_utime + ru.ru_stime - cpu0,
    "rows": rows, "seconds": elapsed,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "verdict": result.verdict if result else None,
    "findings": len(result.findings) if result else None,
    "episodes": len(result.episodes) if result else None,
}}))
"""


def run_child(path: Path, mode: str, engine: str, workers: int) -> dict:
    code = CHILD.format(repo=str(REPO))
    out = subprocess.run([sys.executable, "-c", code, str(path), mode, engine, str(workers)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="5e6,20e6,50e6", help="comma-separated step counts")
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/blkreplay-bench"))
    ap.add_argument("--engine", default="local")
    ap.add_argument("--workers", type=int, default=0, help="0: default (sequential)")
    ap.add_argument("--repeat", type=int, default=2, help="best of N check runs")
    args = ap.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",") if s]
    print(f"{'steps':>12} {'VMs':>5} {'read s':>7} {'read steps/s':>13} {'check s':>8} "
          f"{'check steps/s':>14} {'CPU s':>6} {'peak RSS MB':>11}  verdict")
    for steps in sizes:
        path = args.dir / f"trace-{steps}-{args.vms}"
        if not (path / "manifest.json").exists():
            make(path, steps, args.vms)
        read = run_child(path, "read", args.engine, args.workers)
        runs = [run_child(path, "check", args.engine, args.workers) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r["seconds"])
        peak = max(r["peak_rss_mb"] for r in runs)
        print(f"{best['rows']:>12,} {args.vms:>5} {read['seconds']:>7.2f} "
              f"{read['rows'] / read['seconds']:>13,.0f} {best['seconds']:>8.2f} "
              f"{best['rows'] / best['seconds']:>14,.0f} {best['cpu_seconds']:>6.2f} {peak:>11.0f}  {best['verdict']} "
              f"({best['findings']} findings, {best['episodes']:,} episodes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
