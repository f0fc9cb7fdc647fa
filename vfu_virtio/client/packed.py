"""Driver side of one packed virtqueue ("Packed Virtqueues") in :class:`~vfu_virtio.client.memory.GuestMemory`.

Layout (:class:`vfu_virtio.abi.ring.PackedLayout`, one page-aligned allocation, zeroed): descriptor ring of
``size`` struct pvirtq_desc at the base (16-aligned), driver event suppression right after it, device event
suppression after that (both 4-aligned; "Structure Size and Alignment"). The queue size need not be a power of 2.

Submitting ("Supplying Buffers to The Device"): a chain of n buffers takes the next n ring descriptors (one if it
goes indirect) and a Buffer ID (0..size-1, from a free list), written in every descriptor of the chain (the
standard asks for it in the last one; Linux writes it in each). Each descriptor's AVAIL flag is the Driver Ring
Wrap Counter at its position and its USED flag the inverse; the counter starts at 1 and toggles when the ring wraps
("Driver and Device Ring Wrap Counters"). The first descriptor's flags are withheld until :meth:`publish`, which
stores the withheld flags of every chain added since, from the last chain back to the first: the device, polling
the first, sees the whole batch at once and in ring order. An indirect table is struct pvirtq_desc entries with only
VIRTQ_DESC_F_WRITE set (Buffer ID 0; "Indirect Flag: Scatter-Gather Support").

Collecting ("Receiving Used Buffers From The Device"): a used descriptor is read at the driver's next used position
while its AVAIL and USED flags both equal the driver's copy of the Device Ring Wrap Counter; the position then skips
the number of ring descriptors the chain of that Buffer ID took, so out-of-order completion works. ``len`` counts
only when the used descriptor has VIRTQ_DESC_F_WRITE ("Element Address and Length": otherwise it is reserved and
the used length is 0).

Event suppression ("Driver and Device Event Suppression"), the driver's half: the driver event suppression
structure asks for used buffer notifications (RING_EVENT_FLAGS_ENABLE / DISABLE, or, with VIRTIO_F_EVENT_IDX,
RING_EVENT_FLAGS_DESC naming the next used position, kept current by :meth:`PackedVirtqueue.get_used`); the device
event suppression structure decides :meth:`PackedVirtqueue.kick_needed`. Every le16 flags or event field is loaded
and stored as one aligned 16-bit access.
"""
from __future__ import annotations

from typing import Any

from vfu_virtio.abi.ring import (PVIRTQ_DESC, PVIRTQ_DESC_HEAD, RING_EVENT_FLAGS_DESC, RING_EVENT_FLAGS_DISABLE,
                                 RING_EVENT_FLAGS_ENABLE, VIRTQ_DESC_F_AVAIL, VIRTQ_DESC_F_INDIRECT,
                                 VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_USED, VIRTQ_DESC_F_WRITE, PackedLayout,
                                 event_off_wrap, packed_need_event)

from .memory import GuestMemory
from .ring import Completion, DriverVirtqueue

_AVAIL_USED = VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED


class PackedVirtqueue(DriverVirtqueue):
    """Packed virtqueue of ``size`` entries (1..32768, any value), driver side; see :class:`~.ring.DriverVirtqueue`.

    ``desc_iova`` / ``driver_iova`` / ``device_iova``: the descriptor ring and the driver and device event
    suppression structures. ``next_avail`` / ``avail_wrap``: where the next chain goes and the Driver Ring Wrap
    Counter; ``next_used`` / ``used_wrap``: where the next used descriptor is expected and the driver's copy of
    the Device Ring Wrap Counter. ``add`` returns the chain's Buffer ID.
    """

    format = "packed"

    def __init__(self, mem: GuestMemory, size: int, **kw):
        self.layout = PackedLayout.for_size(size)
        super().__init__(mem, size, **kw)
        L = self.layout
        base = self._alloc_ring(L.total_bytes)
        self.desc_iova = base + L.desc_offset
        self.driver_iova = base + L.driver_offset
        self.device_iova = base + L.device_offset
        d = (self.desc_iova - mem.iova_base) >> 1
        self._flags16 = d + 7              # + 8 * position: le16 flags of struct pvirtq_desc (byte 14)
        self._d = d << 1                   # descriptor ring, memfd offset
        drv = (self.driver_iova - mem.iova_base) >> 1
        self._drv_desc, self._drv_flags = drv, drv + 1      # driver event suppression: desc, flags
        dev = (self.device_iova - mem.iova_base) >> 1
        self._dev_desc, self._dev_flags = dev, dev + 1      # device event suppression: desc, flags
        self._ids = list(range(size - 1, -1, -1))  # free Buffer IDs; pop() hands out 0, 1, 2, ...
        self._free_slots = size
        # _inflight: Buffer ID -> (token, ring descriptors taken, block iova, [(buffer offset in memfd, size)],
        # writable bytes)
        self._unpublished: list[tuple[int, int, int]] = []  # (ring position, withheld flags, descriptors) per chain
        self.next_avail, self.avail_wrap = 0, 1
        self.next_used, self.used_wrap = 0, 1
        self._published = (0, 1)           # (next_avail, avail_wrap) as the device can see them
        self._kick_count = 0               # ring descriptors published since the last notification decision
        if self.event_idx:
            self.set_interrupts(True)      # like a split ring's zeroed used_event: interrupt on the first element

    # ---- state --------------------------------------------------------------------------------
    @property
    def num_free(self) -> int:
        return self._free_slots

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def has_used(self) -> bool:
        flags = self._buf16[self._flags16 + 8 * self.next_used]
        return bool(self._stash) or flags & _AVAIL_USED == (_AVAIL_USED if self.used_wrap else 0)

    def used_pending(self) -> int:
        b16, fl16, inflight, size = self._buf16, self._flags16, self._inflight, self.size
        pos, wrap = self.next_used, self.used_wrap
        count = 0
        while count < len(inflight):
            if b16[fl16 + 8 * pos] & _AVAIL_USED != (_AVAIL_USED if wrap else 0):
                break
            entry = inflight.get(PVIRTQ_DESC.unpack_from(self._buf, self._d + 16 * pos)[2])
            if entry is None:
                break
            count += 1
            pos += entry[1]
            if pos >= size:
                pos, wrap = pos - size, wrap ^ 1
        return len(self._stash) + count

    def describe(self) -> str:
        return (f"next used {self.next_used} wrap {self.used_wrap}, next avail {self.next_avail} "
                f"wrap {self.avail_wrap}, {self._free_slots} of {self.size} descriptors free")

    def notification_data(self) -> int:
        """next_off | next_wrap << 15: the next ring position not yet made available and its wrap counter."""
        return event_off_wrap(*self._published)

    # ---- submitting ---------------------------------------------------------------------------
    def _add_chain(self, entries, use_indirect: bool, block: int, ins, in_total: int, token: Any) -> int:
        buf, b16, pack = self._buf, self._buf16, PVIRTQ_DESC.pack_into
        size, d, fl16 = self.size, self._d, self._flags16
        bid = self._ids.pop()
        head = pos = self.next_avail
        wrap = self.avail_wrap
        if use_indirect:
            off = block - self._base
            for j, (addr, ln, w) in enumerate(entries):
                pack(buf, off + 16 * j, addr, ln, 0, VIRTQ_DESC_F_WRITE if w else 0)
            entries = ((block, 16 * len(entries), False),)
            first_flags = VIRTQ_DESC_F_INDIRECT
        else:
            first_flags = VIRTQ_DESC_F_NEXT if len(entries) > 1 else 0
            first_flags |= VIRTQ_DESC_F_WRITE if entries[0][2] else 0
        last = len(entries) - 1
        for j, (addr, ln, w) in enumerate(entries):
            if j == 0:  # the flags already there never read as available (other wrap, or zero): left alone for now
                PVIRTQ_DESC_HEAD.pack_into(buf, d + 16 * pos, addr, ln, bid)
            else:
                fl = (VIRTQ_DESC_F_WRITE if w else 0) | (VIRTQ_DESC_F_NEXT if j < last else 0)
                pack(buf, d + 16 * pos, addr, ln, bid, fl | (VIRTQ_DESC_F_AVAIL if wrap else VIRTQ_DESC_F_USED))
            pos += 1
            if pos == size:
                pos, wrap = 0, wrap ^ 1
        first_flags |= VIRTQ_DESC_F_AVAIL if self.avail_wrap else VIRTQ_DESC_F_USED
        n = last + 1
        self._unpublished.append((head, first_flags, n))
        self.next_avail, self.avail_wrap = pos, wrap
        self._free_slots -= n
        self._inflight[bid] = (bid if token is None else token, n, block, ins, in_total)
        return bid

    def publish(self) -> None:
        """Store the withheld first-descriptor flags of every chain added since the last call, last chain first."""
        chains = self._unpublished
        if not chains:
            return
        self._unpublished = []
        b16, fl16 = self._buf16, self._flags16
        for pos, flags, n in reversed(chains):
            b16[fl16 + 8 * pos] = flags
            self._kick_count += n
        self._published = (self.next_avail, self.avail_wrap)

    def kick_needed(self) -> bool:
        """Device event suppression flags: DISABLE -> False; DESC (with EVENT_IDX) -> whether its off_wrap names a
        ring position published since the last decision (:func:`~vfu_virtio.abi.ring.packed_need_event`);
        ENABLE (or DESC without EVENT_IDX, or the reserved value 3) -> True. False if nothing was published."""
        count, self._kick_count = self._kick_count, 0
        if not count:
            return False
        b16 = self._buf16
        flags = b16[self._dev_flags] & 0x3
        if flags == RING_EVENT_FLAGS_DISABLE:
            return False
        if flags == RING_EVENT_FLAGS_DESC and self.event_idx:
            pos, wrap = self._published
            return packed_need_event(b16[self._dev_desc], wrap, pos, min(count, self.size), self.size)
        return True

    def set_interrupts(self, enabled: bool) -> None:
        """Driver event suppression: DISABLE; or ENABLE; or, with EVENT_IDX, DESC at the next used position."""
        b16 = self._buf16
        if not enabled:
            b16[self._drv_flags] = RING_EVENT_FLAGS_DISABLE
        elif self.event_idx:
            b16[self._drv_desc] = event_off_wrap(self.next_used, self.used_wrap)
            b16[self._drv_flags] = RING_EVENT_FLAGS_DESC
        else:
            b16[self._drv_flags] = RING_EVENT_FLAGS_ENABLE

    # ---- completions --------------------------------------------------------------------------
    def get_used(self, max_items: int | None = None) -> list[Completion]:
        """See :meth:`~.ring.DriverVirtqueue.get_used` (an unknown Buffer ID or a ``len`` beyond the chain's
        writable bytes raises :class:`~.ring.VirtqueueError`); with EVENT_IDX, the driver event suppression
        ``desc`` then names the next used position (its flags are left as :meth:`set_interrupts` set them)."""
        out = self._stash
        self._stash = []
        buf, b16, fl16 = self._buf, self._buf16, self._flags16
        inflight, ids, size, d = self._inflight, self._ids, self.size, self._d
        pos, wrap = self.next_used, self.used_wrap
        error = None
        while max_items is None or len(out) < max_items:
            flags = b16[fl16 + 8 * pos]
            if flags & _AVAIL_USED != (_AVAIL_USED if wrap else 0):
                break
            addr, ln, bid, raw_flags = PVIRTQ_DESC.unpack_from(buf, d + 16 * pos)
            entry = inflight.pop(bid, None)
            if entry is None:
                error = (f"used descriptor at ring position {pos} has Buffer ID {bid}, which is not in flight "
                         f"(wrap {wrap}, addr {addr:#x}, len {ln}, flags {raw_flags:#06x})")
                break
            token, n, block, ins, in_total = entry
            pos += n
            if pos >= size:
                pos, wrap = pos - size, wrap ^ 1
            ids.append(bid)
            self._free_slots += n
            used_len = ln if flags & VIRTQ_DESC_F_WRITE else 0
            out.append(self._completion(token, used_len, block, ins))
            if used_len > in_total:
                error = (f"used descriptor for Buffer ID {bid} has len {used_len}, more than the chain's "
                         f"{in_total} device-writable bytes")
                break
        self.next_used, self.used_wrap = pos, wrap
        if self.event_idx:
            b16[self._drv_desc] = event_off_wrap(pos, wrap)
        return self._collected(out, error)

    def detach_all(self) -> list[Any]:
        """Forget every chain (published or not); the next chain goes where the first unpublished one was."""
        tokens = self._forget_inflight()
        self._ids = list(range(self.size - 1, -1, -1))
        self._free_slots = self.size
        if self._unpublished:
            self.next_avail, self.avail_wrap = self._published
            self._unpublished = []
        self.next_used, self.used_wrap = self.next_avail, self.avail_wrap
        self._kick_count = 0
        return tokens
