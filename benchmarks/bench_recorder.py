"""How fast the recorder takes steps from one thread, Parquet included.

    python benchmarks/bench_recorder.py [--steps N]

Prints steps/s for the bound-thread fast path (`Recorder.thread(...).emit`) and for the
general `Recorder.emit`, each measured from the first emit until `close()` returned (so the
Parquet segments and the manifest are on disk), plus the trace's size.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tracer.recorder import Recorder


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir())


def bench_bound(out: Path, steps: int) -> float:
    start = time.perf_counter()
    rec = Recorder(out, source="threads", vm="vm0")
    vcpu = rec.thread("vcpu0", "vcpu")
    io = rec.thread("iothread0", "iothread")
    for i in range(steps // 2):
        vcpu.emit("io_submit", device="drive0", req_id=i, op="write")
        io.emit("io_complete", device="drive0", req_id=i, op="write")
    rec.close()
    return time.perf_counter() - start


def bench_general(out: Path, steps: int) -> float:
    start = time.perf_counter()
    rec = Recorder(out, source="threads", vm="vm0")
    emit = rec.emit
    for i in range(steps // 2):
        emit("io_submit", thread="vcpu0", thread_kind="vcpu", device="drive0", req_id=i, op="write")
        emit("io_complete", thread="iothread0", thread_kind="iothread", device="drive0", req_id=i, op="write")
    rec.close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for label, fn in (("bound thread emitter", bench_bound), ("Recorder.emit", bench_general)):
            out = Path(tmp) / label.replace(" ", "-").replace(".", "")
            seconds = fn(out, args.steps)
            print(
                f"{label:22s} {args.steps:>11,} steps  {seconds:6.2f} s  "
                f"{args.steps / seconds:>12,.0f} steps/s  {_dir_size(out) / 1e6:6.1f} MB on disk"
            )


if __name__ == "__main__":
    main()
