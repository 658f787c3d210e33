"""Coverage-guided fuzzing of the line parsers with atheris (libFuzzer for Python).

    pip install atheris            # or: pip install -e '.[fuzz]'
    python tests/fuzz/fuzz_lines.py -max_total_time=60 [CORPUS_DIR ...]

The tokens the parsers branch on (``tests/fuzz/lines.dict``) are given to libFuzzer unless
``-dict=`` names another dictionary.

Each input is one format byte (``0`` QEMU trace log, ``1`` QMP JSON lines, ``2`` libvirt
debug log), one ``--skip-bad`` byte, then the text, parsed as that format by the importer
(`analyzer.importers.pipeline.PARSERS`, through the same bounded reader and `LinePolicy`),
range-checked and built into schema-v1 tables as ``blkreplay import`` would (without
writing). An :class:`~tracer.errors.InputError` is the promised answer to bad input; any
other exception is a crash, and libFuzzer stops and writes the input to ``crash-*``.

Without a corpus directory, one is seeded from the real captures in ``shared/samples``
(``$TMPDIR/blkreplay-fuzz-corpus``). The pytest suite does not need atheris: this file is no
test module (``tests/fuzz`` holds no ``test_*.py``).
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["analyzer.importers", "tracer"]):
    from analyzer.importers.lines import InputText, LinePolicy
    from analyzer.importers.pipeline import PARSERS, _check_ranges
    from analyzer.importers.vm_tables import vm_tables
    from tracer.errors import InputError

FORMATS = ("qemu-log", "qmp", "libvirt-log")
ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT.parent / "shared" / "samples"
SEEDS = {
    "qemu-log": [SAMPLES / "qemu-10.0" / "a-stop-eio-dataplane" / "trace.log", SAMPLES / "qemu-7.2" / "c-report" / "trace.log"],
    "qmp": [SAMPLES / "qemu-10.0" / "a-stop-eio-dataplane" / "qmp-transcript.jsonl",
            SAMPLES / "qemu-10.0" / "a-stop-eio-dataplane" / "events.jsonl"],
    "libvirt-log": [SAMPLES / "libvirt-9.0" / "a-stop-eio" / "libvirtd.log", SAMPLES / "libvirt-11.3" / "a-stop-eio" / "libvirtd.log"],
}


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    fmt = FORMATS[data[0] % 3]
    skip_bad = bool(data[1] & 1)
    text = InputText("fuzz.log", io.BytesIO(data[2:]), size=len(data) - 2).scan()
    try:
        policy = LinePolicy(text, fmt, skip_bad=skip_bad)
        parsed = PARSERS[fmt](text, policy)
        _check_ranges(parsed)
        vm_tables([parsed], vm=None, host=None)
    except InputError:
        pass  # the promised answer to bad input


def seed_corpus(directory: Path) -> None:
    """Windows of 1 to 30 lines of every sample, with each format byte and skip flag."""
    directory.mkdir(parents=True, exist_ok=True)
    n = 0
    for k, fmt in enumerate(FORMATS):
        for path in SEEDS[fmt]:
            if not path.exists():
                continue
            lines = path.read_bytes().split(b"\n")
            if fmt == "libvirt-log":
                lines = [line for line in lines if b"QEMU_MONITOR" in line or b"Line [" in line]
            for start in range(0, len(lines), 40):
                for skip in (0, 1):
                    (directory / f"seed-{n:05d}").write_bytes(
                        bytes([48 + k, 48 + skip]) + b"\n".join(lines[start : start + 1 + start % 30]) + b"\n"
                    )
                    n += 1


def main() -> None:
    argv = list(sys.argv)
    if not any(not a.startswith("-") for a in argv[1:]):
        corpus = Path(tempfile.gettempdir()) / "blkreplay-fuzz-corpus"
        if not corpus.exists():
            seed_corpus(corpus)
        argv.append(str(corpus))
    if not any(a.startswith("-dict=") for a in argv):
        argv.insert(1, f"-dict={Path(__file__).with_name('lines.dict')}")
    os.environ.setdefault("PYTHONHASHSEED", "0")
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
