"""A real QEMU rig: boot a tiny guest that hits blkdebug-injected errors, record it with
`blkreplay capture`, and collect every file the run produced.

Everything comes from Debian packages (installed by `.ci/install-qemu-rig.sh`):
`qemu-system-x86_64` (two builds: the system's QEMU 7.2, and QEMU 10.0 from bookworm-backports
unpacked into the rig cache's `qemu-10.0/`, run with its own module directory and firmware so
that it never loads the 7.2 modules), the static busybox, and the cloud kernel package unpacked
(not installed) into the rig cache: `$BLKREPLAY_RIG_DIR`, else `~/.cache/blkreplay-rig`, with
the kernel under `kernel/`. :func:`find_tools` says in one sentence what is missing, for a
pytest skip (or a failure under ``BLKREPLAY_REQUIRE_QEMU=1``).

The guest's `/init` loads the virtio modules (the package has no modules.dep; the order comes
from each module's `depends=`), waits for `/dev/vda`, then in rounds writes and reads 64 KiB at
sector `round * 2048` with O_DIRECT (so every `dd` block is one request that reaches the
device), and powers off. blkdebug rules target those sectors; QEMU runs under TCG with the disk
on an iothread, its trace events on stderr (`trace.log`), and two QMP monitors: one for
management (the rig's `cont` that starts the paused guest, or `quit` when something hangs)
and one for the capture.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

#: Load order of the virtio modules (each one's `depends=` names only earlier ones).
VIRTIO_MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "virtio_blk",
)

#: QEMU trace events that matter to the importer (the set the real samples were made with).
TRACE_EVENTS = (
    "runstate_set",
    "vm_state_notify",
    "vm_stop_flush_all",
    "virtio_blk_*",
    "monitor_*",
    "handle_qmp_command",
    "qmp_*",
    "blk_*",
)

#: A smaller set for the QEMU 10.0 scenarios (small logs to keep as test data): each event the
#: importer reads, the QMP events with their JSON (`monitor_qmp_respond`).
TRACE_EVENTS_SMALL = (
    "runstate_set",
    "vm_state_notify",
    "vm_stop_flush_all",
    "virtio_blk_handle_write",
    "virtio_blk_handle_read",
    "virtio_blk_rw_complete",
    "monitor_protocol_event_*",
    "monitor_qmp_respond",
    "handle_qmp_command",
    "qmp_exit_query_*",
)

#: The same with `monitor_protocol_event_*` alone: no `monitor_qmp_respond`, so the trace log
#: names QMP events by their QAPIEvent number only (BLOCK_IO_ERROR is 17 in 10.0, 15 in 7.2)
#: and carries no reply.
TRACE_EVENTS_NUMBERS_ONLY = tuple(e for e in TRACE_EVENTS_SMALL if e != "monitor_qmp_respond")

SECTORS_PER_ROUND = 2048  # round r works at sector r * 2048 (1 MiB apart)
ROUND_BYTES = 64 * 1024  # each round writes and reads this much there
DISK_BYTES = 64 * 1024 * 1024

REPO_ROOT = Path(__file__).resolve().parents[2]


class RigUnavailable(Exception):
    """Something the rig needs is not installed; the message says what and how to get it."""


def rig_dir() -> Path:
    env = os.environ.get("BLKREPLAY_RIG_DIR")
    return Path(env) if env else Path.home() / ".cache" / "blkreplay-rig"


#: The QEMU versions the rig runs: the system's (Debian 12) and bookworm-backports' (private).
QEMU_VERSIONS = ("7.2", "10.0")

_HINT = "run .ci/install-qemu-rig.sh (as root) to install it"


@dataclass(frozen=True)
class QemuBuild:
    """One QEMU to run: its binary, the arguments and environment it needs to find its own
    firmware and modules, and the version it reported."""

    version: str  # "7.2" | "10.0": major.minor
    binary: Path
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    banner: str = ""  # first line of `--version`

    def environ(self) -> dict[str, str]:
        return {**os.environ, **dict(self.env)}


def find_qemu(version: str) -> QemuBuild:
    """The QEMU `version` ("7.2": the system's; "10.0": the private prefix the install script
    unpacked from bookworm-backports), checked by running ``--version``, or raise
    :class:`RigUnavailable`."""
    if version == "7.2":
        found = shutil.which("qemu-system-x86_64")
        if found is None:
            raise RigUnavailable(f"qemu-system-x86_64 (QEMU 7.2) is not installed; {_HINT}")
        build = QemuBuild(version, Path(found))
    elif version == "10.0":
        prefix = rig_dir() / "qemu-10.0"
        binary = prefix / "usr" / "bin" / "qemu-system-x86_64"
        if not binary.is_file():
            raise RigUnavailable(f"QEMU 10.0 is not unpacked in {prefix}; {_HINT}")
        libs = [
            str(d)
            for d in (prefix / "lib" / "x86_64-linux-gnu", prefix / "usr" / "lib" / "x86_64-linux-gnu")
            if any(d.glob("*.so*"))
        ]
        env = [("QEMU_MODULE_DIR", str(prefix / "usr" / "lib" / "x86_64-linux-gnu" / "qemu"))]
        if libs:
            env.append(("LD_LIBRARY_PATH", ":".join(libs)))
        firmware = (prefix / "usr/share/qemu", prefix / "usr/share/seabios", prefix / "usr/lib/ipxe/qemu")
        args = tuple(a for d in firmware for a in ("-L", str(d)))
        build = QemuBuild(version, binary, args, tuple(env))
    else:
        raise ValueError(f"unknown rig QEMU version {version!r}; known: {', '.join(QEMU_VERSIONS)}")
    try:
        out = subprocess.run(
            [str(build.binary), "--version"], capture_output=True, text=True, timeout=30,
            env=build.environ(), check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RigUnavailable(f"{build.binary} --version failed: {exc}; {_HINT}") from exc
    banner = out.stdout.splitlines()[0] if out.stdout else ""
    if out.returncode != 0 or not banner.startswith(f"QEMU emulator version {version}."):
        raise RigUnavailable(
            f"{build.binary} is not QEMU {version} (--version: {banner or out.stderr.strip()!r}); {_HINT}"
        )
    return QemuBuild(build.version, build.binary, build.args, build.env, banner)


@dataclass(frozen=True)
class Tools:
    qemu: QemuBuild
    busybox: Path
    vmlinuz: Path
    modules: dict[str, Path]


def find_tools(version: str = "7.2") -> Tools:
    """Locate QEMU `version`, a static busybox, the kernel and its virtio modules, or raise
    :class:`RigUnavailable` naming what is missing."""
    hint = _HINT
    qemu = find_qemu(version)
    busybox = Path("/bin/busybox")
    if not busybox.is_file() or not _is_static(busybox):
        raise RigUnavailable(f"a static busybox (Debian busybox-static) is missing; {hint}")
    kernel_dir = rig_dir() / "kernel"
    kernels = sorted((kernel_dir / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise RigUnavailable(f"no unpacked kernel in {kernel_dir}; {hint}")
    vmlinuz = kernels[-1]
    release = vmlinuz.name.removeprefix("vmlinuz-")
    mod_root = kernel_dir / "lib" / "modules" / release / "kernel"
    modules: dict[str, Path] = {}
    for name in VIRTIO_MODULES:
        found = sorted(mod_root.rglob(f"{name}.ko"))
        if not found:
            raise RigUnavailable(f"kernel module {name}.ko not found under {mod_root}; {hint}")
        modules[name] = found[0]
    if not os.access(vmlinuz, os.R_OK):
        raise RigUnavailable(f"{vmlinuz} is not readable")
    return Tools(qemu, busybox, vmlinuz, modules)


def _is_static(path: Path) -> bool:
    """An ELF without a PT_INTERP segment (no dynamic loader) is static."""
    with path.open("rb") as fh:
        head = fh.read(4096)
    return head[:4] == b"\x7fELF" and b"/ld-linux" not in head


# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inject:
    """One blkdebug `[inject-error]` rule: fail the first `op` request covering `round`'s
    first sector with `errno` (once)."""

    op: str  # "write" | "read"
    errno: int
    round: int

    @property
    def sector(self) -> int:
        return self.round * SECTORS_PER_ROUND


@dataclass(frozen=True)
class Scenario:
    name: str
    werror: str
    rerror: str
    injects: tuple[Inject, ...]
    rounds: int = 6
    iothread: bool = True
    #: `blkreplay capture --auto-cont`: ms from each I/O-error STOP to the capture's `cont`.
    auto_cont_ms: int = 300
    #: QEMU trace events enabled (`-trace enable=...`).
    trace_events: tuple[str, ...] = TRACE_EVENTS
    #: `blkreplay capture --poll`: ms between query-status/query-block polls.
    poll_ms: int = 250
    #: Bytes per guest request (`dd bs=`, O_DIRECT: one request each); 64 KiB a round in all.
    request_bytes: int = 4096
    #: Seconds the guest sleeps after each round (0: none). Over 1 s keeps each round's first
    #: error out of the previous one's BLOCK_IO_ERROR throttle window (QEMU >= 9.2).
    round_pause_s: float = 0.0


def blkdebug_conf(injects: tuple[Inject, ...]) -> str:
    blocks = []
    for inj in injects:
        blocks.append(
            "[inject-error]\n"
            f'event = "{inj.op}_aio"\n'
            f'iotype = "{inj.op}"\n'
            f'errno = "{inj.errno}"\n'
            f'sector = "{inj.sector}"\n'
            'once = "on"\n'
        )
    return "\n".join(blocks)


INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
export PATH=/bin
log() { echo "GUEST: $*"; }
log "init started, uptime $(cut -d' ' -f1 /proc/uptime)"
for m in @MODULES@; do
    insmod /lib/modules/$m.ko || log "insmod $m failed"
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
if [ ! -b /dev/vda ]; then
    log "no /dev/vda"; poweroff -f
fi
log "/dev/vda present ($(cat /sys/block/vda/size) sectors)"
r=1
while [ $r -le @ROUNDS@ ]; do
    blk=$((r * @SECTORS@ * 512 / @BS@))
    log "round $r write"
    dd if=/dev/zero of=/dev/vda bs=@BS@ count=@COUNT@ seek=$blk oflag=direct 2>/tmp/dd.err
    rc=$?
    grep -v 'records in' /tmp/dd.err
    log "round $r write rc=$rc"
    log "round $r read"
    dd if=/dev/vda of=/dev/null bs=@BS@ count=@COUNT@ skip=$blk iflag=direct 2>/tmp/dd.err
    rc=$?
    grep -v 'records in' /tmp/dd.err
    log "round $r read rc=$rc"
    @PAUSE@
    r=$((r+1))
done
log "done, uptime $(cut -d' ' -f1 /proc/uptime)"
poweroff -f
"""


def init_script(rounds: int, pause_s: float = 0.0, request_bytes: int = 4096) -> str:
    return (
        INIT_SCRIPT.replace("@MODULES@", " ".join(VIRTIO_MODULES))
        .replace("@ROUNDS@", str(rounds))
        .replace("@PAUSE@", f"sleep {pause_s:g}" if pause_s > 0 else ":")
        .replace("@SECTORS@", str(SECTORS_PER_ROUND))
        .replace("@BS@", str(request_bytes))
        .replace("@COUNT@", str(ROUND_BYTES // request_bytes))
    )


# ---------------------------------------------------------------------------------------------
# initramfs (cpio "newc", written here: no cpio tool needed)
# ---------------------------------------------------------------------------------------------


def _cpio_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0), ino: int = 0) -> bytes:
    encoded = name.encode() + b"\0"
    fields = (
        ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0,
    )
    head = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
    out = head + encoded
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)
    return out


def build_initramfs(path: Path, tools: Tools, scenario: Scenario) -> None:
    """A gzip'd newc cpio: /init, a static busybox, the virtio modules, /dev/console."""
    entries: list[tuple[str, int, bytes, tuple[int, int]]] = [
        ("bin", 0o040755, b"", (0, 0)),
        ("dev", 0o040755, b"", (0, 0)),
        ("dev/console", 0o020600, b"", (5, 1)),
        ("lib", 0o040755, b"", (0, 0)),
        ("lib/modules", 0o040755, b"", (0, 0)),
        ("proc", 0o040755, b"", (0, 0)),
        ("sys", 0o040755, b"", (0, 0)),
        ("bin/busybox", 0o100755, tools.busybox.read_bytes(), (0, 0)),
        (
            "init",
            0o100755,
            init_script(scenario.rounds, scenario.round_pause_s, scenario.request_bytes).encode(),
            (0, 0),
        ),
    ]
    for name, ko in tools.modules.items():
        entries.append((f"lib/modules/{name}.ko", 0o100644, ko.read_bytes(), (0, 0)))
    raw = io.BytesIO()
    for ino, (name, mode, data, rdev) in enumerate(entries, start=1):
        raw.write(_cpio_entry(name, mode, data, rdev, ino))
    raw.write(_cpio_entry("TRAILER!!!", 0))
    with path.open("wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


@dataclass
class RigRun:
    """Every file and status a scenario run produced."""

    workdir: Path
    cmdline: list[str]
    transcript: Path
    trace_log: Path
    console_log: Path
    trace_out: Path
    qemu_pid: int
    qemu_rc: int | None
    capture_rc: int | None
    capture_stdout: str
    capture_stderr: str
    wall_s: float
    timings: dict[str, float] = field(default_factory=dict)

    def transcript_records(self) -> list[dict]:
        with self.transcript.open(encoding="ascii") as fh:
            return [json.loads(line) for line in fh]

    def diagnostics(self) -> str:
        """What to print when an assertion fails: the capture's output and the guest console."""
        parts = [
            f"workdir: {self.workdir}",
            f"qemu rc={self.qemu_rc} capture rc={self.capture_rc} wall={self.wall_s:.1f}s",
            "--- capture stderr ---",
            self.capture_stderr[-3000:],
            "--- console.log (tail) ---",
        ]
        if self.console_log.exists():
            parts.append(self.console_log.read_text(errors="replace")[-2000:])
        return "\n".join(parts)


def blkreplay_argv(*args: str) -> list[str]:
    """The `blkreplay` command line of this interpreter (works without the console script)."""
    return [sys.executable, "-c", "import sys; from analyzer.cli import main; main(sys.argv[1:])", *args]


def qemu_cmdline(tools: Tools, scenario: Scenario, *, initrd: Path, mgmt_sock: Path, capture_sock: Path) -> list[str]:
    drive = (
        "file=blkdebug:blkdebug.conf:disk.img,if=none,id=drive0,format=raw,"
        f"rerror={scenario.rerror},werror={scenario.werror}"
    )
    device = "virtio-blk-pci,drive=drive0,id=vblk0"
    argv = [
        str(tools.qemu.binary),
        *tools.qemu.args,
        "-accel", "tcg",
        "-nodefaults",
        "-no-reboot",
        "-display", "none",
        "-m", "256",
        "-name", f"rig-{scenario.name}",
        "-S",
        "-msg", "timestamp=on",
        "-kernel", str(tools.vmlinuz),
        "-initrd", str(initrd),
        "-append", "console=ttyS0 quiet panic=-1",
        "-serial", "file:console.log",
        "-qmp", f"unix:{mgmt_sock},server=on,wait=off",
        "-qmp", f"unix:{capture_sock},server=on,wait=off",
    ]
    if scenario.iothread:
        argv += ["-object", "iothread,id=iothread0"]
        device += ",iothread=iothread0"
    argv += ["-drive", drive, "-device", device]
    for event in scenario.trace_events:
        argv += ["-trace", f"enable={event}"]
    return argv


def run_scenario(
    scenario: Scenario,
    workdir: Path,
    tools: Tools,
    *,
    auto_cont_ms: int | None = None,
    poll_ms: int | None = None,
    timeout_s: float = 90.0,
) -> RigRun:
    """Boot `scenario` and record it with ``blkreplay capture -o trace --qemu-log trace.log``
    (``--auto-cont`` `auto_cont_ms`, ``--poll`` `poll_ms`; by default the scenario's).

    QEMU starts paused (``-S``); the guest is started with ``cont`` on the management monitor
    once the capture is recording, as libvirt starts its VMs, so the capture sees every event
    from the first ``RESUME`` on. Returns when QEMU has exited and the capture has finished;
    a guest that hangs is quit over the management monitor after `timeout_s`.
    """
    t0 = time.monotonic()
    if auto_cont_ms is None:
        auto_cont_ms = scenario.auto_cont_ms
    if poll_ms is None:
        poll_ms = scenario.poll_ms
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "blkdebug.conf").write_text(blkdebug_conf(scenario.injects))
    with (workdir / "disk.img").open("wb") as fh:
        fh.truncate(DISK_BYTES)
    initrd = workdir / "initramfs.gz"
    build_initramfs(initrd, tools, scenario)
    # unix socket paths are limited to 107 bytes: keep them short, outside tmp_path
    sock_dir = Path(tempfile.mkdtemp(prefix="blkrig-"))
    mgmt_sock, capture_sock = sock_dir / "mgmt.sock", sock_dir / "capture.sock"
    argv = qemu_cmdline(tools, scenario, initrd=initrd, mgmt_sock=mgmt_sock, capture_sock=capture_sock)
    env_words = [f"{k}={v}" for k, v in tools.qemu.env]
    (workdir / "cmdline.txt").write_text(" ".join(_shell_quote(a) for a in [*env_words, *argv]) + "\n")
    trace_log = workdir / "trace.log"
    trace_out = workdir / "trace"
    transcript = workdir / "trace.qmp.jsonl"
    capture_argv = blkreplay_argv(
        "capture",
        "--qmp", f"unix:{capture_sock}",
        "-o", str(trace_out),
        "--qemu-log", str(trace_log),
        "--poll", str(poll_ms),
        "--auto-cont", str(auto_cont_ms),
        "--wait", "30",
        "--duration", str(timeout_s),
        "--quiet",
    )
    trace_log.touch()  # --qemu-log must exist when capture starts
    timings: dict[str, float] = {"prepare": time.monotonic() - t0}
    cap = subprocess.Popen(
        capture_argv,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    qemu: subprocess.Popen | None = None
    try:
        with trace_log.open("wb") as err:
            qemu = subprocess.Popen(
                argv, cwd=workdir, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                env=tools.qemu.environ(),
            )
            t_boot = time.monotonic()
            qemu_pid = qemu.pid
            # QEMU starts paused (-S); like management, start the guest once the capture is
            # recording, so that it sees everything from the first RESUME on
            if _capture_ready(transcript, 30):
                timings["capture-ready"] = time.monotonic() - t_boot
            management(mgmt_sock, "cont")
            try:
                qemu_rc = qemu.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                management(mgmt_sock, "quit")
                try:
                    qemu_rc = qemu.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    qemu.kill()
                    qemu_rc = qemu.wait()
            timings["qemu"] = time.monotonic() - t_boot
        try:
            cap_out, cap_err = cap.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            cap.send_signal(signal.SIGINT)
            cap_out, cap_err = cap.communicate(timeout=30)
        timings["capture+import"] = time.monotonic() - t_boot
    finally:
        for proc in (qemu, cap):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(sock_dir, ignore_errors=True)
    return RigRun(
        workdir=workdir,
        cmdline=argv,
        transcript=transcript,
        trace_log=trace_log,
        console_log=workdir / "console.log",
        trace_out=trace_out,
        qemu_pid=qemu_pid,
        qemu_rc=qemu_rc,
        capture_rc=cap.returncode,
        capture_stdout=cap_out,
        capture_stderr=cap_err,
        wall_s=time.monotonic() - t0,
        timings=timings,
    )


def management(sock_path: Path, command: str) -> bool:
    """Run one QMP command as management would (on its own monitor); True when it succeeded."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(sock_path))
        f = s.makefile("rwb")
        f.readline()  # greeting
        for cmd in ("qmp_capabilities", command):
            f.write(json.dumps({"execute": cmd, "id": cmd}).encode() + b"\n")
            f.flush()
            while True:
                msg = json.loads(f.readline())
                if msg.get("id") == cmd:
                    break
            if "error" in msg:
                return False
        return True
    return False


def _capture_ready(transcript: Path, timeout_s: float) -> bool:
    """Wait until the capture has negotiated and asked its first queries (its transcript
    holds the reply to the first query-block)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        with contextlib.suppress(OSError):
            text = transcript.read_bytes()
            # greeting, capabilities, 3 one-off queries, query-status, query-block: 14 lines
            if text.count(b"\n") >= 14:
                return True
        time.sleep(0.05)
    return False


def _shell_quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "-_=.,:/@+" for c in arg):
        return arg
    return "'" + arg.replace("'", "'\\''") + "'"
