"""Available buffer notification suppression while the device polls (``--poll-us``), the re-enable race, and the
mapped notification area (``--notify mmap``), through real servers of the test-only ``null`` device and the
project's driver, on both virtqueue formats (fixture ``ring``), with and without VIRTIO_F_EVENT_IDX.

What the device writes is read back from guest memory at offsets written from the standard, not through the ring
classes: split ("The Virtqueue Used Ring"): ``used.flags`` le16 at byte 0 of the used ring (VIRTQ_USED_F_NO_NOTIFY =
1), ``avail_event`` le16 after the ``queue_size`` 8-byte used elements (byte ``4 + 8 * size``), ``avail.idx`` le16 at
byte 2 of the available ring; packed ("Event Suppression Structure Format"): the device area's ``flags`` le16 at
byte 2 (0 ENABLE, 1 DISABLE, 2 DESC). Nothing here asserts on time: a polling window is either far longer than the
test (suppression stays visible) or short, and then the test waits until the state says the device backed off.
"""
from __future__ import annotations

import os
import random
import struct
import time

import pytest

from vfu_virtio import control
from vfu_virtio.abi.virtio import VIRTIO_F_EVENT_IDX, bit
from vfu_virtio.client.virtio_pci import DEFAULT_DRIVER_FEATURES, VirtioPciDriver

LONG_POLL_US = "60000000"   # a minute: the device is still polling when the test looks
SHORT_POLL_US = "300"


def le16(drv: VirtioPciDriver, iova: int) -> int:
    return struct.unpack("<H", drv.memory.read(iova, 2))[0]


def notifications_state(drv: VirtioPciDriver, q) -> str:
    """"off" or "on": what the device's part of the ring says about available buffer notifications now."""
    vq = q.vq
    if vq.format == "packed":
        flags = le16(drv, vq.device_iova + 2)
        return "off" if flags == 1 else "on"
    if drv.negotiated & bit(VIRTIO_F_EVENT_IDX):
        # notifications are on when avail_event names the next index the driver will publish
        avail_event = le16(drv, vq.device_iova + 4 + 8 * vq.size)
        return "on" if avail_event == le16(drv, vq.driver_iova + 2) else "off"
    return "off" if le16(drv, vq.device_iova) & 1 else "on"


def attach(server, event_idx: bool) -> VirtioPciDriver:
    drv = VirtioPciDriver.connect(server.socket)
    features = DEFAULT_DRIVER_FEATURES if event_idx else DEFAULT_DRIVER_FEATURES & ~bit(VIRTIO_F_EVENT_IDX)
    drv.init(features)
    assert bool(drv.negotiated & bit(VIRTIO_F_EVENT_IDX)) == event_idx
    return drv


def echo(q, payload: bytes) -> None:
    used, (back,) = q.request([payload], [len(payload)])
    assert (used, back) == (len(payload), payload)


def wait_until(cond, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"never saw {what}")
        time.sleep(0.001)


@pytest.mark.parametrize("event_idx", [True, False], ids=["event_idx", "no_event_idx"])
def test_polling_device_keeps_notifications_off_and_serves_without_kicks(serve, event_idx):
    server = serve("null", "--queues", "1", "--poll-us", LONG_POLL_US)
    with attach(server, event_idx) as drv:
        q = drv.queue(0)
        assert notifications_state(drv, q) == "on"      # a fresh queue asks for notifications
        echo(q, b"first")                                # this one is kicked
        assert q.kicks == 1
        assert notifications_state(drv, q) == "off"      # the device polls the ring now
        for i in range(20):
            q.submit([b"x%02d" % i], [3])
            assert q.kick() is False                     # the driver sees no need to notify
            (c,) = q.wait()
            assert c.used_len == 3 and c.data[-1] == b"x%02d" % i
        assert q.kicks == 1
        st = control.query(server.socket)
        assert st["transport"]["queues"][0]["kicks"] == 1
        assert st["transport"]["queues"][0]["requests"] == 21
        assert st["loop"]["poll_us"] == int(LONG_POLL_US)


@pytest.mark.parametrize("event_idx", [True, False], ids=["event_idx", "no_event_idx"])
def test_device_without_polling_enables_notifications_after_each_run(serve, event_idx):
    """The negative control of the test above: with ``--poll-us 0`` every request is kicked."""
    server = serve("null", "--queues", "1", "--poll-us", "0")
    with attach(server, event_idx) as drv:
        q = drv.queue(0)
        for i in range(5):
            echo(q, b"y%d" % i)
            assert notifications_state(drv, q) == "on"
        assert q.kicks == 5


@pytest.mark.parametrize("notify", ["message", "mmap"])
@pytest.mark.parametrize("event_idx", [True, False], ids=["event_idx", "no_event_idx"])
def test_polling_backs_off_to_notifications_then_a_kick_wakes_it(serve, event_idx, notify):
    server = serve("null", "--queues", "1", "--poll-us", SHORT_POLL_US, "--notify", notify)
    with attach(server, event_idx) as drv:
        assert drv.notify_mapped == (notify == "mmap")
        q = drv.queue(0)
        echo(q, b"warm")
        wait_until(lambda: notifications_state(drv, q) == "on", "notifications enabled again after the window")
        q.submit([b"late"], [4])
        assert q.kick() is True                          # the device asked for it again: the driver notifies
        (c,) = q.wait()
        assert c.data[-1] == b"late"


@pytest.mark.parametrize("notify", ["message", "mmap"])
@pytest.mark.parametrize("event_idx", [True, False], ids=["event_idx", "no_event_idx"])
def test_no_request_is_lost_at_the_re_enable_race(serve, event_idx, notify):
    """Requests made available around the end of the polling window (gaps drawn around its length): each one is
    either seen by the polling device or kicked, never stranded (a stranded one times out in ``wait``)."""
    server = serve("null", "--queues", "1", "--poll-us", SHORT_POLL_US, "--notify", notify)
    rng = random.Random(13)
    with attach(server, event_idx) as drv:
        q = drv.queue(0)
        kicked = 0
        for i in range(400):
            payload = i.to_bytes(2, "little")
            q.submit([payload], [2])
            kicked += q.kick()
            (c,) = q.wait(timeout=10.0)
            assert c.data[-1] == payload
            gap = rng.uniform(0, 2 * int(SHORT_POLL_US) / 1e6)
            t = time.perf_counter() + gap
            while time.perf_counter() < t:
                pass
        assert 0 < kicked < 400   # some requests met a polling device, some a sleeping one


@pytest.mark.ring_neutral
def test_mmap_notify_area_is_a_sparse_mmap_area_with_an_fd(serve):
    """BAR0's region info offers exactly the notification page (offset 0x3000, 0x1000 bytes) as a sparse mmap
    area, with an fd; without ``--notify mmap`` the region is not mappable."""
    mapped = serve("null", "--queues", "2", "--notify", "mmap", name="mapped")
    plain = serve("null", "--queues", "2", "--instance", "1", name="plain")
    with VirtioPciDriver.connect(mapped.socket) as drv:
        info = drv.client.region_info(0, keep_fds=True)
        try:
            assert info.flags & 0x4                       # VFIO_REGION_INFO_FLAG_MMAP
            assert info.sparse_mmap == [(0x3000, 0x1000)]
            assert len(info.fds) == 1
        finally:
            for fd in info.fds:
                os.close(fd)
        assert drv.notify_mapped
    with VirtioPciDriver.connect(plain.socket) as drv:
        info = drv.client.region_info(0)
        assert not info.flags & 0x4 and info.sparse_mmap == []
        assert not drv.notify_mapped


def test_mmap_notifications_reach_every_queue(serve):
    """Doorbells through the mapped area on two queues: each request completes, and the device counts the
    notifications the driver stored (no region write message carried them)."""
    server = serve("null", "--queues", "2", "--notify", "mmap", "--poll-us", "0")
    with attach(server, True) as drv:
        assert drv.notify_mapped
        for i in range(6):
            echo(drv.queue(i % 2), b"q%d" % i)
        st = control.query(server.socket)
        kicks = [qs["kicks"] for qs in st["transport"]["queues"]]
        assert kicks == [drv.queue(0).kicks, drv.queue(1).kicks] and sum(kicks) >= 2
        assert st["loop"]["notify"] == "mmap"
