"""Driver side of one virtqueue, whatever its format: the interface :class:`~.virtio_pci.DriverQueue` uses.

Two implementations: :class:`~.split.SplitVirtqueue` ("Split Virtqueues") and :class:`~.packed.PackedVirtqueue`
("Packed Virtqueues"); :func:`make_virtqueue` picks one from the negotiated VIRTIO_F_RING_PACKED bit. Both keep the
ring in :class:`~vfu_virtio.client.memory.GuestMemory` (one page-aligned allocation), the guest buffers of the
requests in flight, and the driver's half of notification suppression; neither knows PCI (the caller publishes and
kicks).

Buffers: each request gets one guest allocation holding, in this order, its indirect table (if it goes indirect),
its device-readable buffers and its device-writable buffers; it is freed when the used element comes back, and
:class:`Completion` carries a copy of every device-writable buffer.

Batching: :meth:`DriverVirtqueue.add` only writes descriptors; :meth:`DriverVirtqueue.publish` makes every added
chain visible to the device at once, and :meth:`DriverVirtqueue.kick_needed` then says whether the device asked to
be notified. Not thread-safe: one thread drives one queue.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

from .memory import GuestMemory

DEFAULT_INDIRECT_THRESHOLD = 3  # chains of this many descriptors or more go indirect (when negotiated)


class VirtqueueError(Exception):
    """The device broke the ring protocol (unknown used id, used index too far ahead, len too large)."""


class QueueFull(Exception):
    """Not enough free descriptors (or guest memory) for the chain; wait for completions and retry."""


class Completion(NamedTuple):
    """One used element: the request's ``token``, the device's ``used_len`` (bytes it says it wrote) and
    ``data``, a copy of every device-writable buffer in chain order (full buffer sizes as requested)."""

    token: Any
    used_len: int
    data: list[bytes]


class DriverVirtqueue:
    """What both formats share: the request buffers, the in-flight table and the counters.

    ``size`` entries in ``mem``; ``event_idx`` / ``indirect``: VIRTIO_F_EVENT_IDX / VIRTIO_F_INDIRECT_DESC
    negotiated; ``indirect_threshold``: chains of at least this many descriptors use an indirect table (when
    ``indirect``); ``zero_in``: clear device-writable buffers before handing them out, so bytes the device did not
    write read back as zeros. ``desc_iova``, ``driver_iova``, ``device_iova``: the three guest addresses the driver
    programs into queue_desc, queue_driver, queue_device.
    """

    format = "?"

    def __init__(self, mem: GuestMemory, size: int, *, event_idx: bool = False, indirect: bool = False,
                 indirect_threshold: int = DEFAULT_INDIRECT_THRESHOLD, zero_in: bool = True, index: int = 0):
        self.mem = mem
        self.size = size
        self.index = index
        self.event_idx = event_idx
        self.indirect = indirect
        self.indirect_threshold = max(2, indirect_threshold)
        self.zero_in = zero_in
        # every ring access is buf + memfd offset: no views of guest memory stay exported
        self._buf = mem.buf
        self._buf16 = mem.buf.cast("H")  # le16 fields: one aligned load/store each, never byte by byte
        self._base = mem.iova_base
        self._inflight: dict[int, tuple] = {}  # chain id -> (token, ..., block iova, ...) as the format keeps it
        self._stash: list[Completion] = []     # completions gathered before a VirtqueueError, for the next call
        self.closed = False

    def _alloc_ring(self, total_bytes: int) -> int:
        iova = self.mem.alloc(total_bytes, 4096)
        self.mem.zero(iova, total_bytes)
        self.ring_iova = iova
        return iova

    # ---- state --------------------------------------------------------------------------------
    @property
    def num_free(self) -> int:
        """Free ring descriptors."""
        raise NotImplementedError

    @property
    def in_flight(self) -> int:
        """Chains added and not yet returned by :meth:`get_used`."""
        raise NotImplementedError

    def has_used(self) -> bool:
        """True if the device published used elements we have not collected."""
        raise NotImplementedError

    def used_pending(self) -> int:
        """How many used elements the device published that :meth:`get_used` has not collected (a read-only look
        at the ring; stops at the first element that is not a chain in flight)."""
        raise NotImplementedError

    def describe(self) -> str:
        """The ring indices in a few words (for timeout messages)."""
        raise NotImplementedError

    def notification_data(self) -> int:
        """The 16-bit "next available" value of VIRTIO_F_NOTIFICATION_DATA ("Available Buffer Notifications")."""
        raise NotImplementedError

    # ---- submitting ---------------------------------------------------------------------------
    def add(self, out_bufs: Sequence, in_sizes: Sequence[int], token: Any = None,
            indirect: bool | None = None) -> int:
        """Lay out one chain: device-readable ``out_bufs`` (bytes-like, in order) then device-writable
        buffers of ``in_sizes`` bytes; returns the chain's id (split: head index; packed: Buffer ID; ``token``
        defaults to it).

        ``indirect``: None chooses (indirect when negotiated and the chain has at least ``indirect_threshold``
        descriptors or does not fit in the free descriptors), True forces an indirect table (``ValueError`` if
        VIRTIO_F_INDIRECT_DESC was not negotiated, unless the queue was made with ``indirect=True`` anyway), False
        forbids it. The chain is not visible to the device until :meth:`publish`. Raises :class:`QueueFull` if the
        descriptors or the guest memory for the buffers are not available, ``ValueError`` for an empty chain or
        one longer than the queue size.
        """
        n = len(out_bufs) + len(in_sizes)
        if n == 0:
            raise ValueError("a descriptor chain needs at least one buffer")
        if n > self.size:
            raise ValueError(f"chain of {n} descriptors is longer than queue size {self.size}")
        if indirect and not self.indirect:
            raise ValueError("indirect descriptors requested but VIRTIO_F_INDIRECT_DESC was not negotiated")
        free = self.num_free
        if indirect is None:
            use_ind = self.indirect and n > 1 and (n >= self.indirect_threshold or n > free)
        else:
            use_ind = bool(indirect)
        ring_n = 1 if use_ind else n
        if free < ring_n:
            raise QueueFull(f"queue {self.index}: chain needs {ring_n} descriptors, {free} free")
        block, entries, ins, in_total = self._lay_out(out_bufs, in_sizes, 16 * n if use_ind else 0)
        return self._add_chain(entries, use_ind, block, ins, in_total, token)

    def _lay_out(self, out_bufs: Sequence, in_sizes: Sequence[int], table_bytes: int):
        """Allocate one block: ``table_bytes`` of indirect table, then the readable buffers (copied in), then the
        writable ones (zeroed if ``zero_in``). Returns (block iova, [(addr, len, writable)], [(memfd offset, len)]
        of the writable buffers, their total)."""
        sizes = [len(b) if not isinstance(b, memoryview) else b.nbytes for b in out_bufs]
        in_total = sum(in_sizes)
        try:
            block = self.mem.alloc(max(table_bytes + sum(sizes) + in_total, 1), 16)
        except MemoryError as e:
            raise QueueFull(f"queue {self.index}: {e}") from None
        buf, base = self._buf, self._base
        pos = block - base + table_bytes
        entries = []
        for b, sz in zip(out_bufs, sizes):
            buf[pos:pos + sz] = b
            entries.append((pos + base, sz, False))
            pos += sz
        if in_total and self.zero_in:
            buf[pos:pos + in_total] = bytes(in_total)
        ins = []
        for sz in in_sizes:
            ins.append((pos, sz))
            entries.append((pos + base, sz, True))
            pos += sz
        return block, entries, ins, in_total

    def _add_chain(self, entries, use_indirect: bool, block: int, ins, in_total: int, token: Any) -> int:
        raise NotImplementedError

    def block(self, chain_id: int) -> int:
        """The guest address of in-flight chain ``chain_id``'s one allocation: its indirect table (if it went
        indirect), then its device-readable bytes, then its device-writable ones. KeyError if it is not in flight."""
        return self._inflight[chain_id][2]

    def publish(self) -> None:
        """Make every added chain visible to the device."""
        raise NotImplementedError

    def kick_needed(self) -> bool:
        """Whether the device wants an available buffer notification for what was published since the last call."""
        raise NotImplementedError

    def set_interrupts(self, enabled: bool) -> None:
        """Ask for used buffer notifications (or not). A hint: the device may still interrupt."""
        raise NotImplementedError

    # ---- completions --------------------------------------------------------------------------
    def get_used(self, max_items: int | None = None) -> list[Completion]:
        """Collect the used elements published since the last call, free their descriptors and buffers.

        Raises :class:`VirtqueueError` if the device returned an id that is not in flight, moved its used index
        too far, or reported more bytes than the chain's writable size (the completions gathered until then are
        kept and returned by the next call).
        """
        raise NotImplementedError

    def _completion(self, token: Any, used_len: int, block: int, ins) -> Completion:
        buf = self._buf
        data = [buf[o:o + s].tobytes() for o, s in ins]
        self.mem.free(block)
        return Completion(token, used_len, data)

    def _collected(self, out: list[Completion], error: str | None) -> list[Completion]:
        """The end of :meth:`get_used`: ``out``, or, after a protocol ``error``, keep ``out`` for the next call and
        raise :class:`VirtqueueError`."""
        if error:
            self._stash = out
            raise VirtqueueError(f"queue {self.index}: {error}")
        return out

    def _forget_inflight(self) -> list[Any]:
        """Free the buffers of every chain in flight and forget them; returns their tokens (token first and block
        iova third in each in-flight entry)."""
        tokens = []
        for entry in self._inflight.values():
            self.mem.free(entry[2])
            tokens.append(entry[0])
        self._inflight.clear()
        self._stash = []
        return tokens

    def detach_all(self) -> list[Any]:
        """Forget every in-flight chain (after a device or queue reset); returns their tokens, frees their memory."""
        raise NotImplementedError

    def close(self) -> None:
        """Free in-flight buffers and the ring memory (the device must no longer use the queue)."""
        if self.closed:
            return
        self.detach_all()
        self.mem.free(self.ring_iova)
        self._buf16.release()
        self.closed = True


def make_virtqueue(mem: GuestMemory, size: int, packed: bool, **kw) -> DriverVirtqueue:
    """A split or packed driver virtqueue (keyword arguments as :class:`DriverVirtqueue`)."""
    if packed:
        from .packed import PackedVirtqueue
        return PackedVirtqueue(mem, size, **kw)
    from .split import SplitVirtqueue
    return SplitVirtqueue(mem, size, **kw)
