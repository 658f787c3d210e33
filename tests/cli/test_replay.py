"""`blkreplay replay` as a user meets it: honest columns on a real import, ISO time, windows,
one-line argument errors, and output that streams (and stops quietly at a closed pipe)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.cli.app import main
from analyzer.importers.pipeline import import_traces
from tests.analyzer.builders import TraceBuilder
from tracer.errors import EXIT_BROKEN_PIPE

REAL10 = Path(__file__).resolve().parents[1] / "data" / "real" / "qemu-10.0"


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("replay-cli") / "fast-cont.parquet"
    import_traces([str(REAL10 / "fast-cont" / "qmp-transcript.jsonl")], str(out))
    return out


def _rows(out: str) -> tuple[list[str], list[list[str]]]:
    lines = out.splitlines()
    header = next(ln for ln in lines if ln.startswith("seq"))
    body = lines[lines.index(header) + 1:]
    return header.split(), [ln.split() for ln in body]


def test_an_import_labels_inferred_state_and_shows_observed_answers(capsys, real: Path) -> None:
    code, out, err = run(capsys, "replay", str(real), "--event", "BLOCK_IO_ERROR", "--context", "1")
    assert code == 0, err
    assert out.splitlines()[0].startswith("# ~ inferred from events; observed: last query-status")
    header, rows = _rows(out)
    assert header[:3] == ["seq", "time", "+time"]
    assert {"runstate~", "drive0~", "observed", "src"} <= set(header)
    event = next(r for r in rows if "BLOCK_IO_ERROR" in r)
    # inferred: failed and io-error-bound; observed: the last answers, before the error, ok.
    assert "failed" in event and event[header.index("src") + len(event) - len(header)].startswith(
        "qmp-transcript.jsonl:")
    observed = [c for c in event if "@" in c]
    assert observed[-1].startswith("ok@")
    assert event[1].endswith("Z") and event[1][:2] == "20"  # ISO-8601 UTC


def test_jsonl_carries_observed_answers_with_seq_src_and_time(capsys, real: Path) -> None:
    code, out, _ = run(capsys, "replay", str(real), "--event", "STOP", "--nth", "1", "--context", "0",
                       "-f", "jsonl")
    [row] = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and row["name"] == "STOP" and row["runstate"] == "io-error"
    assert row["runstate_inferred"] is True and row["time"].endswith("Z")
    answer = row["observed"]["runstate"]
    assert answer["value"] == "running" and answer["seq"] < row["seq"]
    assert answer["src"].split(":")[0].endswith("qmp-transcript.jsonl") and answer["time"].endswith("Z")
    assert set(row["observed"]["iostatus"]) == set(row["iostatus"]) == {"drive0"}


def test_episode_window_counts_time_from_the_episode_start(capsys, real: Path) -> None:
    code, out, _ = run(capsys, "replay", str(real), "--episode", "1", "--context", "0")
    header, rows = _rows(out)
    rel = [r[header.index("+time")] for r in rows]
    assert code == 0 and "+0.000000" in rel


def test_since_until_keep_the_steps_of_the_range(capsys, real: Path) -> None:
    code, out, _ = run(capsys, "replay", str(real), "-f", "jsonl")
    rows = [json.loads(line) for line in out.splitlines()]
    lo, hi = rows[10]["time"], rows[20]["ts_ns"] / 1e9
    code, out, _ = run(capsys, "replay", str(real), "-f", "jsonl", "--since", lo, "--until", f"{hi:.6f}")
    kept = [json.loads(line)["seq"] for line in out.splitlines()]
    assert code == 0 and kept == [r["seq"] for r in rows[10:21]]


@pytest.mark.parametrize("args,message", [
    (["--around", "999999"], "blkreplay: error: --around 999999: vm0 has no step with seq 999999 "
                             "(its steps run from seq 0 to "),
    (["--device", "nosuch"], "blkreplay: error: --device nosuch: no such device (the trace's devices: drive0)"),
    (["--vm", "vm9"], "blkreplay: error: --vm vm9: no such VM in the trace (its VMs: vm0)"),
    (["--episode", "99"], "blkreplay: error: --episode 99: vm0 has "),
    (["--event", "NOPE"], "blkreplay: error: --event NOPE: vm0 has no such event (its events: "),
    (["--event", "STOP", "--nth", "99"], "blkreplay: error: --nth 99: vm0 has "),
    (["--nth", "2"], "blkreplay replay: --nth needs --event"),
    (["--nth", "0", "--event", "STOP"], "blkreplay replay: invalid value for '--nth'"),
    (["--around", "3", "--episode", "1"], "blkreplay replay: --around and --episode cannot be combined"),
    (["--around", "3", "--from-seq", "1"], "blkreplay replay: --around cannot be combined with --from-seq"),
    (["--since", "yesterday"], "blkreplay replay: --since: not a time: 'yesterday'"),
    (["--since", "2030-01-01", "--until", "2029-01-01"], "blkreplay replay: --since 2030-01-01 is after --until"),
    (["--from-seq", "9", "--to-seq", "3"], "blkreplay replay: --from-seq 9 is after --to-seq 3"),
])
def test_a_bad_argument_is_one_line_and_exit_2(capsys, real: Path, args: list[str], message: str) -> None:
    code, out, err = run(capsys, "replay", str(real), *args)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith(message), err


def test_a_window_needs_a_vm_when_there_are_several(capsys, tmp_path: Path) -> None:
    rows = []
    for name in ("web1", "web2"):
        b = TraceBuilder(vm=name)
        b.start()
        rows += b.rows
    from tracer import tracedir
    from tracer.schema import from_pylist

    path = tmp_path / "two.parquet"
    tracedir.write_table(from_pylist(rows, "sim"), path)
    code, _, err = run(capsys, "replay", str(path), "--around", "0")
    assert code == 2 and "--around needs --vm: the trace has 2 VMs (web1, web2)" in err


def test_output_streams_and_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """The first lines arrive while the rest is still to be computed; closing the pipe then
    ends the command with 141 and nothing on stderr (no traceback, no "internal error")."""
    b = TraceBuilder()
    b.start()
    b.io(n=6000)  # several chunks
    path = b.write(tmp_path / "big.parquet")
    proc = subprocess.Popen([sys.executable, "-c", "from analyzer.cli import main; main()", "replay", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    header = proc.stdout.readline().decode()
    first = proc.stdout.readline().decode()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == EXIT_BROKEN_PIPE
    assert header.split()[0] == "seq" and first.split()[0] == "0"
    assert err == ""


def test_a_narrow_terminal_keeps_inferred_and_observed_side_by_side(real: Path) -> None:
    import io

    from rich.console import Console

    from analyzer.render.replay import print_replay
    from analyzer.replay import replay_chunks

    buf = io.StringIO()
    term = Console(file=buf, width=80, force_terminal=True, color_system=None, highlight=False)
    print_replay(replay_chunks(real, from_seq=0, to_seq=80), term)
    lines = buf.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    header = lines[1].split()
    assert {"runstate~", "drive0~", "observed"} <= set(header)
    assert any(line.split()[1].startswith(">query-") for line in lines[2:])  # >command, <reply


def test_trace_values_are_shown_never_obeyed(capsys, tmp_path: Path) -> None:
    b = TraceBuilder(iothreads={"[red]x\x1b[31m": "iothread0"})
    b.start()
    b.io("[red]x\x1b[31m", n=1)
    path = b.write(tmp_path / "hostile.parquet")
    code, out, _ = run(capsys, "replay", str(path))
    assert code == 0 and "\x1b" not in out
    assert "[red]x\\x1b[31m" in out


def test_a_range_with_no_step_says_so_on_stderr(capsys, real: Path) -> None:
    code, out, err = run(capsys, "replay", str(real), "--since", "2099-01-01")
    assert code == 0 and out == "" and err.strip() == "blkreplay replay: no step in the selected range"
