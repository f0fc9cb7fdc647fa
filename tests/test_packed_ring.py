"""Device-side packed virtqueue ("Packed Virtqueues"): :class:`PackedRing` on a guest memory of one real mapping.

The test writes every descriptor itself (struct pvirtq_desc: le64 addr, le32 len, le16 id, le16 flags) with the
flag values of the standard: VIRTQ_DESC_F_NEXT 1, WRITE 2, INDIRECT 4, AVAIL 0x80, USED 0x8000; event suppression
flags RING_EVENT_FLAGS_ENABLE 0, DISABLE 1, DESC 2. It checks chains and indirect tables, the bounds the device
chooses for hostile rings (each a GuestError that leaves the ring where it was), used descriptors and the order their
flags are stored in, and both halves of event suppression.
"""
from __future__ import annotations

import struct

import pytest

from vfu_virtio.virtio.chain import GuestError
from vfu_virtio.virtio.packed import PackedRing

from test_virtqueue_walk import BASE, SIZE, guest  # noqa: F401 - the fixture: a device GuestMemory of one mapping

QSZ = 8
DESC, DRIVER, DEVICE = BASE, BASE + 0x1000, BASE + 0x1004
DATA = BASE + 0x10000
TABLE = BASE + 0x20000
NEXT, WRITE, INDIRECT, AVAIL, USED = 1, 2, 4, 0x80, 0x8000
EV_ENABLE, EV_DISABLE, EV_DESC = 0, 1, 2


def put(m, pos, addr, length, buf_id=0, flags=0, table=DESC):
    struct.pack_into("<QIHH", m, table - BASE + 16 * pos, addr, length, buf_id, flags)


def avail(flags=0, wrap=1):
    """Flags of a descriptor the driver makes available under Driver Ring Wrap Counter ``wrap``."""
    return flags | (AVAIL if wrap else USED)


def flags_at(m, pos):
    return struct.unpack_from("<H", m, DESC - BASE + 16 * pos + 14)[0]


def raw(m, addr, n):
    return bytes(m[addr - BASE:addr - BASE + n])


def ring(mem, size=QSZ, event_idx=False, indirect=True, note=None):
    return PackedRing(mem, 0, size, (DESC, DRIVER, DEVICE), event_idx, indirect, note)


def set_driver_event(m, flags, off=0, wrap=0):
    struct.pack_into("<HH", m, DRIVER - BASE, off | wrap << 15, flags)


class StoreLog:
    """Stands in for a 16-bit view of guest memory and records every store (index, value)."""

    def __init__(self, view):
        self.view, self.stores = view, []

    def __getitem__(self, i):
        return self.view[i]

    def __setitem__(self, i, value):
        self.stores.append((i, value))
        self.view[i] = value


# ---- chains ----------------------------------------------------------------------------------------
def test_readable_then_writable_streams_and_buffer_id_of_the_last(guest):
    mem, m = guest
    m[DATA - BASE:DATA - BASE + 8] = b"helloabc"
    put(m, 1, DATA + 5, 3, 7, avail(NEXT))
    put(m, 2, DATA + 0x100, 4, 7, avail(WRITE | NEXT))
    put(m, 3, DATA + 0x200, 4, 5, avail(WRITE))            # the Buffer ID is the last descriptor's
    put(m, 0, DATA, 5, 9, avail(NEXT))                     # first descriptor made available last
    q = ring(mem)
    assert q.pending()
    chain = q.pop()
    assert (chain.id, chain.ndescs) == (5, 4)
    assert chain.reader.read(6) == b"helloa" and chain.reader.read_all() == b"bc"
    chain.writer.write(b"012345")
    chain.writer.write_at(7, b"Z")
    assert raw(m, DATA + 0x100, 4) == b"0123" and raw(m, DATA + 0x200, 4) == b"45\0Z"
    assert q.pop() is None and not q.pending()
    q.push(chain, chain.writer.written)
    assert flags_at(m, 0) == 0x81                          # nothing visible before flush
    assert q.flush() is True                               # driver event flags 0: RING_EVENT_FLAGS_ENABLE
    # used descriptor at position 0: addr 0, len 8, id 5, flags AVAIL | USED | WRITE
    assert raw(m, DESC, 16) == bytes(8) + b"\x08\x00\x00\x00" + b"\x05\x00" + b"\x82\x80"
    assert (q.next_used, q.used_wrap) == (4, 1)


def test_descriptor_not_yet_available(guest):
    mem, m = guest
    put(m, 1, DATA, 4, 0, avail())
    put(m, 0, DATA, 4, 0, 0)                               # first descriptor still zero: nothing to do
    q = ring(mem)
    assert not q.pending() and q.pop() is None
    put(m, 0, DATA, 4, 0, USED)                            # AVAIL 0 / USED 1 is wrap 0's: not in lap 1
    assert q.pop() is None
    put(m, 0, DATA, 4, 0, AVAIL | USED)                    # a used descriptor
    assert q.pop() is None


def test_chain_across_the_ring_end_in_the_second_lap(guest):
    """Size 3 (not a power of 2): positions 2 (wrap 1) and 0 (wrap 0) form one chain; used flags per wrap."""
    mem, m = guest
    q = ring(mem, size=3)
    put(m, 0, DATA, 1, 0, avail(WRITE))
    put(m, 1, DATA, 1, 1, avail(WRITE))
    for c in (q.pop(), q.pop()):
        q.push(c, 1)
    q.flush()
    assert (flags_at(m, 0), flags_at(m, 1)) == (0x8082, 0x8082)
    put(m, 0, DATA + 16, 2, 4, avail(WRITE, wrap=0))       # 0x8002
    put(m, 2, DATA, 2, 0, avail(NEXT))                     # 0x81
    chain = q.pop()
    assert (chain.id, chain.ndescs, chain.reader.remaining, chain.writer.capacity) == (4, 2, 2, 2)
    assert (q.next_avail, q.avail_wrap) == (1, 0)
    put(m, 1, DATA, 1, 2, avail(wrap=1))                   # stale lap-1 flags at position 1: not available
    assert q.pop() is None
    q.push(chain, 0)
    q.flush()
    assert raw(m, DESC + 32, 16)[8:] == b"\x00\x00\x00\x00\x04\x00\x80\x80"  # len 0, no WRITE, wrap 1
    assert (q.next_used, q.used_wrap) == (1, 0)
    put(m, 1, DATA, 1, 2, avail(WRITE, wrap=0))            # 0x8002
    c = q.pop()
    q.push(c, 1)
    q.flush()
    assert raw(m, DESC + 16, 16)[8:] == b"\x01\x00\x00\x00\x02\x00\x02\x00"  # used in wrap 0: AVAIL = USED = 0


def test_indirect_table(guest):
    """Only WRITE counts in the table; NEXT and the ids there are ignored, the entry count is len / 16."""
    mem, m = guest
    m[DATA - BASE:DATA - BASE + 4] = b"ping"
    put(m, 0, DATA, 4, 77, NEXT, table=TABLE)
    put(m, 1, DATA + 0x80, 2, 78, WRITE | NEXT, table=TABLE)
    put(m, 2, DATA + 0x90, 3, 79, WRITE, table=TABLE)
    put(m, 0, TABLE, 48, 6, avail(INDIRECT | WRITE))       # WRITE on the indirect descriptor is ignored
    q = ring(mem)
    chain = q.pop()
    assert (chain.id, chain.ndescs) == (6, 1)
    assert chain.reader.read_all() == b"ping" and chain.writer.capacity == 5
    assert (q.next_avail, q.avail_wrap) == (1, 1)


def test_indirect_without_feature_is_served_and_noted(guest):
    """TD-INDIRECT: served, and the broken driver requirement is reported through ``note``."""
    mem, m = guest
    m[DATA - BASE:DATA - BASE + 3] = b"dpd"
    put(m, 0, DATA, 3, 0, 0, table=TABLE)
    put(m, 0, TABLE, 16, 0, avail(INDIRECT))
    notes = []
    q = ring(mem, indirect=False, note=lambda check, detail: notes.append(check))
    assert q.pop().reader.read_all() == b"dpd"
    assert notes == ["indirect-without-feature"]


# ---- hostile rings: GuestError, and the ring stays where it was -------------------------------------
def refused(q, match):
    before = (q.next_avail, q.avail_wrap)
    with pytest.raises(GuestError, match=match):
        q.pop()
    assert (q.next_avail, q.avail_wrap) == before
    with pytest.raises(GuestError, match=match):  # nothing was consumed: the same chain fails again
        q.pop()


def test_chain_that_never_ends(guest):
    mem, m = guest
    for pos in range(QSZ):
        put(m, pos, DATA, 16, 0, avail(NEXT))
    refused(ring(mem), "longer than queue_size 8")


def test_chain_continuing_into_an_unavailable_descriptor(guest):
    mem, m = guest
    put(m, 0, DATA, 16, 0, avail(NEXT))
    put(m, 1, DATA, 16, 1, 0)
    q = ring(mem)
    refused(q, "continues into descriptor 1, which is not available")
    put(m, 1, DATA, 16, 1, avail())                        # the driver finishes its list: served
    assert q.pop().ndescs == 2


@pytest.mark.parametrize("first,second", [(avail(INDIRECT | NEXT), avail()), (avail(NEXT), avail(INDIRECT))])
def test_indirect_inside_a_next_list(guest, first, second):
    mem, m = guest
    put(m, 0, TABLE, 16, 0, 0, table=TABLE + 0x100)
    put(m, 0, TABLE + 0x100, 16, 0, first)
    put(m, 1, TABLE + 0x100, 16, 0, second)
    refused(ring(mem), "indirect descriptor inside a NEXT-linked list")


def test_readable_after_writable(guest):
    mem, m = guest
    put(m, 0, DATA, 16, 0, avail(WRITE | NEXT))
    put(m, 1, DATA, 16, 0, avail())
    refused(ring(mem), "readable descriptor after a writable one")
    put(m, 0, DATA, 16, 0, WRITE, table=TABLE)
    put(m, 1, DATA, 16, 0, 0, table=TABLE)
    put(m, 2, TABLE, 32, 0, avail(INDIRECT))
    q = ring(mem)
    q.next_avail = 2
    refused(q, "indirect chain at ring position 2 has a readable descriptor after a writable one")


@pytest.mark.parametrize("addr,length,match", [
    (BASE + SIZE - 8, 16, "crosses the end"),
    (0xDEAD0000000, 16, "outside every DMA region"),
])
def test_addresses_outside_guest_memory(guest, addr, length, match):
    mem, m = guest
    put(m, 0, addr, length, 0, avail())
    refused(ring(mem), match)
    put(m, 0, addr, length, 0, WRITE, table=TABLE)         # a buffer of an indirect table
    put(m, 1, TABLE, 16, 0, avail(INDIRECT))
    q = ring(mem)
    q.next_avail = 1
    refused(q, match)
    put(m, 2, addr, length, 0, avail(INDIRECT))            # the indirect table itself
    q.next_avail = 2
    refused(q, match)


def test_oversized_totals(guest):
    mem, m = guest
    put(m, 0, DATA, 16, 0, avail(NEXT))
    put(m, 1, DATA, 0xFFFF_FFF0, 0, avail())
    refused(ring(mem), "exceeds 1073741824 bytes")
    put(m, 0, DATA, 16, 0, 0, table=TABLE)
    put(m, 1, DATA, 0xFFFF_FFF0, 0, WRITE, table=TABLE)
    put(m, 2, TABLE, 32, 0, avail(INDIRECT))
    q = ring(mem)
    q.next_avail = 2
    refused(q, "indirect chain at ring position 2 exceeds 1073741824 bytes")


@pytest.mark.parametrize("length", [0, 24, 16 * 4097])
def test_bad_indirect_length(guest, length):
    mem, m = guest
    put(m, 0, TABLE, length, 0, avail(INDIRECT))
    refused(ring(mem), f"indirect table length {length} .* not a multiple of 16 in 16..65536")


def test_flags_beyond_write_in_an_indirect_table_are_ignored_and_noted(guest):
    """Only VIRTQ_DESC_F_WRITE has meaning in a packed indirect table; INDIRECT there is reserved and ignored by
    the device ("Indirect Flag: Scatter-Gather Support"): the entry is read as a buffer, and the driver noted."""
    mem, m = guest
    m[DATA - BASE:DATA - BASE + 4] = b"abcd"
    put(m, 0, DATA, 4, 0, 0, table=TABLE)
    put(m, 1, TABLE, 16, 0, INDIRECT, table=TABLE)         # a table entry "pointing at a table"
    put(m, 0, TABLE, 32, 0, avail(INDIRECT))
    notes = []
    chain = ring(mem, note=lambda check, detail: notes.append(check)).pop()
    assert chain.reader.read_all() == b"abcd" + bytes(m[TABLE - BASE:TABLE - BASE + 16])  # entry 1's 16 bytes
    assert notes == ["indirect-table-flags"]


@pytest.mark.parametrize("addresses", [(DESC + 8, DRIVER, DEVICE), (DESC, DRIVER + 2, DEVICE),
                                       (DESC, DRIVER, DEVICE + 2)])
def test_misaligned_rings_refused(guest, addresses):
    mem, _ = guest
    with pytest.raises(GuestError, match="16/4/4-byte alignment"):
        PackedRing(mem, 0, QSZ, addresses, False, False)


@pytest.mark.parametrize("size", [0, 32769])
def test_bad_queue_size(guest, size):
    mem, _ = guest
    with pytest.raises(GuestError, match=f"queue_size {size} is not in 1..32768"):
        PackedRing(mem, 0, size, (DESC, DRIVER, DEVICE), False, False)


def test_ring_outside_guest_memory(guest):
    mem, _ = guest
    with pytest.raises(GuestError, match="outside every DMA region"):
        PackedRing(mem, 0, QSZ, (0x10000, DRIVER, DEVICE), False, False)


# ---- used descriptors ------------------------------------------------------------------------------
def test_out_of_order_used_descriptors_and_batch_flag_order(guest):
    """Chains A (3 descriptors), B (1), C (2) completed C, A, B: used descriptors at positions 0, 2, 5, each with
    its chain's Buffer ID; the flags are stored after every other byte of the batch, the first element's last."""
    mem, m = guest
    for pos, (flags, buf_id) in enumerate([(NEXT, 0), (NEXT, 0), (WRITE, 10), (WRITE, 11), (NEXT, 0), (WRITE, 12)]):
        put(m, pos, DATA + 16 * pos, 16, buf_id, avail(flags))
    q = ring(mem)
    a, b, c = q.pop(), q.pop(), q.pop()
    assert [(x.id, x.ndescs) for x in (a, b, c)] == [(10, 3), (11, 1), (12, 2)]
    q.push(c, 16)
    q.push(a, 0)
    q.push(b, 5)
    assert [flags_at(m, p) for p in (0, 2, 5)] == [0x81, 0x82, 0x82]  # pushed, not published
    log = q.desc16 = StoreLog(q.desc16)
    assert q.flush() is True
    flags_index = 7                                         # le16 flags of position 0, in 16-bit units
    assert log.stores == [(flags_index + 8 * 5, 0x8082), (flags_index + 8 * 2, 0x8080), (flags_index, 0x8082)]
    assert raw(m, DESC, 16)[8:] == b"\x10\x00\x00\x00\x0c\x00\x82\x80"         # C: len 16, id 12, WRITE
    assert raw(m, DESC + 32, 16)[8:] == b"\x00\x00\x00\x00\x0a\x00\x80\x80"    # A: len 0, id 10, no WRITE
    assert raw(m, DESC + 80, 16)[8:] == b"\x05\x00\x00\x00\x0b\x00\x82\x80"    # B: len 5, id 11
    assert (q.next_used, q.used_wrap) == (6, 1)
    assert q.flush() is False                               # nothing new


# ---- used buffer notifications (driver event suppression) ---------------------------------------------
def used_one(q, m, pos, wrap):
    put(m, pos, DATA, 1, pos, avail(WRITE, wrap))
    q.push(q.pop(), 1)
    return q.flush()


def test_flush_enable_and_disable(guest):
    mem, m = guest
    q = ring(mem)
    set_driver_event(m, EV_DISABLE)
    assert used_one(q, m, 0, 1) is False
    assert flags_at(m, 0) == 0x8082                         # published all the same
    set_driver_event(m, EV_ENABLE)
    assert used_one(q, m, 1, 1) is True
    set_driver_event(m, EV_DESC, 0, 0)                      # DESC without EVENT_IDX: notify rather than stall
    assert used_one(q, m, 2, 1) is True


def test_flush_desc_with_event_idx_across_a_wrap(guest):
    mem, m = guest
    q = ring(mem, size=3, event_idx=True)
    set_driver_event(m, EV_DESC, 1, 1)                      # "notify me when position 1 of wrap 1 is used"
    assert used_one(q, m, 0, 1) is False
    assert used_one(q, m, 1, 1) is True
    assert used_one(q, m, 2, 1) is False                    # passed already
    set_driver_event(m, EV_DESC, 1, 0)                      # position 1 of the next lap (wrap 0)
    assert used_one(q, m, 0, 0) is False
    assert used_one(q, m, 1, 0) is True
    set_driver_event(m, EV_DESC, 0, 1)                      # position 0 of wrap 1: the lap after
    assert used_one(q, m, 2, 0) is False
    assert used_one(q, m, 0, 1) is True


def test_flush_desc_counts_every_descriptor_of_a_chain(guest):
    """The event names a position inside a used chain (not where its used descriptor goes): still notified."""
    mem, m = guest
    q = ring(mem, event_idx=True)
    put(m, 0, DATA, 1, 0, avail(NEXT))
    put(m, 1, DATA, 1, 0, avail(NEXT))
    put(m, 2, DATA, 1, 3, avail(WRITE))
    set_driver_event(m, EV_DESC, 1, 1)
    q.push(q.pop(), 1)
    assert q.flush() is True


def test_flush_desc_batch_decides_once(guest):
    mem, m = guest
    q = ring(mem, event_idx=True)
    for pos in range(4):
        put(m, pos, DATA, 1, pos, avail(WRITE))
    set_driver_event(m, EV_DESC, 2, 1)
    chains = [q.pop() for _ in range(4)]
    for c in chains[:3]:
        q.push(c, 1)
    assert q.flush() is True                                # positions 0..2 used: 2 among them
    q.push(chains[3], 1)
    assert q.flush() is False


# ---- available buffer notifications (device event suppression) ---------------------------------------
def device_event(m):
    return raw(m, DEVICE, 4)


def test_enable_disable_without_event_idx(guest):
    mem, m = guest
    q = ring(mem)
    q.enable_notifications()
    assert device_event(m) == bytes(4)                      # already ENABLE (the driver zeroed it)
    q.disable_notifications()
    assert device_event(m) == b"\x00\x00\x01\x00"           # RING_EVENT_FLAGS_DISABLE
    q.enable_notifications()
    assert device_event(m) == b"\x00\x00\x00\x00"


def test_enable_with_event_idx_names_the_next_available_position(guest):
    mem, m = guest
    q = ring(mem, size=3, event_idx=True)
    q.enable_notifications()
    assert device_event(m) == b"\x00\x80\x02\x00"           # position 0 of wrap 1, RING_EVENT_FLAGS_DESC
    for pos in range(3):
        put(m, pos, DATA, 1, pos, avail(WRITE))
    q.pop()
    q.pop()
    q.disable_notifications()
    assert device_event(m)[2:] == b"\x01\x00"
    q.pop()
    q.enable_notifications()
    assert device_event(m) == b"\x00\x00\x02\x00"           # position 0 of wrap 0
