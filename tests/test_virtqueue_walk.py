"""Device-side split virtqueue walking ("Split Virtqueues"), on a guest memory made of one real mapping.

These exercise the bounds the device itself chooses: chain length (queue size), indirect tables, readable
after writable, addresses outside the DMA regions, read-only regions, EVENT_IDX arithmetic.
"""
import ctypes
import mmap
import struct

import pytest

from vfu_virtio.virtio.chain import GuestError
from vfu_virtio.abi.ring import VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE
from vfu_virtio.virtio.memory import GuestMemory
from vfu_virtio.abi.ring import vring_need_event
from vfu_virtio.virtio.split import SplitRing

BASE = 0x100000
SIZE = 1 << 20
QSZ = 8
DESC, AVAIL, USED = BASE, BASE + 0x1000, BASE + 0x2000
DATA = BASE + 0x10000


@pytest.fixture
def guest():
    m = mmap.mmap(-1, SIZE)
    buf = (ctypes.c_char * SIZE).from_buffer(m)
    mem = GuestMemory()
    mem.add(BASE, SIZE, ctypes.addressof(buf), mmap.PROT_READ | mmap.PROT_WRITE)
    yield mem, m
    mem.clear()
    del buf
    m.close()


def put_desc(m, i, addr, length, flags=0, nxt=0, table=DESC):
    struct.pack_into("<QIHH", m, table - BASE + 16 * i, addr, length, flags, nxt)


def publish(m, heads):
    idx = struct.unpack_from("<H", m, AVAIL - BASE + 2)[0]
    for h in heads:
        struct.pack_into("<H", m, AVAIL - BASE + 4 + 2 * (idx % QSZ), h)
        idx += 1
    struct.pack_into("<H", m, AVAIL - BASE + 2, idx & 0xFFFF)


def queue(mem, event_idx=False, indirect=True):
    return SplitRing(mem, 0, QSZ, (DESC, AVAIL, USED), event_idx, indirect)


def test_readable_then_writable_streams(guest):
    mem, m = guest
    m[DATA - BASE:DATA - BASE + 5] = b"hello"
    m[DATA - BASE + 5:DATA - BASE + 8] = b"abc"
    put_desc(m, 0, DATA, 5, VIRTQ_DESC_F_NEXT, 1)
    put_desc(m, 1, DATA + 5, 3, VIRTQ_DESC_F_NEXT, 2)
    put_desc(m, 2, DATA + 0x100, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3)
    put_desc(m, 3, DATA + 0x200, 4, VIRTQ_DESC_F_WRITE)
    publish(m, [0])
    q = queue(mem)
    chain = q.pop()
    assert chain.id == 0
    assert chain.reader.read(6) == b"helloa"  # one stream across descriptors
    assert chain.reader.read_all() == b"bc"
    chain.writer.write(b"012345")  # spans both writable descriptors
    chain.writer.write_at(7, b"Z")
    assert bytes(m[DATA - BASE + 0x100:DATA - BASE + 0x104]) == b"0123"
    assert bytes(m[DATA - BASE + 0x200:DATA - BASE + 0x204]) == b"45\0Z"
    q.push(chain, chain.writer.written)
    assert q.flush() is True
    assert struct.unpack_from("<HHII", m, USED - BASE) == (0, 1, 0, 8)
    assert q.pop() is None


def test_descriptor_loop_is_a_guest_error(guest):
    mem, m = guest
    put_desc(m, 0, DATA, 16, VIRTQ_DESC_F_NEXT, 1)
    put_desc(m, 1, DATA, 16, VIRTQ_DESC_F_NEXT, 0)
    publish(m, [0])
    with pytest.raises(GuestError, match="longer than queue_size"):
        queue(mem).pop()


def test_address_outside_dma_regions(guest):
    mem, m = guest
    put_desc(m, 0, BASE + SIZE - 8, 16)
    publish(m, [0])
    with pytest.raises(GuestError, match="crosses the end"):
        queue(mem).pop()
    put_desc(m, 1, 0xDEAD0000000, 16)
    publish(m, [1])
    q = queue(mem)
    q.last_avail = 1
    with pytest.raises(GuestError, match="outside every DMA region"):
        q.pop()


def test_readable_after_writable(guest):
    mem, m = guest
    put_desc(m, 0, DATA, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1)
    put_desc(m, 1, DATA, 16, 0)
    publish(m, [0])
    with pytest.raises(GuestError, match="readable descriptor after a writable"):
        queue(mem).pop()


def test_avail_idx_too_far_ahead(guest):
    mem, m = guest
    q = queue(mem)
    struct.pack_into("<H", m, AVAIL - BASE + 2, QSZ + 1)
    with pytest.raises(GuestError, match="ahead"):
        q.pop()


def test_head_out_of_range(guest):
    mem, m = guest
    publish(m, [QSZ])
    with pytest.raises(GuestError, match="head descriptor"):
        queue(mem).pop()


def test_indirect_table(guest):
    mem, m = guest
    table = DATA + 0x1000
    m[DATA - BASE:DATA - BASE + 4] = b"ping"
    put_desc(m, 0, DATA, 4, VIRTQ_DESC_F_NEXT, 1, table=table)
    put_desc(m, 1, DATA + 0x80, 2, VIRTQ_DESC_F_WRITE, table=table)
    put_desc(m, 0, table, 32, VIRTQ_DESC_F_INDIRECT)
    publish(m, [0])
    chain = queue(mem).pop()
    assert chain.reader.read_all() == b"ping"
    assert chain.writer.capacity == 2


def test_indirect_table_merges_buffers_that_follow_each_other(guest):
    """Descriptors whose buffers are adjacent in guest memory, in one direction, become one view (the streams are
    the same bytes); a gap starts a new view."""
    mem, m = guest
    table = DATA + 0x1000
    m[DATA - BASE:DATA - BASE + 12] = b"abcdefghijkl"
    m[DATA - BASE + 0x40:DATA - BASE + 0x42] = b"yz"
    put_desc(m, 0, DATA, 4, VIRTQ_DESC_F_NEXT, 1, table=table)
    put_desc(m, 1, DATA + 4, 4, VIRTQ_DESC_F_NEXT, 2, table=table)
    put_desc(m, 2, DATA + 8, 4, VIRTQ_DESC_F_NEXT, 3, table=table)
    put_desc(m, 3, DATA + 0x40, 2, VIRTQ_DESC_F_NEXT, 4, table=table)
    put_desc(m, 4, DATA + 0x80, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 5, table=table)
    put_desc(m, 5, DATA + 0x88, 8, VIRTQ_DESC_F_WRITE, table=table)
    put_desc(m, 0, table, 6 * 16, VIRTQ_DESC_F_INDIRECT)
    publish(m, [0])
    chain = queue(mem).pop()
    assert [bytes(v) for v in chain.reader._bufs] == [b"abcdefghijkl", b"yz"]
    assert chain.reader.read_all() == b"abcdefghijklyz"
    assert chain.writer.capacity == 16
    chain.writer.write(b"0123456789ABCDEF")
    assert m[DATA - BASE + 0x80:DATA - BASE + 0x90] == b"0123456789ABCDEF"


def test_indirect_table_out_of_order_is_walked_by_next(guest):
    """A table whose ``next`` fields do not follow table order (the fast walk declines it) is still walked by
    ``next``, and a readable descriptor after a writable one is refused either way."""
    mem, m = guest
    table = DATA + 0x1000
    m[DATA - BASE:DATA - BASE + 6] = b"second"
    m[DATA - BASE + 0x20:DATA - BASE + 0x25] = b"first"
    put_desc(m, 0, DATA + 0x20, 5, VIRTQ_DESC_F_NEXT, 2, table=table)
    put_desc(m, 1, DATA + 0x80, 3, VIRTQ_DESC_F_WRITE, table=table)
    put_desc(m, 2, DATA, 6, VIRTQ_DESC_F_NEXT, 1, table=table)
    put_desc(m, 0, table, 3 * 16, VIRTQ_DESC_F_INDIRECT)
    publish(m, [0])
    chain = queue(mem).pop()
    assert chain.reader.read_all() == b"firstsecond" and chain.writer.capacity == 3
    put_desc(m, 0, DATA + 0x80, 3, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1, table=table)
    put_desc(m, 1, DATA, 6, 0, table=table)
    put_desc(m, 1, table, 2 * 16, VIRTQ_DESC_F_INDIRECT)
    publish(m, [1])
    q = queue(mem)
    q.last_avail = 1
    with pytest.raises(GuestError, match="readable descriptor after a writable one"):
        q.pop()


def test_indirect_without_feature_is_served_and_noted(guest):
    """TD-INDIRECT: like QEMU's virtio core, the device serves an indirect table the driver was not allowed to
    send (DPDK 22.11 does it), and reports the broken driver requirement once per chain through ``note``."""
    mem, m = guest
    table = DATA + 0x1000
    m[DATA - BASE:DATA - BASE + 3] = b"dpd"
    put_desc(m, 0, DATA, 3, 0, table=table)
    put_desc(m, 0, table, 16, VIRTQ_DESC_F_INDIRECT)
    publish(m, [0])
    notes = []
    q = SplitRing(mem, 0, QSZ, (DESC, AVAIL, USED), False, False, lambda check, detail: notes.append(check))
    assert q.pop().reader.read_all() == b"dpd"
    assert notes == ["indirect-without-feature"]


def test_nested_indirect_is_a_guest_error(guest):
    mem, m = guest
    table = DATA + 0x1000
    put_desc(m, 0, table, 16, VIRTQ_DESC_F_INDIRECT, table=table)  # points at itself
    put_desc(m, 0, table, 16, VIRTQ_DESC_F_INDIRECT)
    publish(m, [0])
    with pytest.raises(GuestError, match="nested indirect"):
        queue(mem).pop()


def test_indirect_loop_and_bad_length(guest):
    mem, m = guest
    table = DATA + 0x1000
    put_desc(m, 0, DATA, 4, VIRTQ_DESC_F_NEXT, 1, table=table)
    put_desc(m, 1, DATA, 4, VIRTQ_DESC_F_NEXT, 0, table=table)
    put_desc(m, 0, table, 32, VIRTQ_DESC_F_INDIRECT)
    publish(m, [0])
    with pytest.raises(GuestError, match="indirect table"):
        queue(mem).pop()
    put_desc(m, 1, table, 24, VIRTQ_DESC_F_INDIRECT)
    publish(m, [1])
    q = queue(mem)
    q.last_avail = 1
    with pytest.raises(GuestError, match="multiple of 16"):
        q.pop()


def test_writable_buffer_in_read_only_region():
    m = mmap.mmap(-1, SIZE)
    buf = (ctypes.c_char * SIZE).from_buffer(m)
    mem = GuestMemory()
    mem.add(BASE, SIZE, ctypes.addressof(buf), mmap.PROT_READ)
    with pytest.raises(GuestError, match="read-only"):
        mem.translate(DATA, 16, write=True)
    assert len(mem.translate(DATA, 16)) == 16
    mem.clear()
    del buf
    m.close()


def test_translate_checks_every_region_after_unmap_and_switch():
    """Translations remember the last region they used; an unmap forgets it and every check still holds."""
    rw, ro = (ctypes.c_char * 4096)(), (ctypes.c_char * 4096)()
    mem = GuestMemory()
    mem.add(0x1000, 4096, ctypes.addressof(rw), mmap.PROT_READ | mmap.PROT_WRITE)
    mem.add(0x3000, 4096, ctypes.addressof(ro), mmap.PROT_READ)
    mem.translate(0x1010, 4, write=True)[:] = b"abcd"
    assert rw.raw[0x10:0x14] == b"abcd"
    with pytest.raises(GuestError, match="crosses the end"):
        mem.translate(0x1ff0, 32)
    assert len(mem.translate(0x3000, 8)) == 8
    with pytest.raises(GuestError, match="read-only"):
        mem.translate(0x3008, 8, write=True)  # same region as the last translation
    with pytest.raises(GuestError, match="outside every DMA region"):
        mem.translate(0x2000, 8)
    mem.translate(0x1000, 8)
    mem.remove(0x1000, 4096)
    with pytest.raises(GuestError, match="outside every DMA region"):
        mem.translate(0x1000, 8)
    mem.clear()


def test_event_idx_suppresses_interrupts(guest):
    mem, m = guest
    for i in range(3):
        put_desc(m, i, DATA, 1, VIRTQ_DESC_F_WRITE)
    publish(m, [0, 1, 2])
    q = queue(mem, event_idx=True)
    used_event_off = AVAIL - BASE + 4 + 2 * QSZ
    struct.pack_into("<H", m, used_event_off, 1)  # driver wants an interrupt once used idx passes 1
    c = q.pop()
    q.push(c, 0)
    assert q.flush() is False  # used idx 0 -> 1 does not pass used_event 1
    c = q.pop()
    q.push(c, 0)
    assert q.flush() is True  # 1 -> 2 crosses it
    c = q.pop()
    q.enable_notifications()
    assert struct.unpack_from("<H", m, USED - BASE + 4 + 8 * QSZ)[0] == 3


def test_no_interrupt_flag_without_event_idx(guest):
    mem, m = guest
    put_desc(m, 0, DATA, 1, VIRTQ_DESC_F_WRITE)
    publish(m, [0])
    struct.pack_into("<H", m, AVAIL - BASE, 1)  # VIRTQ_AVAIL_F_NO_INTERRUPT
    q = queue(mem)
    q.push(q.pop(), 1)
    assert q.flush() is False
    assert struct.unpack_from("<H", m, USED - BASE + 2)[0] == 1  # still published


@pytest.mark.parametrize("event,new,old,want", [(0, 1, 0, True), (1, 1, 0, False), (0xFFFF, 0, 0xFFFF, True),
                                                (5, 10, 6, False), (7, 10, 6, True)])
def test_vring_need_event(event, new, old, want):
    assert vring_need_event(event, new, old) is want


def test_bad_queue_size(guest):
    mem, _ = guest
    with pytest.raises(GuestError, match="power of 2"):
        SplitRing(mem, 0, 6, (DESC, AVAIL, USED), False, False)


def test_misaligned_rings_refused(guest):
    mem, _ = guest
    with pytest.raises(GuestError, match="alignment"):
        SplitRing(mem, 0, QSZ, (DESC + 8, AVAIL, USED), False, False)
    with pytest.raises(GuestError, match="alignment"):
        SplitRing(mem, 0, QSZ, (DESC, AVAIL + 1, USED), False, False)
