"""What an imported trace tells of a VM's state: answers OBSERVED, and state INFERRED from events.

Our own recordings carry the state itself (`runstate`, `iostatus_set` / `iostatus_reset` rows):
`analyzer.state` replays it exactly. An import of real QEMU output has only what crossed the
wire: events, commands and the answers to `query-status` / `query-block`. Showing the last
answer as "the state" is wrong at the moments that matter: at a BLOCK_IO_ERROR and its STOP the
last `query-block` answer still says `ok`, after `cont` it still says `failed`, and a STOP does
not say *why* the VM stopped. So the replay view shows two things, labelled apart:

* **observed**: the last `query-status` / `query-block` answer at or before a step (its value,
  and the seq of the reply that carried it) — a fact, but possibly stale;
* **inferred**: what QEMU's code implies the state was, from the events (QEMU's
  ``blk_error_action`` sets the io-status before it raises BLOCK_IO_ERROR with action stop;
  ``qmp_cont`` resets every io-status before it resumes):

  - io-status of a device: ``failed`` (``nospace`` for ENOSPC) from a BLOCK_IO_ERROR(stop) of
    it on, ``ok`` again from the next `cont` command; a BLOCK_IO_ERROR that QEMU >= 9.2 held
    back (rate limit) and delivered after the STOP it caused (its QMP timestamp is not later
    than the STOP's) sets it from that STOP on, where it was raised;
  - run state: ``running`` after RESUME; after a STOP ``io-error`` when a BLOCK_IO_ERROR(stop)
    since the previous STOP / RESUME (or a held one raised before it) explains it, ``paused``
    when a `stop` command since the previous RESUME does, else ``stopped`` (reason unknown).
    Unknown before the VM's first STOP / RESUME.

Everything here is vectorized over a `Steps` batch (whole VMs), like `analyzer.state`.
"""

from __future__ import annotations

import numpy as np

from analyzer.state import STOPPED
from analyzer.steps import ACT, IOS, NULL, RS, Steps, last_before

#: errno of ENOSPC: QEMU's io-status is then ``nospace`` rather than ``failed``.
ENOSPC = 28


def _last(s: Steps, mask: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Per position in `at`: the last `mask` row at or before it in the same VM (-1: none)."""
    j = last_before(mask)[at + 1]
    return np.where(j >= s.vstart[at], j, NULL)


def _stop_io_error(s: Steps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per STOP row: (the STOP rows, whether a BLOCK_IO_ERROR(stop) explains it, the row of the
    held BLOCK_IO_ERROR delivered after it that does, -1 if none)."""
    stops = np.flatnonzero(s.event("STOP"))
    bioe = s.event("BLOCK_IO_ERROR") & (s.action == ACT["stop"])
    bound = s.event("STOP") | s.event("RESUME")
    prev_bound = s.prev(bound, stops)
    prev_err = s.prev(bioe, stops)
    before = (prev_err >= 0) & (prev_err > prev_bound)
    nxt = s.next(bioe, stops)
    next_bound = s.next(bound, stops)
    safe = np.maximum(nxt, 0)
    stop_time = np.where(s.evt[stops] >= 0, s.evt[stops], s.ts[stops])
    held = ((nxt >= 0) & ((next_bound < 0) | (nxt < next_bound)) & (s.evt[safe] >= 0)
            & (s.evt[safe] <= stop_time))
    return stops, before | held, np.where(held & ~before, nxt, NULL)


def inferred_runstate(s: Steps, at: np.ndarray) -> np.ndarray:
    """Per position in `at`: the run-state code after the step as the events imply it (-1:
    unknown; :data:`analyzer.state.STOPPED`: stopped, reason unknown)."""
    at = np.asarray(at, dtype=np.int64)
    stops, io_error, _ = _stop_io_error(s)
    code = np.full(s.n, NULL, dtype=np.int64)
    code[s.event("RESUME")] = RS["running"]
    asked = s.is_named("qmp_command", "stop")
    last_ask = s.prev(asked, stops)
    last_resume = s.prev(s.event("RESUME"), stops)
    paused = (last_ask >= 0) & (last_ask > last_resume)
    code[stops] = np.where(io_error, RS["io-error"], np.where(paused, RS["paused"], STOPPED))
    told = s.event("RESUME") | s.event("STOP")
    last = _last(s, told, at)
    return np.where(last >= 0, code[np.maximum(last, 0)], NULL)


def inferred_iostatus(s: Steps, device: int, at: np.ndarray) -> np.ndarray:
    """Per position in `at`: the io-status code of `device` after the step as the events imply
    it (ok before any BLOCK_IO_ERROR(stop) of it)."""
    at = np.asarray(at, dtype=np.int64)
    bioe = s.event("BLOCK_IO_ERROR") & (s.action == ACT["stop"])
    value = np.where(s.errno == ENOSPC, IOS["nospace"], IOS["failed"])
    sets = bioe & (s.device == device)
    stops, _, held = _stop_io_error(s)
    mine = (held >= 0) & (s.device[np.maximum(held, 0)] == device)
    sets = sets.copy()
    sets[stops[mine]] = True
    value = value.copy()
    value[stops[mine]] = value[held[mine]]
    last_set = _last(s, sets, at)
    last_reset = _last(s, s.is_named("qmp_command", "cont"), at)
    failed = (last_set >= 0) & (last_set > last_reset)
    return np.where(failed, value[np.maximum(last_set, 0)], IOS["ok"])


def observed_runstate(s: Steps, at: np.ndarray) -> np.ndarray:
    """Per position in `at`: the row of the last `query-status` answer naming a run state at or
    before it, in the same VM (-1: none yet)."""
    return _last(s, s.reply("query-status") & (s.runstate >= 0), np.asarray(at, dtype=np.int64))


def observed_iostatus(s: Steps, device: int, at: np.ndarray) -> np.ndarray:
    """Per position in `at`: the row of the last `query-block` answer giving `device`'s
    io-status at or before it, in the same VM (-1: none yet)."""
    mask = s.reply("query-block") & (s.iostatus >= 0) & (s.device == device)
    return _last(s, mask, np.asarray(at, dtype=np.int64))


def has_state_rows(s: Steps, vm: int) -> tuple[bool, bool]:
    """Whether VM `vm` of the batch records its run state and its io-status as rows (a
    recording) rather than leaving them to be inferred (an import)."""
    mine = s.vm == vm
    runstate = bool((mine & s.is_kind("runstate")).any())
    iostatus = bool((mine & (s.is_kind("iostatus_set") | s.is_kind("iostatus_reset"))).any())
    return runstate, iostatus
