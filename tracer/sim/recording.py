"""The public entry point: run the model for a configuration and write the trace (and truth).

>>> from tracer.sim import SimConfig, record                        # doctest: +SKIP
>>> summary = record(SimConfig(seed=7, variant="lost-stop", vms=2), "out/")
>>> summary.steps, summary.errors, summary.stops, summary.resumes

This module opens the recorder, hands the VMs to the mode's driver (:mod:`tracer.sim.scheduler`
in sim mode, :mod:`tracer.sim.realtime` in threads mode) and sums up what they did. In sim mode
the VMs run one after the other, each with its own virtual clock and its own seeded generator,
so a VM's trace does not depend on how many VMs run beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tracer import __version__
from tracer.recorder import Recorder
from tracer.sim.config import SimConfig
from tracer.sim.launch import launch_vm
from tracer.sim.realtime import run_realtime
from tracer.sim.scheduler import run_vm
from tracer.sim.truth import TRUTH_NAME, broken_in_vm, pattern_truth, truth_document, write_truth

ProgressCallback = Callable[[int, int | None], None]

#: The release a trace of `qemu = X` announces (importers' ``qemu_version``): the model follows
#: 9.2 after the swap fix unless the variant is 9.2.0's own defect.
QEMU_RELEASES = ({"9.2": "9.2", "10.0": "10.0"}, {"9.2": "9.2.0", "10.0": "10.0"})


@dataclass(frozen=True)
class RecordSummary:
    """What a recording produced."""

    steps: int
    errors: int
    stops: int
    resumes: int
    vms: int
    path: Path
    #: The truth document (sim mode), else None.
    truth: dict | None = None
    conts: int = 0


def trace_metadata(config: SimConfig) -> dict[str, object]:
    """Key-value metadata of the trace: what produced it. No wall-clock time."""
    meta: dict[str, object] = {
        "seed": config.seed,
        "scenario": config.name,
        "variant": config.variant,
        "mode": config.mode,
        "blkreplay_version": __version__,
        "config": config.to_json(),
    }
    if config.qemu != "7.2":  # 7.2 traces keep the bytes they always had
        meta["qemu_version"] = QEMU_RELEASES[config.variant == "qom-path-swap"][config.qemu]
    return meta


def record(
    config: SimConfig,
    out_dir: str | Path,
    *,
    progress: ProgressCallback | None = None,
    overwrite: bool = False,
) -> RecordSummary:
    """Run the model described by `config` and write a trace directory at `out_dir`.

    Sim mode also writes ``truth.json`` beside the segments (the guarantees the model broke,
    from its own facts). `progress(done, total)` is called now and then with simulated
    milliseconds (sim) or elapsed milliseconds (threads).
    """
    out = Path(out_dir)
    if config.mode == "threads":
        return _record_threads(config, out, progress=progress, overwrite=overwrite)
    end_ns = round(config.duration_s * 1e9)
    total_ms = config.vms * end_ns // 1_000_000
    rec = Recorder(
        out,
        source="sim",
        vm="vm0",
        metadata=trace_metadata(config),
        flush_interval=None,
        overwrite=overwrite,
    )
    broken: list[tuple[str, int | None, str]] = []
    has_iostatus_set = False
    errors = stops = resumes = conts = 0
    stop_times: dict[str, list[tuple[int, bool]]] = {}
    try:
        for index in range(config.vms):
            vm = launch_vm(config, index, rec)
            base_ms = index * end_ns // 1_000_000
            tick = None
            if progress is not None:
                def tick(now: int, base_ms: int = base_ms) -> None:
                    progress(min(base_ms + now // 1_000_000, total_ms), total_ms)
            run_vm(vm, end_ns, tick)
            errors += vm.errors
            stops += vm.stops
            resumes += vm.resumes
            conts += vm.monitor.conts
            has_iostatus_set = has_iostatus_set or any(f[0] == "iostatus_set" for f in vm.facts)
            broken.extend((vm.name, eid, rule) for eid, rule in broken_in_vm(vm.facts))
            if config.epoch_s is not None:
                stop_times[vm.name] = vm.stop_times
            del vm
    finally:
        manifest = rec.close()
    doc = truth_document(config.variant, config.seed, broken, has_iostatus_set=has_iostatus_set)
    if config.epoch_s is not None:  # wall-clock runs: the operational patterns too (additive)
        doc["patterns"] = pattern_truth(stop_times)
    write_truth(out / TRUTH_NAME, doc)
    if progress is not None:
        progress(total_ms, total_ms)
    return RecordSummary(
        steps=manifest.rows,
        errors=errors,
        stops=stops,
        resumes=resumes,
        vms=config.vms,
        path=out,
        truth=doc,
        conts=conts,
    )


def _record_threads(
    config: SimConfig, out: Path, *, progress: ProgressCallback | None, overwrite: bool
) -> RecordSummary:
    """Record `config` in threads mode (no truth file: the interleaving is not the model's)."""
    rec = Recorder(out, source="threads", vm="vm0", metadata=trace_metadata(config),
                   flush_interval=0.2, overwrite=overwrite)
    try:
        vms = run_realtime(config, rec, progress)
    finally:
        manifest = rec.close()
    duration_ms = round(config.duration_s * 1e9) // 1_000_000
    if progress is not None:
        progress(duration_ms, duration_ms)
    return RecordSummary(
        steps=manifest.rows,
        errors=sum(vm.errors for vm in vms),
        stops=sum(vm.stops for vm in vms),
        resumes=sum(vm.resumes for vm in vms),
        vms=config.vms,
        path=out,
        truth=None,
        conts=sum(vm.monitor.conts for vm in vms),
    )
