"""Asynchronous completion (decision TD-ASYNC) at the transport, with the test-only ``null`` device.

``vfu-virtio null --delay-ms D`` keeps every request whose first readable buffer starts with ``SLOW`` and
completes it from a worker thread D ms later (loopback: its readable bytes are copied into its writable
buffers), while other requests complete at once. So completions come back out of order, and a device reset, a
queue reset, a DMA unmap or a client disconnect can happen while the device still holds requests: the transport
must wait for them (the worker writes guest memory when its delay is over; had the memory gone, the process would
die), and must never publish their used elements into a reset queue.
"""
from __future__ import annotations

import pytest

from vfu_virtio.client.virtio_pci import DEFAULT_DRIVER_FEATURES, DeviceNeedsReset, VirtioPciDriver

from conftest import published

DELAY_MS = 400


@pytest.fixture
def null(serve):
    return serve("null", "--queues", "2", "--delay-ms", str(DELAY_MS))


def slow(tag: bytes) -> tuple[list[bytes], list[int]]:
    return [b"SLOW" + tag], [4 + len(tag)]


def attach(server) -> VirtioPciDriver:
    drv = VirtioPciDriver.connect(server.socket)
    drv.init(features_wanted=DEFAULT_DRIVER_FEATURES)
    return drv


def test_completions_come_back_out_of_order(null):
    with attach(null) as drv:
        q = drv.queue(0)
        q.submit(*slow(b"-1"), token="slow")
        for i in range(3):
            q.submit([b"fast%d" % i], [5], token=f"fast{i}")
        q.kick()
        done = q.wait(timeout=10, min_completions=4)
        assert [c.token for c in done] == ["fast0", "fast1", "fast2", "slow"]  # used ring order
        assert [c.data[0] for c in done] == [b"fast0", b"fast1", b"fast2", b"SLOW-1"]
        assert [c.used_len for c in done] == [5, 5, 5, 6]


def test_device_reset_waits_for_held_requests_and_publishes_none_of_them(null):
    with attach(null) as drv:
        q = drv.queue(0)
        vq = q.vq
        held = [q.submit(*slow(b"%d" % i)) for i in range(2)]
        in_bufs = [vq._inflight[h][3][0] for h in held]  # (memfd offset, size) of each writable buffer
        q.kick()
        drv.reset()  # device_status 0: returns when the device reads back 0, after it waited for the worker
        assert published(drv, vq) == 0  # nothing of the old requests was published
        for (off, size), i in zip(in_bufs, range(2)):  # ... yet the worker did finish them before the reset
            assert drv.memory.buf[off:off + size].tobytes() == b"SLOW%d" % i
        drv.init(features_wanted=DEFAULT_DRIVER_FEATURES)
        used, (echo,) = drv.queue(0).request([b"after"], [5])
        assert (used, echo) == (5, b"after")
        assert published(drv, drv.queue(0).vq) == 1  # only the new request's element
    assert null.alive()
    assert "device reset by the driver" in null.log()


def test_disconnect_with_held_requests_leaves_the_device_alive(null):
    drv = attach(null)
    q = drv.queue(1)
    for i in range(3):
        q.submit(*slow(b"%d" % i))
    q.kick()
    drv.client.close()  # gone without a reset: the server must wait before it unmaps our memory
    drv.memory.close()
    with attach(null) as again:
        used, (echo,) = again.queue(1).request([b"next client"], [11])
        assert (used, echo) == (11, b"next client")
    assert null.alive()
    assert "client connection lost" in null.log() or "client 1 gone" in null.log()


def test_dma_unmap_waits_for_held_requests(null):
    drv = attach(null)
    q = drv.queue(0)
    q.submit(*slow(b"!"))
    q.kick()
    drv.client.dma_unmap(drv.memory.iova_base, drv.memory.size)  # the reply comes after the worker finished
    with pytest.raises(DeviceNeedsReset):  # its ring is gone: publishing the completion is a guest error
        drv._check_status("after the unmap")
    drv.close(reset=False)
    assert null.alive()
    assert "rings no longer mapped" in null.log() or "ring no longer mapped" in null.log()
    with attach(null) as again:
        assert again.queue(0).request([b"ok"], [2]) == (2, [b"ok"])


def test_queue_reset_waits_and_drops_only_that_queue(null):
    with attach(null) as drv:
        q0, q1 = drv.queue(0), drv.queue(1)
        vq0 = q0.vq
        q0.submit(*slow(b"q0"))
        q0.kick()
        assert drv.reset_queue(0) == [0]  # the held request's token (its head) is dropped
        assert published(drv, vq0) == 0  # never published into the reset queue
        assert q1.request([b"still"], [5]) == (5, [b"still"])  # the other queue kept working
        q0 = drv.setup_queue(0, vector=1)
        assert q0.request([b"again"], [5]) == (5, [b"again"])
        assert published(drv, q0.vq) == 1
