"""Naming QEMU's host threads from what a capture tells about them.

A trace log knows only Linux thread ids. QEMU itself says which ids are what: the main loop
runs on the process's first thread (its TID is the pid, and it is the thread that calls
``runstate_set``), ``query-iothreads`` lists each IOThread's ``thread-id``, ``query-cpus-fast``
each vCPU's, and the monitor I/O thread is the one that traces ``handle_qmp_command``. Rules
judge threads by kind (``vm-stop-thread``), so a thread that cannot be named is ``unknown``,
never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class ThreadHints:
    """What one input (or several, merged) says about QEMU's thread ids."""

    #: TID of the first runstate_set: the main loop.
    main_tid: int | None = None
    #: First TID seen in a trace log (the main loop if it never traced runstate_set).
    first_tid: int | None = None
    iothreads: dict[int, str] = field(default_factory=dict)
    vcpus: dict[int, str] = field(default_factory=dict)
    #: TIDs that traced handle_qmp_command (the monitor I/O thread, or the main loop).
    monitor_tids: set[int] = field(default_factory=set)

    def add_iothreads(self, ret: Any) -> None:
        """Learn from a ``query-iothreads`` return value."""
        if not isinstance(ret, list):
            return
        for info in ret:
            if isinstance(info, dict):
                tid, name = info.get("thread-id"), info.get("id")
                if isinstance(tid, int) and isinstance(name, str) and name:
                    self.iothreads[tid] = name

    def add_vcpus(self, ret: Any) -> None:
        """Learn from a ``query-cpus-fast`` (or older ``query-cpus``) return value."""
        if not isinstance(ret, list):
            return
        for info in ret:
            if not isinstance(info, dict):
                continue
            tid = info.get("thread-id", info.get("thread_id"))
            index = info.get("cpu-index", info.get("CPU"))
            if isinstance(tid, int) and isinstance(index, int):
                self.vcpus[tid] = f"vcpu{index}"

    def update(self, other: ThreadHints) -> None:
        """Add what `other` knows (another input of the same VM)."""
        if self.main_tid is None:
            self.main_tid = other.main_tid
        if self.first_tid is None:
            self.first_tid = other.first_tid
        self.iothreads.update(other.iothreads)
        self.vcpus.update(other.vcpus)
        self.monitor_tids |= other.monitor_tids

    def name(self, tid: int) -> tuple[str, str]:
        """(thread name, thread kind) of `tid`."""
        if tid in self.iothreads:
            return self.iothreads[tid], "iothread"
        if tid in self.vcpus:
            return self.vcpus[tid], "vcpu"
        main = self.main_tid if self.main_tid is not None else self.first_tid
        if tid == main:
            return "main", "main"
        if tid in self.monitor_tids:
            return "monitor", "worker"
        return f"tid{tid}", "unknown"


def attribute(tids: pa.Array, hints: ThreadHints) -> tuple[pa.DictionaryArray, pa.DictionaryArray]:
    """Thread names and kinds for a column of TIDs (nulls stay null), one lookup per distinct
    id, as dictionary columns (codes into the distinct ids' names and kinds)."""
    distinct = pc.unique(tids.drop_null())
    names, kinds = zip(*(hints.name(t) for t in distinct.to_pylist()), strict=True) if len(distinct) else ((), ())
    idx = pc.index_in(tids, value_set=distinct)
    return (
        pa.DictionaryArray.from_arrays(idx, pa.array(list(names), pa.string())),
        pa.DictionaryArray.from_arrays(idx, pa.array(list(kinds), pa.string())),
    )
