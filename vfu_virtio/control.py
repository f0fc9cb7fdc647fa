"""The status endpoint of a serving device: a second UNIX socket beside the vfio-user one, speaking JSON lines.

Path: :func:`status_path` of the vfio-user socket path, ``SOCKET`` + :data:`STATUS_SUFFIX` (``/run/crypto.sock`` ->
``/run/crypto.sock.status``), so ``vfu-virtio status SOCKET`` finds it from the path given to ``--socket``. It is
created with the vfio-user socket's permission bits and removed when the server stops; a stale one (its server was
killed) is replaced, a live one is never taken over (:mod:`vfu_virtio.unixsock`).

Protocol, one JSON object per line (UTF-8, ``\\n``-terminated) in each direction: the client sends a request line,
the server answers with exactly one line; a connection may carry any number of requests (``vfu-virtio status --watch``
keeps one open). Requests: ``{"get": "status"}`` -> ``{"status": {...}}`` (the server's snapshot, see
``vfu_virtio.server.DeviceServer.status``); anything else -> ``{"error": "<one line>"}``. A request line longer than
:data:`MAX_LINE` bytes is answered with an error and the connection closed; at most :data:`MAX_CONNECTIONS` clients
at once (more are closed at accept); a connection idle for :data:`IDLE_TIMEOUT_S` seconds is closed.

Why a UNIX socket with JSON lines rather than a Prometheus text endpoint: it lives beside the vfio-user socket with
the same file permissions (no TCP port to choose or to guard, the same reach as the device itself), it needs nothing
beyond the standard library, and JSON carries the structured parts (per-queue rows, NEEDS_RESET reasons, client
times) that a person's table and a machine both read; a Prometheus exporter can be a client of it.

The endpoint runs on a thread of its own (:class:`StatusEndpoint`) and only reads the server's state; the event loop
never waits for it. :func:`query` is the client side.
"""
from __future__ import annotations

import json
import logging
import os
import selectors
import socket
import threading
import time
from typing import Callable

from . import unixsock

log = logging.getLogger("vfu_virtio.control")

#: Appended to the vfio-user socket path to name the status socket.
STATUS_SUFFIX = ".status"
#: Longest request line in bytes.
MAX_LINE = 4096
#: Most status clients connected at once.
MAX_CONNECTIONS = 8
#: Seconds a status connection may stay silent before it is closed.
IDLE_TIMEOUT_S = 60.0


class StatusUnavailable(Exception):
    """No status endpoint answers for a socket path; the message (one line) names the path and why."""


def status_path(socket_path: str) -> str:
    """The status socket of the vfio-user socket ``socket_path``."""
    return socket_path + STATUS_SUFFIX


class StatusEndpoint:
    """Serve ``snapshot()`` (a JSON-ready dict) on the status socket of ``socket_path`` (see the module docstring),
    from a daemon thread started by :meth:`start`; :meth:`close` stops it and removes the socket file.

    ``mode``: permission bits of the socket file (default: as the umask leaves them). Raises
    :class:`vfu_virtio.unixsock.SocketPathError` (one line) if the path cannot be listened on.
    """

    def __init__(self, socket_path: str, snapshot: Callable[[], dict], mode: int | None = None):
        self.path = status_path(socket_path)
        self._snapshot = snapshot
        unixsock.check_listen_path(self.path, "status socket")
        unixsock.remove_stale(self.path, "status socket")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self._listener.bind(self.path)
            if mode is not None:
                os.chmod(self.path, mode)
            self._listener.listen(MAX_CONNECTIONS)
            self._listener.setblocking(False)
        except OSError as e:
            self._listener.close()
            raise unixsock.SocketPathError(e.errno, f"status socket {self.path}: {e.strerror}") from None
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="status-endpoint", daemon=True)
        self._closed = False

    def start(self) -> "StatusEndpoint":
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread, close every connection, remove the socket file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        for s in (self._listener, self._wake_r, self._wake_w):
            s.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    # ---- the thread ------------------------------------------------------------------------------------------
    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ, None)
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        conns: dict[socket.socket, list] = {}  # connection -> [buffer, last activity]
        try:
            while True:
                for key, _ in sel.select(timeout=1.0):
                    if key.fileobj is self._wake_r:
                        return
                    if key.fileobj is self._listener:
                        self._accept(sel, conns)
                    else:
                        self._read(sel, conns, key.fileobj)
                now = time.monotonic()
                for conn in [c for c, (_b, seen) in conns.items() if now - seen > IDLE_TIMEOUT_S]:
                    self._drop(sel, conns, conn)
        except Exception:  # noqa: BLE001 - the endpoint must never take the device down
            log.exception("status endpoint %s stopped", self.path)
        finally:
            for conn in list(conns):
                self._drop(sel, conns, conn)
            sel.close()

    def _accept(self, sel: selectors.BaseSelector, conns: dict) -> None:
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        if len(conns) >= MAX_CONNECTIONS:
            conn.close()
            return
        conn.setblocking(False)
        conns[conn] = [bytearray(), time.monotonic()]
        sel.register(conn, selectors.EVENT_READ, None)

    def _read(self, sel: selectors.BaseSelector, conns: dict, conn: socket.socket) -> None:
        try:
            data = conn.recv(MAX_LINE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sel, conns, conn)
            return
        state = conns[conn]
        buf = state[0]
        buf += data
        state[1] = time.monotonic()
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            if not self._reply(conn, self.answer(line)):
                self._drop(sel, conns, conn)
                return
        if len(buf) > MAX_LINE:
            self._reply(conn, {"error": f"request line longer than {MAX_LINE} bytes"})
            self._drop(sel, conns, conn)

    def answer(self, line: bytes) -> dict:
        """The answer to one request line (see the module docstring); never raises."""
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return {"error": "a request is one JSON object per line, e.g. {\"get\": \"status\"}"}
        if not isinstance(request, dict) or request.get("get") != "status":
            return {"error": "unknown request; the one request is {\"get\": \"status\"}"}
        try:
            return {"status": self._snapshot()}
        except Exception as e:  # noqa: BLE001 - a snapshot bug is answered, not fatal
            log.exception("status snapshot failed")
            return {"error": f"status snapshot failed: {e!r}"}

    @staticmethod
    def _reply(conn: socket.socket, answer: dict) -> bool:
        """Send one answer line (blocking, 5 s at most); False if the client went away."""
        data = json.dumps(answer, separators=(",", ":")).encode() + b"\n"
        try:
            conn.settimeout(5.0)
            conn.sendall(data)
            conn.setblocking(False)
            return True
        except OSError:
            return False

    @staticmethod
    def _drop(sel: selectors.BaseSelector, conns: dict, conn: socket.socket) -> None:
        conns.pop(conn, None)
        try:
            sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()


class StatusClient:
    """A connection to the status endpoint of the vfio-user socket ``socket_path``; :meth:`get` asks for the status.
    Raises :class:`StatusUnavailable` (one line naming the status socket) when nothing answers there."""

    def __init__(self, socket_path: str, timeout: float = 5.0):
        self.path = status_path(socket_path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    self._sock.connect(self.path)
                    break
                except BlockingIOError:  # the listen backlog is full (a UNIX socket does not wait): try again
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.05)
        except OSError as e:  # the OSError is the exception's __cause__
            self._sock.close()
            why = {FileNotFoundError: f"no such socket (is a vfu-virtio device serving {socket_path}?)",
                   ConnectionRefusedError: "connection refused (its server is gone)"}.get(type(e), e.strerror)
            raise StatusUnavailable(f"status socket {self.path}: {why}") from e
        self._buf = b""

    def get(self) -> dict:
        """The server's status snapshot (a dict). Raises :class:`StatusUnavailable` if the server answers an
        error, nonsense, or nothing within the timeout."""
        try:
            self._sock.sendall(b'{"get": "status"}\n')
            while b"\n" not in self._buf:
                chunk = self._sock.recv(1 << 16)
                if not chunk:
                    raise StatusUnavailable(f"status socket {self.path}: the server closed the connection")
                self._buf += chunk
        except OSError as e:
            raise StatusUnavailable(f"status socket {self.path}: {e.strerror or e}") from None
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            answer = json.loads(line)
        except ValueError:
            raise StatusUnavailable(f"status socket {self.path}: the answer is not JSON") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("status"), dict):
            why = answer.get("error") if isinstance(answer, dict) else None
            raise StatusUnavailable(f"status socket {self.path}: {why or 'not a status answer'}")
        return answer["status"]

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "StatusClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def query(socket_path: str, timeout: float = 5.0) -> dict:
    """One status snapshot of the device serving ``socket_path`` (see :class:`StatusClient`)."""
    with StatusClient(socket_path, timeout) as client:
        return client.get()
