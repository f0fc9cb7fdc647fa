"""Driver side of one split virtqueue ("Split Virtqueues") in :class:`~vfu_virtio.client.memory.GuestMemory`.

Layout (:class:`vfu_virtio.abi.ring.SplitLayout`, one page-aligned allocation): descriptor table at the base,
available ring right after it, used ring at the next 4-byte boundary, so the table is 16-aligned, the available ring
2-aligned and the used ring 4-aligned ("Virtqueue Alignment"). The driver's half of notification suppression:
``used_event`` (VIRTIO_F_EVENT_IDX) or VIRTQ_AVAIL_F_NO_INTERRUPT; it honours the device's ``avail_event`` or
VIRTQ_USED_F_NO_NOTIFY when deciding to kick.
"""
from __future__ import annotations

from typing import Any

from vfu_virtio.abi.ring import (VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT,
                                 VIRTQ_DESC_F_WRITE, VIRTQ_USED_ELEM, VIRTQ_USED_F_NO_NOTIFY, SplitLayout,
                                 vring_need_event)

from .memory import GuestMemory
from .ring import Completion, DriverVirtqueue, VirtqueueError


class SplitVirtqueue(DriverVirtqueue):
    """Split virtqueue of ``size`` entries (a power of 2), driver side; see :class:`~.ring.DriverVirtqueue`.

    ``avail_iova`` / ``used_iova`` are the available and used rings (= ``driver_iova`` / ``device_iova``).
    """

    format = "split"

    def __init__(self, mem: GuestMemory, size: int, **kw):
        self.layout = SplitLayout.for_size(size)
        super().__init__(mem, size, **kw)
        L = self.layout
        base = self._alloc_ring(L.total_bytes)
        self.desc_iova = base + L.desc_offset
        self.avail_iova = self.driver_iova = base + L.avail_offset
        self.used_iova = self.device_iova = base + L.used_offset
        self._d = self.desc_iova - mem.iova_base           # descriptor table
        self._a = self.avail_iova - mem.iova_base          # avail.flags
        self._u = self.used_iova - mem.iova_base           # used.flags
        self._a_idx = self._a + 2
        self._a_ring = self._a + 4
        self._u_idx = self._u + 2
        self._u_ring = self._u + 4
        self._used_event = self._a + 4 + 2 * size
        self._avail_event = self._u + 4 + 8 * size
        self._free = list(range(size - 1, -1, -1))  # pop() hands out 0, 1, 2, ...
        # _inflight: head -> (token, ring descriptor indices, block iova, [(buffer offset in memfd, size)],
        # writable bytes)
        self.avail_idx = 0         # driver's shadow of avail.idx (free-running, mod 2**16 on the ring)
        self._kick_old = 0         # avail.idx when the last notification decision was made
        self.last_used = 0         # used.idx value up to which completions were collected

    # ---- state --------------------------------------------------------------------------------
    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    @property
    def used_idx(self) -> int:
        """The device's used.idx as currently in memory."""
        return self._buf16[self._u_idx >> 1]

    @property
    def avail_event(self) -> int:
        """The device's avail_event (meaningful with EVENT_IDX)."""
        return self._buf16[self._avail_event >> 1]

    @property
    def used_event(self) -> int:
        """Our used_event as written in the available ring."""
        return self._buf16[self._used_event >> 1]

    def has_used(self) -> bool:
        return bool(self._stash) or self._buf16[self._u_idx >> 1] != self.last_used

    def used_pending(self) -> int:
        return len(self._stash) + min((self.used_idx - self.last_used) & 0xFFFF, len(self._inflight))

    def describe(self) -> str:
        return f"used.idx {self.used_idx}, avail.idx {self.avail_idx}"

    def notification_data(self) -> int:
        return self.avail_idx & 0xFFFF

    # ---- submitting ---------------------------------------------------------------------------
    def _add_chain(self, entries, use_indirect: bool, block: int, ins, in_total: int, token: Any) -> int:
        buf, free, pack, d = self._buf, self._free, VIRTQ_DESC.pack_into, self._d
        n = len(entries)
        last = n - 1
        if use_indirect:
            off = block - self._base
            head = free.pop()
            descs = (head,)
            for j, (addr, ln, w) in enumerate(entries):
                fl = VIRTQ_DESC_F_WRITE if w else 0
                pack(buf, off + 16 * j, addr, ln, fl | VIRTQ_DESC_F_NEXT if j < last else fl, j + 1 if j < last else 0)
            pack(buf, d + 16 * head, block, 16 * n, VIRTQ_DESC_F_INDIRECT, 0)
        else:
            descs = [free.pop() for _ in range(n)]
            head = descs[0]
            for j, (addr, ln, w) in enumerate(entries):
                fl = VIRTQ_DESC_F_WRITE if w else 0
                if j < last:
                    pack(buf, d + 16 * descs[j], addr, ln, fl | VIRTQ_DESC_F_NEXT, descs[j + 1])
                else:
                    pack(buf, d + 16 * descs[j], addr, ln, fl, 0)
        self._inflight[head] = (head if token is None else token, descs, block, ins, in_total)
        self._buf16[(self._a_ring + 2 * (self.avail_idx % self.size)) >> 1] = head
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        return head

    def publish(self) -> None:
        """One store of avail.idx (after the ring entries)."""
        self._buf16[self._a_idx >> 1] = self.avail_idx

    def kick_needed(self) -> bool:
        """With EVENT_IDX, avail_event names an entry in [old, new); otherwise used.flags lacks
        VIRTQ_USED_F_NO_NOTIFY."""
        new, old = self.avail_idx, self._kick_old
        self._kick_old = new
        if new == old:
            return False
        if self.event_idx:
            return vring_need_event(self._buf16[self._avail_event >> 1], new, old)
        return not self._buf16[self._u >> 1] & VIRTQ_USED_F_NO_NOTIFY

    def set_interrupts(self, enabled: bool) -> None:
        """avail.flags NO_INTERRUPT without EVENT_IDX; used_event = collected used.idx (enabled) with EVENT_IDX."""
        if self.event_idx:
            self._buf16[self._used_event >> 1] = self.last_used if enabled else (self.last_used - 1) & 0xFFFF
        else:
            self._buf16[self._a >> 1] = 0 if enabled else VIRTQ_AVAIL_F_NO_INTERRUPT

    # ---- completions --------------------------------------------------------------------------
    def get_used(self, max_items: int | None = None) -> list[Completion]:
        """See :meth:`~.ring.DriverVirtqueue.get_used`; with EVENT_IDX, used_event then follows the collected
        index (interrupt on the next one)."""
        out = self._stash
        self._stash = []
        buf = self._buf
        used_idx = self._buf16[self._u_idx >> 1]
        last = self.last_used
        if ((used_idx - last) & 0xFFFF) > self.size:
            self._stash = out
            raise VirtqueueError(f"queue {self.index}: used.idx {used_idx} is more than queue size "
                                 f"{self.size} ahead of {last}")
        inflight, free, size, ring = self._inflight, self._free, self.size, self._u_ring
        error = None
        while last != used_idx and (max_items is None or len(out) < max_items):
            ident, ln = VIRTQ_USED_ELEM.unpack_from(buf, ring + 8 * (last % size))
            entry = inflight.pop(ident, None)
            if entry is None:
                error = f"used element {last} has id {ident}, which is not the head of a chain in flight"
                break
            last = (last + 1) & 0xFFFF
            token, descs, block, ins, in_total = entry
            free.extend(descs)
            out.append(self._completion(token, ln, block, ins))
            if ln > in_total:
                error = (f"used element for head {ident} has len {ln}, more than the chain's "
                         f"{in_total} device-writable bytes")
                break
        self.last_used = last
        if self.event_idx:
            self._buf16[self._used_event >> 1] = last
        return self._collected(out, error)

    def detach_all(self) -> list[Any]:
        for _token, descs, *_rest in self._inflight.values():
            self._free.extend(descs)
        return self._forget_inflight()
