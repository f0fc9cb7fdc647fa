"""Split virtqueues, device side ("Split Virtqueues"): :class:`SplitRing` behind :class:`~.ring.DeviceRing`.

Layouts in :mod:`vfu_virtio.abi.ring`. The device reads the descriptor table and the available ring and writes the
used ring; with VIRTIO_F_EVENT_IDX it reads ``used_event`` (end of the available ring) and writes ``avail_event``
(end of the used ring). Used elements may be pushed in any order (completion order); ``used.idx`` is published by
:meth:`SplitRing.flush` after the elements. Bounds: see :mod:`vfu_virtio.virtio.ring`.
"""
from __future__ import annotations

import sys

from vfu_virtio.abi.ring import (MAX_QUEUE_SIZE, VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC, VIRTQ_DESC_F_INDIRECT,
                                 VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_USED_ELEM, VIRTQ_USED_F_NO_NOTIFY,
                                 vring_need_event)

from .chain import DescriptorChain, GuestError
from .memory import GuestMemory
from .ring import MAX_CHAIN_BYTES, DeviceRing, Note, full_barrier, indirect_views

if sys.byteorder != "little":  # the 16-bit views below read le16 fields natively
    raise ImportError("vfu_virtio's split virtqueues assume a little-endian host")


class SplitRing(DeviceRing):
    """One enabled split virtqueue over guest memory (``addresses``: descriptor table, available ring, used ring)."""

    format = "split"

    def __init__(self, mem: GuestMemory, index: int, size: int, addresses: tuple[int, int, int],
                 event_idx: bool, indirect: bool, note: Note | None = None):
        if size == 0 or size & (size - 1) or size > MAX_QUEUE_SIZE:
            raise GuestError(f"queue {index}: queue_size {size} is not a power of 2 in 1..{MAX_QUEUE_SIZE}")
        super().__init__(mem, index, size, addresses, event_idx, indirect, note)
        self._map()
        if self.used16[0]:
            self.note("used-flags-not-zero", f"queue {index}: used.flags {self.used16[0]:#x} when the queue started")
        # a freshly enabled queue starts at index 0 on both rings ("Virtqueue Initialization")
        self.last_avail = 0
        self.used_idx = 0
        self._signalled_used = 0
        self._notify_off = False

    def _map(self) -> None:
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

    def pending(self) -> bool:
        return self.avail16[1] != self.last_avail

    def pop(self) -> DescriptorChain | None:
        last = self.last_avail
        avail_idx = self.avail16[1]
        if avail_idx == last:
            return None
        size = self.size
        if ((avail_idx - last) & 0xFFFF) > size:
            self.note("avail-idx-invalid", f"queue {self.index}: avail.idx {avail_idx} after {last}")
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
                self.note("chain-longer-than-queue-size", f"queue {self.index}: chain from head {head} visits more "
                          f"than {'its indirect table' if in_indirect else 'queue_size'} descriptors")
                raise GuestError(f"queue {self.index}: descriptor chain from head {head} is longer than "
                                 f"{'its indirect table' if in_indirect else 'queue_size'} (loop?)")
            ttl -= 1
            addr, length, flags, nxt = unpack_from(table, 16 * idx)
            if flags & VIRTQ_DESC_F_INDIRECT:
                if in_indirect:
                    self.note("indirect-nested", f"queue {self.index}: indirect descriptor inside the indirect table "
                              f"of chain {head}")
                    raise GuestError(f"queue {self.index}: nested indirect descriptor in chain {head}")
                if flags & VIRTQ_DESC_F_NEXT:
                    self.note("indirect-with-next", f"queue {self.index}: INDIRECT descriptor with NEXT in chain "
                                                    f"{head} (the rest of the chain is ignored)")
                table_len = ttl = self._check_indirect(head, length)
                table = translate(addr, length)
                fast = indirect_views(self.mem, VIRTQ_DESC.iter_unpack(table), table_len, total, split=True)
                if fast is not None and not (fast[0] and writable):
                    readable += fast[0]
                    writable += fast[1]
                    total += fast[2]
                    write_len += fast[3]
                    break
                # else walk the table entry by entry below: that names the fault
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
                    self.note("writable-before-readable", f"queue {self.index}: chain {head} has a readable "
                              "descriptor after a writable one")
                    raise GuestError(f"queue {self.index}: chain {head} has a readable descriptor after a "
                                     f"writable one")
                readable.append(translate(addr, length))
            if not flags & VIRTQ_DESC_F_NEXT:
                break
            if nxt >= table_len:
                raise GuestError(f"queue {self.index}: next index {nxt} out of range {table_len}")
            idx = nxt
        return DescriptorChain(head, readable, writable, total - write_len, write_len)

    def push(self, chain: DescriptorChain, written: int) -> None:
        VIRTQ_USED_ELEM.pack_into(self.used, 4 + 8 * (self.used_idx % self.size), chain.id, written)
        self.used_idx = (self.used_idx + 1) & 0xFFFF

    def flush(self) -> bool:
        self.used16[1] = self.used_idx
        old, new = self._signalled_used, self.used_idx
        if old == new:
            return False
        self._signalled_used = new
        full_barrier()  # used.idx visible before used_event / flags are read (the driver re-checks the other way)
        flags = self.avail16[0]
        if flags > (0 if self.event_idx else VIRTQ_AVAIL_F_NO_INTERRUPT):
            self.note("avail-flags-invalid", f"queue {self.index}: avail.flags {flags:#x} "
                      f"{'with' if self.event_idx else 'without'} VIRTIO_F_EVENT_IDX")
        if self.event_idx:
            used_event = self.avail16[2 + self.size]
            return vring_need_event(used_event, new, old)
        return not flags & VIRTQ_AVAIL_F_NO_INTERRUPT

    def enable_notifications(self) -> None:
        if self.event_idx:
            self.used16[2 + 4 * self.size] = self.last_avail
        elif self._notify_off:
            self.used16[0] = 0
            self._notify_off = False

    def disable_notifications(self) -> None:
        if not self.event_idx and not self._notify_off:
            self.used16[0] = VIRTQ_USED_F_NO_NOTIFY
            self._notify_off = True
