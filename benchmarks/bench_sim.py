"""Simulator throughput: steps (trace rows) per second on one core, Parquet writing included.

    /work/venv/bin/python benchmarks/bench_sim.py [--steps N] [--variant NAME]

Runs the default scenario (2 disks, one on an iothread, 2 vCPUs, faults and management) with
enough VMs to produce about N steps, and prints steps/s. The brief asks for >= 200,000 steps/s,
i.e. a 10-million-step trace in under a minute.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tracer.sim import SimConfig, record

#: Steps one default VM produces per simulated second (measured; only used to size the run).
STEPS_PER_VM_SECOND = 83_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2_000_000, help="approximate trace size")
    parser.add_argument("--variant", default="fixed")
    parser.add_argument("--vms", type=int, default=10)
    args = parser.parse_args()
    duration = max(args.steps / STEPS_PER_VM_SECOND / args.vms, 0.01)
    config = SimConfig(seed=1, variant=args.variant, vms=args.vms, duration_s=round(duration, 3))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = record(config, Path(tmp) / "trace")
        elapsed = time.perf_counter() - start
        size = sum(p.stat().st_size for p in (Path(tmp) / "trace").iterdir())
    rate = summary.steps / elapsed
    print(f"variant {args.variant}: {summary.steps} steps from {args.vms} VMs in {elapsed:.2f} s "
          f"-> {rate:,.0f} steps/s ({summary.errors} errors, {summary.stops} stops, "
          f"{summary.resumes} resumes; {size / 1e6:.1f} MB on disk)")
    print(f"10 million steps would take {1e7 / rate:.0f} s")


if __name__ == "__main__":
    main()
