"""How fast `blkreplay import` reads real QEMU and libvirt output, against `wc -l` and `grep -c`.

    python benchmarks/bench_import.py [--lines N] [--samples DIR] [--keep DIR] [--memory]

Builds inputs of about N lines each (default 10,000,000) by repeating real captures, every
repetition shifted in time (trace-line prefixes, transcript ``t``, QMP timestamps; libvirt
header dates a day later) so that its events are new events:

- ``trace log``: the QEMU 7.2 trace log of shared/samples/qemu-7.2/a-stop-eio-dataplane as it
  is (a test capture: 12% of its lines are QMP traffic, management polls every 100 ms);
- ``trace log, block I/O``: only its ``blk_*`` / ``virtio_blk_*`` lines (what a day of block
  tracing on a busy host is made of);
- ``QMP transcript``: that capture's qmp-transcript.jsonl;
- ``libvirt log``: shared/samples/libvirt-9.0/a-stop-eio/libvirtd.log (one in ten lines
  about the monitor);
- ``trace log + transcript``: a trace log and a transcript of a tenth of N lines each, imported
  together: one VM seen by two sources, whose rows are merged (matched and deduplicated) row by
  row.

Then times, on each file, ``wc -l`` and ``grep -c`` of a literal the importer looks for (the
floor: reading the bytes once), and `import_traces` of it alone (one process, from the text to
the Parquet file on disk; the trace-log parser uses a second thread for its bulk reading), and
prints lines/s and the ratio to ``wc -l``.

``--memory`` instead imports the trace log, the transcript and the libvirt log, each in a
child process, and prints its peak resident memory against the size of the input.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
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


def make_trace_log(samples: Path, target: Path, lines: int, *, only: str | None = None) -> int:
    """Repeat trace.log (`only`: its lines matching that regex), each copy `span` seconds later.
    Returns the number of lines written."""
    base = (samples / "trace.log").read_text()
    if only is not None:
        base = "".join(line for line in base.splitlines(keepends=True) if re.search(only, line))
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


def make_libvirt_log(sample: Path, target: Path, lines: int) -> int:
    """Repeat a libvirt daemon log (of one day), each copy a day later."""
    base = sample.read_text()
    day = base[:10]
    first = datetime.date.fromisoformat(day)
    n = base.count("\n")
    written = 0
    with target.open("w") as f:
        k = 0
        while written < lines:
            text = base.replace(day, (first + datetime.timedelta(days=k)).isoformat())
            f.write(_shift_seconds(text, k * 86400))
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


def floor(args: list[str]) -> float:
    """Wall time of a command reading the file (best of 3: the page cache is warm)."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        # (into a pipe: GNU grep stops at the first match when its output is /dev/null)
        subprocess.run(args, check=False, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def timed(label: str, path: Path | list[Path], literal: str, out: Path, lines: int) -> None:
    """Import wall and CPU time (CPU: what a busy machine does not inflate), beside the floors
    (`path`: one input, or several imported together)."""
    paths = path if isinstance(path, list) else [path]
    wc = floor(["wc", "-l", *map(str, paths)])
    grep = floor(["grep", "-c", "-F", literal, *map(str, paths)])
    start, cpu = time.perf_counter(), time.process_time()
    summary = import_traces(paths, out, replace=True)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    size = sum(p.stat().st_size for p in paths)
    print(
        f"{label:22s} {lines:>11,} lines {size / 1e6:7,.0f} MB {summary.rows:>11,} rows | "
        f"wc -l {wc:5.2f} s  grep -c {grep:5.2f} s | import {seconds:6.2f} s {lines / seconds / 1e6:5.2f} M lines/s "
        f"(cpu {cpu:6.2f} s) = {seconds / wc:5.0f}x wc -l"
    )


def peak_rss(label: str, path: Path, out: Path, lines: int) -> None:
    """Peak RSS of importing `path` in a fresh process, against the input's size."""
    code = "import sys; from analyzer.importers import import_traces; import_traces([sys.argv[1]], sys.argv[2])"
    start = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)",
         str(path), str(out)],
        check=True, capture_output=True, text=True,
    )
    seconds = time.perf_counter() - start
    peak = int(child.stdout.split()[-1])  # KiB
    size = path.stat().st_size
    print(f"{label:22s} input {size / 1e6:,.0f} MB, peak RSS {peak / 1024:,.0f} MiB "
          f"({peak * 1024 / size:.2f}x the input), wall {seconds:.1f} s, {lines / seconds:,.0f} lines/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES)
    parser.add_argument("--keep", type=Path, default=None, help="Write the synthetic inputs here.")
    parser.add_argument("--memory", action="store_true", help="Peak RSS of importing the logs.")
    args = parser.parse_args()
    libvirt_sample = args.samples.parents[1] / "libvirt-9.0" / "a-stop-eio" / "libvirtd.log"
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        trace, io = work / "trace.log", work / "trace-io.log"
        transcript, libvirt = work / "qmp-transcript.jsonl", work / "libvirtd.log"
        made = {
            trace: make_trace_log(args.samples, trace, args.lines),
            libvirt: make_libvirt_log(libvirt_sample, libvirt, args.lines),
            transcript: make_transcript(args.samples, transcript, args.lines),
        }
        if args.memory:
            peak_rss("trace log", trace, Path(tmp) / "out.parquet", made[trace])
            peak_rss("QMP transcript", transcript, Path(tmp) / "out.parquet", made[transcript])
            peak_rss("libvirt log", libvirt, Path(tmp) / "out.parquet", made[libvirt])
            return
        made[io] = make_trace_log(args.samples, io, args.lines, only=r":(blk_|virtio_blk_)")
        both = [work / "both-trace.log", work / "both-qmp-transcript.jsonl"]
        both_lines = (make_trace_log(args.samples, both[0], args.lines // 10)
                      + make_transcript(args.samples, both[1], args.lines // 10))
        out = Path(tmp) / "out.parquet"
        timed("trace log", trace, "BLOCK_IO_ERROR", out, made[trace])
        timed("trace log, block I/O", io, "virtio_blk_rw_complete", out, made[io])
        timed("QMP transcript", transcript, "BLOCK_IO_ERROR", out, made[transcript])
        timed("libvirt log", libvirt, "QEMU_MONITOR_", out, made[libvirt])
        timed("trace log + transcript", both, "BLOCK_IO_ERROR", out, both_lines)


if __name__ == "__main__":
    main()
