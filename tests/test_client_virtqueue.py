"""Driver-side split virtqueue: ring layout bytes, descriptor chains, used ring handling, EVENT_IDX.

The device is played by reading and writing the ring bytes at the offsets the virtio standard gives
("Split Virtqueues"), and once by the project's device-side walker over a second mapping of the memfd.
"""
from __future__ import annotations

import ctypes
import mmap
import struct

import pytest

from vfu_virtio.client.memory import GuestMemory
from vfu_virtio.abi.ring import SplitLayout as RingLayout
from vfu_virtio.abi.ring import vring_need_event
from vfu_virtio.client.ring import QueueFull, VirtqueueError
from vfu_virtio.client.split import SplitVirtqueue as Virtqueue

F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4


@pytest.fixture
def mem():
    with GuestMemory(4 << 20) as m:
        yield m


class Device:
    """A minimal device model over the ring bytes (independent of the driver's code)."""

    def __init__(self, mem: GuestMemory, vq: Virtqueue):
        self.mem, self.vq, self.n = mem, vq, vq.size
        self.last_avail = 0
        self.used_idx = 0

    def u16(self, addr):
        return struct.unpack("<H", self.mem.read(addr, 2))[0]

    def avail_idx(self):
        return self.u16(self.vq.avail_iova + 2)

    def desc(self, table, i):
        return struct.unpack("<QIHH", self.mem.read(table + 16 * i, 16))

    def pop(self):
        """-> (head, [(addr, len, flags)]) following NEXT and one level of INDIRECT."""
        if self.avail_idx() == self.last_avail:
            return None
        head = self.u16(self.vq.avail_iova + 4 + 2 * (self.last_avail % self.n))
        self.last_avail = (self.last_avail + 1) & 0xFFFF
        table, i, out = self.vq.desc_iova, head, []
        for _ in range(self.n + 1):
            addr, ln, fl, nxt = self.desc(table, i)
            if fl & F_INDIRECT:
                table, i = addr, 0
                continue
            out.append((addr, ln, fl))
            if not fl & F_NEXT:
                return head, out
            i = nxt
        raise AssertionError("descriptor loop")

    def push(self, head, length, publish=True):
        self.mem.write(self.vq.used_iova + 4 + 8 * (self.used_idx % self.n), struct.pack("<II", head, length))
        self.used_idx = (self.used_idx + 1) & 0xFFFF
        if publish:
            self.mem.write(self.vq.used_iova + 2, struct.pack("<H", self.used_idx))

    def set_avail_event(self, value):
        self.mem.write(self.vq.used_iova + 4 + 8 * self.n, struct.pack("<H", value))

    def used_event(self):
        return self.u16(self.vq.avail_iova + 4 + 2 * self.n)


# ---- layout ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("size,avail_off,used_off,total", [
    (1, 16, 24, 24 + 14),           # avail 6+2 = 8 bytes ends at 24, already 4-aligned
    (2, 32, 44, 44 + 22),           # avail ends at 42 -> used aligned up to 44
    (256, 4096, 4616, 4616 + 2054),  # avail 518 bytes ends at 4614 -> 4616
])
def test_ring_layout(size, avail_off, used_off, total):
    L = RingLayout.for_size(size)
    assert (L.desc_offset, L.desc_bytes) == (0, 16 * size)
    assert (L.avail_offset, L.avail_bytes) == (avail_off, 6 + 2 * size)
    assert (L.used_offset, L.used_bytes) == (used_off, 6 + 8 * size)
    assert L.total_bytes == total
    assert L.used_offset % 4 == 0 and L.avail_offset % 2 == 0


@pytest.mark.parametrize("size", [0, 3, 100, 65536])
def test_ring_layout_refuses_bad_sizes(size):
    with pytest.raises(ValueError, match="power of 2"):
        RingLayout.for_size(size)


def test_rings_are_zeroed_and_aligned(mem):
    mem.write(mem.iova_base, b"\xff" * 8192)  # dirty the memory the ring will reuse
    vq = Virtqueue(mem, 64)
    assert vq.desc_iova % 4096 == 0 and vq.avail_iova % 2 == 0 and vq.used_iova % 4 == 0
    assert mem.read(vq.ring_iova, vq.layout.total_bytes) == bytes(vq.layout.total_bytes)


# ---- chains ----------------------------------------------------------------------------------------
def test_direct_chain_bytes(mem):
    vq = Virtqueue(mem, 8)
    dev = Device(mem, vq)
    head = vq.add([b"abc", b"defgh"], [4, 1], token="t")
    assert head == 0
    # not visible before publish
    assert dev.avail_idx() == 0
    vq.publish()
    assert dev.avail_idx() == 1
    assert dev.u16(vq.avail_iova + 4) == head
    h, descs = dev.pop()
    assert h == head
    assert [(ln, fl) for _a, ln, fl in descs] == [(3, F_NEXT), (5, F_NEXT), (4, F_NEXT | F_WRITE), (1, F_WRITE)]
    assert mem.read(descs[0][0], 3) == b"abc" and mem.read(descs[1][0], 5) == b"defgh"
    # the raw table links the chain through distinct descriptor indices
    nexts = [dev.desc(vq.desc_iova, i)[3] for i in range(4)]
    assert nexts[:3] == [1, 2, 3]
    assert vq.num_free == 4 and vq.in_flight == 1


def test_writable_buffers_start_zeroed(mem):
    vq = Virtqueue(mem, 4)
    dev = Device(mem, vq)
    vq.add([], [8])
    vq.publish()
    (addr, ln, fl), = dev.pop()[1]
    mem.write(addr, b"\x55" * 8)
    dev.push(0, 8)
    vq.get_used()
    vq.add([], [8])  # same memory comes back: must be cleared again
    vq.publish()
    (addr2, _l, _f), = dev.pop()[1]
    assert addr2 == addr and mem.read(addr2, 8) == bytes(8)


def test_indirect_chain_bytes(mem):
    vq = Virtqueue(mem, 8, indirect=True, indirect_threshold=3)
    dev = Device(mem, vq)
    head = vq.add([b"h" * 24, b"k" * 16, b"s" * 64], [64, 1])
    vq.publish()
    addr, ln, fl, nxt = dev.desc(vq.desc_iova, head)
    assert fl == F_INDIRECT and ln == 5 * 16 and addr % 16 == 0
    table = [dev.desc(addr, j) for j in range(5)]
    assert [t[3] for t in table[:4]] == [1, 2, 3, 4]
    assert [t[2] for t in table] == [F_NEXT, F_NEXT, F_NEXT, F_NEXT | F_WRITE, F_WRITE]
    assert [t[1] for t in table] == [24, 16, 64, 64, 1]
    assert vq.num_free == 7  # one ring descriptor for five buffers
    _h, descs = dev.pop()
    assert mem.read(descs[2][0], 64) == b"s" * 64


def test_indirect_choice(mem):
    vq = Virtqueue(mem, 4, indirect=True, indirect_threshold=4)
    vq.add([b"a", b"b"], [1])                 # 3 < threshold, fits: direct
    assert vq.num_free == 1
    vq.add([b"a"], [1])                       # 2 descriptors, 1 free: goes indirect to fit
    assert vq.num_free == 0
    with pytest.raises(QueueFull):
        vq.add([b"a"], [], indirect=False)
    plain = Virtqueue(mem, 4)
    with pytest.raises(ValueError, match="INDIRECT_DESC"):
        plain.add([b"a"], [1], indirect=True)


def test_chain_limits(mem):
    vq = Virtqueue(mem, 4)
    with pytest.raises(ValueError, match="at least one"):
        vq.add([], [])
    with pytest.raises(ValueError, match="longer than queue size"):
        vq.add([b"x"] * 5, [])
    vq.add([b"x"] * 3, [])
    with pytest.raises(QueueFull, match="needs 2 descriptors, 1 free"):
        vq.add([b"x"], [1])
    big = Virtqueue(mem, 4)
    with pytest.raises(QueueFull):
        big.add([b"x"], [mem.size])            # guest memory, not descriptors, runs out
    assert big.num_free == 4 and big.in_flight == 0


# ---- used ring -------------------------------------------------------------------------------------
def test_get_used_returns_tokens_lengths_and_data_and_frees(mem):
    vq = Virtqueue(mem, 8)
    dev = Device(mem, vq)
    allocs = mem.allocations
    h1 = vq.add([b"req1"], [3, 2], token="one")
    h2 = vq.add([b"req2"], [1], token="two")
    vq.publish()
    _, d1 = dev.pop()
    _, d2 = dev.pop()
    mem.write(d1[1][0], b"xyz")
    mem.write(d1[2][0], b"pq")
    mem.write(d2[1][0], b"!")
    dev.push(h2, 1)          # out of order completion
    dev.push(h1, 5)
    done = vq.get_used()
    assert [(c.token, c.used_len, c.data) for c in done] == [("two", 1, [b"!"]), ("one", 5, [b"xyz", b"pq"])]
    assert vq.num_free == 8 and vq.in_flight == 0 and mem.allocations == allocs
    assert vq.get_used() == []


def test_unknown_used_id_is_a_device_error(mem):
    vq = Virtqueue(mem, 4)
    dev = Device(mem, vq)
    h = vq.add([b"a"], [1], token="a")
    h2 = vq.add([b"b"], [1], token="b")
    vq.publish()
    dev.push(h, 1, publish=False)
    dev.push(3, 0)  # descriptor 3 was never a head in flight
    with pytest.raises(VirtqueueError, match="id 3, which is not the head"):
        vq.get_used()
    # the element is re-read on the next call; the good completion before it was not lost
    mem.write(vq.used_iova + 4 + 8, struct.pack("<II", h2, 1))
    assert [c.token for c in vq.get_used()] == ["a", "b"]


def test_used_len_beyond_writable_capacity_is_reported_but_kept(mem):
    vq = Virtqueue(mem, 4)
    dev = Device(mem, vq)
    h = vq.add([b"a"], [4], token="a")
    vq.publish()
    dev.push(h, 5)
    with pytest.raises(VirtqueueError, match="len 5, more than the chain's 4"):
        vq.get_used()
    (c,) = vq.get_used()
    assert (c.token, c.used_len) == ("a", 5) and vq.num_free == 4


def test_used_idx_too_far_ahead(mem):
    vq = Virtqueue(mem, 4)
    mem.write(vq.used_iova + 2, struct.pack("<H", 5))
    with pytest.raises(VirtqueueError, match="more than queue size"):
        vq.get_used()


def test_indices_wrap_past_65535(mem):
    vq = Virtqueue(mem, 2, event_idx=True)
    dev = Device(mem, vq)
    for i in range(65536 + 5):
        h = vq.add([b"x"], [1], token=i)
        vq.publish()
        dh, _ = dev.pop()
        assert dh == h
        dev.push(h, 1)
        (c,) = vq.get_used()
        assert c.token == i
    assert vq.avail_idx == 5 and vq.last_used == 5 and dev.used_event() == 5


# ---- notification suppression -------------------------------------------------------------------------
@pytest.mark.parametrize("event,new,old,expected", [
    (0, 1, 0, True),          # entry 0 was just added
    (1, 1, 0, False),         # entry 1 not added yet
    (4, 10, 4, True),         # entries 4..9 added: the first of them
    (9, 10, 4, True),         # ... the last of them
    (3, 10, 4, False),        # added before this batch: already notified
    (10, 10, 4, False),       # the next one
    (0xFFFF, 2, 0xFFFE, True),   # window wraps 0xFFFE -> 2
    (0xFFFD, 2, 0xFFFE, False),
    (1, 2, 0xFFFE, True),
    (7, 7, 7, False),         # nothing published
])
def test_vring_need_event(event, new, old, expected):
    assert vring_need_event(event, new, old) is expected


def test_kick_needed_with_event_idx(mem):
    vq = Virtqueue(mem, 8, event_idx=True)
    dev = Device(mem, vq)
    dev.set_avail_event(0)      # device: "kick me when you add entry 0"
    for _ in range(3):
        vq.add([b"a"], [])
    vq.publish()
    assert vq.kick_needed() is True          # entry 0 in [0, 3): one kick for the batch of three
    assert vq.kick_needed() is False         # nothing new since
    vq.add([b"b"], [])
    vq.publish()
    assert vq.kick_needed() is False         # device still busy: avail_event 0 not in [3, 4)
    dev.set_avail_event(4)
    vq.add([b"c"], [])
    vq.publish()
    assert vq.kick_needed() is True          # 4 in [4, 5)


def test_kick_needed_without_event_idx_honours_no_notify(mem):
    vq = Virtqueue(mem, 8)
    vq.add([b"a"], [])
    vq.publish()
    assert vq.kick_needed() is True
    mem.write(vq.used_iova, struct.pack("<H", 1))  # used.flags = VIRTQ_USED_F_NO_NOTIFY
    vq.add([b"a"], [])
    vq.publish()
    assert vq.kick_needed() is False


def test_used_event_follows_collection(mem):
    vq = Virtqueue(mem, 8, event_idx=True)
    dev = Device(mem, vq)
    heads = [vq.add([b"a"], [1]) for _ in range(3)]
    vq.publish()
    for h in heads[:2]:
        dev.pop()
        dev.push(h, 1)
    assert len(vq.get_used()) == 2
    assert dev.used_event() == 2    # interrupt me when used entry 2 is written
    vq.set_interrupts(False)
    assert dev.used_event() == 1    # already passed: no interrupt wanted
    vq.set_interrupts(True)
    assert dev.used_event() == 2


def test_no_interrupt_flag_without_event_idx(mem):
    vq = Virtqueue(mem, 8)
    vq.set_interrupts(False)
    assert mem.read(vq.avail_iova, 2) == b"\x01\x00"
    vq.set_interrupts(True)
    assert mem.read(vq.avail_iova, 2) == b"\x00\x00"


# ---- against the device-side walker ----------------------------------------------------------------
def test_device_side_walker_reads_what_we_wrote(mem):
    """The project's device-side split ring, over its own mapping of our memfd, sees our chains."""
    from vfu_virtio.virtio.memory import GuestMemory as DeviceMemory
    from vfu_virtio.virtio.split import SplitRing

    other = mmap.mmap(mem.fd, mem.size)
    anchor = ctypes.c_char.from_buffer(other)
    dmem = DeviceMemory()
    dmem.add(mem.iova_base, mem.size, ctypes.addressof(anchor), mmap.PROT_READ | mmap.PROT_WRITE)
    try:
        vq = Virtqueue(mem, 16, event_idx=True, indirect=True)
        ring = SplitRing(dmem, 0, 16, (vq.desc_iova, vq.avail_iova, vq.used_iova), True, True)
        h_direct = vq.add([b"head", b"body"], [6], token="direct", indirect=False)
        h_ind = vq.add([b"A" * 10, b"B" * 20, b"C" * 30], [7, 1], token="indirect")
        vq.publish()
        c1, c2 = ring.pop(), ring.pop()
        assert ring.pop() is None
        assert (c1.id, c2.id) == (h_direct, h_ind)
        assert c1.reader.read_all() == b"headbody" and c1.writer.capacity == 6
        assert c2.reader.read_all() == b"A" * 10 + b"B" * 20 + b"C" * 30 and c2.writer.capacity == 8
        c2.writer.write(b"1234567\x00")
        ring.push(c2, 8)
        c1.writer.write(b"ok")
        ring.push(c1, 2)
        assert ring.flush() is True       # used_event 0 was passed: device interrupts
        done = vq.get_used()
        assert [(c.token, c.used_len, c.data) for c in done] == [
            ("indirect", 8, [b"1234567", b"\x00"]), ("direct", 2, [b"ok" + bytes(4)])]
    finally:
        dmem.clear()
        del anchor
        other.close()
