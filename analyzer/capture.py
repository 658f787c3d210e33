"""Capture a live QEMU straight into a trace: record its QMP monitor, then import what it said.

:func:`tracer.capture.capture` writes a QMP transcript (the producer's job, knowing nothing of
traces); :func:`analyzer.importers.import_traces` turns transcripts and QEMU trace logs into
schema-v1 traces. :func:`capture_trace` chains the two, so a notebook or a test rig gets in one
call what ``blkreplay capture`` does::

    from analyzer.capture import capture_trace
    done = capture_trace("unix:/run/vm0-cap.sock", "vm0-trace", duration_s=600)
    done.capture.events, done.imported.rows

An output ending in ``.jsonl`` is the transcript itself, and nothing is imported. Any other
output is a trace (a ``.parquet`` file or a directory) and the transcript is kept beside it as
``OUT.qmp.jsonl``, with the QEMU trace log (``qemu_log``), if any, merged into the trace.

Every output is checked before connecting (:mod:`analyzer.outputs`: never an input, a missing
directory or a bad place is one :class:`~tracer.errors.OutputError`). The transcript is
written to a temporary file beside its name and renamed into place as soon as the endpoint
has spoken QMP (greeting and capabilities): an earlier capture under that name is kept as it
was when the endpoint is not a QMP monitor, cannot be reached or refuses, and from then on the
transcript can be watched under its name while it grows.

This is the one module of the analyzer that uses the live capture of :mod:`tracer.capture`
(``tests/test_architecture.py`` names it as that exception).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from analyzer import outputs
from analyzer.importers import ImportSummary, import_traces
from analyzer.importers import output as import_output
from analyzer.progress import ProgressCallback
from tracer.capture import CaptureSummary, capture, is_transcript_path, wait_until_settled
from tracer.errors import CaptureError, OutputError

#: What a failing transcript write raises (the socket's own errors are the capture's to report).
_WRITE_FAILURES = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EIO})

__all__ = ["CaptureSummary", "CapturedTrace", "capture_trace", "transcript_path_for"]


@dataclass(frozen=True)
class CapturedTrace:
    """What :func:`capture_trace` did: the capture, where its transcript is, the import."""

    capture: CaptureSummary
    transcript: Path
    #: None when the output was the transcript itself (nothing imported).
    imported: ImportSummary | None


def transcript_path_for(out: str | Path) -> Path:
    """Where the transcript goes when `out` names a trace: beside it, as OUT.qmp.jsonl."""
    out = Path(out)
    return out.with_name(out.name + ".qmp.jsonl")


def capture_trace(
    endpoint: str,
    out: str | Path,
    *,
    qemu_log: str | Path | None = None,
    poll_ms: int = 500,
    duration_s: float | None = None,
    until_shutdown: bool = True,
    auto_cont_ms: int | None = None,
    connect_wait_s: float = 0.0,
    progress: ProgressCallback | None = None,
    import_progress: ProgressCallback | None = None,
    on_captured: Callable[[CaptureSummary], None] | None = None,
    parents: bool = False,
    replace: bool = False,
) -> CapturedTrace:
    """Record the QMP monitor at `endpoint` until it ends, then import the transcript to `out`.

    The capture options are those of :func:`tracer.capture.capture`. `qemu_log` (only with a
    trace output) is merged in once QEMU has stopped writing it. `progress(lines, None)`
    follows the capture, `import_progress(bytes, total)` the import; `on_captured(summary)` is
    called between the two (the command line prints what was captured there, before a
    possibly long import). A capture cut off by a lost connection is still imported: its
    partial last line is skipped and the trace marked truncated.

    Missing parent directories of the outputs are created only with `parents`; an existing
    trace directory is replaced (whole, once the new one is complete) only with `replace`.

    Raises :class:`~tracer.errors.CaptureError` before connecting when `qemu_log` cannot be
    used, :class:`~tracer.errors.OutputError` before connecting when an output cannot be
    written there, and whatever the capture or the import raise.
    """
    transcript_only = is_transcript_path(out)
    if transcript_only and qemu_log is not None:
        raise CaptureError("--qemu-log needs -o naming a trace, not a .jsonl transcript")
    if qemu_log is not None and not Path(qemu_log).is_file():
        raise CaptureError(f"{qemu_log}: QEMU log not found")
    inputs = [] if qemu_log is None else [qemu_log]
    if transcript_only:
        transcript = outputs.check_output(out, inputs=inputs, kind="transcript", parents=parents)
    else:
        plan = import_output.check_output(out, inputs=inputs, parents=parents, replace=replace)
        transcript = outputs.check_output(transcript_path_for(plan.path), inputs=inputs,
                                          kind="transcript", parents=parents)
    assert transcript is not None  # no stdout for a capture
    with outputs.output_path(transcript, inputs=inputs, kind="transcript", parents=parents) as pending:

        def publish(lines: int, total: int | None) -> None:
            # the capture reports progress only once the endpoint has spoken QMP: from then
            # on the new transcript is worth more than an earlier one (and can be watched)
            pending.publish()
            if progress is not None:
                progress(lines, total)

        try:
            summary = capture(
                endpoint,
                pending.path,
                poll_ms=poll_ms,
                duration_s=duration_s,
                until_shutdown=until_shutdown,
                auto_cont_ms=auto_cont_ms,
                progress=publish,
                connect_wait_s=connect_wait_s,
            )
        except OSError as exc:
            if exc.errno not in _WRITE_FAILURES:
                raise
            kept = "the transcript up to then is kept" if pending.published else "nothing written"
            raise OutputError(f"cannot write ({exc.strerror or exc}); {kept}", path=transcript) from None
    summary.out = transcript
    if on_captured is not None:
        on_captured(summary)
    if transcript_only:
        return CapturedTrace(summary, transcript, None)
    to_import: list[str | Path] = [transcript]
    if qemu_log is not None:
        wait_until_settled(qemu_log)  # QEMU writes its last trace lines while it exits
        to_import.append(qemu_log)
    # a line cut off by a lost connection is kept (marked partial) in the transcript; the
    # import skips it and marks the trace truncated instead of refusing the whole capture
    cut = summary.partial_bytes > 0
    imported = import_traces(to_import, out, skip_bad=cut, progress=import_progress,
                             parents=parents, replace=replace)
    return CapturedTrace(summary, transcript, imported)
