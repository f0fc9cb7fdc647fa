"""Byte layouts and flags of both virtqueue formats, shared by the device side and the driver side.

Split virtqueues ("Split Virtqueues"; queue size N a power of 2, 1..32768), little-endian::

    descriptor table  align 16  16*N   struct virtq_desc { le64 addr; le32 len; le16 flags; le16 next; }
    available ring    align 2   6+2N   le16 flags; le16 idx; le16 ring[N]; le16 used_event (VIRTIO_F_EVENT_IDX)
    used ring         align 4   6+8N   le16 flags; le16 idx; struct virtq_used_elem { le32 id; le32 len; } ring[N];
                                       le16 avail_event (VIRTIO_F_EVENT_IDX)

Packed virtqueues ("Packed Virtqueues"; queue size N 1..32768, any value)::

    descriptor ring           align 16  16*N  struct pvirtq_desc { le64 addr; le32 len; le16 id; le16 flags; }
    driver event suppression  align 4   4     struct pvirtq_event_suppress { le16 desc; le16 flags; }
    device event suppression  align 4   4     (same struct; ``desc`` = off:15 | wrap:1, ``flags`` = RING_EVENT_FLAGS_*)

In a packed ring, a descriptor is available when its AVAIL flag equals the driver's wrap counter and its USED flag
does not; used when both equal the device's wrap counter. Both counters start at 1 and toggle when the ring wraps.
The queue registers ``queue_desc``, ``queue_driver``, ``queue_device`` hold, for a split ring, the descriptor table,
the available ring and the used ring; for a packed ring, the descriptor ring, the driver event suppression structure
and the device event suppression structure ("Virtqueue Configuration").
"""
from __future__ import annotations

import struct
from typing import NamedTuple

MAX_QUEUE_SIZE = 32768  # both formats ("Split Virtqueues", "Packed Virtqueues": up to 2^15 entries)

# ---- split -----------------------------------------------------------------------------------------------
#: struct virtq_desc, 16 bytes: le64 addr @0, le32 len @8, le16 flags @12, le16 next @14.
VIRTQ_DESC = struct.Struct("<QIHH")
#: struct virtq_used_elem, 8 bytes: le32 id @0 (head of the chain), le32 len @4 (bytes written).
VIRTQ_USED_ELEM = struct.Struct("<II")

VIRTQ_DESC_F_NEXT = 1
VIRTQ_DESC_F_WRITE = 2
VIRTQ_DESC_F_INDIRECT = 4
VIRTQ_AVAIL_F_NO_INTERRUPT = 1  # avail.flags, without VIRTIO_F_EVENT_IDX
VIRTQ_USED_F_NO_NOTIFY = 1      # used.flags, without VIRTIO_F_EVENT_IDX

# ---- packed ----------------------------------------------------------------------------------------------
#: struct pvirtq_desc, 16 bytes: le64 addr @0, le32 len @8, le16 id @12 (Buffer ID), le16 flags @14.
PVIRTQ_DESC = struct.Struct("<QIHH")
#: The first 14 bytes of struct pvirtq_desc (addr @0, len @8, id @12), for writing a live descriptor without touching
#: its flags @14: ``struct.pack_into`` clears the whole span it packs before it stores the fields, and the other side
#: reading a flags field of 0 in that moment sees a used descriptor whenever its wrap counter is 0.
PVIRTQ_DESC_HEAD = struct.Struct("<QIH")
#: struct pvirtq_event_suppress, 4 bytes: le16 desc @0 (desc_event_off:15, desc_event_wrap:1), le16 flags @2.
PVIRTQ_EVENT_SUPPRESS = struct.Struct("<HH")

VIRTQ_DESC_F_AVAIL = 1 << 7
VIRTQ_DESC_F_USED = 1 << 15
RING_EVENT_FLAGS_ENABLE = 0x0
RING_EVENT_FLAGS_DISABLE = 0x1
RING_EVENT_FLAGS_DESC = 0x2  # only with VIRTIO_F_EVENT_IDX
RING_EVENT_WRAP_SHIFT = 15


def vring_need_event(event_idx: int, new_idx: int, old_idx: int) -> bool:
    """True if entry number ``event_idx`` is among those just published, i.e. ``event_idx`` lies in
    [old_idx, new_idx) modulo 2**16 (equivalently ``event_idx + 1`` in (old_idx, new_idx]).

    The rule both sides apply with VIRTIO_F_EVENT_IDX ("Used Buffer Notification Suppression", "Available
    Buffer Notification Suppression"): the driver kicks after moving avail.idx from ``old_idx`` to ``new_idx``
    only if the device's ``avail_event`` names one of the entries added; the device interrupts likewise with
    ``used_event``.
    """
    return ((new_idx - event_idx - 1) & 0xFFFF) < ((new_idx - old_idx) & 0xFFFF)


def packed_need_event(off_wrap: int, wrap: int, new: int, count: int, size: int) -> bool:
    """RING_EVENT_FLAGS_DESC in a packed ring: True if the descriptor named by ``off_wrap`` (ring offset | wrap
    counter << 15) is among the ``count`` ring positions just made available / used, the next one being ring
    position ``new`` under wrap counter ``wrap`` ("Driver and Device Event Suppression").

    Positions of the previous lap count as ``offset - size``, so the comparison is :func:`vring_need_event` over
    ``[new - count, new)``.
    """
    off = off_wrap & 0x7FFF
    if (off_wrap >> RING_EVENT_WRAP_SHIFT) != wrap:
        off -= size
    return vring_need_event(off & 0xFFFF, new, (new - count) & 0xFFFF)


def event_off_wrap(offset: int, wrap: int) -> int:
    """The ``desc`` field of struct pvirtq_event_suppress for ring ``offset`` and wrap counter ``wrap``."""
    return (offset & 0x7FFF) | ((wrap & 1) << RING_EVENT_WRAP_SHIFT)


class SplitLayout(NamedTuple):
    """Offsets (from one base) and sizes in bytes of a split ring of ``size`` entries laid out in one allocation:
    descriptor table at 0, available ring right after it, used ring at the next 4-byte boundary."""

    size: int
    desc_offset: int
    desc_bytes: int
    avail_offset: int
    avail_bytes: int
    used_offset: int
    used_bytes: int
    total_bytes: int

    @classmethod
    def for_size(cls, size: int) -> "SplitLayout":
        """Layout for queue size ``size`` (a power of 2 in 1..32768, else ``ValueError``)."""
        if not 1 <= size <= MAX_QUEUE_SIZE or size & (size - 1):
            raise ValueError(f"split queue size {size} is not a power of 2 in 1..{MAX_QUEUE_SIZE}")
        desc_bytes = 16 * size
        avail_bytes = 6 + 2 * size
        used_offset = (desc_bytes + avail_bytes + 3) & ~3
        used_bytes = 6 + 8 * size
        return cls(size, 0, desc_bytes, desc_bytes, avail_bytes, used_offset, used_bytes, used_offset + used_bytes)


class PackedLayout(NamedTuple):
    """Offsets and sizes in bytes of a packed ring of ``size`` entries in one allocation: descriptor ring at 0,
    driver event suppression right after it (4-byte aligned: 16*N already is), device event suppression next."""

    size: int
    desc_offset: int
    desc_bytes: int
    driver_offset: int
    device_offset: int
    total_bytes: int

    @classmethod
    def for_size(cls, size: int) -> "PackedLayout":
        """Layout for queue size ``size`` (1..32768, else ``ValueError``)."""
        if not 1 <= size <= MAX_QUEUE_SIZE:
            raise ValueError(f"packed queue size {size} is not in 1..{MAX_QUEUE_SIZE}")
        desc_bytes = 16 * size
        return cls(size, 0, desc_bytes, desc_bytes, desc_bytes + 4, desc_bytes + 8)
