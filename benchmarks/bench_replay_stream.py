"""How soon `blkreplay replay BIG | head` shows something, and what the whole listing costs.

Writes (once, reused) a trace with `make_big_trace.py`, then runs ``blkreplay replay TRACE
--vm vm0000`` in a fresh process with its stdout on a pipe, and prints the wall time until the
header and the first step arrive, and until the last line (the whole VM). Before the replay
streamed by chunks, the first line came only after the whole VM had been rendered. `--repo`
runs another checkout (e.g. the main branch) for a before/after comparison.

    python benchmarks/bench_replay_stream.py --steps 3_000_000 --vms 2
    python benchmarks/bench_replay_stream.py --steps 3_000_000 --vms 2 --repo /work/main
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from make_big_trace import make  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3_000_000)
    ap.add_argument("--vms", type=int, default=2)
    ap.add_argument("--trace", type=Path, default=Path("/tmp/bench-replay-stream"))
    ap.add_argument("--repo", type=Path, default=REPO)
    ap.add_argument("--head", action="store_true", help="stop after the first lines (like | head)")
    args = ap.parse_args()
    trace = args.trace / f"{args.steps}-{args.vms}"
    if not trace.exists():
        make(trace, steps=args.steps, vms=args.vms)
    code = f"import sys; sys.path.insert(0, {str(args.repo)!r}); from analyzer.cli import main; main()"
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, "replay", str(trace), "--vm", "vm0000"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    proc.stdout.readline()
    first = time.perf_counter() - start
    proc.stdout.readline()
    step = time.perf_counter() - start
    lines = 2
    if args.head:
        proc.stdout.close()
        proc.wait()
        print(f"{args.repo}: header {first:.1f} s, first step {step:.1f} s (then closed, exit {proc.returncode})")
        return
    for _ in proc.stdout:
        lines += 1
    proc.wait()
    total = time.perf_counter() - start
    print(f"{args.repo}: header {first:.1f} s, first step {step:.1f} s, all {lines:,} lines {total:.1f} s")


if __name__ == "__main__":
    main()
