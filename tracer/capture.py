"""Record a live QEMU over QMP: the transcript every importer of real captures reads.

Users need traces from VMs that run now, not only from the simulator. QEMU accepts several QMP
monitors at once, so a recorder can sit on an extra monitor beside management's and see every
event (``BLOCK_IO_ERROR``, ``STOP``, ``RESUME``, ``SHUTDOWN``) the moment QEMU emits it.

:func:`capture` connects to such a monitor, negotiates capabilities, asks once for
``query-version``, ``query-iothreads`` and ``query-cpus-fast`` (so an importer can attribute host
thread ids to the main loop, iothreads and vCPUs), then polls ``query-status`` and
``query-block`` every ``poll_ms`` and right after each ``BLOCK_IO_ERROR``/``STOP``/``RESUME``
(so the iostatus and run state around every transition are seen). With ``auto_cont_ms`` it also
acts as a management client and sends ``cont`` that long after each I/O-error stop.

The transcript is the format of the real QEMU 7.2 samples: one JSON object per line,
``{"t": epoch seconds, "dir": "send"|"recv", "line": raw JSON text}``. ``line`` keeps the received
bytes exactly (without the ``\\r\\n`` terminator; bytes that are not UTF-8 survive as surrogate
escapes, so ``line.encode("utf-8", "surrogateescape")`` gives them back). Every line is written
and flushed as it happens: a killed recorder loses nothing it had received. A connection that
QEMU closes ends the capture cleanly (``ended == "connection-lost"``); the transcript keeps every
line, and a last line cut off mid-way is kept too, marked ``"partial": true``.

All of it runs in one thread over a non-blocking socket with ``select`` and deadlines, so
polling, the ``cont`` timers, the duration limit and a stop request never wait on each other.

Its ~600 lines are one concept (one select loop over one monitor connection, its handshake,
polls and transcript); split further, the loop's state would have to cross modules.
"""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from tracer import safejson
from tracer.errors import CaptureError
from tracer.qemu import version_from_qmp

#: Why a capture ended.
Ended = Literal["shutdown", "duration", "interrupted", "stopped", "connection-lost"]

#: Asked once after the capabilities are negotiated.
INITIAL_QUERIES = ("query-version", "query-iothreads", "query-cpus-fast")
#: Asked every poll interval, and right after each state-changing event.
POLL_QUERIES = ("query-status", "query-block")
#: Events after which the state is polled at once.
POLL_AFTER_EVENTS = frozenset({"BLOCK_IO_ERROR", "STOP", "RESUME"})

#: How long to wait for the greeting and the capabilities reply.
HANDSHAKE_TIMEOUT_S = 10.0
#: Longest a select() waits, so that a stop request is noticed promptly.
_TICK_S = 0.05
_RECV_BYTES = 65536
#: Longest line a monitor may send (a QMP reply is kilobytes; no QEMU sends 16 MiB at once).
MAX_LINE_BYTES = 16 << 20


@dataclass(frozen=True)
class Endpoint:
    """Where a QMP monitor listens: a unix socket path, or a TCP host and port."""

    kind: Literal["unix", "tcp"]
    path: str | None = None
    host: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """Parse ``unix:PATH`` or ``tcp:HOST:PORT`` (IPv6 hosts in brackets), as QEMU's ``-qmp``
    spells them; options after a comma (``,server=on``) are ignored so the flag can be copied
    from the QEMU command line."""
    spec = text.split(",", 1)[0].strip()
    kind, sep, rest = spec.partition(":")
    if sep and kind == "unix":
        if not rest:
            raise CaptureError(f"bad QMP endpoint {text!r}: unix: needs a socket path")
        return Endpoint("unix", path=rest)
    if sep and kind == "tcp":
        host, sep2, port_text = rest.rpartition(":")
        host = host.strip("[]")
        if not sep2 or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise CaptureError(
                f"bad QMP endpoint {text!r}: expected tcp:HOST:PORT with a port from 1 to 65535"
            )
        return Endpoint("tcp", host=host, port=int(port_text))
    raise CaptureError(f"bad QMP endpoint {text!r}: expected unix:PATH or tcp:HOST:PORT")


@dataclass
class CaptureSummary:
    """What a capture recorded and why it ended."""

    out: Path
    endpoint: str
    #: Transcript lines written (sent + received).
    lines: int = 0
    received: int = 0
    sent: int = 0
    #: QMP events received, by name.
    events: dict[str, int] = field(default_factory=dict)
    #: `cont` commands sent by auto-cont.
    conts: int = 0
    ended: Ended = "stopped"
    #: One human sentence on how it ended.
    message: str = ""
    qemu_version: str | None = None
    #: iothread id -> host thread id, from query-iothreads.
    iothreads: dict[str, int] = field(default_factory=dict)
    #: vCPU index -> host thread id, from query-cpus-fast.
    vcpus: dict[int, int] = field(default_factory=dict)
    #: Bytes of a last line that the connection cut off (kept in the transcript, marked partial).
    partial_bytes: int = 0
    elapsed_s: float = 0.0


ProgressCallback = Callable[[int, int | None], None]


class _Transcript:
    """The transcript file: one JSON object per line, flushed as soon as it is written.

    The file is created (an existing one replaced) only by `start`, once the peer has shown
    it speaks QMP: until then lines are kept in memory (a handful: the greeting and the
    capabilities reply), so that a wrong endpoint never truncates an earlier capture.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None
        self._pending: list[str] = []
        self.lines = 0

    def start(self) -> None:
        try:
            self._fh = open(self.path, "w", encoding="ascii", newline="\n")  # noqa: SIM115 (closed in close())
        except OSError as exc:
            raise CaptureError(f"cannot write transcript {self.path}: {exc.strerror or exc}") from exc
        self._fh.write("".join(self._pending))
        self._fh.flush()
        self._pending.clear()

    def write(self, direction: str, raw: bytes, *, partial: bool = False) -> float:
        t = round(time.time(), 6)
        record: dict[str, object] = {
            "t": t,
            "dir": direction,
            "line": raw.decode("utf-8", "surrogateescape"),
        }
        if partial:
            record["partial"] = True
        if self._fh is None:
            self._pending.append(json.dumps(record) + "\n")
        else:
            self._fh.write(json.dumps(record) + "\n")
            self._fh.flush()
        self.lines += 1
        return t

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


class _ConnectionLost(Exception):
    """QEMU closed the monitor connection (or it broke)."""


class _Monitor:
    """A QMP socket: split received bytes into lines, record them, send commands."""

    def __init__(self, sock: socket.socket, transcript: _Transcript) -> None:
        self.sock = sock
        self.transcript = transcript
        self.buf = bytearray()
        self.closed = False
        self.received = 0
        self.sent = 0
        self._next_id = 1

    def fill(self, timeout: float) -> None:
        """Wait up to `timeout` for bytes and append them to the buffer; raise on EOF."""
        if self.closed:
            raise _ConnectionLost("closed")
        readable, _, _ = select.select([self.sock], [], [], max(timeout, 0.0))
        if not readable:
            return
        try:
            data = self.sock.recv(_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.closed = True
            raise _ConnectionLost(exc.strerror or str(exc)) from exc
        if not data:
            self.closed = True
            raise _ConnectionLost("closed by QEMU")
        self.buf += data
        if len(self.buf) > MAX_LINE_BYTES and self.buf.find(b"\n", 0, MAX_LINE_BYTES + 1) < 0:
            self.closed = True
            raise CaptureError(
                f"the QMP peer sent a line longer than {MAX_LINE_BYTES >> 20} MiB (after "
                f"{self.received} lines): not a QEMU monitor; the transcript keeps the lines before it"
            )

    def lines(self) -> list[tuple[bytes, dict | None]]:
        """Every complete line now in the buffer, recorded, with its parsed JSON (None when the
        line is not a JSON object: it is still recorded, just not interpreted)."""
        out: list[tuple[bytes, dict | None]] = []
        while True:
            nl = self.buf.find(b"\n")
            if nl < 0:
                return out
            raw = bytes(self.buf[:nl])
            del self.buf[: nl + 1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if not raw.strip():
                continue
            self.transcript.write("recv", raw)
            self.received += 1
            out.append((raw, _parse(raw)))

    def keep_partial(self) -> int:
        """Record what is left of a line the connection cut off; return its size."""
        rest = bytes(self.buf).rstrip(b"\r")
        self.buf.clear()
        if not rest.strip():
            return 0
        self.transcript.write("recv", rest, partial=True)
        self.received += 1
        return len(rest)

    def send(self, command: str) -> int:
        cmd_id = self._next_id
        self._next_id += 1
        text = json.dumps({"execute": command, "id": cmd_id})
        try:
            self.sock.sendall(text.encode() + b"\n")
        except OSError as exc:
            self.closed = True
            raise _ConnectionLost(exc.strerror or str(exc)) from exc
        self.transcript.write("send", text.encode())
        self.sent += 1
        return cmd_id


def _parse(raw: bytes) -> dict | None:
    """The JSON object a line holds, or None (not JSON, not an object, or beyond the bounds of
    `tracer.safejson`: 100,000 nested brackets are no QMP message)."""
    try:
        obj = safejson.loads(raw)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _connect(endpoint: Endpoint, wait_s: float) -> socket.socket:
    """Connect, retrying for up to `wait_s` while the socket is absent or refuses (a QEMU that is
    still starting)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if endpoint.kind == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(5.0)
                    sock.connect(endpoint.path or "")
                except BaseException:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection((endpoint.host, endpoint.port), timeout=5.0)
            sock.setblocking(False)
            return sock
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            hint = (
                "no such socket"
                if isinstance(exc, FileNotFoundError)
                else "connection refused"
            )
            raise CaptureError(
                f"cannot connect to QMP monitor {endpoint}: {hint} (is QEMU running with "
                f"-qmp {endpoint},server=on,wait=off?)"
            ) from exc
        except OSError as exc:
            raise CaptureError(
                f"cannot connect to QMP monitor {endpoint}: {exc.strerror or exc}"
            ) from exc


def _handshake(mon: _Monitor, endpoint: Endpoint, summary: CaptureSummary) -> None:
    """Read the greeting, negotiate capabilities; anything else recorded meanwhile is kept."""
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S
    greeted = False
    cap_id: int | None = None
    while True:
        for _raw, obj in mon.lines():
            if not greeted:
                if obj is None or "QMP" not in obj:
                    raise CaptureError(f"{endpoint} is not a QMP monitor: no QMP greeting")
                if not isinstance(obj["QMP"], dict):
                    raise CaptureError(
                        f"{endpoint} is not a QMP monitor: its greeting's QMP member is not an object"
                    )
                greeted = True
                summary.qemu_version = _version_text(obj)
                cap_id = mon.send("qmp_capabilities")
            elif obj is not None and obj.get("id") == cap_id:
                if "error" in obj:
                    desc = obj["error"].get("desc", "error") if isinstance(obj["error"], dict) else "error"
                    raise CaptureError(f"{endpoint}: qmp_capabilities refused: {desc}")
                return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            what = "capabilities reply" if greeted else "QMP greeting"
            raise CaptureError(
                f"no {what} from {endpoint} within {HANDSHAKE_TIMEOUT_S:g} s (a QMP socket "
                "serves one client at a time: is another client connected to it?)"
            )
        try:
            mon.fill(min(remaining, _TICK_S))
        except _ConnectionLost as exc:
            raise CaptureError(f"{endpoint} closed the connection during the handshake") from exc


def _version_text(announcement: object) -> str | None:
    """``"7.2.22 (Debian 1:7.2+dfsg-7+deb12u7)"`` from a greeting or ``query-version`` return."""
    version = version_from_qmp(announcement)
    if version is None:
        return None
    return f"{version.release} ({version.package})" if version.package else version.release


def capture(
    endpoint: str | Endpoint,
    out_jsonl: str | os.PathLike[str],
    *,
    poll_ms: int = 500,
    duration_s: float | None = None,
    until_shutdown: bool = True,
    auto_cont_ms: int | None = None,
    progress: ProgressCallback | None = None,
    stop_event: threading.Event | None = None,
    connect_wait_s: float = 0.0,
) -> CaptureSummary:
    """Record the QMP monitor at `endpoint` into the transcript `out_jsonl` until it ends.

    It ends on ``SHUTDOWN`` (unless `until_shutdown` is false), after `duration_s`, on Ctrl-C
    (KeyboardInterrupt is caught: the transcript is complete up to that moment), when
    `stop_event` is set, or when QEMU closes the connection; :attr:`CaptureSummary.ended` says
    which. `auto_cont_ms` sends ``cont`` that many ms after each I/O-error stop (a ``STOP``
    whose run state is ``io-error``). `connect_wait_s` retries connecting that long while the
    socket is not there yet. `progress(lines, None)` is called as lines are recorded.

    Raises :class:`CaptureError` when the endpoint is malformed, cannot be reached, or does
    not speak QMP (no QMP greeting: then `out_jsonl` is not touched, an earlier capture there
    stays whole), or when the peer sends a line longer than `MAX_LINE_BYTES` (the
    transcript then holds whatever was received before).
    """
    ep = endpoint if isinstance(endpoint, Endpoint) else parse_endpoint(endpoint)
    if poll_ms <= 0:
        raise CaptureError(f"poll interval must be positive, got {poll_ms} ms")
    if duration_s is not None and duration_s <= 0:
        raise CaptureError(f"duration must be positive, got {duration_s} s")
    if auto_cont_ms is not None and auto_cont_ms < 0:
        raise CaptureError(f"auto-cont delay must not be negative, got {auto_cont_ms} ms")
    out = Path(out_jsonl)
    sock = _connect(ep, connect_wait_s)
    summary = CaptureSummary(out=out, endpoint=str(ep))
    started = time.monotonic()
    transcript: _Transcript | None = None
    try:
        transcript = _Transcript(out)
        mon = _Monitor(sock, transcript)
        _handshake(mon, ep, summary)
        transcript.start()
        loop = _CaptureLoop(
            mon,
            summary,
            poll_s=poll_ms / 1000.0,
            deadline=started + duration_s if duration_s is not None else None,
            until_shutdown=until_shutdown,
            auto_cont_s=auto_cont_ms / 1000.0 if auto_cont_ms is not None else None,
            progress=progress,
            stop_event=stop_event,
        )
        loop.run()
        summary.received, summary.sent = mon.received, mon.sent
    finally:
        sock.close()
        if transcript is not None:
            summary.lines = transcript.lines
            transcript.close()
        summary.elapsed_s = round(time.monotonic() - started, 3)
    return summary


class _CaptureLoop:
    """The single-threaded event loop: read, interpret, send the next command, fire timers.

    One command is in flight at a time (QEMU answers in-band commands in order anyway); the
    rest wait in a queue, so a reply always belongs to the last command sent.
    """

    def __init__(
        self,
        mon: _Monitor,
        summary: CaptureSummary,
        *,
        poll_s: float,
        deadline: float | None,
        until_shutdown: bool,
        auto_cont_s: float | None,
        progress: ProgressCallback | None,
        stop_event: threading.Event | None,
    ) -> None:
        self.mon = mon
        self.summary = summary
        self.poll_s = poll_s
        self.deadline = deadline
        self.until_shutdown = until_shutdown
        self.auto_cont_s = auto_cont_s
        self.progress = progress
        self.stop_event = stop_event
        self.queue: deque[str] = deque(INITIAL_QUERIES + POLL_QUERIES)
        self.inflight: tuple[int, str] | None = None
        self.next_poll = time.monotonic() + poll_s
        self.events: Counter[str] = Counter()
        #: When the last STOP was received (monotonic), for the auto-cont delay.
        self.last_stop: float | None = None
        self.cont_due: float | None = None
        #: A cont was queued or sent and its reply not seen yet.
        self.cont_pending = False
        self.done: Ended | None = None

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        try:
            while self.done is None:
                self._pump()
        except KeyboardInterrupt:
            self._finish("interrupted", "interrupted (Ctrl-C)")
        except _ConnectionLost as exc:
            self._connection_lost(str(exc))
        self.summary.events = dict(sorted(self.events.items()))

    def _pump(self) -> None:
        now = time.monotonic()
        if self.stop_event is not None and self.stop_event.is_set():
            self._finish("stopped", "stopped on request")
            return
        if self.deadline is not None and now >= self.deadline:
            self._finish("duration", "duration reached")
            return
        if now >= self.next_poll:
            self._enqueue_poll()
            self.next_poll = now + self.poll_s
        if self.cont_due is not None and now >= self.cont_due:
            self.cont_due = None
            # look at the block state right before resuming, then resume
            self.queue.appendleft("cont")
            self.queue.appendleft("query-block")
        self._send_next()
        self.mon.fill(self._timeout(now))
        for _raw, obj in self.mon.lines():
            if obj is not None:
                self._interpret(obj)
            if self.done is not None:
                break
        self._report_progress()
        if self.done is not None:
            self._drain()

    def _timeout(self, now: float) -> float:
        marks = [self.next_poll]
        if self.deadline is not None:
            marks.append(self.deadline)
        if self.cont_due is not None:
            marks.append(self.cont_due)
        return max(0.0, min(_TICK_S, *(m - now for m in marks)))

    def _send_next(self) -> None:
        if self.inflight is None and self.queue:
            name = self.queue.popleft()
            self.inflight = (self.mon.send(name), name)

    def _enqueue_poll(self) -> None:
        for name in POLL_QUERIES:
            if name not in self.queue:
                self.queue.append(name)

    # -- interpreting what QEMU says ---------------------------------------------------------

    def _interpret(self, obj: dict) -> None:
        event = obj.get("event")
        if isinstance(event, str):
            self._on_event(event, obj.get("data"))
            return
        if "id" in obj and self.inflight is not None and obj["id"] == self.inflight[0]:
            name = self.inflight[1]
            self.inflight = None
            self._on_reply(name, obj)

    def _on_event(self, name: str, data: object) -> None:
        self.events[name] += 1
        if name == "SHUTDOWN" and self.until_shutdown:
            self._finish("shutdown", "QEMU shut down")
            return
        if name == "STOP":
            self.last_stop = time.monotonic()
        elif name == "RESUME":
            self.last_stop = None
            if self.cont_due is not None or "cont" in self.queue:
                # someone else resumed it first: no cont from us
                self.cont_due = None
                self.cont_pending = False
                if "cont" in self.queue:
                    self.queue.remove("cont")
        if name in POLL_AFTER_EVENTS:
            self._enqueue_poll()

    def _on_reply(self, name: str, obj: dict) -> None:
        ret = obj.get("return")
        if name == "cont":
            self.cont_pending = False
            if "error" not in obj:
                self.summary.conts += 1
        elif name == "query-status" and isinstance(ret, dict):
            if ret.get("status") == "io-error":
                self._schedule_cont()
        elif name == "query-version" and isinstance(ret, dict):
            self.summary.qemu_version = _version_text(ret) or self.summary.qemu_version
        elif name == "query-iothreads" and isinstance(ret, list):
            self.summary.iothreads = {
                str(t["id"]): int(t["thread-id"])
                for t in ret
                if isinstance(t, dict) and "id" in t and isinstance(t.get("thread-id"), int)
            }
        elif name == "query-cpus-fast" and isinstance(ret, list):
            self.summary.vcpus = {
                int(c["cpu-index"]): int(c["thread-id"])
                for c in ret
                if isinstance(c, dict)
                and isinstance(c.get("cpu-index"), int)
                and isinstance(c.get("thread-id"), int)
            }

    def _schedule_cont(self) -> None:
        """An I/O-error stop was seen: resume it `auto_cont_s` after the STOP (once)."""
        if self.auto_cont_s is None or self.cont_pending or self.cont_due is not None:
            return
        since = self.last_stop if self.last_stop is not None else time.monotonic()
        self.cont_due = since + self.auto_cont_s
        self.cont_pending = True

    # -- ending ------------------------------------------------------------------------------

    def _finish(self, how: Ended, message: str) -> None:
        if self.done is None:
            self.done = how
            self.summary.ended = how
            self.summary.message = message

    def _drain(self) -> None:
        """Record whatever QEMU had already sent when we decided to stop (bounded: a monitor
        that keeps talking does not keep us here)."""
        end = time.monotonic() + 0.2
        try:
            while time.monotonic() < end and self._readable():
                self.mon.fill(0.0)
                self.mon.lines()
        except _ConnectionLost:
            self.summary.partial_bytes = self.mon.keep_partial()

    def _readable(self) -> bool:
        readable, _, _ = select.select([self.mon.sock], [], [], 0)
        return bool(readable)

    def _connection_lost(self, why: str) -> None:
        self.summary.partial_bytes = self.mon.keep_partial()
        # whatever complete lines were still buffered were recorded by lines() already
        cut = (
            f"; its last {self.summary.partial_bytes} bytes were an incomplete line, kept "
            "marked partial"
            if self.summary.partial_bytes
            else ""
        )
        self._finish(
            "connection-lost",
            f"QMP connection lost ({why}) before SHUTDOWN; the transcript keeps everything "
            f"received{cut}",
        )

    def _report_progress(self) -> None:
        if self.progress is not None:
            self.progress(self.mon.transcript.lines, None)


def is_transcript_path(path: str | os.PathLike[str]) -> bool:
    """Whether an output path names a transcript (``.jsonl``) rather than a trace."""
    return str(path).lower().endswith(".jsonl")


def wait_until_settled(path: str | os.PathLike[str], *, quiet_s: float = 0.5, limit_s: float = 10.0) -> None:
    """Wait until the file at `path` has not grown for `quiet_s` (at most `limit_s`).

    QEMU emits SHUTDOWN and then still writes its last trace lines while it exits; an import
    that reads its log right away would miss them.
    """
    p = Path(path)
    end = time.monotonic() + limit_s
    last: tuple[int, int] | None = None
    stable_since = time.monotonic()
    while time.monotonic() < end:
        try:
            st = p.stat()
            cur = (st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            cur = None
        if cur != last:
            last = cur
            stable_since = time.monotonic()
        elif time.monotonic() - stable_since >= quiet_s:
            return
        time.sleep(0.05)


__all__ = [
    "INITIAL_QUERIES",
    "POLL_QUERIES",
    "CaptureSummary",
    "Endpoint",
    "capture",
    "is_transcript_path",
    "parse_endpoint",
    "wait_until_settled",
]
