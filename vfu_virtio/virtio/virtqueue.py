"""Split virtqueues, device side ("Split Virtqueues" in the virtio standard).

Ring layouts (little-endian; Queue Size N):
    descriptor table  16*N   struct virtq_desc { le64 addr; le32 len; le16 flags; le16 next; }
    available ring    6+2N   le16 flags; le16 idx; le16 ring[N]; le16 used_event (EVENT_IDX)
    used ring         6+8N   le16 flags; le16 idx; struct { le32 id; le32 len; } ring[N]; le16 avail_event

Every walk is bounded by something the device chose: a chain visits at most N descriptors, an
indirect table at most len/16 entries (and at most MAX_INDIRECT_DESCRIPTORS), nested indirect tables are refused, and a
readable descriptor after a writable one is refused ("The Virtqueue Descriptor Table"). Any of these
raises :class:`GuestError`; the transport then sets DEVICE_NEEDS_RESET.
"""
from __future__ import annotations

import struct
import sys

from .chain import DescriptorChain, GuestError
from .constants import (VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT,
                        VIRTQ_DESC_F_WRITE)
from .memory import GuestMemory

VIRTQ_DESC = struct.Struct("<QIHH")
if sys.byteorder != "little":  # the 16-bit views below read le16 fields natively
    raise ImportError("vfu_virtio's split virtqueues assume a little-endian host")
VIRTQ_USED_ELEM = struct.Struct("<II")
MAX_CHAIN_BYTES = 1 << 30  # a chain's buffers may not add up to more than 1 GiB
# An indirect table may hold more entries than the queue size (Linux's virtio_crypto sends 292 for a
# 64 KiB AF_ALG request on a 256-entry queue); the device still bounds it.
MAX_INDIRECT_DESCRIPTORS = 4096


def vring_need_event(event_idx: int, new_idx: int, old_idx: int) -> bool:
    """True if ``event_idx`` lies in (old_idx, new_idx] modulo 2**16 ("Used Buffer Notification Suppression")."""
    return ((new_idx - event_idx - 1) & 0xFFFF) < ((new_idx - old_idx) & 0xFFFF)


class SplitVirtqueue:
    """One enabled split virtqueue over guest memory.

    ``pop()`` returns the next available :class:`DescriptorChain` or None; ``push(head, length)`` adds a
    used element; ``flush()`` publishes used.idx and says whether the driver wants an interrupt.
    """

    def __init__(self, mem: GuestMemory, index: int, size: int, desc: int, driver: int, device: int,
                 event_idx: bool, indirect: bool):
        if size == 0 or size & (size - 1) or size > 32768:
            raise GuestError(f"queue {index}: queue_size {size} is not a power of 2 in 1..32768")
        self.index = index
        self.size = size
        self.mem = mem
        self.event_idx = event_idx
        self.indirect = indirect
        self.addresses = (desc, driver, device)
        self._map_rings()
        # a freshly enabled queue starts at index 0 on both rings ("Virtqueue Initialization")
        self.last_avail = 0
        self.used_idx = 0
        self._signalled_used = 0

    def _map_rings(self) -> None:
        desc, driver, device = self.addresses
        size = self.size
        self.desc = self.mem.translate(desc, 16 * size)
        self.avail = self.mem.translate(driver, 6 + 2 * size)
        self.used = self.mem.translate(device, 6 + 8 * size, write=True)
        if desc % 16 or driver % 2 or device % 4:
            raise GuestError(f"queue {self.index}: ring addresses {desc:#x}/{driver:#x}/{device:#x} break the "
                             f"16/2/4-byte alignment of \"Virtqueue Alignment\"")
        # 16-bit views: every le16 ring field is loaded and stored in one aligned access, never byte by
        # byte (struct's "<H" does bytes), so the driver in the other process never sees half an index
        self.avail16 = self.avail.cast("H")
        self.used16 = self.used.cast("H")
        self.generation = self.mem.generation

    def check_memory(self) -> None:
        """Re-translate the rings if a DMA region was unmapped since; :class:`GuestError` if they are gone."""
        if self.generation != self.mem.generation:
            try:
                self._map_rings()
            except GuestError as e:
                raise GuestError(f"queue {self.index}: rings no longer mapped after a DMA unmap: {e}") from None

    def pending(self) -> bool:
        return self.avail16[1] != self.last_avail

    def pop(self) -> DescriptorChain | None:
        """The next available chain (walked and bounds-checked), or None; :class:`GuestError` if broken."""
        last = self.last_avail
        avail_idx = self.avail16[1]
        if avail_idx == last:
            return None
        size = self.size
        if ((avail_idx - last) & 0xFFFF) > size:
            raise GuestError(f"queue {self.index}: avail.idx {avail_idx} is more than queue_size {size} "
                             f"ahead of {last}")
        head = self.avail16[2 + last % size]
        self.last_avail = (last + 1) & 0xFFFF
        return self._walk(head)

    def _walk(self, head: int) -> DescriptorChain:
        size = self.size
        if head >= size:
            raise GuestError(f"queue {self.index}: head descriptor {head} >= queue_size {size}")
        table, table_len, idx = self.desc, size, head
        ttl = size
        in_indirect = False
        total = write_len = 0
        translate = self.mem.translate
        unpack_from = VIRTQ_DESC.unpack_from
        readable: list[memoryview] = []
        writable: list[memoryview] = []
        while True:
            if ttl == 0:
                raise GuestError(f"queue {self.index}: descriptor chain from head {head} is longer than "
                                 f"{'its indirect table' if in_indirect else 'queue_size'} (loop?)")
            ttl -= 1
            addr, length, flags, nxt = unpack_from(table, 16 * idx)
            if flags & VIRTQ_DESC_F_INDIRECT:
                if in_indirect:
                    raise GuestError(f"queue {self.index}: nested indirect descriptor in chain {head}")
                if not self.indirect:
                    raise GuestError(f"queue {self.index}: INDIRECT descriptor without VIRTIO_F_INDIRECT_DESC")
                if length == 0 or length % 16 or length // 16 > MAX_INDIRECT_DESCRIPTORS:
                    raise GuestError(f"queue {self.index}: indirect table length {length} is not a multiple "
                                     f"of 16 in 16..{16 * MAX_INDIRECT_DESCRIPTORS}")
                table = translate(addr, length)
                table_len = ttl = length // 16
                idx = 0
                in_indirect = True
                continue
            total += length
            if total > MAX_CHAIN_BYTES:
                raise GuestError(f"queue {self.index}: chain {head} exceeds {MAX_CHAIN_BYTES} bytes")
            if flags & VIRTQ_DESC_F_WRITE:
                writable.append(translate(addr, length, True))
                write_len += length
            else:
                if writable:
                    raise GuestError(f"queue {self.index}: chain {head} has a readable descriptor after a "
                                     f"writable one")
                readable.append(translate(addr, length))
            if not flags & VIRTQ_DESC_F_NEXT:
                break
            if nxt >= table_len:
                raise GuestError(f"queue {self.index}: next index {nxt} out of range {table_len}")
            idx = nxt
        return DescriptorChain(head, readable, writable, total - write_len, write_len)

    def push(self, head: int, length: int) -> None:
        """Write a used element (``id`` = chain head, ``len`` = bytes written); idx is published by flush."""
        VIRTQ_USED_ELEM.pack_into(self.used, 4 + 8 * (self.used_idx % self.size), head, length)
        self.used_idx = (self.used_idx + 1) & 0xFFFF

    def flush(self) -> bool:
        """Publish used.idx (after the elements) and return True if the driver should be interrupted."""
        self.used16[1] = self.used_idx
        old, new = self._signalled_used, self.used_idx
        if old == new:
            return False
        self._signalled_used = new
        if self.event_idx:
            used_event = self.avail16[2 + self.size]
            return vring_need_event(used_event, new, old)
        return not self.avail16[0] & VIRTQ_AVAIL_F_NO_INTERRUPT

    def set_avail_event(self) -> None:
        """With EVENT_IDX: ask to be kicked when the driver adds past what we consumed."""
        if self.event_idx:
            self.used16[2 + 4 * self.size] = self.last_avail
