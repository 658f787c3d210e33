"""What reading a log through its host-side rendering costs, against the plain log.

    python benchmarks/bench_hostlogs.py [--samples DIR] [--repeat N]

Renders the real libvirt 9.0 daemon log (shared/samples/libvirt-9.0/a-stop-eio/libvirtd.log)
as the journal (``journalctl -o json``, ``-o export``, ``-o short-precise``) and a KubeVirt pod
log, and the real QEMU 7.2 trace log as ``qemu-trace-stap`` output (the renderings of
``tests/analyzer/importers/hostlog_inputs.py``), then times `import_traces` of each, from the
text to the Parquet file on disk (best of N), and prints its size, lines/s and the time
against the plain log's: the cost of unwrapping and of the carried text (`carried`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analyzer.importers import import_traces  # noqa: E402
from tests.analyzer.importers import hostlog_inputs as derive  # noqa: E402


def best(path: Path, out: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        import_traces([path], out, replace=True)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=Path, default=REPO.parent / "shared" / "samples")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    libvirtd = args.samples / "libvirt-9.0" / "a-stop-eio" / "libvirtd.log"
    trace = args.samples / "qemu-7.2" / "a-stop-eio-dataplane" / "trace.log"
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        inputs = {
            "libvirtd.log": (libvirtd, None),
            "journal.json": (d / "journal.json", lambda p: p.write_text(derive.journal_json(libvirtd)[0])),
            "journal.export": (d / "journal.export", lambda p: p.write_bytes(derive.journal_export(libvirtd)[0])),
            "journal-short": (d / "journal.txt", lambda p: p.write_text(derive.journal_short(libvirtd)[0])),
            "virt-launcher.log": (d / "pod.log", lambda p: p.write_text(derive.kubevirt(libvirtd))),
            "trace.log": (trace, None),
            "qemu-stap": (d / "stap.txt", lambda p: p.write_text(derive.stap(trace)[0])),
        }
        base = {}
        for name, (path, make) in inputs.items():
            if make is not None:
                make(path)
            seconds = best(path, d / "out.parquet", args.repeat)
            lines = path.read_bytes().count(b"\n")
            plain = "libvirtd.log" if name not in ("trace.log", "qemu-stap") else "trace.log"
            base.setdefault(plain, seconds)
            print(f"{name:18} {path.stat().st_size / 1e6:6.2f} MB {lines:7d} lines {seconds:6.3f} s "
                  f"{lines / seconds:9.0f} lines/s  x{seconds / base[plain]:.2f} of {plain}")


if __name__ == "__main__":
    main()
