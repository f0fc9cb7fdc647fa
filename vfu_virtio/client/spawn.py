"""Device server processes, started with a real readiness signal and stopped by PID.

:class:`Server` runs ``python -m vfu_virtio [--log-level L] --ready-fd N <kind> --socket S --state DB [options]``
-- the command a user runs -- as a child process whose stdout and stderr go to a log file. N is the write end
of a pipe handed to that child alone (``pass_fds``); the server writes the line ``ready`` (:data:`READY_LINE`)
to it once its libvfio-user context is realized and its socket listens, then closes it. :meth:`Server.start`
returns only after that line, so a connect right after it is never refused (the socket file appears at
``bind()``, before ``listen()``: "the socket exists" is not "ready"). If the child exits or closes the pipe
first, or the line does not come within ``ready_timeout`` seconds, the child is stopped and reaped and
:class:`ServerFailed` carries its log.

:meth:`Server.stop`: SIGTERM, SIGKILL after ``stop_grace`` seconds, always reaped; :meth:`Server.kill`: SIGKILL
at once (crash tests; the socket file stays behind as after a real crash). :class:`ServerGroup` is a context
manager owning several servers in one work directory with one shared state store; leaving it stops every
server it started.

Imports nothing of vfu_virtio: the device kind is a name on the command line.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

#: What ``vfu-virtio --ready-fd N`` writes to N once the socket listens (then N is closed).
READY_LINE = b"ready\n"
DEFAULT_READY_TIMEOUT = 30.0  # seconds
DEFAULT_STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
#: The program in front of the ``vfu-virtio`` arguments.
PROGRAM = (sys.executable, "-m", "vfu_virtio")


class ServerFailed(RuntimeError):
    """A device server did not become ready; the message names it, says why and carries its log."""


class Server:
    """One device server process (see the module docstring); :meth:`start` to run it.

    ``kind`` (the ``vfu-virtio`` subcommand), ``socket`` and ``state`` (paths), ``options`` (further
    arguments of the subcommand), ``log_path`` (appended to: a restarted server keeps its earlier lines),
    ``log_level`` (``--log-level``), ``env`` (variables set for the child on top of this process's
    environment), ``cwd``, ``ready_timeout`` and ``stop_grace`` (seconds), ``program`` (the command in
    front of the arguments). After a start: ``proc`` (``subprocess.Popen``), ``pid``; after a stop or kill:
    ``returncode``.
    """

    def __init__(self, kind: str, socket: str, state: str, options: Sequence[str] = (), *, log_path: str,
                 name: str | None = None, log_level: str = "info", env: Mapping[str, str] | None = None,
                 cwd: str | None = None, ready_timeout: float = DEFAULT_READY_TIMEOUT,
                 stop_grace: float = DEFAULT_STOP_GRACE, program: Sequence[str] = PROGRAM):
        self.kind = kind
        self.name = name or kind
        self.socket = str(socket)
        self.state = str(state)
        self.options = tuple(options)
        self.log_path = str(log_path)
        self.log_level = log_level
        self.env = dict(env or {})
        self.cwd = cwd
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self.program = tuple(program)
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc else None
        return f"Server({self.name}: {self.kind} on {self.socket}, pid {pid})"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} server was never started")
        return self.proc.pid

    def args(self, ready_fd: int | None = None) -> list[str]:
        """The ``vfu-virtio`` arguments (after :attr:`program`), with ``--ready-fd`` when ``ready_fd`` is given."""
        ready = ["--ready-fd", str(ready_fd)] if ready_fd is not None else []
        return ["--log-level", self.log_level, *ready, self.kind, "--socket", self.socket, "--state", self.state,
                *self.options]

    def start(self) -> "Server":
        """Start the process and return once it signalled readiness (see the module docstring); raises
        :class:`ServerFailed` otherwise (the child is stopped and reaped first). Starting again after a stop
        or kill runs a new process with the same arguments."""
        if self.alive():
            raise RuntimeError(f"{self!r} is running already")
        env = {**os.environ, **self.env}
        r, w = os.pipe()  # both ends close-on-exec; pass_fds hands ``w`` to the child alone
        try:
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen([*self.program, *self.args(w)], stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, pass_fds=(w,), env=env, cwd=self.cwd)
            self.returncode = None
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)  # from now on only the child holds the write end: EOF means it closed it or died
        try:
            why = self._await_ready(r)
        finally:
            os.close(r)
        if why:
            self.stop()
            raise ServerFailed(f"{self.name} server (pid {self.proc.pid}) {why}; exit status {self.returncode}:\n"
                               f"{self.log()}")
        return self

    def _await_ready(self, fd: int) -> str | None:
        """Read the readiness line from ``fd``; None when it came, else why not."""
        deadline = time.monotonic() + self.ready_timeout
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        got = b""
        while b"\n" not in got:
            left = deadline - time.monotonic()
            if left <= 0:
                return f"did not signal readiness within {self.ready_timeout:g} s"
            if not poller.poll(left * 1000):
                continue
            chunk = os.read(fd, 64)
            if not chunk:
                return "closed its readiness pipe without signalling readiness (it exited, or failed to start)"
            got += chunk
        line = got[:got.index(b"\n") + 1]
        return None if line == READY_LINE else f"signalled {line!r} instead of {READY_LINE!r}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        """The log file's text ("" before the first start)."""
        try:
            return Path(self.log_path).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> int:
        """SIGTERM, SIGKILL after ``stop_grace`` seconds; reaped. Returns the exit status (negative: the
        signal that ended it, ``-9`` when the grace ran out)."""
        proc = self.proc
        if proc is None:
            raise RuntimeError(f"{self.name} server was never started")
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_grace)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.returncode = proc.wait()
        return self.returncode

    def kill(self) -> int:
        """SIGKILL now and reap (for crash tests); returns the exit status."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} server was never started")
        if self.proc.poll() is None:
            self.proc.kill()
        self.returncode = self.proc.wait()
        return self.returncode


class ServerGroup:
    """The device servers of one run, in ``workdir`` (socket ``NAME.sock``, log ``NAME.log``), sharing the
    state store ``state`` (default ``workdir/state.db``); the other keywords are :class:`Server`'s.
    ``with ServerGroup(...) as group:`` creates ``workdir`` and stops every server on the way out."""

    def __init__(self, workdir: str | os.PathLike, *, state: str | None = None, log_level: str = "info",
                 env: Mapping[str, str] | None = None, cwd: str | None = None,
                 ready_timeout: float = DEFAULT_READY_TIMEOUT, stop_grace: float = DEFAULT_STOP_GRACE):
        self.workdir = Path(workdir)
        self.state = str(state or self.workdir / "state.db")
        self._server_kw = dict(log_level=log_level, env=env, cwd=cwd, ready_timeout=ready_timeout,
                               stop_grace=stop_grace)
        self.servers: list[Server] = []

    def start(self, kind: str, *options: str, name: str | None = None, state: str | None = None) -> Server:
        """Start a ``kind`` server with further ``options``, named ``name`` (default: ``kind``, or ``kindN``
        when taken) on ``state`` (default: the group's); returns it once ready. The server joins
        :attr:`servers` before it starts, so one that fails (:class:`ServerFailed`) is listed, reaped."""
        taken = {s.name for s in self.servers}
        if name is None:
            name = kind if kind not in taken else next(f"{kind}{n}" for n in range(2, 10**6)
                                                      if f"{kind}{n}" not in taken)
        elif name in taken:
            raise ValueError(f"a server named {name!r} is in the group already")
        server = Server(kind, str(self.workdir / f"{name}.sock"), str(state or self.state), options,
                        log_path=str(self.workdir / f"{name}.log"), name=name, **self._server_kw)
        self.servers.append(server)
        return server.start()

    def stop(self) -> None:
        """Stop every server still running (SIGTERM, SIGKILL after the grace) and reap it."""
        for server in self.servers:
            if server.proc is not None:
                server.stop()

    def logs(self) -> str:
        """Every server's log under a header with its name, PID and exit status."""
        return "\n".join(f"--- {s.name} server ({s.kind}), pid {s.proc.pid if s.proc else None}, exit "
                         f"{s.returncode} ---\n{s.log()}" for s in self.servers)

    def __enter__(self) -> "ServerGroup":
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
