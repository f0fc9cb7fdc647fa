"""Packed virtqueues, device side ("Packed Virtqueues"): :class:`PackedRing` behind :class:`~.ring.DeviceRing`.

Layouts in :mod:`vfu_virtio.abi.ring`. The device polls one place, the descriptor at its next available position:
it is available when its AVAIL flag equals the device's copy of the driver ring wrap counter and its USED flag does
not. A chain is the run of descriptors up to the first without VIRTQ_DESC_F_NEXT; its Buffer ID is the ``id`` of
that last descriptor ("Next Flag: Descriptor Chaining"). An indirect descriptor stands alone in the ring and points
at a table of ``len/16`` struct pvirtq_desc read in order (only VIRTQ_DESC_F_WRITE is meaningful there; "Indirect
Flag: Scatter-Gather Support"); an entry with VIRTQ_DESC_F_INDIRECT is refused as a nested table, as in a split ring
(the standard calls the flag reserved there, and no driver may set it).

Used elements are written in completion order at the device's next used position, one per chain, with
``id`` = Buffer ID, ``len`` = bytes written, WRITE set when ``len`` > 0, and AVAIL = USED = the device ring wrap
counter; the position then skips the chain's ring descriptors ("Polling of available and used descriptors").
:meth:`PackedRing.flush` exposes a batch by writing the flags of its first element last, so the driver never sees
half a batch. Event suppression: the driver's structure (``queue_driver``) decides used buffer notifications
(ENABLE / DISABLE / DESC with VIRTIO_F_EVENT_IDX); the device writes its own (``queue_device``) to steer available
buffer notifications.
"""
from __future__ import annotations

from vfu_virtio.abi.ring import (MAX_QUEUE_SIZE, PVIRTQ_DESC, PVIRTQ_DESC_HEAD, RING_EVENT_FLAGS_DESC,
                                 RING_EVENT_FLAGS_DISABLE, RING_EVENT_FLAGS_ENABLE, VIRTQ_DESC_F_AVAIL,
                                 VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_USED, VIRTQ_DESC_F_WRITE,
                                 event_off_wrap, packed_need_event)

from .chain import DescriptorChain, GuestError
from .memory import GuestMemory
from .ring import MAX_CHAIN_BYTES, DeviceRing, Note, full_barrier, indirect_views

_AVAIL_USED = VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED


class PackedRing(DeviceRing):
    """One enabled packed virtqueue (``addresses``: descriptor ring, driver and device event suppression)."""

    format = "packed"

    def __init__(self, mem: GuestMemory, index: int, size: int, addresses: tuple[int, int, int],
                 event_idx: bool, indirect: bool, note: Note | None = None):
        if not 1 <= size <= MAX_QUEUE_SIZE:
            raise GuestError(f"queue {index}: queue_size {size} is not in 1..{MAX_QUEUE_SIZE}")
        super().__init__(mem, index, size, addresses, event_idx, indirect, note)
        self._map()
        # both wrap counters start at 1 ("Driver and Device Ring Wrap Counters")
        self.next_avail = 0
        self.avail_wrap = 1
        self.next_used = 0
        self.used_wrap = 1
        self._batch: list[tuple[int, int, int, int]] = []  # (position, id, len, flags) not yet written
        self._since_signal = 0     # ring positions used since the last notification decision
        self._notify_off = False

    def _map(self) -> None:
        desc, driver, device = self.addresses
        if desc % 16 or driver % 4 or device % 4:
            raise GuestError(f"queue {self.index}: ring addresses {desc:#x}/{driver:#x}/{device:#x} break the "
                             f"16/4/4-byte alignment of \"Packed Virtqueues / Structure Size and Alignment\"")
        self.desc = self.mem.translate(desc, 16 * self.size, write=True)
        self.driver_event = self.mem.translate(driver, 4)
        self.device_event = self.mem.translate(device, 4, write=True)
        # 16-bit views: flags and event fields are loaded and stored in one aligned access each
        self.desc16 = self.desc.cast("H")
        self.driver16 = self.driver_event.cast("H")
        self.device16 = self.device_event.cast("H")
        self.generation = self.mem.generation

    def _is_avail(self, pos: int, wrap: int) -> bool:
        flags = self.desc16[8 * pos + 7]
        return bool(flags & VIRTQ_DESC_F_AVAIL) == bool(wrap) and bool(flags & VIRTQ_DESC_F_USED) != bool(wrap)

    def pending(self) -> bool:
        return self._is_avail(self.next_avail, self.avail_wrap)

    def pop(self) -> DescriptorChain | None:
        pos, wrap = self.next_avail, self.avail_wrap
        if not self._is_avail(pos, wrap):
            return None
        size = self.size
        translate = self.mem.translate
        unpack_from = PVIRTQ_DESC.unpack_from
        readable: list[memoryview] = []
        writable: list[memoryview] = []
        total = write_len = 0
        n = 0
        start = pos
        while True:
            if n == size:
                self.note("chain-longer-than-queue-size", f"queue {self.index}: list at ring position {start} is "
                          f"longer than queue_size {size}")
                raise GuestError(f"queue {self.index}: descriptor chain at ring position {start} is longer than "
                                 f"queue_size {size} (no descriptor without NEXT)")
            if n and not self._is_avail(pos, wrap):
                self.note("partial-list", f"queue {self.index}: list at ring position {start} continues into "
                          f"descriptor {pos}, which is not available")
                raise GuestError(f"queue {self.index}: chain at ring position {start} continues into descriptor "
                                 f"{pos}, which is not available (the driver exposed a partial list)")
            addr, length, buf_id, flags = unpack_from(self.desc, 16 * pos)
            n += 1
            pos += 1
            if pos == size:
                pos, wrap = 0, wrap ^ 1
            if flags & VIRTQ_DESC_F_INDIRECT:
                if n != 1 or flags & VIRTQ_DESC_F_NEXT:
                    self.note("indirect-in-list", f"queue {self.index}: indirect descriptor in the list at ring "
                              f"position {start}")
                    raise GuestError(f"queue {self.index}: indirect descriptor inside a NEXT-linked list at ring "
                                     f"position {start} (\"Indirect Descriptors\" forbids it)")
                self._walk_indirect(start, addr, length, readable, writable)
                total = sum(map(len, readable)) + sum(map(len, writable))
                write_len = sum(map(len, writable))
                break
            total += length
            if total > MAX_CHAIN_BYTES:
                raise GuestError(f"queue {self.index}: chain at ring position {start} exceeds {MAX_CHAIN_BYTES} bytes")
            if flags & VIRTQ_DESC_F_WRITE:
                writable.append(translate(addr, length, True))
                write_len += length
            else:
                if writable:
                    self.note("writable-before-readable", f"queue {self.index}: list at ring position {start} has a "
                              "readable descriptor after a writable one")
                    raise GuestError(f"queue {self.index}: chain at ring position {start} has a readable "
                                     f"descriptor after a writable one")
                readable.append(translate(addr, length))
            if not flags & VIRTQ_DESC_F_NEXT:
                break
        self.next_avail, self.avail_wrap = pos, wrap
        return DescriptorChain(buf_id, readable, writable, total - write_len, write_len, ndescs=n)

    def _walk_indirect(self, start: int, addr: int, length: int, readable: list, writable: list) -> None:
        count = self._check_indirect(start, length)
        table = self.mem.translate(addr, length)
        fast = indirect_views(self.mem, PVIRTQ_DESC.iter_unpack(table), count, 0, split=False)
        if fast is not None:  # else walk it again entry by entry: that names the fault or notes the flags
            readable.extend(fast[0])
            writable.extend(fast[1])
            return
        translate = self.mem.translate
        total = 0
        for i in range(count):
            a, ln, _id, flags = PVIRTQ_DESC.unpack_from(table, 16 * i)
            if flags & ~VIRTQ_DESC_F_WRITE:  # reserved here, ignored by the device ("Indirect Flag: ...")
                self.note("indirect-table-flags", f"queue {self.index}: flags {flags:#x} beyond WRITE in the indirect "
                                                  f"table of the chain at ring position {start} (ignored)")
            total += ln
            if total > MAX_CHAIN_BYTES:
                raise GuestError(f"queue {self.index}: indirect chain at ring position {start} exceeds "
                                 f"{MAX_CHAIN_BYTES} bytes")
            if flags & VIRTQ_DESC_F_WRITE:
                writable.append(translate(a, ln, True))
            else:
                if writable:
                    self.note("writable-before-readable", f"queue {self.index}: indirect table at ring position "
                              f"{start} has a readable descriptor after a writable one")
                    raise GuestError(f"queue {self.index}: indirect chain at ring position {start} has a readable "
                                     f"descriptor after a writable one")
                readable.append(translate(a, ln))

    def push(self, chain: DescriptorChain, written: int) -> None:
        flags = (VIRTQ_DESC_F_WRITE if written else 0) | (_AVAIL_USED if self.used_wrap else 0)
        self._batch.append((self.next_used, chain.id, written, flags))
        pos = self.next_used + chain.ndescs
        if pos >= self.size:
            pos -= self.size
            self.used_wrap ^= 1
        self.next_used = pos
        self._since_signal += chain.ndescs

    def flush(self) -> bool:
        batch = self._batch
        if not batch:
            return False
        self._batch = []
        desc, desc16 = self.desc, self.desc16
        for pos, buf_id, length, _flags in batch:  # flags untouched until the element is whole (PVIRTQ_DESC_HEAD)
            PVIRTQ_DESC_HEAD.pack_into(desc, 16 * pos, 0, length, buf_id)
        for pos, _id, _len, flags in reversed(batch):  # the first element's flags last: the whole batch at once
            desc16[8 * pos + 7] = flags
        count, self._since_signal = self._since_signal, 0
        full_barrier()  # the used flags visible before the driver's event suppression is read
        off_wrap, event_flags = self.driver16[0], self.driver16[1] & 0x3
        if event_flags == RING_EVENT_FLAGS_DISABLE:
            return False
        if event_flags == RING_EVENT_FLAGS_DESC and self.event_idx:
            return packed_need_event(off_wrap, self.used_wrap, self.next_used, count, self.size)
        return True  # ENABLE (or DESC without EVENT_IDX, or the reserved value 3: notify rather than stall)

    def enable_notifications(self) -> None:
        if self.event_idx:
            self.device16[0] = event_off_wrap(self.next_avail, self.avail_wrap)
            self.device16[1] = RING_EVENT_FLAGS_DESC
            self._notify_off = False
        elif self._notify_off:
            self.device16[1] = RING_EVENT_FLAGS_ENABLE
            self._notify_off = False

    def disable_notifications(self) -> None:
        if not self._notify_off:
            self.device16[1] = RING_EVENT_FLAGS_DISABLE
            self._notify_off = True
