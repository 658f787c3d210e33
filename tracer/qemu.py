"""Facts about QEMU's block error handling that both the model and the analyzer rely on.

Pure data and pure functions, no simulation: the analyzer may import this module. Sources are
QEMU's `system/runstate.c` (transition table), `block/block-backend.c`
(`blk_get_error_action`, `blk_iostatus_set_err`) and `blockdev.c` (policy parsing); see
`docs/rules.md` and the shared background notes. Also how QMP announces QEMU's version
(`version_from_qmp`), which decides what a trace's QEMU can do (`may_throttle`).
"""

from __future__ import annotations

import json
from typing import NamedTuple

ENOSPC = 28
EIO = 5

#: Allowed run-state transitions (QEMU's runstate_transitions_def, 2025). Same-state sets are
#: accepted silently by runstate_set and are not listed.
RUNSTATE_TRANSITIONS: dict[str, frozenset[str]] = {
    "prelaunch": frozenset({"inmigrate", "suspended", "running", "finish-migrate"}),
    "debug": frozenset({"running", "finish-migrate", "prelaunch", "suspended"}),
    "inmigrate": frozenset(
        {
            "internal-error", "io-error", "paused", "running", "shutdown", "suspended",
            "watchdog", "guest-panicked", "finish-migrate", "prelaunch", "postmigrate", "colo",
        }
    ),
    "internal-error": frozenset({"paused", "finish-migrate", "prelaunch"}),
    "io-error": frozenset({"running", "finish-migrate", "prelaunch"}),
    "paused": frozenset({"running", "finish-migrate", "postmigrate", "prelaunch", "colo", "suspended"}),
    "postmigrate": frozenset({"running", "finish-migrate", "prelaunch"}),
    "finish-migrate": frozenset(
        {
            "running", "paused", "postmigrate", "prelaunch", "colo", "internal-error",
            "io-error", "shutdown", "suspended", "watchdog", "guest-panicked",
        }
    ),
    "restore-vm": frozenset({"running", "prelaunch", "suspended"}),
    "colo": frozenset({"running", "prelaunch", "shutdown"}),
    "running": frozenset(
        {
            "debug", "internal-error", "io-error", "paused", "finish-migrate", "restore-vm",
            "save-vm", "shutdown", "watchdog", "guest-panicked", "colo", "suspended",
        }
    ),
    "save-vm": frozenset({"running", "suspended"}),
    "shutdown": frozenset({"paused", "finish-migrate", "prelaunch", "colo"}),
    "suspended": frozenset(
        {"running", "finish-migrate", "prelaunch", "colo", "paused", "save-vm", "restore-vm", "shutdown"}
    ),
    "watchdog": frozenset({"running", "finish-migrate", "prelaunch", "colo"}),
    "guest-panicked": frozenset({"running", "finish-migrate", "prelaunch"}),
}

#: Every allowed (from, to) pair, same-state pairs included, for vectorized membership tests.
ALLOWED_TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {(a, b) for a, bs in RUNSTATE_TRANSITIONS.items() for b in bs}
    | {(a, a) for a in RUNSTATE_TRANSITIONS}
)

#: Policies valid per operation: `rerror=enospc` is rejected by QEMU.
READ_POLICIES = frozenset({"report", "ignore", "stop", "auto"})
WRITE_POLICIES = frozenset({"report", "ignore", "enospc", "stop", "auto"})


def action_for(policy: str, errno: int) -> str | None:
    """The BlockErrorAction QEMU takes for `policy` and `errno` (None for `auto`: inherited)."""
    if policy == "enospc":
        return "stop" if errno == ENOSPC else "report"
    if policy in ("stop", "report", "ignore"):
        return policy
    return None


def iostatus_for(errno: int) -> str:
    """The iostatus a first error sets: `nospace` for ENOSPC, `failed` otherwise."""
    return "nospace" if errno == ENOSPC else "failed"


def iostatus_enabled(werror: str, rerror: str) -> bool:
    """Whether query-block reports an io-status for a device with these policies."""
    return werror in ("enospc", "stop") or rerror == "stop"


def errno_reason(errno: int) -> str:
    """strerror text QEMU puts in BLOCK_IO_ERROR's `reason`."""
    return {EIO: "Input/output error", ENOSPC: "No space left on device"}.get(
        errno, f"Unknown error {errno}"
    )


class QemuVersion(NamedTuple):
    """A QEMU version as QMP announces it (its ``VersionInfo``)."""

    major: int
    minor: int
    #: None when the announcement has no integer ``micro``.
    micro: int | None
    #: The distribution's package string (``"Debian 1:7.2+dfsg-7+deb12u7"``), stripped; None
    #: when empty.
    package: str | None

    @property
    def series(self) -> str:
        """``"major.minor"``: what QAPI event numbers and error-path behaviours follow."""
        return f"{self.major}.{self.minor}"

    @property
    def release(self) -> str:
        """``"major.minor.micro"`` (``"major.minor"`` without a micro): the trace metadata's
        ``qemu_version``."""
        return self.series if self.micro is None else f"{self.series}.{self.micro}"


def version_from_qmp(value: object) -> QemuVersion | None:
    """The QEMU version a QMP greeting (``{"QMP": {"version": VersionInfo, ...}}``) or a
    ``query-version`` return value (a VersionInfo: ``{"qemu": {"major", "minor", "micro"},
    "package"}``) announces; None when it announces none (major and minor must be integers).

    The one parser of QEMU's version announcement: the importers read it from every source
    (transcript, trace log, libvirt log) and the capture client from the live monitor.
    """
    if isinstance(value, dict) and isinstance(value.get("QMP"), dict):
        value = value["QMP"].get("version")
    if not isinstance(value, dict):
        return None
    qemu = value.get("qemu")
    if not isinstance(qemu, dict):
        return None
    major, minor, micro = qemu.get("major"), qemu.get("minor"), qemu.get("micro")
    if not isinstance(major, int) or not isinstance(minor, int):
        return None
    package = value.get("package")
    package = package.strip() if isinstance(package, str) else None
    return QemuVersion(major, minor, micro if isinstance(micro, int) else None, package or None)


def qemu_version(metadata: dict[str, str], vm: str) -> str | None:
    """The QEMU release an input records for `vm` (importers: ``blkreplay.qemu_versions``, a
    JSON object per VM, else ``blkreplay.qemu_version`` for the whole input), else None."""
    per_vm = metadata.get("qemu_versions")
    if per_vm:
        try:
            versions = json.loads(per_vm)
        except ValueError:
            versions = None
        if isinstance(versions, dict) and isinstance(versions.get(vm), str):
            return versions[vm]
    return metadata.get("qemu_version") or None


def throttles(metadata: dict[str, str], vm: str) -> bool:
    """Whether `vm`'s QEMU, as an input's metadata records it, may throttle BLOCK_IO_ERROR:
    its version may (`may_throttle`), or the importer saw it do so (``throttled_vms``: a trace
    log's ``rate=`` > 0 on BLOCK_IO_ERROR, e.g. a distribution backport on an older QEMU)."""
    if may_throttle(qemu_version(metadata, vm)):
        return True
    try:
        seen = json.loads(metadata.get("throttled_vms") or "[]")
    except ValueError:
        return False
    return isinstance(seen, list) and vm in seen


def may_throttle(version: str | None) -> bool:
    """Whether a QEMU may throttle BLOCK_IO_ERROR (per qom-path, one a second, delivering the
    last one late with its original timestamp): since 9.2, and, not knowing, assume it may."""
    if not version:
        return True
    parts = version.split(".")
    try:
        major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return True
    return (major, minor) >= (9, 2)
