"""Pure parts of the event loop, without a socket: the stage timers (:mod:`vfu_virtio.virtio.stages`) on a fake
clock, and the mapped notification area (:mod:`vfu_virtio.virtio.notify_area`) through a second mapping of its memfd,
as a client maps it (BAR0 offset 0x3000, queue ``q``'s 16-bit slot at ``4 * q``: "Notification structure layout"
with the multiplier 4)."""
from __future__ import annotations

import mmap
import os
import struct

from vfu_virtio.virtio.notify_area import IDLE, NotifyArea
from vfu_virtio.virtio.stages import STAGES, StageClock


def test_stage_clock_charges_each_stage_the_time_since_the_previous_mark():
    ticks = iter([1_000, 4_000, 9_000, 10_000, 20_000, 20_500])
    clock = StageClock(now=lambda: next(ticks))
    clock.start()
    for stage in ("message", "walk", "device", "publish", "interrupt"):
        clock.mark(stage)
    s = clock.summary()
    assert [s[k]["total_us"] for k in STAGES] == [3.0, 5.0, 1.0, 10.0, 0.5]
    assert all(s[k]["count"] == 1 for k in STAGES) and s["wakes"] == {"count": 1}
    assert clock.line().startswith("message 3.0 us x 1, walk 5.0 us x 1")


def test_notify_area_sees_each_store_once_and_rearms_the_slot():
    area = NotifyArea(3)
    client = mmap.mmap(area.fd, 0x1000, offset=0x3000)
    try:
        assert os.fstat(area.fd).st_size == 0x4000
        assert client[0:12] == b"\xff\xff\x00\x00" * 3       # every slot IDLE, the upper halves untouched
        assert area.take() == []
        struct.pack_into("<H", client, 8, 2)                 # the driver notifies queue 2
        struct.pack_into("<H", client, 0, 0)                 # and queue 0 (its index is 0: still a change)
        assert area.take() == [0, 2]
        assert client[0:2] == client[8:10] == struct.pack("<H", IDLE)
        assert area.take() == []                              # seen once
        struct.pack_into("<H", client, 4, 1)
        area.reset()
        assert area.take() == []                              # a reset forgets it
    finally:
        client.close()
        area.close()
