"""Fuzzing every importer: whatever the input, a trace `check` accepts, or one line and exit 2.

Inputs are windows of the real captures in ``shared/samples`` (a QEMU 10.0 trace log, its QMP
transcript and events, a libvirt 9.0 debug log) mutated line by line (bytes flipped, numbers
made huge, negative or fractional, JSON values replaced by arbitrary JSON, brackets nested
100,000 deep, lines cut, doubled, swapped or joined), plus transcripts built from structured
JSON strategies. Each example is imported through the library (no subprocess: fast enough
for CI) and must end in one of two ways:

- `import_traces` returns and `check` (the same library call as ``blkreplay check``) reads
  the trace it wrote without an InputError (any verdict: exit 0 or 1);
- or a `BlkreplayError` with exit status 2 whose message is one line naming the input.

Anything else (an exception that is no BlkreplayError, a multi-line message, a trace that
check refuses) is a failure. CI runs a fixed, small budget (``derandomize=True``); a longer
run by hand::

    BLKREPLAY_FUZZ_EXAMPLES=5000 .venv/bin/pytest -q tests/hostile/test_fuzz_importers.py -p no:cacheprovider
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.check import check
from analyzer.importers import import_traces
from tests.conftest import REPO_ROOT
from tracer.errors import BlkreplayError

SAMPLES = REPO_ROOT.parent / "shared" / "samples"
QEMU = SAMPLES / "qemu-10.0" / "a-stop-eio-dataplane"
LIBVIRT = SAMPLES / "libvirt-9.0" / "a-stop-eio"

EXAMPLES = int(os.environ.get("BLKREPLAY_FUZZ_EXAMPLES", "12"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


@cache
def sample_lines(path: Path) -> tuple[bytes, ...]:
    if not path.exists():
        pytest.skip(f"sample {path} not available")
    lines = path.read_bytes().split(b"\n")
    if path.name == "libvirtd.log":  # the monitor traffic, not 13,000 lines of start-up
        lines = [line for line in lines if b"QEMU_MONITOR" in line or b"vm=" in line or b"Line [" in line]
    return tuple(line for line in lines if line)


# -- mutations --------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
NUMBERS = st.sampled_from(
    [b"0", b"-0", b"-1", b"1e400", b"1e999999999", b"-1e20", b"1.5", str(2**70).encode(),
     str(2**63).encode(), str(-(2**63) - 1).encode(), str(2**31).encode(), b"NaN", b"Infinity", b"0x7fffffffffffffff",
     b"9" * 5000]
)
JUNK = st.sampled_from(
    [b"[" * 100_000, b"{" * 70, b"\\ud800", b'"\\udfff"', b"\xff\xfe", b"\xe9", b"\x00", b"\r", b"\x1b[31m",
     b"\xe2\x80\xae", b'"', b"}", b"]", b",", b":", b" ret -", b" resp: ", b"QEMU_MONITOR_RECV_EVENT: mon=0x1 event=",
     b"2026-13-45 25:61:61.999+9999: 1: info : ", b'{"t": 1e400, "dir": "recv", "line": "x"}']
)


@st.composite
def mutated_line(draw, line: bytes) -> bytes:
    op = draw(st.integers(0, 7))
    if not line:
        return draw(JUNK)
    at = draw(st.integers(0, len(line)))
    if op == 0:  # flip one byte
        i = min(at, len(line) - 1)
        return line[:i] + bytes([line[i] ^ (1 << draw(st.integers(0, 7)))]) + line[i + 1 :]
    if op == 1:  # junk in the middle
        return line[:at] + draw(JUNK) + line[at:]
    if op == 2:  # cut
        return line[:at]
    if op == 3:  # a number replaced by an extreme one
        digits = [i for i, c in enumerate(line) if 48 <= c <= 57]
        if not digits:
            return line + draw(NUMBERS)
        i = draw(st.sampled_from(digits))
        j = i
        while j < len(line) and 48 <= line[j] <= 57:
            j += 1
        return line[:i] + draw(NUMBERS) + line[j:]
    if op == 4:  # a JSON value (after a colon) replaced by arbitrary JSON
        colons = [i for i, c in enumerate(line) if c == 58]
        if not colons:
            return line
        i = draw(st.sampled_from(colons)) + 1
        value = json.dumps(draw(JSON_VALUES), ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
        end = i
        while end < len(line) and line[end] not in b",}]":
            end += 1
        return line[:i] + b" " + value + line[end:]
    if op == 5:  # a span deleted
        end = draw(st.integers(at, len(line)))
        return line[:at] + line[end:]
    if op == 6:  # doubled
        return line + line
    return line.replace(b"\\", b"") if draw(st.booleans()) else line.upper()


@st.composite
def mutated_input(draw, path: Path, window: int = 40) -> bytes:
    lines = list(sample_lines(path))
    start = draw(st.integers(0, max(len(lines) - 1, 0)))
    chosen = lines[start : start + draw(st.integers(1, window))]
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(chosen) - 1))
        what = draw(st.integers(0, 9))
        if what <= 6:
            chosen[i] = draw(mutated_line(chosen[i]))
        elif what == 7 and len(chosen) > 1:  # swap two lines
            j = draw(st.integers(0, len(chosen) - 1))
            chosen[i], chosen[j] = chosen[j], chosen[i]
        elif what == 8:  # joined with the next
            chosen[i : i + 2] = [b"".join(chosen[i : i + 2])]
        else:
            chosen.insert(i, draw(JUNK))
    text = b"\n".join(chosen)
    return text if draw(st.booleans()) else text + b"\n"


@st.composite
def structured_transcript(draw) -> bytes:
    """Transcript records whose time and QMP message are arbitrary JSON of the right shape."""
    records = []
    for _ in range(draw(st.integers(1, 6))):
        t = draw(st.one_of(st.floats(allow_nan=False), st.integers(), st.integers(0, 2_000_000_000), JSON_VALUES))
        message = draw(st.one_of(
            st.fixed_dictionaries({"event": st.one_of(st.sampled_from(["STOP", "RESUME", "BLOCK_IO_ERROR"]), JSON_VALUES),
                                   "timestamp": st.one_of(JSON_VALUES, st.fixed_dictionaries(
                                       {"seconds": st.integers(), "microseconds": st.integers()})),
                                   "data": st.one_of(JSON_VALUES, st.fixed_dictionaries(
                                       {"device": JSON_VALUES, "operation": JSON_VALUES, "action": JSON_VALUES,
                                        "nospace": JSON_VALUES, "reason": JSON_VALUES}))}),
            st.fixed_dictionaries({"return": JSON_VALUES, "id": JSON_VALUES}),
            st.fixed_dictionaries({"execute": st.one_of(st.sampled_from(["query-status", "query-block"]), JSON_VALUES),
                                   "id": JSON_VALUES}),
            st.fixed_dictionaries({"QMP": JSON_VALUES}),
            JSON_VALUES,
        ))
        line = json.dumps(message, ensure_ascii=draw(st.booleans()))
        records.append(json.dumps({"t": t, "dir": draw(st.sampled_from(["send", "recv"])), "line": line}))
    return ("\n".join(records) + "\n").encode("utf-8", "surrogatepass")


# -- the contract -----------------------------------------------------------------------------


def assert_imports_or_refuses(named: dict[str, bytes], skip_bad: bool = False) -> None:
    """Import the inputs `named` (file name -> content), skipping bad lines if `skip_bad`
    (so that mutated inputs also reach the writer and check); see the module docstring."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, content in named.items():
            p = Path(tmp) / name
            p.write_bytes(content)
            paths.append(str(p))
        out = Path(tmp) / "out.parquet"
        try:
            import_traces(paths, out, skip_bad=skip_bad)
        except BlkreplayError as exc:
            message = str(exc)
            assert exc.exit_code == 2, message
            assert "\n" not in message.strip() and message.strip(), repr(message)
            assert any(os.path.basename(p) in message for p in paths) or message.startswith("no "), message
            assert not out.exists()
            return
        try:
            check([str(out)])
        except BlkreplayError as exc:  # the import wrote a trace that check refuses
            pytest.fail(f"check refuses the imported trace: {exc}")


@FUZZ
@given(mutated_input(QEMU / "trace.log"), st.booleans())
def test_fuzz_qemu_trace_log(content: bytes, skip_bad: bool):
    assert_imports_or_refuses({"trace.log": content}, skip_bad)


@FUZZ
@given(mutated_input(QEMU / "qmp-transcript.jsonl"), st.booleans())
def test_fuzz_qmp_transcript(content: bytes, skip_bad: bool):
    assert_imports_or_refuses({"qmp-transcript.jsonl": content}, skip_bad)


@FUZZ
@given(mutated_input(QEMU / "events.jsonl", window=10), st.booleans())
def test_fuzz_events_jsonl(content: bytes, skip_bad: bool):
    assert_imports_or_refuses({"events.jsonl": content}, skip_bad)


@FUZZ
@given(mutated_input(LIBVIRT / "libvirtd.log"), st.booleans())
def test_fuzz_libvirt_log(content: bytes, skip_bad: bool):
    assert_imports_or_refuses({"libvirtd.log": content}, skip_bad)


@FUZZ
@given(structured_transcript(), st.booleans())
def test_fuzz_structured_transcript(content: bytes, skip_bad: bool):
    assert_imports_or_refuses({"t.jsonl": content}, skip_bad)


@FUZZ
@given(mutated_input(QEMU / "trace.log", window=20), mutated_input(QEMU / "qmp-transcript.jsonl", window=20), st.booleans())
def test_fuzz_merged_trace_log_and_transcript(trace: bytes, transcript: bytes, skip_bad: bool):
    assert_imports_or_refuses({"trace.log": trace, "qmp-transcript.jsonl": transcript}, skip_bad)


# -- what production hosts keep (renderings derived from the samples: hostlog_inputs) ---------


#: Where the renderings go: removed when the test session's interpreter exits.
_RENDERINGS = tempfile.TemporaryDirectory(prefix="blkreplay-fuzz-hostlogs-")


@cache
def derived_path(name: str) -> Path:
    """A host-side rendering of the samples (`tests.analyzer.importers.hostlog_inputs`): the
    libvirt 9.0 log's monitor traffic in the journal or a KubeVirt pod log, QEMU 7.2's trace
    as SystemTap prints it, its events as virsh qemu-monitor-event prints them."""
    from tests.analyzer.importers import hostlog_inputs as derive

    qemu72 = SAMPLES / "qemu-7.2" / "a-stop-eio-dataplane"
    if not (LIBVIRT / "libvirtd.log").exists() or not qemu72.exists():
        pytest.skip("samples not available")
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_RENDERINGS.name))
    libvirtd = tmp / "libvirtd.log"
    libvirtd.write_bytes(b"\n".join(sample_lines(LIBVIRT / "libvirtd.log")) + b"\n")
    render = {
        "journal.json": lambda: derive.journal_json(libvirtd)[0].encode(),
        "journal.export": lambda: derive.journal_export(libvirtd)[0],
        "journal.txt": lambda: derive.journal_short(libvirtd)[0].encode(),
        "virt-launcher.log": lambda: derive.kubevirt(libvirtd).encode(),
        "stap.txt": lambda: derive.stap(qemu72 / "trace.log")[0].encode(),
        "monitor-events.txt": lambda: derive.monitor_events(qemu72 / "events.jsonl", "vm-a").encode(),
    }
    path = tmp / name
    path.write_bytes(render[name]())
    return path


@st.composite
def mutated_rendering(draw, name: str) -> bytes:
    return draw(mutated_input(derived_path(name)))


@FUZZ
@pytest.mark.parametrize(
    "name", ["journal.json", "journal.export", "journal.txt", "virt-launcher.log", "stap.txt", "monitor-events.txt"]
)
@given(data=st.data(), skip_bad=st.booleans())
def test_fuzz_host_renderings(name: str, data: st.DataObject, skip_bad: bool):
    assert_imports_or_refuses({name: data.draw(mutated_rendering(name))}, skip_bad)
