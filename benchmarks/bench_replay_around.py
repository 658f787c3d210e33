"""Peak memory of `blkreplay replay --around` on one big VM (issue #12: bounded by what it needs).

Writes (once, reused) a one-VM trace of `--steps` steps with `make_big_trace.py`, then runs
``blkreplay replay TRACE --around MIDDLE -f jsonl`` and, as the anchor, ``blkreplay check
TRACE`` (which reads the same unit once) in fresh processes, printing wall time and peak RSS of
each. The replay window needs the VM's replayed state (the rows the rules read, as the check
does) and the rows shown; before issue #12 it also materialized every seq of the VM as strings.
`--repo` runs another checkout (e.g. the main branch) for a before/after comparison.

    python benchmarks/bench_replay_around.py --steps 5_000_000
    python benchmarks/bench_replay_around.py --steps 5_000_000 --repo /work/main
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from make_big_trace import make  # noqa: E402

CHILD = r"""
import contextlib, io, json, resource, sys, time
sys.path.insert(0, {repo!r})
from analyzer.cli import main
out = io.StringIO()
t0 = time.perf_counter()
with contextlib.redirect_stdout(out):
    try:
        main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
print(json.dumps({{"seconds": time.perf_counter() - t0, "lines": len(out.getvalue().splitlines()),
                  "code": code, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def run(repo: Path, argv: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD.format(repo=str(repo)), *argv],
                          capture_output=True, text=True, timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5_000_000)
    ap.add_argument("--context", type=int, default=5)
    ap.add_argument("--repo", type=Path, default=REPO, help="the checkout to measure")
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    trace = args.dir or Path(f"/tmp/blkreplay-around-{args.steps}")
    if not (trace / "manifest.json").exists():
        make(trace, args.steps, 1)
    around = run(args.repo, ["replay", str(trace), "--around", str(args.steps // 2),
                             "--context", str(args.context), "-f", "jsonl"])
    anchor = run(args.repo, ["check", str(trace)])
    print(f"{args.steps:,} steps of one VM, {args.repo}")
    print(f"  replay --around: {around['seconds']:6.1f} s, peak {around['peak_rss_mb']:6.0f} MB, "
          f"{around['lines']} steps shown")
    print(f"  check (anchor):  {anchor['seconds']:6.1f} s, peak {anchor['peak_rss_mb']:6.0f} MB")
    print(f"  ratio of peaks replay/check: {around['peak_rss_mb'] / anchor['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
