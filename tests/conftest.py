"""Shared fixtures: real ``vfu-virtio`` server processes on real vfio-user sockets.

``serve(kind, *args)`` starts ``python -m vfu_virtio <kind> --socket S --state DB *args`` with
:mod:`vfu_virtio.client.spawn` (the same command a user runs; it returns once the server signalled that its
socket listens), and stops it with SIGTERM at the end of the test; the test fails if the server did not exit
cleanly, left its socket behind or logged a traceback. The servers also serve the test-only device kinds of
``tests/devices`` (:data:`SERVER_ENV`: ``tests/`` on ``PYTHONPATH``, ``VFU_VIRTIO_DEVICES=devices.null``).

Every test that starts a server runs once per virtqueue format (fixture ``ring``, "split" and "packed"): the
servers get ``--ring split`` or ``--ring packed`` (unless the test passes ``--ring`` itself), so whatever the test
drives through them, with the project's driver (which accepts VIRTIO_F_RING_PACKED whenever it is offered), runs
on that format. A test whose checks do not depend on the format (no request goes through a ring) is marked
``ring_neutral`` and runs once, on split.

``kit`` is the guest kit of ``scripts/setup`` (QEMU, kernel, guest program) for the ``guest`` tests: they
skip without it, except under CI, where a missing kit is an error.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from vfu_virtio.client.spawn import Server, ServerGroup
from vfu_virtio.qemu.kit import GuestKit, KitMissing

TESTS = Path(__file__).resolve().parent
TOP = TESTS.parent
#: Test-only device kinds (importable from ``tests/``), for the server processes the tests start.
TEST_KINDS = "devices.null"
SERVER_ENV = {"PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p),
              "VFU_VIRTIO_DEVICES": TEST_KINDS}


def gone(pid: int) -> bool:
    """Whether no process ``pid`` exists any more (a child that was reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


RINGS = ("split", "packed")


def pytest_generate_tests(metafunc):
    if "ring" in metafunc.fixturenames:
        neutral = metafunc.definition.get_closest_marker("ring_neutral") is not None
        metafunc.parametrize("ring", RINGS[:1] if neutral else RINGS)


@pytest.fixture
def serve(tmp_path, ring):
    """Factory: ``serve("crypto", "--queues", "2")`` -> a ready :class:`~vfu_virtio.client.spawn.Server`
    (``socket``, ``state``, ``proc``, ``log()``, ``alive()``, ``start()``, ``stop()``, ``kill()``), stopped and
    checked at teardown. ``state=`` another store, ``name=`` another socket and log name."""
    group = ServerGroup(tmp_path, log_level="debug", env=SERVER_ENV, cwd=str(TOP))

    def _serve(kind: str, *args: str, state: Path | None = None, name: str | None = None) -> Server:
        if "--ring" not in args:
            args = (*args, "--ring", ring)
        return group.start(kind, *args, name=name, state=str(state) if state else None)

    yield _serve
    for s in group.servers:
        if s.alive():
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
