"""Fault injection (``--inject SPEC``): the grammar, the faults a device cannot do refused at start-up, and each fault
observed through the project's driver on a real server -- error statuses (crypto and RPMB), delayed and reordered
completions, DEVICE_NEEDS_RESET after N requests, configuration changes, HW_READY cleared and restored, dropped and
duplicated interrupts -- with the request filters and the seeded rate reproducible run after run.

The generic faults run on the test-only ``null`` device (loopback: each request's readable bytes come back in its
writable buffer), whose requests are easy to tell apart.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import SERVER_ENV, TOP
from vfu_virtio.abi import crypto as C
from vfu_virtio.abi import rpmb as R
from vfu_virtio.abi.virtio import DEVICE_NEEDS_RESET
from vfu_virtio.client import crypto as requests
from vfu_virtio.client.rpmb import RpmbClient
from vfu_virtio.client.virtio_pci import VirtioPciDriver
from vfu_virtio.conform.target import fired, settle, wait_fd
from vfu_virtio.virtio import inject


# ---- the grammar --------------------------------------------------------------------------------------------------
def test_grammar():
    f = inject.parse("error:op=HASH,status=NOTSUPP,min-bytes=0x10,after=2,count=3,rate=0.25")
    assert (f.kind, f.params) == ("error", {"op": "HASH", "status": "NOTSUPP", "min-bytes": 16, "after": 2,
                                            "count": 3, "rate": 0.25})
    assert inject.parse("drop-irq:vector=intx").params == {"vector": "intx"}
    assert inject.parse("dup-irq:vector=3").params == {"vector": 3}
    assert inject.parse("needs-reset").params == {}


@pytest.mark.parametrize("spec,problem", [
    ("explode", "unknown fault 'explode'"), ("error:ms=3", "'ms=3' is not NAME=VALUE"), ("delay", "delay needs ms=N"),
    ("delay:ms=-1", "ms='-1' is not a valid value"), ("error:rate=2", "rate='2' is not a valid value"),
    ("reorder:window=1", "at least 2"), ("drop-irq:op=HASH", "'op=HASH' is not NAME=VALUE"),
    ("error:queue", "'queue' is not NAME=VALUE")])
def test_grammar_refuses(spec, problem):
    with pytest.raises(ValueError, match=problem):
        inject.parse(spec)


@pytest.mark.parametrize("kind,spec,message", [
    ("null", "error", "the null device has no error status"),
    ("rpmb", "clear-hw-ready", "the rpmb device has no HW_READY status bit"),
    ("crypto", "error:op=SHA1", "the crypto device has no request type 'SHA1'"),
    ("rpmb", "error:status=NOTSUPP", "the rpmb device's error statuses are GENERAL_FAILURE"),
    ("rpmb", "delay:ms=1,queue=1", "the rpmb device has queues 0..0"),
    ("rpmb", "fire", "unknown fault 'fire'")])
def test_a_fault_the_device_cannot_do_is_refused_at_start(tmp_path, kind, spec, message):
    proc = subprocess.run([sys.executable, "-m", "vfu_virtio", kind, "--socket", str(tmp_path / "d.sock"), "--state",
                           str(tmp_path / "s.db"), "--inject", spec], capture_output=True, text=True, cwd=TOP,
                          env={**os.environ, **SERVER_ENV}, timeout=60)
    assert proc.returncode == 2 if spec == "fire" else proc.returncode == 1
    assert message in proc.stderr and "Traceback" not in proc.stderr


# ---- on a real device ---------------------------------------------------------------------------------------------
def null_driver(serve, *specs: str, seed: int = 0) -> tuple:
    args = [a for s in specs for a in ("--inject", s)]
    server = serve("null", *args, "--inject-seed", str(seed))
    drv = VirtioPciDriver.connect(server.socket)
    drv.init()
    return server, drv


def echo(drv: VirtioPciDriver, data: bytes, queue: int = 0) -> tuple[int, bytes]:
    used, ins = drv.queue(queue).request([data], [len(data)])
    return used, ins[0]


@pytest.mark.ring_neutral
def test_error_status_for_one_request_type(serve):
    """Crypto: HASH sessions are answered NOTSUPP (status at offset 8 of the 16-byte outcome, session_id 0),
    CIPHER sessions still succeed."""
    server = serve("crypto", "--inject", "error:op=HASH_CREATE_SESSION,status=NOTSUPP")
    with VirtioPciDriver.connect(server.socket) as drv:
        drv.init()
        ctrl = drv.queue(4)
        _used, out = ctrl.request(*_req(requests.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA_256, 32)))
        assert b"".join(out) == bytes(8) + bytes([C.VIRTIO_CRYPTO_NOTSUPP, 0, 0, 0]) + bytes(4)
        _used, out = ctrl.request(*_req(requests.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, bytes(16),
                                                                      C.VIRTIO_CRYPTO_OP_ENCRYPT)))
        assert requests.session_input(b"".join(out))[1] == C.VIRTIO_CRYPTO_OK
    server.stop()
    assert "injected fault 'error:op=HASH_CREATE_SESSION,status=NOTSUPP' (1): error on a request on queue 4 " \
           "(HASH_CREATE_SESSION" in server.log()
    assert "injected faults fired: 'error:op=HASH_CREATE_SESSION,status=NOTSUPP' 1 time(s)" in server.log()


def _req(r: requests.Request) -> tuple[list[bytes], list[int]]:
    return [r.readable], [r.writable]


@pytest.mark.ring_neutral
def test_rpmb_error_changes_nothing(serve):
    server = serve("rpmb", "--inject", "error:op=DATA_WRITE,status=WRITE_FAILURE,count=1")
    key = bytes(range(32))
    with RpmbClient.connect(server.socket) as client:
        assert client.program_key(key) == R.VIRTIO_RPMB_RES_OK
        assert client.write(0, [b"a" * 256]) == (R.VIRTIO_RPMB_RES_WRITE_FAILURE, 0)  # MAC-sealed, nothing written
        assert client.write(0, [b"b" * 256]) == (R.VIRTIO_RPMB_RES_OK, 1)
        assert client.read(0) == (R.VIRTIO_RPMB_RES_OK, [b"b" * 256])


def hash_statuses(serve, seed: int, name: str) -> list[int]:
    server = serve("crypto", "--inject", "error:op=HASH,rate=0.5", "--inject-seed", str(seed), name=name)
    with VirtioPciDriver.connect(server.socket) as drv:
        drv.init()
        _used, out = drv.queue(4).request(*_req(requests.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA_256, 32)))
        session = requests.session_input(b"".join(out))[0]
        statuses = []
        for _ in range(24):
            _used, out = drv.queue(0).request(*_req(requests.digest_data(C.VIRTIO_CRYPTO_HASH, session, b"x", 32)))
            statuses.append(out[-1][-1])
    server.stop()
    return statuses


@pytest.mark.ring_neutral
def test_a_rate_is_reproducible_with_its_seed(serve):
    first, again, other = hash_statuses(serve, 7, "a"), hash_statuses(serve, 7, "b"), hash_statuses(serve, 8, "c")
    assert first == again and first != other
    assert set(first) == {C.VIRTIO_CRYPTO_OK, C.VIRTIO_CRYPTO_ERR}


@pytest.mark.ring_neutral
def test_filters_select_the_requests(serve):
    """queue=1, min-bytes=100, after=1, count=2 on a delay: of the big requests on queue 1 the 2nd and 3rd are delayed
    (not in the used ring after a register round trip); the small one, the one on queue 0 and the 4th are not."""
    server, drv = null_driver(serve, "delay:ms=5000,queue=1,min-bytes=100,after=1,count=2")
    with drv:
        delayed = []
        for queue, size in ((0, 200), (1, 50), (1, 200), (1, 200), (1, 200), (1, 200)):
            q = drv.queue(queue)
            q.submit([bytes(size)], [size])
            q.kick(force=True)
            settle(drv)
            delayed.append(q.vq.used_pending() == 0)
            q.wait(10.0)
    assert delayed == [False, False, False, True, True, False]


def test_delay_and_reorder(serve):
    """delay: the request is not used until later; reorder (window 2): two requests published with one kick come back
    newest first."""
    server, drv = null_driver(serve, "delay:ms=3000,count=1", "reorder:window=2,queue=1")
    with drv:
        q = drv.queue(0)
        q.submit([b"slow"], [4])
        q.kick(force=True)
        settle(drv)
        assert q.vq.used_pending() == 0
        (c,) = q.wait(10.0)
        assert c.data == [b"slow"]
        q1 = drv.queue(1)
        first, second = q1.submit([b"one"], [3]), q1.submit([b"two"], [3])
        q1.kick(force=True)
        done = q1.wait(10.0, min_completions=2)
        assert [c.token for c in done] == [second, first] and [c.data for c in done] == [[b"two"], [b"one"]]


def test_needs_reset_after_n_requests(serve):
    server, drv = null_driver(serve, "needs-reset:after=2")
    with drv:
        assert [echo(drv, b"%d" % i) for i in range(2)] == [(1, b"0"), (1, b"1")]
        q = drv.queue(0)
        q.submit([b"third"], [5])
        q.kick(force=True)
        assert wait_fd(drv.config_eventfd, 5.0) and drv.status & DEVICE_NEEDS_RESET
        settle(drv)
        assert q.vq.used_pending() == 0  # the request that met the fault is never completed
    server.stop()
    assert "DEVICE_NEEDS_RESET: injected fault 'needs-reset:after=2' on a request on queue 0" in server.log()


def config_interrupts(drv: VirtioPciDriver) -> int:
    """Configuration change interrupts so far: those the driver's waits took, and those still on the eventfd."""
    settle(drv)
    return drv.config_interrupts + fired(drv.config_eventfd)


@pytest.mark.ring_neutral
def test_config_change(serve):
    server, drv = null_driver(serve, "config-change:after=1")
    with drv:
        generation = drv.read_common("config_generation")
        echo(drv, b"a")
        assert config_interrupts(drv) == 0 and drv.read_common("config_generation") == generation
        echo(drv, b"b")
        assert config_interrupts(drv) == 1 and drv.read_common("config_generation") == generation + 1


def test_dropped_and_duplicated_interrupts(serve):
    server, drv = null_driver(serve, "drop-irq:vector=1,count=1", "dup-irq:vector=2,count=1")
    with drv:
        q0, q1 = drv.queue(0), drv.queue(1)
        assert (q0.vector, q1.vector) == (1, 2)
        for q, want in ((q0, 0), (q0, 1), (q1, 2), (q1, 1)):
            fired(q.eventfd)
            q.submit([b"x"], [1])
            q.kick(force=True)
            while not q.vq.has_used():
                settle(drv)
            q.poll()
            settle(drv)
            assert fired(q.eventfd) == want


@pytest.mark.ring_neutral
def test_hw_ready_cleared_and_restored(serve):
    """HW_READY is cleared as the request completes (before its used element is published) and set again
    restore-ms later, each with a configuration change interrupt."""
    server = serve("crypto", "--inject", "clear-hw-ready:op=HASH_CREATE_SESSION,restore-ms=2000")
    with VirtioPciDriver.connect(server.socket) as drv:
        drv.init()
        status = lambda: int.from_bytes(drv.device_config(0, 4), "little")  # noqa: E731
        assert status() == C.VIRTIO_CRYPTO_S_HW_READY
        _used, out = drv.queue(4).request(*_req(requests.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA_256, 32)))
        assert requests.session_input(b"".join(out))[1] == C.VIRTIO_CRYPTO_OK  # the request itself is served
        assert status() == 0 and config_interrupts(drv) == 1
        assert wait_fd(drv.config_eventfd, 10.0) and status() == C.VIRTIO_CRYPTO_S_HW_READY
    server.stop()
    assert "HW_READY cleared" in server.log() and "HW_READY set" in server.log()
