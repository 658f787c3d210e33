"""What a simulation run is: :class:`SimConfig`, and scenario files (TOML) that set it.

A scenario file is flat TOML: top-level keys are :class:`SimConfig` fields, and optional
``[[fault]]`` tables add per-device / per-operation fault rules::

    name = "one-vm-eio"
    vms = 1
    devices = 2
    werror = "stop"
    error_rate = 0.002

    [[fault]]
    device = "drive1"      # or "*"
    op = "write"           # read | write | flush | "*"
    error_rate = 0.01
    errno = "ENOSPC"
    burst_len = 4

``qemu`` picks the QEMU release whose behaviour the model follows (:data:`QEMU_VERSIONS`):
``"7.2"`` (the default: BLOCK_IO_ERROR delivered at once), ``"9.2"`` / ``"10.0"`` (BLOCK_IO_ERROR
throttled per ``qom-path``, ``event_throttle_ms`` apart, see :mod:`tracer.sim.throttle`; several
iothreads per disk with ``vq_iothreads``). Settings added after the first release
(:data:`LATER_FIELDS`) are left out of the trace metadata while they hold their defaults, so
that a 7.2 run gives the bytes it always gave.

Every value is checked here, once, so that the model can trust its configuration. A bad value
raises :class:`FieldError` (a :class:`~tracer.errors.ScenarioError`) naming the field;
:func:`load_scenario` turns it into a one-line message naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracer.errors import FieldError, ScenarioError
from tracer.schema import ERRNO_BY_NAME, ERRNO_NAMES
from tracer.sim.variants import VARIANT_TABLE, VARIANTS

MODES = ("sim", "threads")
WRITE_POLICIES = ("report", "ignore", "enospc", "stop")
#: QEMU rejects rerror=enospc ("invalid read error action").
READ_POLICIES = ("report", "ignore", "stop")
FAULT_OPS = ("read", "write", "flush")
#: QEMU releases the model can follow. 7.2: no event throttling; 9.2 and 10.0: BLOCK_IO_ERROR
#: rate-limited to one a second per qom-path (commit 2155d2dd7f), `qom-path` in its data.
QEMU_VERSIONS = ("7.2", "9.2", "10.0")
#: QEMU's rate for BLOCK_IO_ERROR (monitor_qapi_event_conf), in ms.
QEMU_THROTTLE_MS = 1000.0


@dataclass(frozen=True)
class FaultRule:
    """Override the fault injection for the (device, op) pairs it matches ("*" matches any).

    Fields left as None keep the run-wide value. Later rules win over earlier ones.
    """

    device: str = "*"
    op: str = "*"
    error_rate: float | None = None
    errno: str | None = None
    burst_prob: float | None = None
    burst_len: int | None = None
    #: A time window (seconds of the VM's clock): the rule then applies only from `start_s`
    #: (default 0) to `end_s` (default: the end), failing `error_rate` (default 1: every
    #: completion) of the matching ops with `errno`: a storage outage, a full volume.
    start_s: float | None = None
    end_s: float | None = None
    #: The VMs it applies to: ``"*"`` (default) or an index range ``"0-99"`` (``"7"``: one VM),
    #: e.g. the VMs on the failing storage backend.
    vms: str | None = None

    def matches(self, device: str, op: str) -> bool:
        return self.device in ("*", device) and self.op in ("*", op)

    @property
    def timed(self) -> bool:
        return self.start_s is not None or self.end_s is not None

    def matches_vm(self, index: int) -> bool:
        if self.vms is None or self.vms == "*":
            return True
        lo, _, hi = self.vms.partition("-")
        return int(lo) <= index <= int(hi or lo)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class SimConfig:
    """Everything that decides a run. Same config (seed included) -> same trace, in sim mode.

    Times are virtual in sim mode and real in threads mode.
    """

    seed: int = 1
    variant: str = "fixed"
    mode: str = "sim"
    #: Scenario name, recorded in the trace metadata.
    name: str = "default"
    vms: int = 1
    devices: int = 2
    #: Devices 0..iothreads-1 run on their own iothread (dataplane); the others on the main loop.
    iothreads: int = 1
    vcpus: int = 2
    duration_s: float = 0.05
    #: Fault injection, run-wide defaults (see `faults`).
    error_rate: float = 0.002
    errno: str = "EIO"
    #: Probability that an injected error starts a burst, and how many more ops then fail.
    burst_prob: float = 0.5
    burst_len: int = 2
    faults: tuple[FaultRule, ...] = ()
    werror: str = "stop"
    rerror: str = "stop"
    #: Management: `cont` this long (x U(0.5, 1.5)) after an I/O-error STOP.
    cont_delay_ms: float = 2.0
    #: Management: probability of sending `cont` at once on seeing BLOCK_IO_ERROR(stop) (races).
    fast_cont_prob: float = 0.2
    #: Management: probability of a `query-block` at once on seeing BLOCK_IO_ERROR(stop).
    query_on_error_prob: float = 0.5
    #: Management: poll query-status / query-block alternately every this long (x U(0.5, 1.5)).
    poll_interval_ms: float = 1.0
    #: Management: probability that a poll is a user `stop` instead (then `cont` after the delay).
    stop_prob: float = 0.02
    #: Guest workload: mean think time between requests of a vCPU, and the op mix.
    io_think_us: float = 40.0
    read_fraction: float = 0.45
    flush_fraction: float = 0.1
    #: Host I/O latency (x U(0.5, 1.5)); retried requests complete faster.
    io_latency_us: float = 80.0
    retry_latency_us: float = 10.0
    #: Time `cont` spends resuming the vCPUs (the window in which resume-late races).
    vcpu_resume_us: float = 10.0
    #: The QEMU release whose behaviour the model follows (QEMU_VERSIONS).
    qemu: str = "7.2"
    #: BLOCK_IO_ERROR throttle window per qom-path (QEMU >= 9.2 only); None: QEMU's 1000 ms.
    #: The model's clock is compressed (cont after ~2 ms), so sweeps scale it down with it.
    event_throttle_ms: float | None = None
    #: iothread-vq-mapping (QEMU >= 9.0): each dataplane disk's queues spread over this many
    #: iothreads (its own and the next ones), so retried requests fail on several threads.
    vq_iothreads: int = 1
    #: Disks attached with -blockdev (as libvirt does): BLOCK_IO_ERROR's `device` is "".
    blockdev: bool = False
    #: A fleet: VM i runs on host ``host{i % hosts:02d}`` (the trace's `host` column); 0: no host.
    hosts: int = 0
    #: The Unix time (s) the virtual clock's 0 stands for: the trace then reads as wall-clock
    #: time (UTC), as an import does. None: the model's own clock, from 0.
    epoch_s: float | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = _check(f.name, getattr(self, f.name))
            object.__setattr__(self, f.name, value)
        if self.read_fraction + self.flush_fraction > 1.0:
            raise FieldError("flush_fraction", "read_fraction + flush_fraction must be at most 1")
        if self.mode == "threads" and self.duration_s > 600:
            raise FieldError("duration_s", "threads mode runs in real time; at most 600 s")
        if self.event_throttle_ms is not None and not self.throttled and self.event_throttle_ms > 0:
            raise FieldError("event_throttle_ms", f"QEMU {self.qemu} does not throttle BLOCK_IO_ERROR (9.2 and later do)")
        if self.vq_iothreads > 1 and self.qemu == "7.2":
            raise FieldError("vq_iothreads", "iothread-vq-mapping needs QEMU 9.0 or later (qemu = 9.2 or 10.0)")
        if self.vq_iothreads > max(1, min(self.iothreads, self.devices)):
            raise FieldError("vq_iothreads", "at most as many as the iothreads of the VM (iothreads, capped by devices)")
        only = VARIANT_TABLE[self.variant].only_qemu
        if only is not None and self.qemu != only:
            raise FieldError("variant", f"{self.variant} is a defect of QEMU {only}: set qemu = {only}")

    def replace(self, **overrides: Any) -> SimConfig:
        """A copy with `overrides` applied (None values are ignored), validated."""
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise FieldError(unknown[0], "unknown setting")
        changes = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **changes)

    @property
    def throttled(self) -> bool:
        """Whether this QEMU rate-limits BLOCK_IO_ERROR (9.2 and later)."""
        return self.qemu != "7.2"

    @property
    def throttle_ns(self) -> int:
        """The BLOCK_IO_ERROR throttle window in ns (0: not throttled)."""
        if not self.throttled:
            return 0
        ms = QEMU_THROTTLE_MS if self.event_throttle_ms is None else self.event_throttle_ms
        return round(ms * 1_000_000)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, deterministic form (for the trace metadata). Settings of
        :data:`LATER_FIELDS` at their defaults are left out (older traces stay byte-identical)."""
        doc = dataclasses.asdict(self)
        doc["faults"] = [r.to_dict() for r in self.faults]
        for name, default in LATER_FIELDS.items():
            if doc[name] == default:
                del doc[name]
        return doc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @property
    def errno_value(self) -> int:
        return ERRNO_BY_NAME[self.errno]


#: Settings added after the first release, with the default that keeps the old behaviour.
LATER_FIELDS: dict[str, Any] = {"qemu": "7.2", "event_throttle_ms": None, "vq_iothreads": 1, "blockdev": False,
                                "hosts": 0, "epoch_s": None}


# ------------------------------------------------------------------------------ validation


def _int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(name, f"expected an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise FieldError(name, f"must be {bound}, got {value}")
    return value


def _float(name: str, value: Any, lo: float, hi: float | None = None, *, open_lo: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError(name, f"expected a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise FieldError(name, f"must be finite, got {value}")
    if (value <= lo if open_lo else value < lo) or (hi is not None and value > hi):
        low = f"greater than {lo:g}" if open_lo else f"at least {lo:g}"
        bound = f"{low} and at most {hi:g}" if hi is not None else low
        raise FieldError(name, f"must be {bound}, got {value:g}")
    return value


def _choice(name: str, value: Any, allowed: tuple[str, ...], what: str = "") -> str:
    if not isinstance(value, str) or value not in allowed:
        extra = f" ({what})" if what else ""
        raise FieldError(name, f"expected one of {', '.join(allowed)}{extra}, got {value!r}")
    return value


def _errno(name: str, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value in ERRNO_NAMES:
        return ERRNO_NAMES[value]
    if isinstance(value, str) and value.upper() in ERRNO_BY_NAME:
        return value.upper()
    names = ", ".join(sorted(ERRNO_BY_NAME))
    raise FieldError(name, f"expected an errno name ({names}), got {value!r}")


def _check(name: str, value: Any) -> Any:
    """Validate and normalize one SimConfig field."""
    if name == "seed":
        return _int(name, value, 0, 2**63 - 1)
    if name == "variant":
        return _choice(name, value, VARIANTS)
    if name == "mode":
        return _choice(name, value, MODES)
    if name == "name":
        if not isinstance(value, str) or not value or len(value) > 200:
            raise FieldError(name, f"expected a short non-empty string, got {value!r}")
        return value
    if name == "vms":
        return _int(name, value, 1, 100_000)
    if name == "devices":
        return _int(name, value, 1, 64)
    if name == "iothreads":
        return _int(name, value, 0, 64)
    if name == "vcpus":
        return _int(name, value, 1, 64)
    if name == "burst_len":
        return _int(name, value, 0, 1_000_000)
    if name == "duration_s":
        return _float(name, value, 0.0, 86_400.0, open_lo=True)
    if name in ("error_rate", "burst_prob", "fast_cont_prob", "query_on_error_prob", "stop_prob",
                "read_fraction", "flush_fraction"):
        return _float(name, value, 0.0, 1.0)
    if name in ("cont_delay_ms", "retry_latency_us", "vcpu_resume_us"):
        return _float(name, value, 0.0, 3_600_000.0)
    if name in ("poll_interval_ms", "io_think_us", "io_latency_us"):
        return _float(name, value, 0.0, 3_600_000.0, open_lo=True)
    if name == "errno":
        return _errno(name, value)
    if name == "werror":
        return _choice(name, value, WRITE_POLICIES)
    if name == "rerror":
        return _choice(name, value, READ_POLICIES, "QEMU rejects rerror=enospc")
    if name == "qemu":
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = f"{value:.1f}"  # TOML `qemu = 9.2` is a float
        return _choice(name, value, QEMU_VERSIONS)
    if name == "event_throttle_ms":
        return None if value is None else _float(name, value, 0.0, 3_600_000.0)
    if name == "vq_iothreads":
        return _int(name, value, 1, 64)
    if name == "hosts":
        return _int(name, value, 0, 100_000)
    if name == "epoch_s":
        return None if value is None else _float(name, value, 1e9, 4e9)
    if name == "blockdev":
        if not isinstance(value, bool):
            raise FieldError(name, f"expected true or false, got {value!r}")
        return value
    if name == "faults":
        if isinstance(value, FaultRule):
            value = (value,)
        if not isinstance(value, tuple | list) or not all(isinstance(r, FaultRule) for r in value):
            raise FieldError(name, "expected a list of FaultRule")
        return tuple(_check_rule(i, r) for i, r in enumerate(value))
    raise FieldError(name, "unknown setting")


def _check_rule(index: int, rule: FaultRule) -> FaultRule:
    where = f"fault[{index}]"
    if not isinstance(rule.device, str) or not rule.device:
        raise FieldError(f"{where}.device", f"expected a device name or '*', got {rule.device!r}")
    _choice(f"{where}.op", rule.op, ("*", *FAULT_OPS))
    changes: dict[str, Any] = {}
    if rule.error_rate is not None:
        changes["error_rate"] = _float(f"{where}.error_rate", rule.error_rate, 0.0, 1.0)
    if rule.burst_prob is not None:
        changes["burst_prob"] = _float(f"{where}.burst_prob", rule.burst_prob, 0.0, 1.0)
    if rule.burst_len is not None:
        changes["burst_len"] = _int(f"{where}.burst_len", rule.burst_len, 0, 1_000_000)
    if rule.errno is not None:
        changes["errno"] = _errno(f"{where}.errno", rule.errno)
    for key in ("start_s", "end_s"):
        if getattr(rule, key) is not None:
            changes[key] = _float(f"{where}.{key}", getattr(rule, key), 0.0, 86_400.0)
    if rule.start_s is not None and rule.end_s is not None and changes["end_s"] <= changes["start_s"]:
        raise FieldError(f"{where}.end_s", "must be after start_s")
    if rule.vms is not None and (not isinstance(rule.vms, str) or not re.fullmatch(r"\*|\d+(-\d+)?", rule.vms)):
        raise FieldError(f"{where}.vms", f"expected '*' or an index range like '0-99', got {rule.vms!r}")
    return dataclasses.replace(rule, **changes)


# ------------------------------------------------------------------------------ scenario files

_FIELDS = {f.name for f in dataclasses.fields(SimConfig)} - {"faults"}
_RULE_KEYS = {f.name for f in dataclasses.fields(FaultRule)}
#: Keys a scenario may carry for people only.
_DOC_KEYS = {"description"}


def load_scenario(path: str | Path) -> SimConfig:
    """Read a scenario TOML file into a validated :class:`SimConfig`.

    Raises :class:`ScenarioError` with one line naming the file and the key at fault.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{p}: scenario file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{p}: cannot read scenario file: {exc}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{p}: not valid TOML: {exc}") from None
    return scenario_from_dict(doc, source=str(p))


def scenario_from_dict(doc: dict[str, Any], *, source: str = "<scenario>") -> SimConfig:
    """Build a SimConfig from a parsed scenario document (see the module docstring)."""
    kwargs: dict[str, Any] = {}
    for key in sorted(doc):
        value = doc[key]
        if key in _DOC_KEYS:
            continue
        if key == "fault":
            kwargs["faults"] = _rules(value, source)
            continue
        if key not in _FIELDS:
            raise ScenarioError(f"{source}: unknown key {key!r}{_suggest(key, _FIELDS | {'fault'})}")
        kwargs[key] = value
    kwargs.setdefault("name", Path(source).stem if source != "<scenario>" else "default")
    try:
        return SimConfig(**kwargs)
    except FieldError as exc:
        raise ScenarioError(f"{source}: key {exc.field!r}: {exc.reason}") from None


def _rules(value: Any, source: str) -> tuple[FaultRule, ...]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ScenarioError(f"{source}: key 'fault': expected [[fault]] tables")
    rules = []
    for i, table in enumerate(value):
        for key in sorted(table):
            if key not in _RULE_KEYS:
                raise ScenarioError(
                    f"{source}: key 'fault[{i}].{key}': unknown key{_suggest(key, _RULE_KEYS)}"
                )
        rules.append(FaultRule(**table))
    return tuple(rules)


def _suggest(key: str, known: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
