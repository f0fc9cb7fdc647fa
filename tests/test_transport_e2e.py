"""The virtio-pci transport end to end: a real server of the test-only ``null`` device, the project's driver,
hostile chains, resets, on both virtqueue formats (fixture ``ring``).

Sources: virtio v1.4 "Device Status Field" (DEVICE_NEEDS_RESET), "Feature Bits", "Common configuration
structure layout" (feature select windows, queue registers), "The Virtqueue Descriptor Table" and "Packed
Virtqueues / The Virtqueue Descriptor Format" (chains, indirect tables). A hostile driver must leave the process
alive, get DEVICE_NEEDS_RESET and one log line, and the next client must be served by a freshly reset device.
"""
import struct
import time

import pytest

from vfu_virtio.abi.ring import VIRTQ_DESC_F_NEXT
from vfu_virtio.abi.virtio import DEVICE_NEEDS_RESET, DRIVER_OK, FEATURES_OK, VIRTIO_MSI_NO_VECTOR
from vfu_virtio.client.virtio_pci import DeviceNeedsReset, VirtioDriverError, VirtioPciDriver

QUEUES = 3


@pytest.fixture
def server(serve):
    return serve("null", "--queues", str(QUEUES))


def attach(server) -> VirtioPciDriver:
    drv = VirtioPciDriver.connect(server.socket)
    drv.init()
    return drv


def echo_once(drv: VirtioPciDriver, queue: int = 0) -> bytes:
    """One loopback request: 16 bytes in two readable descriptors come back in two writable ones."""
    used, (a, b) = drv.queue(queue).request([b"0123456789", b"abcdef"], [12, 4])
    assert used == 16
    return a + b


def poison(drv: VirtioPciDriver, queue: int, how: str) -> None:
    """Submit a 3-descriptor chain as the first on a fresh queue (descriptors 0, 1, 2 of the table or ring in
    both formats), then corrupt it before the kick: an address outside guest memory, a chain that never ends
    (split: the last descriptor's NEXT points back at the head; packed: the last descriptor says NEXT and the
    ring goes on into descriptors never made available), or a length beyond what a chain may hold."""
    q = drv.queue(queue)
    q.submit([b"x" * 72, b"y" * 16], [17], indirect=False)
    vq = q.vq
    last = vq.desc_iova + 16 * 2
    addr, length, a, b = struct.unpack("<QIHH", vq.mem.read(last, 16))
    if how == "out-of-range":
        vq.mem.write(vq.desc_iova, struct.pack("<Q", 0x7FFF_0000_0000))
    elif how == "endless" and vq.format == "split":   # b is next, a is flags
        vq.mem.write(last, struct.pack("<QIHH", addr, length, a | VIRTQ_DESC_F_NEXT, 0))
    elif how == "endless":                            # a is the Buffer ID, b is flags
        vq.mem.write(last, struct.pack("<QIHH", addr, length, a, b | VIRTQ_DESC_F_NEXT))
    elif how == "oversized":
        vq.mem.write(last + 8, struct.pack("<I", 0xFFFF_FFF0))
    q.kick(force=True)


@pytest.mark.parametrize("how", ["out-of-range", "endless", "oversized"])
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
    assert echo_once(drv) == b"0123456789abcdef"
    drv.close()


def test_driver_reset_clears_needs_reset_and_device_works_again(server):
    drv = attach(server)
    poison(drv, 1, "endless")
    with pytest.raises(DeviceNeedsReset):
        drv.queue(1).wait(timeout=5)
    drv.init()  # writes 0 to device_status first
    assert echo_once(drv, 1) == b"0123456789abcdef"
    drv.close()


def test_reset_in_the_middle_of_traffic(server):
    drv = attach(server)
    q = drv.queue(0)
    for i in range(64):
        q.submit([b"%03d" % i], [3])
    q.kick(force=True)
    drv.write_common("device_status", 0)  # reset while requests are in flight
    assert drv.read_common("device_status") == 0
    assert drv.read_common("queue_enable") == 0
    drv.init()
    assert echo_once(drv) == b"0123456789abcdef"
    drv.close()


def test_vfio_user_device_reset_in_the_middle_of_traffic(server):
    drv = attach(server)
    assert echo_once(drv) == b"0123456789abcdef"
    drv.client.reset()  # VFIO_USER_DEVICE_RESET
    assert drv.read_common("device_status") == 0
    drv.init()
    assert echo_once(drv) == b"0123456789abcdef"
    drv.close()


def test_client_vanishing_mid_traffic_then_reconnect(server):
    drv = attach(server)
    q = drv.queue(0)
    for _ in range(32):
        q.submit([b"x" * 64], [64])
    q.kick(force=True)
    drv.client.close()  # no reset, no goodbye: the socket just goes away
    drv = attach(server)
    assert echo_once(drv) == b"0123456789abcdef"
    drv.close()
    assert "client 2 attached" in server.log()


@pytest.mark.ring_neutral
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


@pytest.mark.ring_neutral
def test_ring_packed_required_or_withheld(serve):
    """``--ring packed`` refuses FEATURES_OK to a driver without VIRTIO_F_RING_PACKED; ``--ring split`` does not
    offer it ("Feature Bits": a device may refuse a feature set it cannot work with)."""
    for ring, offered, accepted_without in (("packed", True, False), ("split", False, True)):
        server = serve("null", "--ring", ring, "--instance", ring, name=ring)
        drv = VirtioPciDriver.connect(server.socket)
        drv.begin_init()
        assert bool(drv.device_features() >> 34 & 1) is offered
        drv.set_features_raw(1 << 32)  # VERSION_1 only
        assert drv.features_ok() is accepted_without
        drv.close()


@pytest.mark.ring_neutral
def test_queue_registers(server):
    drv = VirtioPciDriver.connect(server.socket)
    assert drv.read_common("num_queues") == QUEUES
    for q in range(QUEUES):
        drv.write_common("queue_select", q)
        assert drv.read_common("queue_size") == 256
        assert drv.read_common("queue_notify_off") == q
        drv.write_common("queue_msix_vector", 99)  # the function has 4 vectors
        assert drv.read_common("queue_msix_vector") == VIRTIO_MSI_NO_VECTOR
        drv.write_common("queue_msix_vector", q + 1)
        assert drv.read_common("queue_msix_vector") == q + 1
        drv.write_common("queue_size", 100)  # not a power of 2: refused for a split ring
        assert drv.read_common("queue_size") == 256
    drv.write_common("queue_select", QUEUES)  # no such queue
    assert drv.read_common("queue_size") == 0
    drv.write_common("queue_desc", 0x123456789000)
    assert drv.read_common("queue_desc") == 0
    drv.write_common("device_status", 0)
    drv.write_common("queue_select", 0)
    assert drv.read_common("queue_msix_vector") == VIRTIO_MSI_NO_VECTOR  # reset clears vectors
    drv.close()


def test_packed_queue_size_need_not_be_a_power_of_two(server, ring):
    drv = VirtioPciDriver.connect(server.socket)
    if ring == "split":
        with pytest.raises(VirtioDriverError, match="kept queue_size 256 after we wrote 100"):
            drv.init(queue_size=100)
    else:
        drv.init(queue_size=100)
        assert drv.queue(0).size == 100 and echo_once(drv) == b"0123456789abcdef"
    drv.close()


@pytest.mark.ring_neutral
def test_driver_ok_without_features_ok_needs_reset(server):
    drv = VirtioPciDriver.connect(server.socket)
    drv.write_common("device_status", 0)
    drv.write_common("device_status", 1 | 2 | DRIVER_OK)
    assert drv.read_common("device_status") & DEVICE_NEEDS_RESET
    drv.close()


def test_pipelined_traffic_never_tears_ring_indexes(server):
    """Driver and device in two processes update the ring concurrently for ~2 s with two batches always in
    flight. Each le16 index or flags field must be stored and loaded in one access: with byte-wise stores the
    device once read a half-written avail.idx and set DEVICE_NEEDS_RESET within a second. A live packed descriptor
    must never be rewritten whole: ``struct.pack_into`` clears the 16 bytes before it stores the fields, and a driver
    in a wrap-0 lap read the cleared flags as a used descriptor ("Buffer ID 0, which is not in flight", or a used
    length of 0) in about one run of 50 on a loaded machine, until the device wrote only addr, len and id there."""
    drv = attach(server)
    q = drv.queue(0)
    payload = bytes(range(256))
    done, deadline = 0, time.monotonic() + 2.0
    for _ in range(64):
        q.submit([payload], [256])
    q.kick()
    while time.monotonic() < deadline:
        for _ in range(64):
            q.submit([payload], [256])
        q.kick()
        for c in q.wait(timeout=10, min_completions=64):
            assert c.used_len == 256 and c.data[0] == payload
            done += 1
    while q.vq.in_flight:
        done += len(q.wait(timeout=10, min_completions=q.vq.in_flight))
    assert not drv.status & DEVICE_NEEDS_RESET
    assert done > 500
    drv.close()
