"""Real QEMU 10.0 / libvirt 11.3 captures, edited to break a guarantee, are still caught in every
input form (transcript, events, trace log, merged, libvirt log), although QEMU 10 throttles
BLOCK_IO_ERROR and the rules judge raising order (docs/rules.md §2).

Each edit is made on a copy in tmp, on the first I/O-error stops of the capture:

* *stop raised first*: the STOP's QMP timestamp (and, in a trace log, its queue line) is moved
  to before the BLOCK_IO_ERROR that caused it -> `event-before-stop`;
* *stop removed*: the STOP of the second stop (after the first cont) is deleted (a trace log:
  its queue, emit and respond lines) -> `stop-follows-error`;
* *query ok while stopped*: the first query-block reply after that stop shows io-status ok
  instead of failed -> `query-matches-events`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from analyzer import check
from analyzer.importers import import_traces
from tests.analyzer.guarantees import GUARANTEE_RULES


@dataclass(frozen=True)
class Capture:
    folder: str
    #: The first BLOCK_IO_ERROR's and the STOP's QMP timestamps (seconds, microseconds).
    seconds: int
    bie_us: int
    stop_us: int
    #: The microseconds of the STOP of the second stop (after the first cont's RESUME): an
    #: events-only capture that starts with a BLOCK_IO_ERROR cannot tell whether the VM was
    #: running before its first RESUME, so the STOP removed is that one.
    second_stop_us: int

    def second(self) -> Capture:
        return Capture(self.folder, self.seconds, self.bie_us, self.second_stop_us, self.second_stop_us)


QEMU10 = Capture("qemu-10.0/a-stop-eio-dataplane", 1796188111, 6259, 7099, 470071)
LIBVIRT11 = Capture("libvirt-11.3/a-stop-eio", 1796189070, 851091, 851899, 701719)

#: form -> (capture, input files)
FORMS: dict[str, tuple[Capture, tuple[str, ...]]] = {
    "transcript": (QEMU10, ("qmp-transcript.jsonl",)),
    "events": (QEMU10, ("events.jsonl",)),
    "trace": (QEMU10, ("trace.log",)),
    "merged": (QEMU10, ("qmp-transcript.jsonl", "trace.log")),
    "libvirt": (LIBVIRT11, ("libvirtd.log",)),
}


def _stop_json(c: Capture) -> re.Pattern[str]:
    """The STOP's JSON in any carrier (raw, or escaped inside a transcript line)."""
    return re.compile(rf'microseconds\\?": {c.stop_us}}}, \\?"event\\?": \\?"STOP')


def _queue_lines_before(lines: list[str], i: int) -> list[int]:
    """A trace log's monitor_protocol_event_queue/_emit lines of the event answered at line i."""
    return [j for j in range(max(0, i - 3), i) if ":monitor_protocol_event_" in lines[j]]


def stop_raised_first(text: str, c: Capture) -> str:
    lines = text.splitlines(keepends=True)
    earlier = c.bie_us - 200
    for i, line in enumerate(lines):
        if _stop_json(c).search(line):
            lines[i] = re.sub(rf"microseconds(\\?\"): {c.stop_us}}}", rf"microseconds\g<1>: {earlier}}}", line)
            for j in _queue_lines_before(lines, i):
                lines[j] = re.sub(r"@\d+\.\d+:", f"@{c.seconds}.{earlier:06d}:", lines[j], count=1)
    return "".join(lines)


def stop_removed(text: str, c: Capture) -> str:
    c = c.second()
    lines = text.splitlines(keepends=True)
    gone: set[int] = set()
    for i, line in enumerate(lines):
        if _stop_json(c).search(line):
            gone.add(i)
            gone.update(_queue_lines_before(lines, i))
    return "".join(x for i, x in enumerate(lines) if i not in gone)


def query_ok_while_stopped(text: str, c: Capture) -> str:
    lines = text.splitlines(keepends=True)
    stop = next(i for i, x in enumerate(lines) if _stop_json(c).search(x))
    failed = re.compile(r'io-status\\?": \\?"failed')
    edited, reply = 0, None
    for i in range(stop, len(lines)):
        if failed.search(lines[i]):
            # one reply, which a trace log (qmp_exit + respond) and a libvirt log (Line +
            # RECV_REPLY) print twice, on neighbouring lines
            if reply is not None and i > reply + 1:
                break
            lines[i] = re.sub(r'(io-status\\?": \\?")failed', r"\g<1>ok", lines[i], count=1)
            reply, edited = i, edited + 1
    assert edited
    return "".join(lines)


EDITS: dict[str, tuple[Callable[[str, Capture], str], str]] = {
    "stop-raised-first": (stop_raised_first, "event-before-stop"),
    "stop-removed": (stop_removed, "stop-follows-error"),
    "query-ok-while-stopped": (query_ok_while_stopped, "query-matches-events"),
}


def _audit(samples_dir: Path, tmp_path: Path, form: str, edit: Callable[[str, Capture], str] | None):
    capture, names = FORMS[form]
    inputs = []
    for name in names:
        text = (samples_dir / capture.folder / name).read_text()
        path = tmp_path / name
        path.write_text(edit(text, capture) if edit else text)
        inputs.append(path)
    out = tmp_path / "trace.parquet"
    import_traces(inputs, out)
    return check([out], rules=GUARANTEE_RULES), inputs  # (tests/analyzer/guarantees.py)


@pytest.mark.parametrize("form", sorted(FORMS))
def test_the_unedited_copies_pass(samples_dir, tmp_path, form):
    result, _ = _audit(samples_dir, tmp_path, form, None)
    assert result.findings == [] and result.verdict == "pass"


@pytest.mark.parametrize("edit", sorted(EDITS))
@pytest.mark.parametrize("form", sorted(FORMS))
def test_an_edited_qemu_10_capture_is_caught_by_the_matching_rule(samples_dir, tmp_path, form, edit):
    fn, rule = EDITS[edit]
    if edit == "query-ok-while-stopped" and form == "events":
        pytest.skip("events.jsonl holds no query-block replies")
    capture, names = FORMS[form]
    original = "".join((samples_dir / capture.folder / n).read_text() for n in names)
    result, inputs = _audit(samples_dir, tmp_path, form, fn)
    assert "".join(p.read_text() for p in inputs) != original  # the edit did something
    assert rule in {f.rule for f in result.findings if f.severity == "error"}
    assert result.verdict == "fail"
