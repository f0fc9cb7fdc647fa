"""Shared fixtures: real ``vfu-virtio`` server processes on real vfio-user sockets.

``serve(kind, *args)`` starts ``python -m vfu_virtio <kind> --socket S --state DB *args`` with
:mod:`vfu_virtio.client.spawn` (the same command a user runs; it returns once the server signalled that its
socket listens), and stops it with SIGTERM at the end of the test; the test fails if the server did not exit
cleanly, left its socket behind or logged a traceback. The servers also serve the test-only device kinds of
``tests/devices`` and the test-only crypto profiles of ``tests/profiles`` (:data:`SERVER_ENV`: ``tests/`` on
``PYTHONPATH``, ``VFU_VIRTIO_DEVICES=devices.null``, ``VFU_VIRTIO_CRYPTO_PROFILES=profiles.no_akcipher``).

Every test that starts a server runs once per virtqueue format (fixture ``ring``, "split" and "packed"): the
servers get ``--ring split`` or ``--ring packed`` (unless the test passes ``--ring`` itself), so whatever the test
drives through them, with the project's driver (which accepts VIRTIO_F_RING_PACKED whenever it is offered), runs
on that format. A test whose checks do not depend on the format (no request goes through a ring) is marked
``ring_neutral`` and runs once, on split.

``kit`` is the guest kit of ``scripts/setup`` (QEMU, kernels, guest programs, DPDK) for the ``guest`` tests: they
skip without it, except under CI, where a missing kit is an error. :func:`kernel_labels` names the kit's guest
kernels, ``kernel`` takes each in turn and ``model`` each configuration of a test module's ``SCENARIO``;
``runs(configuration)`` gives that module's boot on ``kernel``; ``guest_boot(scenario, configuration, kernel)``
boots through :func:`vfu_virtio.qemu.compare.boot` at most once per session for each triple (a failed boot too),
and the end of the run prints the checks of every boot side by side (:func:`vfu_virtio.qemu.compare.tables`).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from vfu_virtio.client.spawn import Server, ServerGroup
from vfu_virtio.qemu import checks, compare
from vfu_virtio.qemu.kit import GuestKit, KitMissing

TESTS = Path(__file__).resolve().parent
TOP = TESTS.parent
#: Test-only device kinds and crypto profiles (importable from ``tests/``), for the server processes the tests start.
TEST_KINDS = "devices.null"
TEST_CRYPTO_PROFILES = "profiles.no_akcipher"
SERVER_ENV = {"PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p),
              "VFU_VIRTIO_DEVICES": TEST_KINDS, "VFU_VIRTIO_CRYPTO_PROFILES": TEST_CRYPTO_PROFILES}


def gone(pid: int) -> bool:
    """Whether no process ``pid`` exists any more (a child that was reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


RINGS = ("split", "packed")


def published(drv, vq) -> int:
    """Used elements the device wrote into ``vq``'s ring, read from guest memory (also after the driver let go of
    the ring): split, used.idx; packed (first lap only), descriptors whose USED flag (0x8000) is set."""
    if vq.format == "split":
        return struct.unpack("<H", drv.memory.read(vq.device_iova + 2, 2))[0]
    flags = struct.unpack(f"<{8 * vq.size}H", drv.memory.read(vq.desc_iova, 16 * vq.size))[7::8]
    return sum(1 for f in flags if f & 0x8000)


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


def kernel_labels() -> list[str]:
    """The kit's guest kernels by label (``linux-6.1``, ...); without a kit one placeholder, whose tests the ``kit``
    fixture skips (or fails, under CI)."""
    try:
        return [k.label for k in GuestKit.from_env().kernels]
    except KitMissing:
        return ["no-kit"]


BOOTS = pytest.StashKey[dict]()


@pytest.fixture(scope="session")
def guest_boot(kit, tmp_path_factory, request):
    """``guest_boot(scenario, configuration, kernel)`` -> (run, plan), booted on first use (see the module
    docstring)."""
    results = request.config.stash.setdefault(BOOTS, {})

    def get(scenario: str, name: str, kernel: str):
        key = (scenario, name, kernel)
        if key not in results:
            results[key] = compare.boot(kit.with_kernel(kernel), scenario, name,
                                        workdir=tmp_path_factory.mktemp(f"{scenario}-{name}-{kernel}"))
        return results[key]
    return get


@pytest.fixture(params=kernel_labels())
def kernel(request) -> str:
    """Each guest kernel of the kit in turn (its label)."""
    return request.param


def pytest_generate_tests(metafunc):
    """``ring``: each virtqueue format (one for a ``ring_neutral`` test); ``model``: each configuration of the test
    module's ``SCENARIO`` (vfu_virtio.qemu.compare.SCENARIOS)."""
    if "ring" in metafunc.fixturenames:
        neutral = metafunc.definition.get_closest_marker("ring_neutral") is not None
        metafunc.parametrize("ring", RINGS[:1] if neutral else RINGS)
    if "model" in metafunc.fixturenames:
        metafunc.parametrize("model", [c.name for c in compare.SCENARIOS[metafunc.module.SCENARIO]])


@pytest.fixture
def runs(guest_boot, kernel, request):
    """``runs(configuration)`` -> (run, plan) of the test module's ``SCENARIO`` on ``kernel``; fails with the run's
    diagnosis unless the guest finished and powered off."""
    def get(name: str):
        run, plan = guest_boot(request.module.SCENARIO, name, kernel)
        assert run.report.done and run.boot.returncode == 0, run.diagnosis()
        return run, plan
    return get


def assert_expected(check, name: str, run, plan) -> None:
    """``check`` on the run of configuration ``name`` gives the outcome vfu_virtio.qemu.checks.expected names."""
    outcome = check.run(run, plan)
    model = compare.config(check.scenario, name).model
    assert outcome.status == checks.expected(check.name, model, run), f"{outcome.cell()}\n{run.diagnosis()}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    results = config.stash.get(BOOTS, {})
    if results:
        terminalreporter.write_sep("=", "guest checks, side by side")
        terminalreporter.write_line(compare.tables(results))
