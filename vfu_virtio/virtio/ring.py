"""What the transport sees of one enabled virtqueue, whatever its format: the device-side ring interface.

Two implementations sit behind :class:`DeviceRing`: :class:`~vfu_virtio.virtio.split.SplitRing` ("Split
Virtqueues") and :class:`~vfu_virtio.virtio.packed.PackedRing` ("Packed Virtqueues"); the transport picks one from
the negotiated VIRTIO_F_RING_PACKED bit and never names the format again. The interface is vm-virtio's queue
trait in Python:

* :meth:`DeviceRing.pop` walks the next available descriptor chain into a
  :class:`~vfu_virtio.virtio.chain.DescriptorChain` (bounds-checked; :class:`GuestError` for a broken ring);
* :meth:`DeviceRing.push` records a used element for a chain (any order: completion may be out of order);
* :meth:`DeviceRing.flush` publishes what was pushed and says whether the driver wants a used buffer
  notification (event suppression and VIRTIO_F_EVENT_IDX applied);
* :meth:`DeviceRing.enable_notifications` / :meth:`DeviceRing.disable_notifications` steer the driver's
  available buffer notifications; after enabling, the caller re-checks :meth:`DeviceRing.pending` (the race-free
  sequence of "Available Buffer Notification Suppression").

Every walk over guest data is bounded by something the device chose: a chain visits at most queue-size ring
descriptors, an indirect table at most ``len/16`` entries (and at most :data:`MAX_INDIRECT_DESCRIPTORS`), a
chain's buffers add up to at most :data:`MAX_CHAIN_BYTES`, and a readable descriptor after a writable one is
refused. A split ring refuses an indirect descriptor inside an indirect table (as QEMU does); in a packed ring's
indirect table every flag but WRITE is reserved and ignored by the device ("Indirect Flag: Scatter-Gather
Support"), so there it is noted and the entry read as a buffer. Driver behaviour that breaks a driver requirement but that the device
can serve safely is accepted and reported through ``note(check, detail)`` (decision TD-INDIRECT: indirect
descriptors without VIRTIO_F_INDIRECT_DESC).
"""
from __future__ import annotations

import threading
from typing import Callable

from .chain import DescriptorChain, GuestError
from .memory import GuestMemory

MAX_CHAIN_BYTES = 1 << 30  # a chain's buffers may not add up to more than 1 GiB
# An indirect table may hold more entries than the queue size (Linux's virtio_crypto sends 292 for a
# 64 KiB AF_ALG request on a 256-entry queue); the device still bounds it.
MAX_INDIRECT_DESCRIPTORS = 4096

#: ``note(check, detail)``: a driver requirement broken in a way the device accepted (see the module docstring).
Note = Callable[[str, str], None]


def _ignore(_check: str, _detail: str) -> None:
    pass


_WRITE, _NEXT, _INDIRECT = 2, 1, 4  # VIRTQ_DESC_F_* (the same bits in both formats)


def indirect_views(mem: GuestMemory, entries, count: int, before: int, split: bool):
    """The fast walk of an indirect table of ``count`` entries (``entries``: the unpacked descriptors in table
    order; split: ``(addr, len, flags, next)``, the chain follows ``next``, which must be the next entry; packed:
    ``(addr, len, id, flags)``, every entry in order, "Indirect Flag: Scatter-Gather Support"). Buffers that follow
    each other in guest memory in one direction become one view; all must lie in the DMA region the ring walk used
    last. Returns (readable views, writable views, bytes, writable bytes), or None for anything unusual (an
    INDIRECT entry, a packed entry with a flag beyond WRITE (noted by the slow walk), a readable entry after a
    writable one, another region, a chain beyond :data:`MAX_CHAIN_BYTES`), which the caller then walks descriptor
    by descriptor to name the fault. The bounds checks are :meth:`GuestMemory.translate`'s, inlined for one region.
    """
    region = mem._hit
    if region is None or region.view is None:
        return None
    base, end, view, can_write = region.iova, region.end, region.view, region.writable
    views: tuple[list, list] = ([], [])
    total = write_len = 0
    run_a = run_end = -1
    run_w = 0
    last = True
    for i, entry in enumerate(entries):
        if split:
            a, ln, flags, nxt = entry
            last = not flags & _NEXT
            if not last and nxt != i + 1:
                return None
        else:
            a, ln, _id, flags = entry
            last = i == count - 1
        w = flags & _WRITE
        if (flags & _INDIRECT if split else flags & ~_WRITE) or a < base or a + ln > end:
            return None
        if (w and not can_write) or (run_w and not w):
            return None
        total += ln
        if w:
            write_len += ln
        if a == run_end and w == run_w:
            run_end = a + ln
        else:
            if run_a >= 0:
                views[1 if run_w else 0].append(view[run_a - base:run_end - base])
            run_a, run_end, run_w = a, a + ln, w
        if last:
            break
    if not last or before + total > MAX_CHAIN_BYTES:
        return None
    if run_a >= 0:
        views[1 if run_w else 0].append(view[run_a - base:run_end - base])
    return views[0], views[1], total, write_len


_BARRIER = threading.Lock()


def full_barrier() -> None:
    """A full memory barrier between this thread's earlier stores and later loads of guest memory.

    Python has no fence of its own; taking and releasing a lock is one (the lock's atomic read-modify-write is a
    locked instruction on x86, a full barrier elsewhere), which the store-then-load sequences of event suppression
    need: without it the load may be served before the store is visible to the driver (x86 reorders a later load
    before an earlier store to another address).
    """
    _BARRIER.acquire()
    _BARRIER.release()


class DeviceRing:
    """Base of both formats. ``index`` (queue number), ``size`` (entries), ``event_idx`` / ``indirect``
    (VIRTIO_F_EVENT_IDX / VIRTIO_F_INDIRECT_DESC negotiated), ``addresses`` (the three guest addresses the driver
    programmed: queue_desc, queue_driver, queue_device)."""

    format = "?"

    def __init__(self, mem: GuestMemory, index: int, size: int, addresses: tuple[int, int, int],
                 event_idx: bool, indirect: bool, note: Note | None = None):
        self.mem = mem
        self.index = index
        self.size = size
        self.addresses = addresses
        self.event_idx = event_idx
        self.indirect = indirect
        self.note = note or _ignore
        self.generation = -1

    def pop(self) -> DescriptorChain | None:
        """The next available chain, walked and bounds-checked, or None; :class:`GuestError` if the ring is broken."""
        raise NotImplementedError

    def push(self, chain: DescriptorChain, written: int) -> None:
        """Record the used element of ``chain`` (``written`` bytes in its device-writable part); published by
        :meth:`flush`."""
        raise NotImplementedError

    def flush(self) -> bool:
        """Publish every pushed used element; True if the driver should get a used buffer notification."""
        raise NotImplementedError

    def pending(self) -> bool:
        """True if the driver made a chain available that :meth:`pop` has not taken yet."""
        raise NotImplementedError

    def enable_notifications(self) -> None:
        """Ask the driver for available buffer notifications again (with EVENT_IDX: from the next entry on)."""
        raise NotImplementedError

    def disable_notifications(self) -> None:
        """Tell the driver that available buffer notifications are not needed (a hint it may ignore)."""
        raise NotImplementedError

    def _map(self) -> None:
        """(Re)translate the ring's guest addresses into views; :class:`GuestError` if they are not mapped."""
        raise NotImplementedError

    def check_memory(self) -> None:
        """Re-translate the ring if a DMA region was unmapped since; :class:`GuestError` if it is gone."""
        if self.generation != self.mem.generation:
            try:
                self._map()
            except GuestError as e:
                raise GuestError(f"queue {self.index}: ring no longer mapped after a DMA unmap: {e}") from None

    def _check_indirect(self, head: int, length: int) -> int:
        """Validate an indirect descriptor's table ``length`` (bytes); returns the entry count."""
        if not self.indirect:
            self.note("indirect-without-feature",
                      f"queue {self.index}: INDIRECT descriptor without VIRTIO_F_INDIRECT_DESC (accepted, TD-INDIRECT)")
        if length == 0 or length % 16 or length // 16 > MAX_INDIRECT_DESCRIPTORS:
            raise GuestError(f"queue {self.index}: indirect table length {length} in chain {head} is not a multiple "
                             f"of 16 in 16..{16 * MAX_INDIRECT_DESCRIPTORS}")
        if length // 16 > self.size:
            self.note("chain-longer-than-queue-size", f"queue {self.index}: indirect table of {length // 16} "
                      f"descriptors on a queue of size {self.size} (accepted)")
        return length // 16
