"""The virtio-pci transport end to end: a real server, the project's driver, hostile chains.

Sources: virtio v1.4 "Device Status Field" (DEVICE_NEEDS_RESET), "Feature Bits", "Common configuration
structure layout" (feature select windows, queue registers), "The Virtqueue Descriptor Table"
(chains, indirect tables). A hostile driver must leave the process alive, get DEVICE_NEEDS_RESET and one
log line, and the next client must be served by a freshly reset device.
"""
import struct

import pytest

from vfu_virtio.client.virtio_pci import DEFAULT_DRIVER_FEATURES, DeviceNeedsReset, VirtioPciDriver
from vfu_virtio.abi import crypto as C
from vfu_virtio.client import crypto as D
from vfu_virtio.abi.ring import VIRTQ_DESC_F_NEXT
from vfu_virtio.abi.virtio import DEVICE_NEEDS_RESET, DRIVER_OK, FEATURES_OK, VIRTIO_MSI_NO_VECTOR

KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
PLAIN = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
CIPHER = bytes.fromhex("7649abac8119b246cee98e9b12e9197d")
CTRLQ = 2


@pytest.fixture
def server(serve):
    return serve("crypto", "--queues", "2")


def attach(server) -> VirtioPciDriver:
    drv = VirtioPciDriver.connect(server.socket)
    drv.init(features_wanted=DEFAULT_DRIVER_FEATURES)
    return drv


def encrypt_once(drv: VirtioPciDriver) -> bytes:
    """Create an AES-128-CBC session and encrypt NIST F.2.1's first block on dataq 0."""
    req = D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY, C.VIRTIO_CRYPTO_OP_ENCRYPT)
    _u, (outcome,) = drv.queue(CTRLQ).request([req.readable[:72], KEY], [16])
    sid, status = D.session_input(outcome)
    assert status == C.VIRTIO_CRYPTO_OK
    head = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, IV, PLAIN).readable[:72]
    _u, (dst, st) = drv.queue(0).request([head, IV, PLAIN], [16, 1])
    assert st == b"\0"
    return dst


def poison(drv: VirtioPciDriver, queue: int, how: str) -> None:
    """Submit a normal-looking request on ``queue``, then corrupt its descriptors before the kick."""
    q = drv.queue(queue)
    head = q.submit([b"x" * 72, b"y" * 16], [17], indirect=False)
    vq = q.vq
    table = vq.desc_iova
    addr, length, flags, nxt = struct.unpack("<QIHH", vq.mem.read(table + 16 * head, 16))
    if how == "out-of-range":
        vq.mem.write(table + 16 * head, struct.pack("<QIHH", 0x7FFF_0000_0000, length, flags, nxt))
    elif how == "loop":
        vq.mem.write(table + 16 * head, struct.pack("<QIHH", addr, length, flags | VIRTQ_DESC_F_NEXT, head))
    elif how == "oversized":
        vq.mem.write(table + 16 * head, struct.pack("<QIHH", addr, 0xFFFF_FFF0, flags, nxt))
    q.kick(force=True)


@pytest.mark.parametrize("how", ["out-of-range", "loop", "oversized"])
def test_hostile_chain_sets_needs_reset_and_next_client_is_served(server, how):
    drv = attach(server)
    poison(drv, 0, how)
    with pytest.raises(DeviceNeedsReset):
        drv.queue(0).wait(timeout=5)
    assert drv.status & DEVICE_NEEDS_RESET
    drv.close()
    assert server.alive()
    warnings = [ln for ln in server.log().splitlines() if "DEVICE_NEEDS_RESET" in ln]
    assert len(warnings) == 1, warnings  # one clear line per fault
    drv = attach(server)  # a fresh client on a freshly reset device
    assert drv.status & DEVICE_NEEDS_RESET == 0
    assert encrypt_once(drv) == CIPHER
    drv.close()


def test_driver_reset_clears_needs_reset_and_device_works_again(server):
    drv = attach(server)
    poison(drv, 1, "loop")
    with pytest.raises(DeviceNeedsReset):
        drv.queue(1).wait(timeout=5)
    drv.init(features_wanted=DEFAULT_DRIVER_FEATURES)  # writes 0 to device_status first
    assert encrypt_once(drv) == CIPHER
    drv.close()


def test_reset_in_the_middle_of_traffic(server):
    drv = attach(server)
    sid_req = D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY, C.VIRTIO_CRYPTO_OP_ENCRYPT)
    _u, (outcome,) = drv.queue(CTRLQ).request([sid_req.readable[:72], KEY], [16])
    sid, _ = D.session_input(outcome)
    head = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, IV, PLAIN).readable[:72]
    q = drv.queue(0)
    for _ in range(64):
        q.submit([head, IV, PLAIN], [16, 1])
    q.kick(force=True)
    drv.write_common("device_status", 0)  # reset while requests are in flight
    assert drv.read_common("device_status") == 0
    assert drv.read_common("queue_enable") == 0
    drv.init(features_wanted=DEFAULT_DRIVER_FEATURES)
    # sessions are volatile: the reset dropped them
    _u, (_dst, st) = drv.queue(0).request([head, IV, PLAIN], [16, 1])
    assert st == bytes([C.VIRTIO_CRYPTO_INVSESS])
    assert encrypt_once(drv) == CIPHER
    drv.close()


def test_vfio_user_device_reset_in_the_middle_of_traffic(server):
    drv = attach(server)
    assert encrypt_once(drv) == CIPHER
    drv.client.reset()  # VFIO_USER_DEVICE_RESET
    assert drv.read_common("device_status") == 0
    drv.init(features_wanted=DEFAULT_DRIVER_FEATURES)
    assert encrypt_once(drv) == CIPHER
    drv.close()


def test_client_vanishing_mid_traffic_then_reconnect(server):
    drv = attach(server)
    q = drv.queue(0)
    for _ in range(32):
        q.submit([b"\0" * 72, IV, PLAIN], [16, 1])
    q.kick(force=True)
    drv.client.close()  # no reset, no goodbye: the socket just goes away
    drv = attach(server)
    assert encrypt_once(drv) == CIPHER
    drv.close()
    assert "client 2 attached" in server.log()


def test_feature_select_windows_and_rejected_unknown_feature(server):
    drv = VirtioPciDriver.connect(server.socket)
    for sel, expected_bit in ((0, None), (1, 0)):  # VERSION_1 is bit 32 = word 1 bit 0
        drv.write_common("device_feature_select", sel)
        word = drv.read_common("device_feature")
        if expected_bit is not None:
            assert word >> expected_bit & 1
    for sel in (2, 3, 0xFFFF):
        drv.write_common("device_feature_select", sel)
        assert drv.read_common("device_feature") == 0  # "feature selects >= 2 read as 0"
    drv.write_common("device_status", 0)
    drv.write_common("device_status", 1 | 2)
    drv.write_common("driver_feature_select", 1)
    drv.write_common("driver_feature", 1 | 1 << 20)  # VERSION_1 plus bit 52, which is not offered
    drv.write_common("device_status", 1 | 2 | FEATURES_OK)
    assert not drv.read_common("device_status") & FEATURES_OK
    drv.write_common("device_status", 0)
    drv.write_common("device_status", 1 | 2)
    drv.write_common("driver_feature_select", 1)
    drv.write_common("driver_feature", 0)  # a modern-only device refuses a driver without VERSION_1
    drv.write_common("device_status", 1 | 2 | FEATURES_OK)
    assert not drv.read_common("device_status") & FEATURES_OK
    drv.close()


def test_queue_registers(server):
    drv = VirtioPciDriver.connect(server.socket)
    assert drv.read_common("num_queues") == 3
    for q in range(3):
        drv.write_common("queue_select", q)
        assert drv.read_common("queue_size") == 256
        assert drv.read_common("queue_notify_off") == q
        drv.write_common("queue_msix_vector", 99)  # the function has 4 vectors
        assert drv.read_common("queue_msix_vector") == VIRTIO_MSI_NO_VECTOR
        drv.write_common("queue_msix_vector", q + 1)
        assert drv.read_common("queue_msix_vector") == q + 1
        drv.write_common("queue_size", 100)  # not a power of 2: refused
        assert drv.read_common("queue_size") == 256
    drv.write_common("queue_select", 3)  # no such queue
    assert drv.read_common("queue_size") == 0
    drv.write_common("queue_desc", 0x123456789000)
    assert drv.read_common("queue_desc") == 0
    drv.write_common("device_status", 0)
    drv.write_common("queue_select", 0)
    assert drv.read_common("queue_msix_vector") == VIRTIO_MSI_NO_VECTOR  # reset clears vectors
    drv.close()


def test_driver_ok_without_features_ok_needs_reset(server):
    drv = VirtioPciDriver.connect(server.socket)
    drv.write_common("device_status", 0)
    drv.write_common("device_status", 1 | 2 | DRIVER_OK)
    assert drv.read_common("device_status") & DEVICE_NEEDS_RESET
    drv.close()


def test_device_refuses_stateless_bits_without_revision_1(server):
    """virtio-crypto "Feature bit requirements": *_STATELESS_MODE needs VIRTIO_CRYPTO_F_REVISION_1."""
    drv = VirtioPciDriver.connect(server.socket)
    for crypto_bits, accepted in ((1 << C.VIRTIO_CRYPTO_F_CIPHER_STATELESS_MODE, False),
                                  ((1 << C.VIRTIO_CRYPTO_F_CIPHER_STATELESS_MODE) | 1, True)):
        drv.write_common("device_status", 0)
        drv.write_common("device_status", 1 | 2)
        drv.write_common("driver_feature_select", 0)
        drv.write_common("driver_feature", crypto_bits)
        drv.write_common("driver_feature_select", 1)
        drv.write_common("driver_feature", 1)  # VERSION_1
        drv.write_common("device_status", 1 | 2 | FEATURES_OK)
        assert bool(drv.read_common("device_status") & FEATURES_OK) is accepted
    drv.close()


def test_pipelined_traffic_never_tears_ring_indexes(server):
    """Driver and device in two processes update avail.idx / used.idx concurrently for ~2 s with two
    batches always in flight. Each le16 index must be stored and loaded in one access: with byte-wise
    stores the device once read a half-written avail.idx and set DEVICE_NEEDS_RESET within a second."""
    import time
    drv = attach(server)
    req = D.digest_data(C.VIRTIO_CRYPTO_HASH, _hash_session(drv), b"p" * 256, 32)
    q = drv.queue(0)
    done, deadline = 0, time.monotonic() + 2.0
    for _ in range(64):
        q.submit([req.readable], [req.writable])
    q.kick()
    while time.monotonic() < deadline:
        for _ in range(64):
            q.submit([req.readable], [req.writable])
        q.kick()
        for c in q.wait(timeout=10, min_completions=64):
            assert c.data[-1][-1] == C.VIRTIO_CRYPTO_OK
            done += 1
    while q.vq.in_flight:
        done += len(q.wait(timeout=10, min_completions=q.vq.in_flight))
    assert not drv.status & DEVICE_NEEDS_RESET
    assert done > 1000
    drv.close()


def _hash_session(drv) -> int:
    req = D.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA_256, 32)
    _u, (outcome,) = drv.queue(CTRLQ).request([req.readable], [16])
    sid, status = D.session_input(outcome)
    assert status == C.VIRTIO_CRYPTO_OK
    return sid
