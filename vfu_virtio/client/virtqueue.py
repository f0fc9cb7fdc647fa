"""Driver side of one split virtqueue laid out in :class:`~vfu_virtio.client.memory.GuestMemory`.

Owns the descriptor table, the available ring and the used ring of one queue ("Split Virtqueues" in the
virtio standard), the free-descriptor list, the guest buffers of requests in flight, and the driver's
half of notification suppression (VIRTIO_F_EVENT_IDX). It knows nothing of PCI: the caller publishes
and kicks (:class:`~vfu_virtio.client.virtio_pci.DriverQueue` does both).

Layout (little-endian, queue size N, one page-aligned allocation)::

    desc   base                    16*N   struct virtq_desc { le64 addr; le32 len; le16 flags; le16 next; }
    avail  base + 16*N             6+2N   le16 flags; le16 idx; le16 ring[N]; le16 used_event
    used   align4(avail end)       6+8N   le16 flags; le16 idx; struct { le32 id; le32 len; } ring[N];
                                          le16 avail_event

The descriptor table is 16-aligned, the available ring 2-aligned and the used ring 4-aligned, as the
standard requires ("Virtqueue Alignment"). Each request gets one guest allocation holding (in this
order) its indirect table, if any, its device-readable buffers and its device-writable buffers; it is
freed when the used element comes back.

Batching: :meth:`Virtqueue.add` only writes ring entries; :meth:`Virtqueue.publish` makes every added
chain visible with a single avail.idx store, and :meth:`Virtqueue.kick_needed` then says whether the
device asked to be notified (avail_event with EVENT_IDX, used.flags otherwise).

Not thread-safe: one thread drives one queue.
"""
from __future__ import annotations

import struct
from typing import Any, NamedTuple, Sequence

from ..virtio.constants import (VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT,
                                VIRTQ_DESC_F_WRITE, VIRTQ_USED_F_NO_NOTIFY)
from .memory import GuestMemory

VIRTQ_DESC = struct.Struct("<QIHH")      # 16 bytes: addr, len, flags, next
VIRTQ_USED_ELEM = struct.Struct("<II")   # 8 bytes: id, len

MAX_QUEUE_SIZE = 32768
DEFAULT_INDIRECT_THRESHOLD = 3  # chains of this many descriptors or more go indirect (when negotiated)


def vring_need_event(event_idx: int, new_idx: int, old_idx: int) -> bool:
    """True if ring entry number ``event_idx`` is among those just published, i.e. it lies in
    [old_idx, new_idx) modulo 2**16 (equivalently ``event_idx + 1`` in (old_idx, new_idx]).

    The rule both sides apply with VIRTIO_F_EVENT_IDX ("Driver Notifications" / "Used Buffer
    Notification Suppression"): the driver kicks after moving avail.idx from ``old_idx`` to ``new_idx``
    only if the device's ``avail_event`` names one of the entries added; the device interrupts likewise
    with ``used_event``.
    """
    return ((new_idx - event_idx - 1) & 0xFFFF) < ((new_idx - old_idx) & 0xFFFF)


class RingLayout(NamedTuple):
    """Byte offsets (from the ring base) and sizes of the three parts of a split ring of ``size`` entries."""

    size: int
    desc_offset: int
    desc_bytes: int
    avail_offset: int
    avail_bytes: int
    used_offset: int
    used_bytes: int
    total_bytes: int

    @classmethod
    def for_size(cls, size: int) -> "RingLayout":
        """Layout for queue size ``size`` (a power of 2 in 1..32768, else ``ValueError``)."""
        if not 1 <= size <= MAX_QUEUE_SIZE or size & (size - 1):
            raise ValueError(f"queue size {size} is not a power of 2 in 1..{MAX_QUEUE_SIZE}")
        desc_bytes = 16 * size
        avail_offset = desc_bytes
        avail_bytes = 6 + 2 * size
        used_offset = (avail_offset + avail_bytes + 3) & ~3
        used_bytes = 6 + 8 * size
        return cls(size, 0, desc_bytes, avail_offset, avail_bytes, used_offset, used_bytes,
                   used_offset + used_bytes)


class VirtqueueError(Exception):
    """The device broke the ring protocol (unknown used id, used.idx too far ahead, len too large)."""


class QueueFull(Exception):
    """Not enough free descriptors (or guest memory) for the chain; wait for completions and retry."""


class Completion(NamedTuple):
    """One used element: the request's ``token``, the device's ``used_len`` (bytes it says it wrote) and
    ``data``, a copy of every device-writable buffer in chain order (full buffer sizes as requested)."""

    token: Any
    used_len: int
    data: list[bytes]


class Virtqueue:
    """Split virtqueue of ``size`` entries, driver side, in ``mem``.

    ``event_idx`` / ``indirect``: whether VIRTIO_F_EVENT_IDX / VIRTIO_F_INDIRECT_DESC were negotiated.
    ``indirect_threshold``: chains of at least this many descriptors use an indirect table (when
    ``indirect``). ``zero_in``: clear device-writable buffers before handing them out, so bytes the
    device did not write read back as zeros. Addresses: ``desc_iova``, ``avail_iova``, ``used_iova``.
    """

    def __init__(self, mem: GuestMemory, size: int, *, event_idx: bool = False, indirect: bool = False,
                 indirect_threshold: int = DEFAULT_INDIRECT_THRESHOLD, zero_in: bool = True, index: int = 0):
        self.layout = RingLayout.for_size(size)
        self.mem = mem
        self.size = size
        self.index = index
        self.event_idx = event_idx
        self.indirect = indirect
        self.indirect_threshold = max(2, indirect_threshold)
        self.zero_in = zero_in
        L = self.layout
        self.ring_iova = mem.alloc(L.total_bytes, 4096)
        mem.zero(self.ring_iova, L.total_bytes)
        self.desc_iova = self.ring_iova + L.desc_offset
        self.avail_iova = self.ring_iova + L.avail_offset
        self.used_iova = self.ring_iova + L.used_offset
        # every ring access is buf + memfd offset: no views of guest memory stay exported
        self._buf = mem.buf
        # le16 ring fields go through a 16-bit view: one aligned load/store each, never byte by byte
        # (struct's "<H" packs bytes), so the device in the other process never sees half an index
        self._buf16 = mem.buf.cast("H")
        self._base = mem.iova_base
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
        # head -> (token, ring descriptor indices, block iova, [(buffer offset in memfd, size)], writable bytes)
        self._inflight: dict[int, tuple] = {}
        self.avail_idx = 0         # driver's shadow of avail.idx (free-running, mod 2**16 on the ring)
        self._kick_old = 0         # avail.idx when the last notification decision was made
        self.last_used = 0         # used.idx value up to which completions were collected
        self._stash: list[Completion] = []
        self.closed = False

    # ---- state --------------------------------------------------------------------------------
    @property
    def num_free(self) -> int:
        """Free descriptors in the ring's table."""
        return len(self._free)

    @property
    def in_flight(self) -> int:
        """Chains added and not yet returned by :meth:`get_used`."""
        return len(self._inflight)

    @property
    def used_idx(self) -> int:
        """The device's used.idx as currently in memory."""
        return self._buf16[(self._u_idx) >> 1]

    @property
    def avail_event(self) -> int:
        """The device's avail_event (meaningful with EVENT_IDX)."""
        return self._buf16[(self._avail_event) >> 1]

    @property
    def used_event(self) -> int:
        """Our used_event as written in the available ring."""
        return self._buf16[(self._used_event) >> 1]

    def has_used(self) -> bool:
        """True if the device published used elements we have not collected."""
        return bool(self._stash) or self._buf16[(self._u_idx) >> 1] != self.last_used

    # ---- submitting ---------------------------------------------------------------------------
    def add(self, out_bufs: Sequence, in_sizes: Sequence[int], token: Any = None,
            indirect: bool | None = None) -> int:
        """Lay out one chain: device-readable ``out_bufs`` (bytes-like, in order) then device-writable
        buffers of ``in_sizes`` bytes; returns the head descriptor index (``token`` defaults to it).

        ``indirect``: None chooses (indirect when negotiated and the chain has at least
        ``indirect_threshold`` descriptors or does not fit in the free descriptors), True forces an
        indirect table (``ValueError`` if VIRTIO_F_INDIRECT_DESC was not negotiated), False forbids it.
        The chain is not visible to the device until :meth:`publish`. Raises :class:`QueueFull` if the
        descriptors or the guest memory for the buffers are not available, ``ValueError`` for an empty
        chain or one longer than the queue size ("The Virtqueue Descriptor Table").
        """
        n_out = len(out_bufs)
        n = n_out + len(in_sizes)
        if n == 0:
            raise ValueError("a descriptor chain needs at least one buffer")
        if n > self.size:
            raise ValueError(f"chain of {n} descriptors is longer than queue size {self.size}")
        if indirect and not self.indirect:
            raise ValueError("indirect descriptors requested but VIRTIO_F_INDIRECT_DESC was not negotiated")
        free = self._free
        if indirect is None:
            use_ind = self.indirect and n > 1 and (n >= self.indirect_threshold or n > len(free))
        else:
            use_ind = bool(indirect)
        ring_n = 1 if use_ind else n
        if len(free) < ring_n:
            raise QueueFull(f"queue {self.index}: chain needs {ring_n} descriptors, {len(free)} free")

        sizes = [len(b) if not isinstance(b, memoryview) else b.nbytes for b in out_bufs]
        out_total = sum(sizes)
        in_total = sum(in_sizes)
        table_bytes = 16 * n if use_ind else 0
        try:
            block = self.mem.alloc(max(table_bytes + out_total + in_total, 1), 16)
        except MemoryError as e:
            raise QueueFull(f"queue {self.index}: {e}") from None
        buf = self._buf
        off = block - self._base
        entries = []  # (addr, len, flags) in chain order
        pos = off + table_bytes
        for b, sz in zip(out_bufs, sizes):
            buf[pos:pos + sz] = b
            entries.append((pos + self._base, sz, 0))
            pos += sz
        ins = []
        if in_total and self.zero_in:
            buf[pos:pos + in_total] = bytes(in_total)
        for sz in in_sizes:
            ins.append((pos, sz))
            entries.append((pos + self._base, sz, VIRTQ_DESC_F_WRITE))
            pos += sz

        pack = VIRTQ_DESC.pack_into
        d = self._d
        if use_ind:
            head = free.pop()
            descs = (head,)
            last = n - 1
            for j, (addr, ln, fl) in enumerate(entries):
                if j < last:
                    pack(buf, off + 16 * j, addr, ln, fl | VIRTQ_DESC_F_NEXT, j + 1)
                else:
                    pack(buf, off + 16 * j, addr, ln, fl, 0)
            pack(buf, d + 16 * head, block, table_bytes, VIRTQ_DESC_F_INDIRECT, 0)
        else:
            descs = [free.pop() for _ in range(n)]
            head = descs[0]
            last = n - 1
            for j, (addr, ln, fl) in enumerate(entries):
                if j < last:
                    pack(buf, d + 16 * descs[j], addr, ln, fl | VIRTQ_DESC_F_NEXT, descs[j + 1])
                else:
                    pack(buf, d + 16 * descs[j], addr, ln, fl, 0)
        self._inflight[head] = (head if token is None else token, descs, block, ins, in_total)
        self._buf16[(self._a_ring + 2 * (self.avail_idx % self.size)) >> 1] = head
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        return head

    def publish(self) -> None:
        """Make every added chain visible: one store of avail.idx (after the ring entries)."""
        self._buf16[(self._a_idx) >> 1] = self.avail_idx

    def kick_needed(self) -> bool:
        """Whether the device wants an available buffer notification for what was published since the
        last call: with EVENT_IDX, avail_event names an entry in [old, new); otherwise used.flags lacks
        VIRTQ_USED_F_NO_NOTIFY."""
        new, old = self.avail_idx, self._kick_old
        self._kick_old = new
        if new == old:
            return False
        if self.event_idx:
            return vring_need_event(self._buf16[(self._avail_event) >> 1], new, old)
        return not self._buf16[(self._u) >> 1] & VIRTQ_USED_F_NO_NOTIFY

    def set_interrupts(self, enabled: bool) -> None:
        """Ask for used buffer notifications (or not): avail.flags NO_INTERRUPT without EVENT_IDX,
        used_event = collected used.idx (enabled) with EVENT_IDX. A hint: the device may still interrupt."""
        if self.event_idx:
            if enabled:
                self._buf16[(self._used_event) >> 1] = self.last_used
            else:
                self._buf16[(self._used_event) >> 1] = (self.last_used - 1) & 0xFFFF
        else:
            self._buf16[(self._a) >> 1] = 0 if enabled else VIRTQ_AVAIL_F_NO_INTERRUPT

    # ---- completions --------------------------------------------------------------------------
    def get_used(self, max_items: int | None = None) -> list[Completion]:
        """Collect the used elements published since the last call, free their descriptors and buffers.

        With EVENT_IDX, used_event is then set to the new collected index (interrupt on the next one).
        Raises :class:`VirtqueueError` if the device returned an id that is not an in-flight head, moved
        used.idx more than the queue size ahead, or reported more bytes than the chain's writable size
        (the completions gathered until then are kept and returned by the next call).
        """
        out = self._stash
        self._stash = []
        buf = self._buf
        used_idx = self._buf16[(self._u_idx) >> 1]
        last = self.last_used
        if ((used_idx - last) & 0xFFFF) > self.size:
            self._stash = out
            raise VirtqueueError(f"queue {self.index}: used.idx {used_idx} is more than queue size "
                                 f"{self.size} ahead of {last}")
        inflight = self._inflight
        free = self._free
        size = self.size
        ring = self._u_ring
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
            data = [buf[o:o + s].tobytes() for o, s in ins]
            self.mem.free(block)
            out.append(Completion(token, ln, data))
            if ln > in_total:
                error = (f"used element for head {ident} has len {ln}, more than the chain's "
                         f"{in_total} device-writable bytes")
                break
        self.last_used = last
        if self.event_idx:
            self._buf16[(self._used_event) >> 1] = last
        if error:
            self._stash = out
            raise VirtqueueError(f"queue {self.index}: {error}")
        return out

    def detach_all(self) -> list[Any]:
        """Forget every in-flight chain (after a device reset); returns their tokens, frees their memory."""
        tokens = []
        for token, descs, block, _ins, _t in self._inflight.values():
            self._free.extend(descs)
            self.mem.free(block)
            tokens.append(token)
        self._inflight.clear()
        self._stash = []
        return tokens

    def close(self) -> None:
        """Free in-flight buffers and the ring memory (the device must no longer use the queue)."""
        if self.closed:
            return
        self.detach_all()
        self.mem.free(self.ring_iova)
        self._buf16.release()
        self.closed = True
