"""Shared fixtures: real ``vfu-virtio`` server processes on real vfio-user sockets.

``serve(kind, *args)`` starts ``python -m vfu_virtio <kind> --socket S --state DB *args`` as a
subprocess (the same command a user runs), waits for its socket, and stops it with SIGTERM at the end of
the test; the test fails if the server did not exit cleanly or left its socket behind. ``program`` replaces
``-m vfu_virtio`` (a test launcher taking the same arguments), ``env`` the environment.

``kit`` is the guest kit of ``scripts/setup`` (QEMU, kernel, guest program) for the ``guest`` tests: they
skip without it, except under CI, where a missing kit is an error.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vfu_virtio.qemu.kit import GuestKit, KitMissing

TOP = Path(__file__).resolve().parents[1]


class ServerProcess:
    """A running device server: ``socket``, ``state``, ``proc``, ``log_path``; :meth:`log` reads its stderr."""

    def __init__(self, kind: str, tmp: Path, args: tuple[str, ...], state: Path | None = None,
                 name: str | None = None, program: tuple[str, ...] = ("-m", "vfu_virtio"),
                 env: dict[str, str] | None = None):
        name = name or kind
        self.kind = kind
        self.program = program
        self.env = env
        self.socket = str(tmp / f"{name}.sock")
        self.state = str(state or tmp / "state.db")
        self.log_path = tmp / f"{name}.log"
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        cmd = [sys.executable, *self.program, "--log-level", "debug", self.kind,
               "--socket", self.socket, "--state", self.state, *self.args]
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._logf, stderr=subprocess.STDOUT, cwd=TOP, env=self.env)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server socket {self.socket} did not appear:\n{self.log()}")
            time.sleep(0.02)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL (for crash tests); the socket file stays behind, as it would after a real crash."""
        self.proc.kill()
        self.proc.wait()
        self._logf.close()

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"server ignored SIGTERM:\n{self.log()}")
        self._logf.close()
        return self.proc.returncode


@pytest.fixture
def serve(tmp_path):
    """Factory: ``serve("crypto", "--queues", "2")`` -> :class:`ServerProcess` (stopped at teardown)."""
    started: list[ServerProcess] = []

    def _serve(kind: str, *args: str, state: Path | None = None, name: str | None = None,
               **options) -> ServerProcess:
        s = ServerProcess(kind, tmp_path, args, state=state, name=name, **options)
        started.append(s)
        return s

    yield _serve
    for s in started:
        if s.proc.poll() is None:
            rc = s.stop()
            assert rc == 0, f"{s.kind} server exited with {rc} on SIGTERM:\n{s.log()}"
            assert not os.path.exists(s.socket), "server left its socket file behind"
        assert "Traceback" not in s.log(), f"{s.kind} server logged a traceback:\n{s.log()}"


@pytest.fixture(scope="session")
def kit() -> GuestKit:
    try:
        return GuestKit.from_env()
    except KitMissing as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(e))
