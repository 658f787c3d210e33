"""How much `import --workers N` gains on several input files, and that it writes the same bytes.

    python benchmarks/bench_import_workers.py [--files K] [--lines N] [--workers W] [--repeat R]

Builds K synthetic QEMU trace logs of about N lines each (default 4 x 200,000; the real QEMU
7.2 capture repeated and shifted in time, `bench_import.make_trace_log`), one per directory
``hostI/``, and imports them as a fleet (``--host {dir}``: one VM per host) to a directory,
with 1 worker and with W, alternating, R times each, every run in a fresh child process.
Prints the best wall time of each, their ratio, each run's peak resident memory (the parent's:
the workers are the forkserver's children, not ours), and whether every output file is byte-identical across runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_import import DEFAULT_SAMPLES, make_trace_log

_CHILD = r"""
import json, resource, sys, time
from analyzer.importers import import_traces
inputs, out, workers = json.loads(sys.argv[1])
t = time.perf_counter()
import_traces(inputs, out, host="{dir}", workers=workers)
wall = time.perf_counter() - t
print(json.dumps({"wall": wall,
    "parent_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _digest(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*.parquet"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-import-workers-") as tmp:
        root = Path(tmp)
        inputs = []
        for i in range(args.files):
            (root / f"host{i}").mkdir()
            path = root / f"host{i}" / "trace.log"
            make_trace_log(args.samples, path, args.lines)
            inputs.append(str(path))
        size = sum(Path(p).stat().st_size for p in inputs) / 1e6
        print(f"{args.files} trace logs, {size:,.0f} MB in all")
        best: dict[int, float] = {}
        digests = set()
        for r in range(args.repeat):
            for w in (1, args.workers):
                out = root / f"out-{w}-{r}"
                res = subprocess.run(
                    [sys.executable, "-c", _CHILD, json.dumps([inputs, str(out), w])],
                    check=True, capture_output=True, text=True,
                )
                m = json.loads(res.stdout.strip().splitlines()[-1])
                best[w] = min(best.get(w, float("inf")), m["wall"])
                digests.add(json.dumps(_digest(out), sort_keys=True))
                print(f"workers={w}: {m['wall']:6.2f} s, parent peak {m['parent_mb']:,.0f} MB")
        print(f"best: workers=1 {best[1]:.2f} s, workers={args.workers} {best[args.workers]:.2f} s, "
              f"speed-up {best[1] / best[args.workers]:.2f}x")
        print(f"outputs byte-identical across all runs: {len(digests) == 1}")


if __name__ == "__main__":
    main()
