"""How fast `blkreplay import` reads real QEMU output, Parquet included.

    python benchmarks/bench_import.py [--lines N] [--samples DIR] [--keep DIR] [--memory]

Builds a synthetic QEMU trace log and a synthetic QMP transcript of about N lines each (default
1,000,000) by repeating the real QEMU 7.2 captures (shared/samples/qemu-7.2/
a-stop-eio-dataplane), every repetition shifted in time (line prefixes, transcript `t`, QMP
timestamps) so that its events are new events. Then times `import_traces` on each alone and on
both merged, from reading the text to the Parquet file on disk, and prints lines/s.

``--memory`` instead imports only the trace log, in a child process, and prints its peak
resident memory against the size of the input, and its lines/s. The input is read in bounded
chunks and each VM's payloads are written one Parquet row group at a time, but the parsers
still hold every row of an input as Python objects until the table is built: the peak still
grows with the input (6.5x a 166 MB trace log of the QEMU 10.0 capture, 7.0x before the
build streamed; `blkreplay import` of it: 1.05 GB, 1.37 GB before).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from analyzer.importers import import_traces

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SAMPLES = REPO.parent / "shared" / "samples" / "qemu-7.2" / "a-stop-eio-dataplane"

_PREFIX = re.compile(r"^(\d+)@(\d+)\.(\d+):", re.M)
_SECONDS = re.compile(r'("seconds": |\\"seconds\\": )(\d+)')


def _shift_seconds(text: str, delta: int) -> str:
    return _SECONDS.sub(lambda m: f"{m.group(1)}{int(m.group(2)) + delta}", text)


def make_trace_log(samples: Path, target: Path, lines: int) -> int:
    """Repeat trace.log, each copy `span` seconds later. Returns the number of lines written."""
    base = (samples / "trace.log").read_text()
    n = base.count("\n")
    span = 20
    written = 0
    with target.open("w") as f:
        k = 0
        while written < lines:
            delta = k * span
            text = _PREFIX.sub(lambda m, d=delta: f"{m.group(1)}@{int(m.group(2)) + d}.{m.group(3)}:", base)
            f.write(_shift_seconds(text, delta))
            written += n
            k += 1
    return written


def make_transcript(samples: Path, target: Path, lines: int) -> int:
    """Repeat qmp-transcript.jsonl, each copy `span` seconds later."""
    records = [json.loads(line) for line in (samples / "qmp-transcript.jsonl").read_text().splitlines()]
    span = 20
    written = 0
    with target.open("w") as f:
        k = 0
        while written < lines:
            delta = k * span
            for rec in records:
                t = rec["t"] + delta
                f.write(json.dumps({"t": round(t, 6), "dir": rec["dir"], "line": _shift_seconds(rec["line"], delta)}) + "\n")
            written += len(records)
            k += 1
    return written


def timed(label: str, inputs: list[Path], out: Path, lines: int) -> None:
    """Wall time, and this process's CPU time (what a busy machine does not inflate)."""
    start, cpu = time.perf_counter(), time.process_time()
    summary = import_traces(inputs, out)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(
        f"{label:22s} {lines:>10,} lines {summary.rows:>10,} rows  wall {seconds:6.2f} s "
        f"{lines / seconds:>9,.0f} lines/s  cpu {cpu:6.2f} s {lines / cpu:>9,.0f} lines/s  "
        f"{out.stat().st_size / 1e6:5.1f} MB"
    )


def peak_rss(trace: Path, out: Path, lines: int) -> None:
    """Peak RSS of importing `trace` in a fresh process, against the input's size."""
    code = "import sys; from analyzer.importers import import_traces; import_traces([sys.argv[1]], sys.argv[2])"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(trace), str(out)], check=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, the largest child so far
    size = trace.stat().st_size
    note = "" if peak > before else " (no larger than an earlier child: an upper bound)"
    print(f"qemu-log import: input {size / 1e6:,.0f} MB, peak RSS {peak / 1024:,.0f} MiB "
          f"({peak * 1024 / size:.1f}x the input), wall {seconds:.1f} s, {lines / seconds:,.0f} lines/s{note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES)
    parser.add_argument("--keep", type=Path, default=None, help="Write the synthetic inputs here.")
    parser.add_argument("--memory", action="store_true", help="Peak RSS of importing the trace log.")
    args = parser.parse_args()
    if args.memory:
        with tempfile.TemporaryDirectory() as tmp:
            work = args.keep or Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            trace = work / "trace.log"
            lines = make_trace_log(args.samples, trace, args.lines)
            peak_rss(trace, Path(tmp) / "trace.parquet", lines)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        trace, transcript = work / "trace.log", work / "qmp-transcript.jsonl"
        n_trace = make_trace_log(args.samples, trace, args.lines)
        n_transcript = make_transcript(args.samples, transcript, args.lines)
        timed("qemu-log (trace log)", [trace], Path(tmp) / "trace.parquet", n_trace)
        timed("qmp (transcript)", [transcript], Path(tmp) / "transcript.parquet", n_transcript)
        timed("merged (both)", [transcript, trace], Path(tmp) / "merged.parquet", n_trace + n_transcript)


if __name__ == "__main__":
    main()
