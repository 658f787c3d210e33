"""Ground truth applies the definitions of docs/rules.md §3 to the model's facts.

Each test builds the facts of a small, hand-written history (in recording order, seq = position)
and checks which (error_id, rule) pairs truth reports.
"""

from __future__ import annotations

import json

from tracer.sim.truth import broken_in_vm, truth_document, write_truth


class History:
    """Facts with consecutive seqs, written like the model writes them."""

    def __init__(self) -> None:
        self.facts: list[tuple] = [("runstate", 0, None, "prelaunch", "running")]
        self.running = True

    def _add(self, kind: str, *rest) -> int:
        seq = len(self.facts)
        self.facts.append((kind, seq, *rest))
        return seq

    def error(self, E, device="drive0", errno=5, policy="stop", action="stop", op="write"):
        return self._add("error_action", E, device, op, errno, policy, action)

    def iostatus_set(self, E, device="drive0", before="ok", after="failed", errno=5):
        return self._add("iostatus_set", E, device, before, after, errno)

    def bie(self, E, device="drive0", action="stop"):
        return self._add("bie", E, device, action, self.running)

    def request(self, E):
        return self._add("request", E)

    def runstate(self, new, E=None, prev=None):
        prev = prev or ("running" if self.running else "io-error")
        self.running = new == "running"
        return self._add("runstate", E, prev, new)

    def stop(self, X=None):
        return self._add("stop", X)

    def resume(self, X=None):
        return self._add("resume", X)

    def vm_stop(self, X, thread_kind="main", state="io-error"):
        seq = self._add("vm_stop", X, thread_kind)
        if self.running:
            self.runstate(state, X)
            self.stop(X)
        return seq

    def vm_start(self, X=None):
        return self._add("vm_start", X)

    def command(self, name):
        return self._add("command", name)

    def cont_reply(self, cmd):
        return self._add("cont_reply", cmd)

    def reset(self, device="drive0"):
        return self._add("reset", device)

    def query_block(self, device, status):
        cmd = self.command("query-block")
        self._add("qb_reply", cmd, device, status)

    def query_status(self, state, all_ok):
        cmd = self.command("query-status")
        self._add("qs_reply", cmd, state, all_ok)

    def fixed_error(self, E, device="drive0", errno=5):
        self.error(E, device, errno)
        self.iostatus_set(E, device, after="nospace" if errno == 28 else "failed", errno=errno)
        self.bie(E, device)
        self.request(E)

    def cont(self, reset=("drive0",)):
        cmd = self.command("cont")
        for d in reset:
            self.reset(d)
        self.vm_start(None)
        if not self.running:
            self.resume()
            self.runstate("running")
        self.cont_reply(cmd)

    def broken(self):
        return broken_in_vm(self.facts)


def test_the_fixed_error_path_breaks_nothing():
    h = History()
    h.fixed_error(1)
    h.query_block("drive0", "failed")
    h.vm_stop(1)
    h.query_status("io-error", False)
    h.cont()
    h.query_block("drive0", "ok")
    assert h.broken() == set()


def test_event_before_iostatus_set():
    h = History()
    h.error(1)
    h.bie(1)
    h.iostatus_set(1)
    h.request(1)
    h.vm_stop(1)
    assert h.broken() == {(1, "iostatus-before-event")}


def test_stop_before_iostatus_set():
    h = History()
    h.error(1)
    h.bie(1)
    h.request(1)
    h.vm_stop(1)
    h.query_status("io-error", True)
    h.iostatus_set(1)
    assert h.broken() == {
        (1, "iostatus-before-event"),
        (1, "iostatus-before-stop"),
        (1, "query-matches-runstate"),
    }


def test_stop_before_the_event_it_follows():
    h = History()
    h.error(1)
    h.iostatus_set(1)
    h.request(1)
    h.vm_stop(1)  # STOP(1) before BLOCK_IO_ERROR(1)
    h.bie(1)
    assert h.broken() == {(1, "event-before-stop")}


def test_cont_dropping_a_pending_request_breaks_stop_follows_error():
    h = History()
    h.fixed_error(1)
    cmd = h.command("cont")
    h.reset()
    h.vm_start(1)  # consumed while running, no STOP/RESUME pair
    h.cont_reply(cmd)
    assert h.broken() == {(1, "stop-follows-error")}


def test_the_stop_resume_pair_keeps_the_guarantee():
    h = History()
    h.fixed_error(1)
    cmd = h.command("cont")
    h.reset()
    h.vm_start(1)
    h.stop(1)
    h.resume(1)
    h.cont_reply(cmd)
    assert h.broken() == set()


def test_one_slot_serves_several_errors_and_a_stopped_vm_needs_no_stop():
    h = History()
    h.fixed_error(1)
    h.fixed_error(2, device="drive1")  # overwrites the slot
    h.vm_stop(2)  # STOP(2) serves error 1 too
    h.fixed_error(3)  # emitted while stopped: not judged
    h.vm_stop(3)  # VM already stopped: vm_stop only
    assert h.broken() == set()


def test_a_request_pending_at_end_is_only_a_warning():
    h = History()
    h.fixed_error(1)
    assert h.broken() == set()


def test_resume_between_event_and_stop():
    h = History()
    h.fixed_error(1)
    h.vm_stop(1)
    cmd = h.command("cont")
    h.reset()
    h.vm_start(None)
    h.runstate("running")  # resume-late: retry fails before RESUME
    h.fixed_error(2)
    h.resume()
    h.cont_reply(cmd)
    h.vm_stop(2)
    assert h.broken() == {(2, "resume-before-retry-error")}


def test_synchronous_stop_on_an_iothread():
    h = History()
    h.error(1)
    h.bie(1)
    h.vm_stop(1, thread_kind="iothread")
    h.iostatus_set(1)
    assert h.broken() == {
        (1, "iostatus-before-event"),
        (1, "iostatus-before-stop"),
        (1, "vm-stop-thread"),
    }


def test_query_block_ok_after_the_event_unless_cont_came_between():
    h = History()
    h.error(1)
    h.bie(1)
    h.query_block("drive0", "ok")
    h.query_block("drive1", "ok")  # another device: nothing said about it
    h.iostatus_set(1)
    assert (1, "query-matches-events") in h.broken()
    h = History()
    h.error(1)
    h.bie(1)
    h.command("cont")
    h.query_block("drive0", "ok")
    h.iostatus_set(1)
    assert (1, "query-matches-events") not in h.broken()


def test_iostatus_left_set_after_cont():
    h = History()
    h.fixed_error(1)
    h.vm_stop(1)
    h.fixed_error(2)  # sticky: unchanged
    h.facts[-3] = ("iostatus_set", h.facts[-3][1], 2, "drive0", "failed", "failed", 5)
    h.cont(reset=())
    h.query_block("drive0", "failed")
    assert h.broken() == {(1, "iostatus-reset-on-cont")}


def test_action_and_iostatus_must_match_the_policy():
    h = History()
    h.error(1, errno=5, policy="enospc", action="stop")
    h.iostatus_set(1, after="nospace", errno=5)
    assert h.broken() >= {(1, "action-matches-policy")}
    h = History()
    h.error(1, errno=28, policy="enospc", action="stop")
    h.iostatus_set(1, after="nospace", errno=28)
    h.bie(1)
    assert h.broken() == set()


def test_runstate_transitions_need_their_events():
    h = History()
    h.runstate("paused", prev="running")  # no STOP before the next runstate row
    h.runstate("running", prev="paused")  # no RESUME
    assert h.broken() == {(None, "runstate-transition")}
    h = History()
    h.runstate("io-error", E=None, prev="paused")  # not in QEMU's table, and not the state
    assert (None, "runstate-transition") in h.broken()


def test_truth_document_is_sorted_deduplicated_and_drops_inapplicable_rules(tmp_path):
    rows = [
        ("vm1", 3, "stop-follows-error"),
        ("vm0", 7, "iostatus-before-event"),
        ("vm0", 2, "event-before-stop"),
        ("vm0", 2, "event-before-stop"),
    ]
    doc = truth_document("request-first", 5, rows, has_iostatus_set=True)
    assert doc["schema"] == "blkreplay.truth/1"
    assert [(b["vm"], b["error_id"], b["rule"]) for b in doc["broken"]] == [
        ("vm0", 2, "event-before-stop"),
        ("vm0", 7, "iostatus-before-event"),
        ("vm1", 3, "stop-follows-error"),
    ]
    doc = truth_document("request-first", 5, rows, has_iostatus_set=False)
    assert "iostatus-before-event" not in {b["rule"] for b in doc["broken"]}
    write_truth(tmp_path / "truth.json", doc)
    text = (tmp_path / "truth.json").read_text()
    assert json.loads(text) == doc
    assert text.index('"broken"') < text.index('"schema"') < text.index('"seed"')  # sorted keys
