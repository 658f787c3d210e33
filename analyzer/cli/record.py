"""`blkreplay record`: run the instrumented model of QEMU's block dataplane and write a trace.

A thin wrapper over :func:`tracer.sim.record`, and the one module outside the simulator that
imports it (``tests/test_architecture.py`` holds to that). Flags override the scenario file.
Numeric flags are parsed here (not by click) so that a bad value is one line on stderr and
exit 2, like every other input error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from analyzer.cli import console
from analyzer.outputs import check_recording_dir
from analyzer.text import terminal
from tracer.errors import FieldError, ScenarioError
from tracer.sim import SimConfig, load_scenario, record

#: SimConfig field -> the flag that sets it.
FLAGS = {
    "mode": "--mode",
    "variant": "--variant",
    "seed": "--seed",
    "vms": "--vms",
    "devices": "--devices",
    "iothreads": "--iothreads",
    "duration_s": "--duration",
    "error_rate": "--error-rate",
    "errno": "--errno",
    "werror": "--werror",
    "rerror": "--rerror",
    "cont_delay_ms": "--cont-delay",
    "qemu": "--qemu",
}


def _number(flag: str, text: str | None, kind: type) -> Any:
    if text is None:
        return None
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ScenarioError(f"option {flag}: expected {what}, got {text!r}") from None


def register(app: typer.Typer) -> None:
    @app.command("record")
    def record_cmd(
        out: Annotated[str, typer.Option("-o", "--out", metavar="DIR", help="Output trace directory (new, or empty).")],
        scenario: Annotated[
            Path | None,
            typer.Option("--scenario", metavar="FILE.toml", help="Scenario file (traces/scenarios/)."),
        ] = None,
        mode: Annotated[
            str | None, typer.Option("--mode", metavar="sim|threads", help="Deterministic simulation or real threads.")
        ] = None,
        variant: Annotated[
            str | None, typer.Option("--variant", metavar="NAME", help="fixed, or a defect variant.")
        ] = None,
        seed: Annotated[str | None, typer.Option("--seed", metavar="N")] = None,
        vms: Annotated[str | None, typer.Option("--vms", metavar="N")] = None,
        devices: Annotated[str | None, typer.Option("--devices", metavar="N", help="Disks per VM.")] = None,
        iothreads: Annotated[
            str | None,
            typer.Option("--iothreads", metavar="N", help="Disks 0..N-1 get an iothread; the rest complete on the main loop."),
        ] = None,
        duration: Annotated[
            str | None, typer.Option("--duration", metavar="SECONDS", help="Per VM; virtual in sim mode.")
        ] = None,
        error_rate: Annotated[
            str | None, typer.Option("--error-rate", metavar="P", help="Probability that a request fails.")
        ] = None,
        errno: Annotated[str | None, typer.Option("--errno", metavar="EIO|ENOSPC")] = None,
        werror: Annotated[
            str | None, typer.Option("--werror", metavar="POLICY", help="report, ignore, enospc or stop.")
        ] = None,
        rerror: Annotated[
            str | None, typer.Option("--rerror", metavar="POLICY", help="report, ignore or stop.")
        ] = None,
        cont_delay: Annotated[
            str | None, typer.Option("--cont-delay", metavar="MS", help="Management sends cont this long after a STOP.")
        ] = None,
        qemu: Annotated[
            str | None,
            typer.Option("--qemu", metavar="7.2|9.2|10.0",
                         help="QEMU behaviour to model (9.2, 10.0: BLOCK_IO_ERROR throttled per qom-path)."),
        ] = None,
        force: Annotated[
            bool, typer.Option("--force", "-f", help="Replace OUT if it holds an earlier recording.")
        ] = False,
        parents: Annotated[
            bool, typer.Option("--parents", help="Create missing parent directories of OUT.")
        ] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary.")] = False,
    ) -> None:
        """Run the model of QEMU's block dataplane and record a trace (sim mode: with truth.json)."""
        check_recording_dir(out, inputs=[] if scenario is None else [scenario], parents=parents,
                            replace=force)
        config = load_scenario(scenario) if scenario is not None else SimConfig()
        overrides = {
            "mode": mode,
            "variant": variant,
            "seed": _number("--seed", seed, int),
            "vms": _number("--vms", vms, int),
            "devices": _number("--devices", devices, int),
            "iothreads": _number("--iothreads", iothreads, int),
            "duration_s": _number("--duration", duration, float),
            "error_rate": _number("--error-rate", error_rate, float),
            "errno": errno,
            "werror": werror,
            "rerror": rerror,
            "cont_delay_ms": _number("--cont-delay", cont_delay, float),
            "qemu": qemu,
        }
        try:
            config = config.replace(**overrides)
        except FieldError as exc:
            flag = FLAGS.get(exc.field)
            if flag is None:  # a combination rule on a field without a flag
                raise ScenarioError(f"invalid settings: {exc.message}") from None
            raise ScenarioError(f"option {flag}: {exc.reason}") from None
        unit = "ms simulated" if config.mode == "sim" else "ms"
        with console.progress_bar("recording", quiet=quiet, unit=unit) as progress:
            summary = record(config, out, progress=progress, overwrite=force)
        broken = ""
        if summary.truth is not None:
            broken = f", truth: {len(summary.truth['broken'])} broken"
        console.note(
            f"recorded {summary.steps:,} steps from {summary.vms:,} VM(s), {config.mode} mode, "
            f"variant {terminal(config.variant)}, seed {config.seed}: {summary.errors:,} errors, "
            f"{summary.stops:,} stops, {summary.resumes:,} resumes{broken} -> {terminal(out)}",
            quiet=quiet,
        )
