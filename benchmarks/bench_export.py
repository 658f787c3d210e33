"""Time and peak memory of `blkreplay export` (each format) against `blkreplay check`.

Issue #15: an export follows one unit of work, not the trace (Perfetto packets streamed VM by
VM, state rows streamed to a ParquetWriter). This writes a synthetic trace with
`make_big_trace.py` (default: 2 M steps of 100 VMs), runs check and each export in a child
process and prints wall time, peak RSS (``os.wait4`` rusage of that child only) and output
size.

    .venv/bin/python benchmarks/bench_export.py [--steps 2000000] [--vms 100] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import make_big_trace  # noqa: E402


def run(argv: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} exited {code}: {err.strip()[:500]}")
    return seconds, usage.ru_maxrss / 1024


def size(path: Path) -> float:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir()) / 1e6
    return path.stat().st_size / 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2_000_000)
    ap.add_argument("--vms", type=int, default=100)
    ap.add_argument("--keep", type=Path, help="keep the trace (and reuse it) under this directory")
    args = ap.parse_args(argv)
    exe = str(Path(sys.executable).with_name("blkreplay"))
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-export-"))
    trace = root / f"steps{args.steps}-vms{args.vms}"
    try:
        if not (trace / "manifest.json").exists():
            make_big_trace.make(trace, args.steps, args.vms)
        print(f"{args.steps / 1e6:g}M steps, {args.vms} VMs")
        print(f"{'command':>20} {'seconds':>8} {'peak MB':>8} {'out MB':>8}")
        t, m = run([exe, "check", str(trace), "-q"])
        print(f"{'check':>20} {t:8.1f} {m:8.0f} {'':>8}")
        for to, name in (("perfetto", "x.pftrace"), ("parquet", "tables"), ("openmetrics", "x.prom")):
            out = root / name
            if out.is_dir():
                shutil.rmtree(out)
            t, m = run([exe, "export", str(trace), "--to", to, "-o", str(out), "-q"])
            print(f"{'export ' + to:>20} {t:8.1f} {m:8.0f} {size(out):8.1f}")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
