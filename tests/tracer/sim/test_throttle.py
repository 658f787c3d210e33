"""QEMU >= 9.2 in the model: BLOCK_IO_ERROR throttled per qom-path (held, replaced, delivered
late by the main loop with its original timestamp), qom-path in the data, 9.2.0's swapped
fields and shared bucket, several iothreads per disk, and the version setting itself."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.tracer.sim.test_oracle import read_rows
from tracer.errors import FieldError, ScenarioError
from tracer.schema import read_metadata
from tracer.sim import SimConfig, record
from tracer.sim.config import scenario_from_dict
from tracer.sim.throttle import EventThrottle, Held
from tracer.tracedir import segment_paths

#: Fast cont (~0.05 ms after a STOP) against a 0.2 ms window: holds and replacements in most runs.
RACY = dict(duration_s=0.01, error_rate=0.03, devices=2, iothreads=2, fast_cont_prob=0.5,
            cont_delay_ms=0.05, query_on_error_prob=0.5, poll_interval_ms=0.2, burst_prob=0.8,
            burst_len=3, stop_prob=0.05)
WINDOW_MS = 0.2


def _held(e: int, t: int) -> Held:
    return Held(e, "drive0", "write", 5, "stop", "{}", t, e)


def test_the_throttle_sends_the_first_holds_replaces_and_sends_the_survivor_late():
    th = EventThrottle(rate_ns=1000)
    assert th.offer("a", 0, _held(1, 0)) == (True, None)  # first of a window: at once
    assert th.offer("a", 100, _held(2, 100)) == (False, None)  # held
    send, replaced = th.offer("a", 200, _held(3, 200))  # a newer one replaces the held one
    assert not send and replaced is not None and replaced.error_id == 2
    assert th.offer("b", 300, _held(4, 300)) == (True, None)  # another qom-path: its own window
    assert th.next_timer() == 1000 and th.fire(999) is None
    key, survivor = th.fire(1000)
    assert key == "a" and survivor is not None and (survivor.error_id, survivor.raised_ns) == (3, 200)
    assert th.next_timer() == 1300  # b's timer; a's window restarted at the late send (2000)
    assert th.fire(1300) == ("b", None)  # an empty window closes
    assert th.fire(2000) == ("a", None) and th.windows == {}
    assert th.offer("a", 2500, _held(5, 2500)) == (True, None)  # a new window, sent at once


def _throttled(tmp_path: Path, seeds=range(6), **kw) -> list[tuple[SimConfig, dict[str, list[dict]]]]:
    out = []
    for seed in seeds:
        cfg = SimConfig(seed=seed, qemu="10.0", event_throttle_ms=WINDOW_MS, **{**RACY, **kw})
        record(cfg, tmp_path / f"s{seed}")
        out.append((cfg, read_rows(tmp_path / f"s{seed}")))
    return out


def _bie(r: dict) -> bool:
    return r["kind"] == "qmp_event" and r["name"] == "BLOCK_IO_ERROR"


def _queue(r: dict) -> bool:
    return r["kind"] == "trace_event" and r["name"] == "monitor_protocol_event_queue"


def test_held_events_arrive_late_on_main_with_their_raise_timestamp_or_never(tmp_path):
    late = never = stop_first = after_resume = 0
    for cfg, by_vm in _throttled(tmp_path):
        rate = cfg.throttle_ns
        for rows in by_vm.values():
            assert all(r["event_ts_ns"] is not None for r in rows if r["kind"] == "qmp_event")
            raised = {r["error_id"]: r for r in rows if _queue(r)}
            sent = {r["error_id"]: r for r in rows if _bie(r)}
            assert set(sent) <= set(raised)  # nothing reaches the wire without being raised
            assert set(raised) <= {r["error_id"] for r in rows if r["kind"] == "error_action"}
            for e, ev in sent.items():
                q = raised[e]
                assert ev["event_ts_ns"] == q["ts_ns"]  # the original QMP timestamp
                assert (ev["device"], ev["action"], ev["op"]) == (q["device"], q["action"], q["op"])
                if ev["ts_ns"] == q["ts_ns"]:  # sent at once: the next row, on the raising thread
                    assert ev["thread"] == q["thread"] and ev["seq"] == q["seq"] + 1
                else:  # held: the main loop sends it when the window's timer fires
                    late += 1
                    assert ev["thread"] == "main" and 0 < ev["ts_ns"] - q["ts_ns"] <= rate
            never += len(set(raised) - set(sent))
            # on the wire, per qom-path, two events are at least one window apart
            last: dict[str, int] = {}
            for r in rows:
                if _bie(r):
                    key = json.loads(r["payload"])["qom-path"]
                    assert r["ts_ns"] - last.get(key, -rate) >= rate
                    last[key] = r["ts_ns"]
            for r in rows:
                if r["kind"] == "qmp_event" and r["name"] == "STOP" and r["error_id"] in sent:
                    stop_first += sent[r["error_id"]]["seq"] > r["seq"]
            resumes = [r["seq"] for r in rows if r["kind"] == "qmp_event" and r["name"] == "RESUME"]
            after_resume += sum(1 for e, ev in sent.items()
                                if any(raised[e]["seq"] < s < ev["seq"] for s in resumes))
    assert late and never and stop_first and after_resume, (late, never, stop_first, after_resume)


def test_only_delivery_is_throttled(tmp_path):
    """iostatus, the stop request and the stop happen at raising time, held event or not."""
    for _, by_vm in _throttled(tmp_path, seeds=range(3)):
        for rows in by_vm.values():
            by_eid: dict[int, list[dict]] = defaultdict(list)
            for r in rows:
                if r["error_id"] is not None:
                    by_eid[r["error_id"]].append(r)
            for e, rs in by_eid.items():
                q = next((r for r in rs if _queue(r)), None)
                if q is None or q["action"] != "stop":
                    continue
                thread = [r["kind"] for r in rs if r["thread"] == q["thread"] and r["kind"] != "qmp_event"]
                assert thread[:5] == ["error_action", "iostatus_set", "vmstop_prepare", "trace_event",
                                      "vmstop_request"][: len(thread)], (e, thread)


def test_qom_path_and_device_on_9_2_and_10_0_and_the_version_in_the_metadata(tmp_path):
    for qemu, blockdev, release in (("10.0", False, "10.0"), ("9.2", True, "9.2")):
        out = tmp_path / qemu
        record(SimConfig(seed=2, qemu=qemu, blockdev=blockdev, **RACY), out)
        meta = read_metadata(pq.read_table(segment_paths(out)[0]).schema)
        assert meta["qemu_version"] == release
        events = [r for rows in read_rows(out).values() for r in rows if _bie(r)]
        assert events
        for r in events:
            data = json.loads(r["payload"])
            n = r["device"][len("drive"):]
            assert data["qom-path"] == f"/machine/peripheral/virtio-disk{n}/virtio-backend"
            assert data["device"] == ("" if blockdev else r["device"])
            assert data["node-name"] == f"node-{r['device']}"


def test_the_9_2_0_swap_and_its_shared_bucket_under_blockdev(tmp_path):
    cross = 0
    for seed in range(6):
        out = tmp_path / f"s{seed}"
        summary = record(SimConfig(seed=seed, qemu="9.2", variant="qom-path-swap", blockdev=True,
                                   event_throttle_ms=WINDOW_MS, **RACY), out)
        rows = read_rows(out)["vm0"]
        sent = [r for r in rows if _bie(r)]
        for r in sent:
            data = json.loads(r["payload"])
            assert data["device"].startswith("/machine/peripheral/virtio-disk") and data["qom-path"] == ""
        # one bucket for both disks: two events on the wire are a window apart whatever the disk
        times = [r["ts_ns"] for r in sent]
        assert all(b - a >= round(WINDOW_MS * 1e6) for a, b in itertools.pairwise(times))
        # and an error of one disk can replace a held event of the other
        held: tuple[str, int] | None = None
        sent_ids = {r["error_id"] for r in sent}
        for r in rows:
            if _queue(r):
                if held is not None and r["device"] != held[0] and held[1] not in sent_ids:
                    cross += 1
                held = (r["device"], r["error_id"])
        truth = {(b["error_id"], b["rule"]) for b in summary.truth["broken"]}
        assert truth == {(r["error_id"], "qom-path-swapped") for r in sent}
    assert cross


def test_several_iothreads_per_disk_fail_after_one_cont_into_one_slot(tmp_path):
    found = 0
    for _, by_vm in _throttled(tmp_path, seeds=range(6), vq_iothreads=2, burst_len=6):
        for rows in by_vm.values():
            threads_of: dict[str, set[str]] = defaultdict(set)
            for r in rows:
                if r["kind"] == "error_action":
                    threads_of[r["device"]].add(r["thread"])
            assert any(len(t) == 2 for t in threads_of.values())
            # after a cont: requests of one disk, retried on two iothreads, both request a stop
            # before the main loop consumes the slot once
            pending: list[dict] = []
            for r in rows:
                if r["kind"] == "vmstop_request":
                    pending.append(r)
                elif r["kind"] in ("vm_stop", "vm_start") and r["error_id"] is not None:
                    errs = {x["error_id"]: x for x in rows if x["kind"] == "error_action"}
                    devs = defaultdict(set)
                    for p in pending:
                        devs[errs[p["error_id"]]["device"]].add(p["thread"])
                    found += any(len(t) > 1 for t in devs.values())
                    pending = []
    assert found


def test_7_2_is_unthrottled_and_records_no_new_columns(tmp_path):
    record(SimConfig(seed=2, **RACY), tmp_path / "t")
    rows = read_rows(tmp_path / "t")["vm0"]
    assert not any(_queue(r) for r in rows)
    assert all(r["event_ts_ns"] is None for r in rows)
    meta = read_metadata(pq.read_table(segment_paths(tmp_path / "t")[0]).schema)
    assert "qemu_version" not in meta
    assert not {"qemu", "event_throttle_ms", "vq_iothreads", "blockdev"} & set(json.loads(meta["config"]))


def test_throttled_runs_are_deterministic(tmp_path):
    cfg = SimConfig(seed=4, qemu="10.0", event_throttle_ms=WINDOW_MS, vq_iothreads=2, **RACY)
    record(cfg, tmp_path / "a")
    record(cfg, tmp_path / "b")
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_a_held_event_still_held_at_quit_is_never_sent_and_breaks_nothing(tmp_path):
    """QEMU's real 1 s window over a 10 ms run: every later event of a qom-path is held, the
    survivor is lost at quit; ground truth counts none of it."""
    summary = record(SimConfig(seed=1, qemu="10.0", **RACY), tmp_path / "t")
    rows = read_rows(tmp_path / "t")["vm0"]
    sent = [r for r in rows if _bie(r)]
    raised = [r for r in rows if _queue(r)]
    assert len({json.loads(r["payload"])["qom-path"] for r in sent}) == len(sent) < len(raised)
    assert summary.truth["broken"] == []


@pytest.mark.parametrize(("settings", "field", "needle"), [
    (dict(qemu="8.0"), "qemu", "expected one of 7.2, 9.2, 10.0"),
    (dict(event_throttle_ms=5.0), "event_throttle_ms", "does not throttle"),
    (dict(vq_iothreads=2, iothreads=2), "vq_iothreads", "9.0 or later"),
    (dict(qemu="10.0", vq_iothreads=3, iothreads=2), "vq_iothreads", "at most"),
    (dict(qemu="10.0", variant="qom-path-swap"), "variant", "set qemu = 9.2"),
    (dict(blockdev="yes"), "blockdev", "true or false"),
])
def test_bad_version_settings_name_the_field(settings, field, needle):
    with pytest.raises(FieldError) as exc:
        SimConfig(**settings)
    assert exc.value.field == field and needle in exc.value.reason


def test_scenarios_and_the_cli_set_the_version(tmp_path):
    assert scenario_from_dict({"qemu": 10.0}).qemu == "10.0"  # TOML float
    assert scenario_from_dict({"qemu": "9.2"}).qemu == "9.2"
    with pytest.raises(ScenarioError, match="key 'qemu'"):
        scenario_from_dict({"qemu": "11"})
    from analyzer.cli.app import app

    runner = CliRunner()
    result = runner.invoke(app, ["record", "-q", "-o", str(tmp_path / "t"), "--qemu", "10.0", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert read_metadata(pq.read_table(segment_paths(tmp_path / "t")[0]).schema)["qemu_version"] == "10.0"
    exe = Path(sys.executable).parent / "blkreplay"
    if exe.exists():  # the console script maps the error to exit 2 and one line
        bad = subprocess.run([str(exe), "record", "-q", "-o", str(tmp_path / "u"), "--qemu", "8.2"],
                             capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
            "blkreplay: error: option --qemu: expected one of 7.2, 9.2, 10.0, got '8.2'"]
