"""vfu-virtio device server processes for a guest boot, started and stopped by this harness alone.

:class:`DeviceServers` runs ``python -m vfu_virtio.cli <kind> --socket S --state DB ...`` (the command a
user runs) per device, each with its own socket and log file in a work directory and one shared state
store, and waits until the socket exists (QEMU's vfio-user client connects once, at start-up). Leaving
the ``with`` block stops every server it started by PID: SIGTERM, then SIGKILL after a grace period.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .kit import TOP


class ServerFailed(RuntimeError):
    """A device server did not come up; the message carries its log."""


@dataclass
class DeviceServer:
    kind: str
    socket: Path
    log_path: Path
    proc: subprocess.Popen
    returncode: int | None = None  # set when stopped

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class DeviceServers:
    """Context manager owning the device servers of one run (see the module docstring)."""

    def __init__(self, workdir: Path, log_level: str = "info", start_timeout: float = 30, stop_timeout: float = 10):
        self.workdir = Path(workdir)
        self.state = self.workdir / "state.db"
        self.log_level = log_level
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.servers: list[DeviceServer] = []

    def start(self, kind: str, *options: str) -> DeviceServer:
        """Start a ``kind`` server (``crypto``, ``rpmb``) with extra CLI ``options``; returns once its socket exists."""
        n = len(self.servers)
        sock, log = self.workdir / f"{kind}{n}.sock", self.workdir / f"{kind}{n}.log"
        cmd = [sys.executable, "-m", "vfu_virtio.cli", "--log-level", self.log_level, kind,
               "--socket", str(sock), "--state", str(self.state), "--instance", f"{kind}{n}", *options]
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=TOP)
        server = DeviceServer(kind, sock, log, proc)
        self.servers.append(server)
        deadline = time.monotonic() + self.start_timeout
        while not sock.exists():
            if not server.alive() or time.monotonic() > deadline:
                self._stop(server)
                raise ServerFailed(f"{kind} server (pid {proc.pid}) did not create {sock} "
                                   f"(exit {server.returncode}):\n{server.log()}")
            time.sleep(0.02)
        return server

    def _stop(self, server: DeviceServer) -> None:
        if server.alive():
            os.kill(server.pid, signal.SIGTERM)
            try:
                server.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                os.kill(server.pid, signal.SIGKILL)
        server.returncode = server.proc.wait()

    def stop(self) -> None:
        """Stop every server still running (SIGTERM, SIGKILL after ``stop_timeout``) and reap it."""
        for server in self.servers:
            self._stop(server)

    def logs(self) -> str:
        return "\n".join(f"--- {s.kind} server, pid {s.pid}, exit {s.returncode} ---\n{s.log()}"
                         for s in self.servers)

    def __enter__(self) -> "DeviceServers":
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
