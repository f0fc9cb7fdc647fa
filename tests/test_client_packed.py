"""Driver-side packed virtqueue: ring layout bytes, chains, wrap counters, used descriptors, event suppression.

The device is played by a minimal model that reads and writes the ring bytes at the offsets and with the flag
values the virtio standard gives ("Packed Virtqueues": struct pvirtq_desc { le64 addr; le32 len; le16 id;
le16 flags; }, struct pvirtq_event_suppress { le16 desc; le16 flags; }; VIRTQ_DESC_F_NEXT 1, WRITE 2, INDIRECT 4,
AVAIL 1 << 7, USED 1 << 15; RING_EVENT_FLAGS_ENABLE 0, DISABLE 1, DESC 2), written here and not taken from the
project's code. Last, the driver runs packed rings against a real ``vfu-virtio crypto`` server.
"""
from __future__ import annotations

import random

import pytest

from vfu_virtio.abi.ring import PackedLayout
from vfu_virtio.client.memory import GuestMemory
from vfu_virtio.client.packed import PackedVirtqueue as Virtqueue
from vfu_virtio.client.ring import QueueFull, VirtqueueError

from test_packed_ring import StoreLog

F_NEXT, F_WRITE, F_INDIRECT, F_AVAIL, F_USED = 1, 2, 4, 0x80, 0x8000
EV_ENABLE, EV_DISABLE, EV_DESC = 0, 1, 2


def le(value: int, width: int) -> bytes:
    return value.to_bytes(width, "little")


def desc_bytes(addr: int, length: int, buf_id: int, flags: int) -> bytes:
    """struct pvirtq_desc, byte by byte: addr @0 (8), len @8 (4), id @12 (2), flags @14 (2)."""
    return le(addr, 8) + le(length, 4) + le(buf_id, 2) + le(flags, 2)


@pytest.fixture
def mem():
    with GuestMemory(4 << 20) as m:
        yield m


class Device:
    """A minimal packed-ring device over the ring bytes (independent of the driver's code)."""

    def __init__(self, mem: GuestMemory, vq: Virtqueue):
        self.mem, self.vq, self.n = mem, vq, vq.size
        self.next_avail, self.avail_wrap = 0, 1
        self.next_used, self.used_wrap = 0, 1
        self.staged: list[tuple[int, int]] = []  # (position, flags) of used descriptors not yet exposed

    def u16(self, addr: int) -> int:
        return int.from_bytes(self.mem.read(addr, 2), "little")

    def desc(self, pos: int, table: int | None = None):
        """-> (addr, len, id, flags) of ring position ``pos`` (or entry ``pos`` of an indirect ``table``)."""
        raw = self.mem.read((self.vq.desc_iova if table is None else table) + 16 * pos, 16)
        return (int.from_bytes(raw[0:8], "little"), int.from_bytes(raw[8:12], "little"),
                int.from_bytes(raw[12:14], "little"), int.from_bytes(raw[14:16], "little"))

    def flags(self, pos: int) -> int:
        return self.u16(self.vq.desc_iova + 16 * pos + 14)

    def is_avail(self, pos: int, wrap: int) -> bool:
        f = self.flags(pos)
        return bool(f & F_AVAIL) == bool(wrap) and bool(f & F_USED) != bool(wrap)

    def pop(self):
        """-> (Buffer ID, [(addr, len, flags)], ring descriptors taken) following NEXT and one INDIRECT, or None."""
        if not self.is_avail(self.next_avail, self.avail_wrap):
            return None
        out, taken = [], 0
        while True:
            assert self.is_avail(self.next_avail, self.avail_wrap), "chain continues into an unavailable descriptor"
            addr, ln, buf_id, fl = self.desc(self.next_avail)
            taken += 1
            self.next_avail += 1
            if self.next_avail == self.n:
                self.next_avail, self.avail_wrap = 0, self.avail_wrap ^ 1
            if fl & F_INDIRECT:
                out = [(a, l_, f & ~(F_AVAIL | F_USED)) for a, l_, _i, f in
                       (self.desc(j, addr) for j in range(ln // 16))]
                return buf_id, out, taken
            out.append((addr, ln, fl & ~(F_AVAIL | F_USED)))
            if not fl & F_NEXT:
                return buf_id, out, taken

    def push(self, buf_id: int, length: int, taken: int, write: bool | None = None, expose: bool = True) -> None:
        """Write a used descriptor at the next used position (flags withheld until :meth:`expose`), skip ``taken``;
        WRITE is set when ``write`` (default: when ``length`` > 0)."""
        pos = self.next_used
        write = length > 0 if write is None else write
        flags = (F_WRITE if write else 0) | (F_AVAIL | F_USED if self.used_wrap else 0)
        self.mem.write(self.vq.desc_iova + 16 * pos + 8, le(length, 4) + le(buf_id, 2))
        self.staged.append((pos, flags))
        self.next_used += taken
        if self.next_used >= self.n:
            self.next_used, self.used_wrap = self.next_used - self.n, self.used_wrap ^ 1
        if expose:
            self.expose()

    def expose(self) -> None:
        """Store the withheld flags, the first used descriptor's last (the whole batch at once)."""
        for pos, flags in reversed(self.staged):
            self.mem.write(self.vq.desc_iova + 16 * pos + 14, le(flags, 2))
        self.staged = []

    def serve(self, length_of=lambda descs: 0) -> int:
        """Pop everything available and use it in order; returns how many chains."""
        count = 0
        while (got := self.pop()) is not None:
            buf_id, descs, taken = got
            self.push(buf_id, length_of(descs), taken)
            count += 1
        return count

    def echo(self, descs) -> int:
        """Copy the first readable byte (0xEE if none) into the one writable byte; the used length is 1."""
        src = self.mem.read(descs[0][0], 1) if len(descs) > 1 else b"\xee"
        self.mem.write(descs[-1][0], src)
        return 1

    def driver_event(self) -> tuple[int, int]:
        """(desc, flags) of the driver event suppression structure."""
        return self.u16(self.vq.driver_iova), self.u16(self.vq.driver_iova + 2)

    def set_device_event(self, flags: int, off: int = 0, wrap: int = 0) -> None:
        self.mem.write(self.vq.device_iova, le(off | wrap << 15, 2) + le(flags, 2))


# ---- layout ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("size,driver_off,device_off,total", [
    (1, 16, 20, 24), (3, 48, 52, 56), (100, 1600, 1604, 1608), (32768, 524288, 524292, 524296)])
def test_ring_layout(size, driver_off, device_off, total):
    L = PackedLayout.for_size(size)
    assert (L.desc_offset, L.desc_bytes, L.driver_offset, L.device_offset, L.total_bytes) == \
        (0, 16 * size, driver_off, device_off, total)


@pytest.mark.parametrize("size", [0, 32769])
def test_ring_layout_refuses_bad_sizes(size):
    with pytest.raises(ValueError, match="not in 1..32768"):
        PackedLayout.for_size(size)


@pytest.mark.parametrize("event_idx", [False, True])
def test_rings_are_zeroed_and_aligned(mem, event_idx):
    mem.write(mem.iova_base, b"\xff" * 8192)  # dirty the memory the ring will reuse
    vq = Virtqueue(mem, 100, event_idx=event_idx)
    assert vq.desc_iova % 16 == 0 and vq.driver_iova % 4 == 0 and vq.device_iova % 4 == 0
    assert (vq.driver_iova, vq.device_iova) == (vq.desc_iova + 1600, vq.desc_iova + 1604)
    assert mem.read(vq.desc_iova, 1600) == bytes(1600)
    # with EVENT_IDX the driver asks at once for an interrupt on ring position 0 of wrap 1 (desc 0x8000, DESC)
    assert mem.read(vq.driver_iova, 4) == (b"\x00\x80\x02\x00" if event_idx else bytes(4))
    assert mem.read(vq.device_iova, 4) == bytes(4)


# ---- chains ----------------------------------------------------------------------------------------
def test_direct_chain_bytes_and_first_flags_last(mem):
    vq = Virtqueue(mem, 8)
    dev = Device(mem, vq)
    bid = vq.add([b"abc", b"defgh"], [4, 1], token="t")
    assert bid == 0
    d = [dev.desc(i) for i in range(4)]
    base = vq.desc_iova
    # the rest of the list is written out, the first descriptor is not available yet (its flags still 0)
    assert mem.read(base, 64)[14:16] == b"\x00\x00"
    assert mem.read(base + 16, 48) == (desc_bytes(d[1][0], 5, 0, 0x81) + desc_bytes(d[2][0], 4, 0, 0x83)
                                       + desc_bytes(d[3][0], 1, 0, 0x82))
    assert dev.pop() is None
    vq.publish()
    assert mem.read(base, 16) == desc_bytes(d[0][0], 3, 0, 0x81)  # AVAIL | NEXT
    buf_id, descs, taken = dev.pop()
    assert (buf_id, taken) == (0, 4)
    assert [(ln, fl) for _a, ln, fl in descs] == [(3, F_NEXT), (5, F_NEXT), (4, F_NEXT | F_WRITE), (1, F_WRITE)]
    assert mem.read(descs[0][0], 3) == b"abc" and mem.read(descs[1][0], 5) == b"defgh"
    assert vq.num_free == 4 and vq.in_flight == 1


def test_batch_is_published_together(mem):
    vq = Virtqueue(mem, 8)
    dev = Device(mem, vq)
    ids = [vq.add([b"a"], [1]), vq.add([b"b"], []), vq.add([], [2])]
    assert ids == [0, 1, 2]
    assert [dev.flags(p) for p in (0, 1, 2, 3)] == [0, 0x82, 0, 0]  # only the second half of the first chain
    vq.publish()
    assert [dev.flags(p) for p in (0, 1, 2, 3)] == [0x81, 0x82, 0x80, 0x82]
    assert [dev.pop()[0] for _ in range(3)] == [0, 1, 2] and dev.pop() is None


def test_publish_stores_first_flags_last_chain_first(mem):
    """Each first descriptor's flags are one 16-bit store, made in publish from the last chain back to the first,
    so the device (polling the first chain's first descriptor) sees the whole batch at once."""
    vq = Virtqueue(mem, 8)
    for out in ([b"a", b"b"], [b"c"], [b"d", b"e", b"f"]):   # first descriptors at positions 0, 2, 3
        vq.add(out, [])
    log = vq._buf16 = StoreLog(vq._buf16)
    vq.publish()
    flags_index = (vq.desc_iova - mem.iova_base + 14) // 2  # le16 flags of position 0, in 16-bit units
    assert log.stores == [(flags_index + 8 * 3, 0x81), (flags_index + 8 * 2, 0x80), (flags_index, 0x81)]


def test_writable_buffers_start_zeroed(mem):
    vq = Virtqueue(mem, 4)
    dev = Device(mem, vq)
    vq.add([], [8])
    vq.publish()
    buf_id, ((addr, _ln, _fl),), taken = dev.pop()
    mem.write(addr, b"\x55" * 8)
    dev.push(buf_id, 8, taken)
    assert vq.get_used()[0].data == [b"\x55" * 8]
    vq.add([], [8])  # same memory comes back: must be cleared again
    vq.publish()
    _b, ((addr2, _l, _f),), _t = dev.pop()
    assert addr2 == addr and mem.read(addr2, 8) == bytes(8)


def test_indirect_chain_bytes(mem):
    vq = Virtqueue(mem, 8, indirect=True, indirect_threshold=3)
    dev = Device(mem, vq)
    bid = vq.add([b"h" * 24, b"k" * 16, b"s" * 64], [64, 1])
    vq.publish()
    addr, ln, ring_id, fl = dev.desc(0)
    assert (ln, ring_id, fl) == (5 * 16, bid, 0x84) and addr % 16 == 0  # AVAIL | INDIRECT
    # the table (only VIRTQ_DESC_F_WRITE set, Buffer ID 0), then the buffers, in one allocation
    lengths, flags = (24, 16, 64, 64, 1), (0, 0, 0, 2, 2)
    addrs = [addr + 80 + sum(lengths[:j]) for j in range(5)]
    assert mem.read(addr, 80) == b"".join(desc_bytes(a, n, 0, f) for a, n, f in zip(addrs, lengths, flags))
    assert vq.num_free == 7  # one ring descriptor for five buffers
    _b, descs, taken = dev.pop()
    assert taken == 1 and mem.read(descs[2][0], 64) == b"s" * 64


def test_indirect_choice(mem):
    vq = Virtqueue(mem, 4, indirect=True, indirect_threshold=4)
    vq.add([b"a", b"b"], [1])                 # 3 < threshold, fits: direct
    assert vq.num_free == 1
    vq.add([b"a"], [1])                       # 2 descriptors, 1 free: goes indirect to fit
    assert vq.num_free == 0
    with pytest.raises(QueueFull, match="needs 1 descriptors, 0 free"):
        vq.add([b"a"], [], indirect=False)
    plain = Virtqueue(mem, 4)
    with pytest.raises(ValueError, match="INDIRECT_DESC"):
        plain.add([b"a"], [1], indirect=True)
    forced = Virtqueue(mem, 4, indirect=True)
    forced.add([b"a"], [], indirect=True)     # a one-buffer chain goes indirect only when asked
    forced.publish()
    assert Device(mem, forced).flags(0) == 0x84


def test_chain_limits(mem):
    vq = Virtqueue(mem, 3)
    with pytest.raises(ValueError, match="at least one"):
        vq.add([], [])
    with pytest.raises(ValueError, match="longer than queue size"):
        vq.add([b"x"] * 4, [])
    vq.add([b"x"] * 2, [])
    with pytest.raises(QueueFull, match="needs 2 descriptors, 1 free"):
        vq.add([b"x"], [1])
    big = Virtqueue(mem, 4)
    with pytest.raises(QueueFull):
        big.add([b"x"], [mem.size])            # guest memory, not descriptors, runs out
    assert big.num_free == 4 and big.in_flight == 0


def test_buffer_ids_come_from_a_free_list(mem):
    vq = Virtqueue(mem, 4)
    dev = Device(mem, vq)
    assert [vq.add([b"x"], []) for _ in range(4)] == [0, 1, 2, 3]
    vq.publish()
    got = [dev.pop() for _ in range(4)]
    for i in (2, 0):
        dev.push(got[i][0], 0, 1)
    assert [c.token for c in vq.get_used()] == [2, 0]
    assert sorted(vq.add([b"y"], []) for _ in range(2)) == [0, 2]
    with pytest.raises(QueueFull):
        vq.add([b"z"], [])


# ---- wrap counters ---------------------------------------------------------------------------------
def test_second_lap_flags(mem):
    """Size 3: a 2-descriptor chain that crosses the ring end carries AVAIL=1 before and AVAIL=0/USED=1 after."""
    vq = Virtqueue(mem, 3)
    dev = Device(mem, vq)
    vq.add([b"a"], [])
    vq.add([b"b"], [])
    vq.publish()
    dev.serve()
    vq.get_used()
    vq.add([b"c"], [4])                       # positions 2 (wrap 1) and 0 (wrap 0)
    assert (dev.flags(2), dev.flags(0)) == (0x0000, 0x8002)  # first withheld, second available in wrap 0
    vq.publish()
    assert (dev.flags(2), dev.flags(0)) == (0x81, 0x8002)
    assert (vq.next_avail, vq.avail_wrap) == (1, 0)
    buf_id, _d, taken = dev.pop()
    dev.push(buf_id, 4, taken)
    assert dev.flags(2) == 0x8082             # used in wrap 1: AVAIL | USED | WRITE
    (c,) = vq.get_used()
    assert c.used_len == 4 and (vq.next_used, vq.used_wrap) == (1, 0)
    vq.add([b"d"], [])
    assert dev.flags(1) == 0x8080             # withheld: the used flags of wrap 1 stay until publish
    vq.publish()
    assert dev.flags(1) == 0x8000             # available in wrap 0: USED set, AVAIL clear
    dev.push(dev.pop()[0], 0, 1, write=False)
    assert dev.flags(1) == 0x0000             # used in wrap 0
    assert len(vq.get_used()) == 1 and (vq.next_used, vq.used_wrap) == (2, 0)


@pytest.mark.parametrize("size", [3, 100])
def test_many_laps(mem, size):
    """More than 65536 requests: both wrap counters flip thousands of times; chains of 1..3 descriptors."""
    vq = Virtqueue(mem, size, event_idx=True)
    dev = Device(mem, vq)
    rnd = random.Random(size)
    allocs = mem.allocations
    sent = done = 0
    while done < 65536 + 7:
        batch = []
        while vq.num_free >= 3 and len(batch) < 16:
            k = rnd.randint(1, 3)
            batch.append(vq.add([bytes([sent & 0xFF])] * (k - 1), [1], token=sent))
            sent += 1
        vq.publish()
        dev.serve(dev.echo)
        got = vq.get_used()
        assert [c.token for c in got] == list(range(done, done + len(got)))
        assert all(c.used_len == 1 and c.data in ([bytes([c.token & 0xFF])], [b"\xee"]) for c in got)
        done += len(got)
    assert vq.in_flight == 0 and vq.num_free == size and mem.allocations == allocs
    assert (vq.next_used, vq.used_wrap) == (dev.next_used, dev.used_wrap) == (vq.next_avail, vq.avail_wrap)
    assert dev.driver_event() == (vq.next_used | vq.used_wrap << 15, EV_DESC)


# ---- used descriptors ------------------------------------------------------------------------------
def test_out_of_order_completion_skips_each_chain(mem):
    vq = Virtqueue(mem, 8)
    dev = Device(mem, vq)
    allocs = mem.allocations
    a = vq.add([b"A1", b"A2"], [3], token="A")      # 3 descriptors, positions 0-2
    b = vq.add([], [2], token="B")                  # 1 descriptor, position 3
    c = vq.add([b"C"], [1], token="C")              # 2 descriptors, positions 4-5
    vq.publish()
    chains = {x[0]: x for x in (dev.pop(), dev.pop(), dev.pop())}
    mem.write(chains[c][1][1][0], b"c")
    mem.write(chains[a][1][2][0], b"aaa")
    mem.write(chains[b][1][0][0], b"bb")
    dev.push(c, 1, 2)      # at position 0, next used 2
    dev.push(a, 3, 3)      # at position 2, next used 5
    assert [(x.token, x.used_len, x.data) for x in vq.get_used()] == [("C", 1, [b"c"]), ("A", 3, [b"aaa"])]
    assert (vq.next_used, vq.num_free, vq.in_flight) == (5, 7, 1)
    assert vq.get_used() == []
    dev.push(b, 2, 1)      # at position 5
    assert [(x.token, x.data) for x in vq.get_used()] == [("B", [b"bb"])]
    assert (vq.next_used, vq.num_free, vq.in_flight) == (6, 8, 0) and mem.allocations == allocs


def test_batch_of_used_descriptors_is_seen_at_once(mem):
    vq = Virtqueue(mem, 4)
    dev = Device(mem, vq)
    for _ in range(3):
        vq.add([], [1])
    vq.publish()
    got = [dev.pop() for _ in range(3)]
    for buf_id, _d, taken in got:
        dev.push(buf_id, 1, taken, expose=False)
    assert not vq.has_used() and vq.get_used() == []
    dev.expose()
    assert vq.has_used() and len(vq.get_used(max_items=2)) == 2 and vq.has_used()
    assert len(vq.get_used()) == 1 and not vq.has_used()


def test_used_len_needs_the_write_flag(mem):
    """Element Length is reserved in a used descriptor without VIRTQ_DESC_F_WRITE: the used length is 0."""
    vq = Virtqueue(mem, 4)
    dev = Device(mem, vq)
    vq.add([b"a"], [4], token="a")
    vq.publish()
    dev.push(dev.pop()[0], 99, 1, write=False)
    (c,) = vq.get_used()
    assert (c.token, c.used_len) == ("a", 0)


def test_unknown_buffer_id_is_a_device_error(mem):
    vq = Virtqueue(mem, 4)
    dev = Device(mem, vq)
    a = vq.add([b"a"], [1], token="a")
    b = vq.add([b"b"], [1], token="b")
    vq.publish()
    dev.push(a, 1, 2, expose=False)     # chain a took positions 0-1
    dev.push(3, 0, 2)                   # at position 2: Buffer ID 3 was never handed out
    with pytest.raises(VirtqueueError, match="ring position 2 has Buffer ID 3, which is not in flight"):
        vq.get_used()
    assert vq.in_flight == 1 and vq.num_free == 2
    # the descriptor is re-read on the next call; the good completion before it was not lost
    mem.write(vq.desc_iova + 16 * 2 + 12, le(b, 2))
    assert [c.token for c in vq.get_used()] == ["a", "b"]


def test_used_len_beyond_writable_capacity_is_reported_but_kept(mem):
    vq = Virtqueue(mem, 4)
    dev = Device(mem, vq)
    vq.add([b"a"], [4], token="a")
    vq.publish()
    dev.push(dev.pop()[0], 5, 1)
    with pytest.raises(VirtqueueError, match="len 5, more than the chain's 4"):
        vq.get_used()
    (c,) = vq.get_used()
    assert (c.token, c.used_len) == ("a", 5) and vq.num_free == 4


def test_detach_all_frees_everything(mem):
    vq = Virtqueue(mem, 8)
    allocs = mem.allocations
    vq.add([b"a"], [1], token="published")
    vq.publish()
    vq.add([b"b", b"c"], [1], token="unpublished")
    assert sorted(vq.detach_all()) == ["published", "unpublished"]
    assert (vq.num_free, vq.in_flight, mem.allocations) == (8, 0, allocs)
    assert (vq.next_avail, vq.next_used) == (2, 2)  # the unpublished chain's place is taken again
    vq.close()
    assert mem.allocations == allocs - 1


# ---- event suppression -----------------------------------------------------------------------------
def test_driver_event_suppression_without_event_idx(mem):
    vq = Virtqueue(mem, 8)
    vq.set_interrupts(False)
    assert mem.read(vq.driver_iova, 4) == b"\x00\x00\x01\x00"   # RING_EVENT_FLAGS_DISABLE
    vq.set_interrupts(True)
    assert mem.read(vq.driver_iova, 4) == b"\x00\x00\x00\x00"   # RING_EVENT_FLAGS_ENABLE


def test_driver_event_suppression_with_event_idx_follows_collection(mem):
    vq = Virtqueue(mem, 3, event_idx=True)
    dev = Device(mem, vq)

    def round_trip(*chains):
        for out in chains:
            vq.add(out, [1])
        vq.publish()
        dev.serve()
        return vq.get_used()

    round_trip([b"a"])                        # one chain of two descriptors: next used position 2 of wrap 1
    assert mem.read(vq.driver_iova, 4) == b"\x02\x80\x02\x00"   # desc 0x8002, RING_EVENT_FLAGS_DESC
    vq.set_interrupts(False)
    assert mem.read(vq.driver_iova, 4) == b"\x02\x80\x01\x00"   # DISABLE
    round_trip([])                            # position 2: the counter wraps
    assert mem.read(vq.driver_iova, 4) == b"\x00\x00\x01\x00"   # desc kept current (0 of wrap 0), still DISABLE
    vq.set_interrupts(True)
    assert mem.read(vq.driver_iova, 4) == b"\x00\x00\x02\x00"
    round_trip([], [])
    assert mem.read(vq.driver_iova, 4) == b"\x02\x00\x02\x00"
    round_trip([])
    assert mem.read(vq.driver_iova, 4) == b"\x00\x80\x02\x00"   # position 0 of wrap 1 again


def test_kick_needed_without_event_idx(mem):
    vq = Virtqueue(mem, 8)
    dev = Device(mem, vq)
    assert vq.kick_needed() is False          # nothing published
    vq.add([b"a"], [])
    assert vq.kick_needed() is False          # added, not published
    vq.publish()
    assert vq.kick_needed() is True           # ENABLE
    assert vq.kick_needed() is False
    dev.set_device_event(EV_DISABLE)
    vq.add([b"a"], [])
    vq.publish()
    assert vq.kick_needed() is False
    dev.set_device_event(EV_DESC, 0, 1)       # DESC is only valid with EVENT_IDX: treated as ENABLE
    vq.add([b"a"], [])
    vq.publish()
    assert vq.kick_needed() is True


def test_kick_needed_with_event_idx(mem):
    vq = Virtqueue(mem, 5, event_idx=True)
    dev = Device(mem, vq)
    dev.set_device_event(EV_DESC, 0, 1)       # device: "kick me when position 0 of wrap 1 is made available"
    vq.add([b"a"], [])
    vq.add([b"b", b"c"], [])
    vq.publish()
    assert vq.kick_needed() is True           # positions 0..2 published: one kick for the batch
    vq.add([b"d"], [])
    vq.publish()
    assert vq.kick_needed() is False          # position 3: device still busy
    dev.set_device_event(EV_DESC, 1, 0)       # position 1 of the NEXT lap
    dev.serve()
    vq.get_used()
    vq.add([b"e", b"f"], [])                  # positions 4 (wrap 1) and 0 (wrap 0)
    vq.publish()
    assert vq.kick_needed() is False
    vq.add([b"g"], [])                        # position 1 of wrap 0
    vq.publish()
    assert vq.kick_needed() is True
    assert vq.notification_data() == 2        # next_off 2, next_wrap 0
    dev.set_device_event(EV_ENABLE)
    vq.add([b"h"], [])
    vq.publish()
    assert vq.kick_needed() is True
    dev.set_device_event(EV_DISABLE)
    vq.add([b"h"], [])
    vq.publish()
    assert vq.kick_needed() is False


def test_notification_data(mem):
    vq = Virtqueue(mem, 3)
    dev = Device(mem, vq)
    assert vq.notification_data() == 0x8000  # position 0, wrap 1
    vq.add([b"a", b"b"], [])
    vq.publish()
    assert vq.notification_data() == 0x8002
    dev.serve()
    vq.get_used()
    vq.add([b"a", b"b"], [])
    assert vq.notification_data() == 0x8002  # not published yet
    vq.publish()
    assert vq.notification_data() == 0x0001  # position 1, wrap 0
