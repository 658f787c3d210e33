"""Write the real QEMU 10.0 captures kept in `tests/data/real/qemu-10.0/`.

    python -m tests.integration.make_real_data [--out tests/data/real/qemu-10.0] [NAME...]

Runs each `scenarios.QEMU10` scenario once on the rig's QEMU 10.0 (`.ci/install-qemu-rig.sh`
installs it) and keeps, per scenario folder, the files of the shared samples: `cmdline.txt`,
`blkdebug.conf`, `qmp-transcript.jsonl` (the capture's transcript), `events.jsonl` (its events,
raw lines as received), `trace.log` (QEMU's stderr) and `console.log` (the guest's). A run that
did not end cleanly (QEMU or the capture failing, the guest not reaching its last round) writes
nothing and exits 1.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from tests.integration.captures import write_events_jsonl
from tests.integration.qemu_rig import REPO_ROOT, find_tools, run_scenario
from tests.integration.scenarios import QEMU10

DEFAULT_OUT = REPO_ROOT / "tests" / "data" / "real" / "qemu-10.0"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("names", nargs="*", default=sorted(QEMU10))
    args = ap.parse_args(argv)
    tools = find_tools("10.0")
    print(f"make_real_data: {tools.qemu.banner}")
    for name in args.names:
        expect = QEMU10[name]
        with tempfile.TemporaryDirectory(prefix="blkrig-data-") as tmp:
            run = run_scenario(expect.scenario, Path(tmp) / name, tools)
            console = run.console_log.read_text(errors="replace")
            if run.qemu_rc != 0 or run.capture_rc != 0 or "GUEST: done" not in console:
                print(f"make_real_data: {name} did not end cleanly\n{run.diagnostics()}", file=sys.stderr)
                return 1
            dest = args.out / name
            dest.mkdir(parents=True, exist_ok=True)
            for src, dst in (
                ("cmdline.txt", "cmdline.txt"),
                ("blkdebug.conf", "blkdebug.conf"),
                (run.transcript.name, "qmp-transcript.jsonl"),
                ("trace.log", "trace.log"),
                ("console.log", "console.log"),
            ):
                shutil.copyfile(run.workdir / src, dest / dst)
            write_events_jsonl(dest / "qmp-transcript.jsonl", dest / "events.jsonl")
            sizes = ", ".join(f"{p.name} {p.stat().st_size // 1024} KiB" for p in sorted(dest.iterdir()))
            print(f"make_real_data: {name} -> {dest} ({run.wall_s:.1f} s): {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
