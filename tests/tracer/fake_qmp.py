"""A fake QEMU QMP monitor on a unix socket, speaking the real protocol.

It greets, requires ``qmp_capabilities`` first, answers commands with their ``id`` in order, and
keeps the little state the capture looks at (run state, one drive's io-status), so that
``cont`` after an I/O-error stop behaves as QEMU's does (iostatus reset, ``RESUME``, reply).
Lines end in ``\\r\\n`` like QEMU's monitor output. A test drives it from its own thread:
:meth:`FakeQmp.io_error`, :meth:`FakeQmp.event`, :meth:`FakeQmp.send_raw`,
:meth:`FakeQmp.drop`; :attr:`FakeQmp.commands` lists what the client sent.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path

GREETING = (
    b'{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, '
    b'"package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}'
)


class FakeQmp:
    def __init__(
        self,
        path: Path | None,
        *,
        greeting: bytes = GREETING,
        iothread_tid: int = 4242,
        vcpu_tid: int = 4243,
    ) -> None:
        """Listen on the unix socket `path`, or on a free loopback TCP port when it is None
        (then :attr:`endpoint` says which)."""
        self.path = path
        self.greeting = greeting
        self.iothread_tid = iothread_tid
        self.vcpu_tid = vcpu_tid
        self.status = "running"
        self.iostatus = "ok"
        #: (monotonic time, parsed command) of every command received.
        self.commands: list[tuple[float, dict]] = []
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self._conn: socket.socket | None = None
        self._negotiated = False
        #: When set, commands are read but no longer answered (a QEMU about to die).
        self.muted = False
        self._stop = threading.Event()
        if path is not None:
            self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._server.bind(str(path))
            self.endpoint = f"unix:{path}"
        else:
            self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._server.bind(("127.0.0.1", 0))
            self.endpoint = f"tcp:127.0.0.1:{self._server.getsockname()[1]}"
        self._server.listen(1)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> FakeQmp:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.drop()
        self._server.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        self._server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            break
        else:
            return
        with self._lock:
            self._conn = conn
        self.connected.set()
        self._write(self.greeting)
        buf = b""
        conn.settimeout(0.1)
        while not self._stop.is_set():
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    self._handle(json.loads(line))

    # -- protocol ----------------------------------------------------------------------------

    def _write(self, raw: bytes) -> None:
        with self._lock:
            if self._conn is None:
                return
            with contextlib.suppress(OSError):
                self._conn.sendall(raw + b"\r\n")

    def _reply(self, cmd_id: object, ret: object) -> None:
        self._write(json.dumps({"return": ret, "id": cmd_id}).encode())

    def _handle(self, cmd: dict) -> None:
        self.commands.append((time.monotonic(), cmd))
        name, cmd_id = cmd.get("execute"), cmd.get("id")
        if self.muted:
            return
        if not self._negotiated and name != "qmp_capabilities":
            self._write(
                json.dumps(
                    {
                        "id": cmd_id,
                        "error": {
                            "class": "CommandNotFound",
                            "desc": "Expecting capabilities negotiation with 'qmp_capabilities'",
                        },
                    }
                ).encode()
            )
            return
        if name == "qmp_capabilities":
            self._negotiated = True
            self._reply(cmd_id, {})
        elif name == "query-version":
            self._reply(
                cmd_id,
                {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"},
            )
        elif name == "query-iothreads":
            self._reply(cmd_id, [{"poll-shrink": 0, "thread-id": self.iothread_tid, "id": "iothread0"}])
        elif name == "query-cpus-fast":
            self._reply(
                cmd_id,
                [{"thread-id": self.vcpu_tid, "cpu-index": 0, "qom-path": "/machine/unattached/device[0]", "target": "x86_64"}],
            )
        elif name == "query-status":
            self._reply(cmd_id, {"status": self.status, "singlestep": False, "running": self.status == "running"})
        elif name == "query-block":
            self._reply(
                cmd_id,
                [{"io-status": self.iostatus, "device": "drive0", "locked": False, "removable": False,
                  "qdev": "/machine/peripheral/vblk0/virtio-backend", "type": "unknown"}],
            )
        elif name == "cont":
            self.iostatus = "ok"
            resumed = self.status != "running"
            if resumed:
                self.event("RESUME")
            self._reply(cmd_id, {})
            if resumed:  # only now: a test waiting for "running" must see the reply sent first
                self.status = "running"
        elif name == "stop":
            if self.status == "running":
                self.status = "paused"
                self.event("STOP")
            self._reply(cmd_id, {})
        else:
            self._write(
                json.dumps(
                    {"id": cmd_id, "error": {"class": "CommandNotFound", "desc": f"The command {name} has not been found"}}
                ).encode()
            )

    # -- driving it from a test --------------------------------------------------------------

    def event(self, name: str, data: dict | None = None) -> None:
        now = time.time()
        msg: dict = {"timestamp": {"seconds": int(now), "microseconds": int(now % 1 * 1e6)}, "event": name}
        if data is not None:
            msg["data"] = data
        self._write(json.dumps(msg).encode())

    def io_error(self, op: str = "write") -> None:
        """What QEMU does for a failed request with action stop: iostatus, event, stop."""
        if self.iostatus == "ok":
            self.iostatus = "failed"
        self.event(
            "BLOCK_IO_ERROR",
            {"device": "drive0", "nospace": False, "node-name": "#block227",
             "reason": "Input/output error", "operation": op, "action": "stop"},
        )
        if self.status == "running":
            self.status = "io-error"
            self.event("STOP")

    def user_stop(self) -> None:
        """A `stop` from another client: paused, STOP, no error."""
        if self.status == "running":
            self.status = "paused"
            self.event("STOP")

    def shutdown(self) -> None:
        self.event("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"})

    def send_raw(self, raw: bytes, *, terminate: bool = True) -> None:
        """Send bytes as they are (with the \\r\\n terminator unless `terminate` is false)."""
        with self._lock:
            if self._conn is not None:
                self._conn.sendall(raw + (b"\r\n" if terminate else b""))

    def drop(self) -> None:
        """Close the connection, as a QEMU that died would."""
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(OSError):
                    self._conn.shutdown(socket.SHUT_RDWR)
                self._conn.close()
                self._conn = None

    def sent_names(self) -> list[str]:
        return [c.get("execute", "") for _, c in self.commands]


def wait_for(predicate, timeout: float = 60.0) -> bool:
    """Poll `predicate` until true or `timeout`. (Generous: it returns as soon as `predicate`
    holds, and a loaded CI machine may take seconds to start the CLI whose first command a
    driver waits for; a driver that gave up would let a capture end normally.)"""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
