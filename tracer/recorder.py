"""The crash-safe, thread-safe recorder every instrumented component writes steps through.

Design, and why:

- ``emit`` must be cheap (benchmarks/bench_recorder.py: over a million steps a second from one
  thread, Parquet included). So a step is appended as a short flat run of Python values to one
  list under one lock: no per-row objects, no Arrow calls. The columns that are constant for a
  thread (vm, host, thread, thread_kind) are stored once per *emitter* and referenced by a small
  integer; the rarely set columns (errno, policy, action, ...) go to a sparse side list only when
  given. The background writer turns a full buffer into Arrow columns in bulk.
- ``seq`` is assigned under the same lock that appends the row, per vm, so ``seq`` order is the
  order in which steps really happened across threads, and every vm's ``seq`` is gap-free.
- Crash safety: the writer thread flushes a segment when ``flush_rows`` rows are buffered or
  ``flush_interval`` seconds have passed, as a complete Parquet file written atomically (temp
  name, then rename). A SIGKILL loses at most the unflushed buffer; everything flushed stays
  readable. ``close`` writes ``manifest.json`` last: its absence marks the trace truncated.
- Interruption: a ``close`` while an exception propagates (Ctrl-C's KeyboardInterrupt reaching
  a ``finally``, an error in the producer) or ``close(interrupted=True)`` still flushes
  everything buffered, but writes the manifest as ``"complete": false, "interrupted": true``:
  a run cut short is never passed off as a finished one. Steps emitted after an interrupted
  close (by producer threads the interrupt did not reach) are dropped silently. SIGTERM kills without cleanup by
  default (no manifest: the trace reads as truncated); inside :func:`sigterm_as_interrupt` it
  is handled like Ctrl-C.
- Determinism: with ``flush_interval=None`` segments are cut by row count only, so a
  deterministic producer (the simulator, with its virtual clock) yields byte-identical files.
"""

from __future__ import annotations

import queue
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tracer import tracedir
from tracer.errors import RecorderError
from tracer.schema import (
    ACTIONS,
    COLUMNS,
    DICT_STRING,
    IOSTATUSES,
    KINDS,
    OPS,
    POLICIES,
    RUNSTATES,
    THREAD_KINDS,
    schema_with_metadata,
)

#: Columns given per step on the fast path, in buffer order after (seq, ts_ns, emitter).
_CORE = ("kind", "device", "req_id", "op")
_STRIDE = 3 + len(_CORE)
#: Columns that are set on few steps: stored sparsely.
DETAIL_COLUMNS = (
    "errno",
    "policy",
    "action",
    "iostatus",
    "runstate",
    "prev_runstate",
    "name",
    "error_id",
    "payload",
    "tid",
    "cmd_seq",
    "event_ts_ns",
)
_DETAIL_SET = frozenset(DETAIL_COLUMNS)
_VOCAB = {
    "policy": frozenset(POLICIES),
    "action": frozenset(ACTIONS),
    "iostatus": frozenset(IOSTATUSES),
    "runstate": frozenset(RUNSTATES),
    "prev_runstate": frozenset(RUNSTATES),
}
#: Codes of the dictionary columns given on the fast path (-1: null).
_KIND_CODE = {k: i for i, k in enumerate(KINDS)}
_OP_CODE: dict[str | None, int] = {None: -1, **{o: i for i, o in enumerate(OPS)}}
#: Stand-in for a null req_id inside the all-integer step buffer.
_NULL = -(2**63)
_TYPES = {c.name: c.type for c in COLUMNS}
#: How long an interrupted close waits for the emitters' lock (an emitter interrupted between
#: taking and releasing it would otherwise hang the close): then the unflushed buffer is lost.
_INTERRUPTED_LOCK_WAIT_S = 2.0


class ThreadRecorder:
    """A recorder bound to one (vm, host, thread, thread_kind): the fast path for a thread.

    Obtained from :meth:`Recorder.thread`; ``emit`` takes the same arguments as
    :meth:`Recorder.emit` minus the bound ones.
    """

    __slots__ = (
        "_clock", "_devices", "_eid", "_flush_len", "_lock", "_rec", "_seq", "thread", "thread_kind", "vm",
    )

    def __init__(self, rec: Recorder, eid: int, vm: str, thread: str, thread_kind: str) -> None:
        self._rec = rec
        self._eid = eid
        self._lock = rec._lock
        self._clock = rec._clock
        self._seq = rec._seq_cell(vm)
        self._devices = rec._device_codes
        self._flush_len = rec._flush_len
        self.vm, self.thread, self.thread_kind = vm, thread, thread_kind

    def emit(
        self,
        kind: str,
        *,
        device: str | None = None,
        req_id: int | None = None,
        op: str | None = None,
        ts_ns: int | None = None,
        **details: Any,
    ) -> int:
        # Hot path: keep it flat (every attribute lookup and call costs here).
        try:
            k = _KIND_CODE[kind]
            o = _OP_CODE[op]
        except (KeyError, TypeError):
            _bad_step(kind, op)
        d = self._devices.get(device)
        if d is None:
            d = self._rec._intern_device(device)
        rec = self._rec
        lock = self._lock
        lock.acquire()
        try:
            cell = self._seq
            seq = cell[0]
            cell[0] = seq + 1
            buf = rec._buf
            if details:
                rec._details.append((len(buf) // _STRIDE, _checked(details)))
            buf.extend(
                (
                    seq,
                    self._clock() if ts_ns is None else ts_ns,
                    self._eid,
                    k,
                    d,
                    _NULL if req_id is None else req_id,
                    o,
                )
            )
            if len(buf) >= self._flush_len:
                rec._hand_over()
        finally:
            lock.release()
        return seq


class Recorder:
    """Record steps of schema v1 into a trace directory.

    >>> with Recorder("out", source="threads", vm="vm0") as rec:        # doctest: +SKIP
    ...     rec.emit("io_submit", thread="vcpu0", thread_kind="vcpu", device="drive0",
    ...              req_id=1, op="write")

    `emit` is thread-safe and returns the step's ``seq``. For hot loops, bind a thread once with
    :meth:`thread` and call its ``emit``.
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        source: str,
        vm: str = "vm0",
        host: str | None = None,
        metadata: Mapping[str, object] | None = None,
        flush_rows: int = 65_536,
        flush_interval: float | None = 0.2,
        clock: Callable[[], int] | None = None,
        overwrite: bool = False,
    ) -> None:
        if flush_rows < 1:
            raise RecorderError("flush_rows must be at least 1")
        self.path = Path(out_dir)
        if self.path.exists():
            if not overwrite and any(self.path.iterdir()):
                raise RecorderError(f"{self.path}: output directory exists and is not empty")
            if overwrite:
                shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.source = source
        self.default_vm = vm
        self.default_host = host
        self._metadata = dict(metadata or {})
        self._schema = schema_with_metadata(source, self._metadata)
        self._clock = clock or time.monotonic_ns
        self._lock = threading.Lock()
        self._buf: list[Any] = []
        self._details: list[tuple[int, dict[str, Any]]] = []
        self._flush_len = flush_rows * _STRIDE
        self._seqs: dict[str, list[int]] = {}
        self._device_codes: dict[str | None, int] = {None: -1}
        self._devices: list[str] = []
        self._emitters: dict[tuple[str, str | None, str, str], ThreadRecorder] = {}
        self._emitter_keys: list[tuple[str, str | None, str, str]] = []
        self._segments: list[tracedir.Segment] = []
        self._rows_written = 0
        self._closed = False
        self._error: BaseException | None = None
        # Full buffers travel to the writer thread through a queue; it owns what follows.
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._submitted = 0
        self._written = 0
        self._written_cv = threading.Condition()
        self._flush_interval = flush_interval
        self._writer = threading.Thread(target=self._write_loop, name="blkreplay-writer", daemon=True)
        self._writer.start()

    # ------------------------------------------------------------------ emitting

    def thread(self, thread: str, thread_kind: str, *, vm: str | None = None, host: str | None = None) -> ThreadRecorder:
        """The bound emitter for one thread (created once, then reused)."""
        vm = self.default_vm if vm is None else vm
        host = self.default_host if host is None else host
        key = (vm, host, thread, thread_kind)
        em = self._emitters.get(key)
        if em is None:
            if thread_kind not in THREAD_KINDS:
                raise RecorderError(
                    f"unknown thread_kind {thread_kind!r}; expected one of {', '.join(THREAD_KINDS)}"
                )
            with self._lock:
                em = self._emitters.get(key)
                if em is None:
                    em = ThreadRecorder(self, len(self._emitter_keys), vm, thread, thread_kind)
                    self._emitter_keys.append(key)
                    self._emitters[key] = em
        return em

    def emit(
        self,
        kind: str,
        *,
        thread: str,
        thread_kind: str,
        vm: str | None = None,
        host: str | None = None,
        ts_ns: int | None = None,
        device: str | None = None,
        req_id: int | None = None,
        op: str | None = None,
        **details: Any,
    ) -> int:
        """Record one step; returns its ``seq``. `details` are the other schema columns
        (errno, policy, action, iostatus, runstate, prev_runstate, name, error_id, payload,
        tid, cmd_seq)."""
        em = self._emitters.get((self.default_vm if vm is None else vm,
                                 self.default_host if host is None else host, thread, thread_kind))
        if em is None:
            em = self.thread(thread, thread_kind, vm=vm, host=host)
        return em.emit(kind, device=device, req_id=req_id, op=op, ts_ns=ts_ns, **details)

    @property
    def rows_written(self) -> int:
        """Rows already flushed to finished segments."""
        return self._rows_written

    def _intern_device(self, device: str) -> int:
        if not isinstance(device, str):
            raise RecorderError(f"device must be a string, got {device!r}")
        with self._lock:
            code = self._device_codes.get(device)
            if code is None:
                code = self._device_codes[device] = len(self._devices)
                self._devices.append(device)
        return code

    def _seq_cell(self, vm: str) -> list[int]:
        cell = self._seqs.get(vm)
        if cell is None:
            cell = self._seqs.setdefault(vm, [0])
        return cell

    def _hand_over(self) -> None:
        """Convert the buffer to an Arrow table and queue it for the writer. Caller holds the lock.

        Converting here, on the emitting thread, matters: the conversion needs the GIL, and a
        writer thread that must win the GIL back from a busy emitter at every step of it falls
        hopelessly behind. The writer only serializes and writes, which releases the GIL.
        """
        if self._closed:
            raise RecorderError("recorder is closed")
        if self._error is not None:
            raise RecorderError(f"trace writer failed: {self._error}")
        if self._buf:
            table = build_table(self._buf, self._details, self._emitter_keys, self._devices, self._schema)
            self._buf, self._details = [], []
            self._queue.put((tracedir.segment_name(self._submitted), table))
            self._submitted += 1

    # ------------------------------------------------------------------ writing

    def _write_loop(self) -> None:
        """Writer thread: write every queued buffer as a segment; cut one every flush interval.

        It never waits on the emitters' lock (a busy emitter would starve it): buffers arrive
        through a queue, and the time-based cut only tries the lock.
        """
        interval = self._flush_interval
        while True:
            try:
                item = self._queue.get(timeout=interval)
            except queue.Empty:
                if self._lock.acquire(blocking=False):
                    try:
                        if self._buf and not self._closed:
                            self._hand_over()
                    finally:
                        self._lock.release()
                continue
            if item is None:
                return
            name, table = item
            try:
                if self._error is None:
                    rows, digest = tracedir.write_table(table, self.path / name)
                    self._segments.append(tracedir.Segment(name, rows, digest))
                    self._rows_written += rows
            except BaseException as exc:  # surfaced to emitting threads, flush() and close()
                self._error = exc
            with self._written_cv:
                self._written += 1
                self._written_cv.notify_all()

    def flush(self) -> None:
        """Hand everything buffered to the writer and wait until it is on disk."""
        with self._lock:
            self._hand_over()
            target = self._submitted
        with self._written_cv:
            self._written_cv.wait_for(lambda: self._written >= target)
        if self._error is not None:
            raise RecorderError(f"trace writer failed: {self._error}")

    def close(self, *, interrupted: bool | None = None) -> tracedir.Manifest:
        """Flush, stop the writer and write the manifest.

        The manifest marks the trace complete, unless the recording was `interrupted`: then it
        says ``"complete": false, "interrupted": true``. By default (None) a close while an
        exception propagates (from a ``finally`` during Ctrl-C, say) counts as interrupted.
        """
        if interrupted is None:
            interrupted = sys.exc_info()[1] is not None
        locked = self._lock.acquire(timeout=_INTERRUPTED_LOCK_WAIT_S if interrupted else -1)
        try:
            if locked:
                self._hand_over()
            self._closed = True
            # After an interrupted close the producer's threads may still be running (Ctrl-C
            # reaches the main thread only): their late steps are dropped, not a traceback
            # per thread; the manifest says the recording was cut short.
            self._buf = _DiscardingBuffer() if interrupted else _ClosedBuffer()
            self._queue.put(None)
        finally:
            if locked:
                self._lock.release()
        self._writer.join()
        if self._error is not None:
            raise RecorderError(f"trace writer failed: {self._error}")
        manifest = tracedir.Manifest(
            rows=self._rows_written,
            source=self.source,
            segments=tuple(self._segments),
            metadata=dict(sorted(self._metadata.items())),
            complete=not interrupted,
            interrupted=interrupted,
        )
        tracedir.atomic_write_text(self.path / tracedir.MANIFEST_NAME, manifest.to_json())
        return manifest

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._closed:
            self.close(interrupted=exc_type is not None)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (like Ctrl-C's SIGINT), so that a
    recording stopped with ``kill`` unwinds and closes with an interrupted manifest. Does
    nothing off the main thread (only it can handle signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------- conversion


def build_table(
    buf: list[int],
    details: list[tuple[int, dict[str, Any]]],
    emitter_keys: list[tuple[str, str | None, str, str]],
    devices: list[str],
    schema: pa.Schema,
) -> pa.Table:
    """Turn a flat all-integer step buffer into a canonical schema-v1 table, in bulk."""
    grid = np.fromiter(buf, dtype=np.int64, count=len(buf)).reshape(-1, _STRIDE)
    n = len(grid)
    eid = grid[:, 2]
    cols: dict[str, pa.Array] = {
        "seq": pa.array(grid[:, 0]),
        "ts_ns": pa.array(grid[:, 1]),
        "kind": _dictionary(grid[:, 3], KINDS),
        "device": _dictionary(grid[:, 4], devices),
        "req_id": pa.array(grid[:, 5], mask=grid[:, 5] == _NULL),
        "op": _dictionary(grid[:, 6], OPS),
    }
    for pos, name in enumerate(("vm", "host", "thread", "thread_kind")):
        cols[name] = _expand([k[pos] for k in emitter_keys], eid)
    if details:
        present: dict[str, list[Any]] = {}
        for row, d in details:
            for key, value in d.items():
                col = present.get(key)
                if col is None:
                    col = present[key] = [None] * n
                col[row] = value
        for name, values in present.items():
            t = _TYPES[name]
            arr = pa.array(values, pa.string() if pa.types.is_dictionary(t) else t)
            cols[name] = arr.dictionary_encode() if pa.types.is_dictionary(t) else arr
    return pa.Table.from_arrays(
        [cols[c.name] if c.name in cols else pa.nulls(n, c.type) for c in COLUMNS], schema=schema
    )


def _dictionary(codes: np.ndarray, values: Sequence[str]) -> pa.Array:
    """Codes (-1 for null) into a dictionary column over `values`."""
    idx = codes.astype(np.int32)
    mask = idx < 0
    indices = pa.array(idx, type=pa.int32(), mask=mask if mask.any() else None)
    return pa.DictionaryArray.from_arrays(indices, pa.array(list(values), pa.string()))


def _expand(values: list[str | None], eid: np.ndarray) -> pa.Array:
    """Per-emitter strings (vm, thread, ...) expanded to a dictionary column by emitter index."""
    uniq = sorted({v for v in values if v is not None})
    if not uniq:
        return pa.nulls(len(eid), DICT_STRING)
    index = {v: i for i, v in enumerate(uniq)}
    mapping = np.array([-1 if v is None else index[v] for v in values], dtype=np.int64)
    return _dictionary(mapping[eid], uniq)


class _ClosedBuffer(list):
    """Stands in for the step buffer after close: emitting then is an error, at no cost before."""

    def extend(self, values: Any) -> None:
        raise RecorderError("recorder is closed")

    def __len__(self) -> int:
        return 0


class _DiscardingBuffer(_ClosedBuffer):
    """Stands in for the step buffer after an interrupted close: late steps are dropped."""

    def extend(self, values: Any) -> None:
        return None


def _checked(details: dict[str, Any]) -> dict[str, Any]:
    for key, value in details.items():
        if key not in _DETAIL_SET:
            raise RecorderError(f"unknown step column {key!r}")
        allowed = _VOCAB.get(key)
        if allowed is not None and value is not None and value not in allowed:
            raise RecorderError(f"unknown {key} {value!r}; expected one of {', '.join(sorted(allowed))}")
    return details


def _bad_step(kind: str, op: str | None) -> None:
    if kind not in _KIND_CODE:
        raise RecorderError(f"unknown step kind {kind!r}; expected one of {', '.join(KINDS)}")
    raise RecorderError(f"unknown op {op!r}; expected one of {', '.join(OPS)}")
