"""Peak memory and time of `blkreplay report` against `blkreplay check` on the same big trace.

Issue #13: a report must follow one unit of work (one VM), not the trace, and cost at most
about twice a check. This writes synthetic traces with `make_big_trace.py` (default: 5 M steps
of 1 VM, and 5 M steps of 100 VMs), runs each command in a child process and prints its wall
time and peak RSS (``os.wait4`` rusage of that child only), and the ratios report / check.

    .venv/bin/python benchmarks/bench_report_memory.py [--steps 5000000] [--vms 1,100] [--keep DIR]
        [--blkreplay PATH]
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


def run(argv: list[str]) -> tuple[float, float, int]:
    """(seconds, peak RSS in MB, exit status) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} exited {code}: {err.strip()[:500]}")
    return seconds, usage.ru_maxrss / 1024, code  # ru_maxrss is KiB on Linux


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5_000_000)
    ap.add_argument("--vms", default="1,100", help="comma-separated VM counts, one trace each")
    ap.add_argument("--keep", type=Path, help="keep the traces (and reuse them) under this directory")
    ap.add_argument("--blkreplay", help="the command to measure (default: this venv's blkreplay), "
                                        "e.g. another checkout's, for before/after figures")
    args = ap.parse_args(argv)
    exe = args.blkreplay or str(Path(sys.executable).with_name("blkreplay"))
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-report-mem-"))
    print(f"{'trace':>22} {'command':>12} {'seconds':>8} {'peak MB':>8}")
    try:
        for vms in (int(v) for v in args.vms.split(",")):
            trace = root / f"steps{args.steps}-vms{vms}"
            if not (trace / "manifest.json").exists():
                # In a child of its own: a child forked from this process after it built a big
                # trace would report this process's peak as its own (Linux keeps the peak RSS
                # of the forked copy across exec).
                subprocess.run([sys.executable, str(REPO / "benchmarks" / "make_big_trace.py"), str(trace),
                                "--steps", str(args.steps), "--vms", str(vms)], check=True,
                               stdout=subprocess.DEVNULL)
            label = f"{args.steps / 1e6:g}M steps {vms} VM"
            out = root / f"report-{vms}.html"
            t_check, m_check, _ = run([exe, "check", str(trace), "-q"])
            t_rep, m_rep, _ = run([exe, "report", str(trace), "-f", "html", "-o", str(out), "-q"])
            print(f"{label:>22} {'check':>12} {t_check:8.1f} {m_check:8.0f}")
            print(f"{label:>22} {'report html':>12} {t_rep:8.1f} {m_rep:8.0f}")
            print(f"{label:>22} {'ratio':>12} {t_rep / t_check:8.2f} {m_rep / m_check:8.2f}"
                  f"   (target: time <= 2.00, peak <= 2048 MB)")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
