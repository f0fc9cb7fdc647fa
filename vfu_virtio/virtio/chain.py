"""Descriptor chains as two byte streams: what the device reads and what it writes.

A device never reasons about "descriptor 2 is the IV": the driver may split or merge buffers as it likes
("Message Framing" in the virtio standard). A :class:`DescriptorChain` therefore exposes
a :class:`ChainReader` over the device-readable buffers and a :class:`ChainWriter` over the
device-writable ones, each as one continuous stream. The buffers are zero-copy ``memoryview`` slices of
guest memory, already bounds-checked by the virtqueue that built the chain.
"""
from __future__ import annotations


class GuestError(Exception):
    """The driver broke the transport rules (bad address, descriptor loop, oversized chain, ...).

    The transport logs one line and sets DEVICE_NEEDS_RESET ("Device Status Field"); it never crashes.
    """


class ShortRead(Exception):
    """The readable part of a chain ended before ``n`` bytes could be read (a truncated request)."""


class Scattered:
    """Bytes that lie in several guest buffers, not joined: ``parts`` (memoryviews, in order); ``len()`` is their
    total in bytes, ``bytes()`` joins them. For primitives that take their input in updates (hashes, MACs)."""

    __slots__ = ("parts", "nbytes")

    def __init__(self, parts: list[memoryview]):
        self.parts = parts
        self.nbytes = sum(map(len, parts))

    def __len__(self) -> int:
        return self.nbytes

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)


class ChainReader:
    """Sequential reader over the device-readable buffers of a chain.

    ``take(n)`` returns exactly ``n`` bytes as a bytes-like object, ``read(n)`` as ``bytes``; both raise
    :class:`ShortRead` if fewer remain. ``remaining`` is in bytes; ``total``, if given, is the sum of the
    buffer lengths (the virtqueue has it from the walk).
    """

    __slots__ = ("_bufs", "_idx", "_cur", "_off", "remaining")

    def __init__(self, bufs: list[memoryview], total: int | None = None):
        self._bufs = bufs
        self._idx = 0
        self._cur = bufs[0] if bufs else memoryview(b"")
        self._off = 0  # read position in ``_cur``; may equal its length (the next read moves on)
        self.remaining = sum(map(len, bufs)) if total is None else total

    def take(self, n: int) -> memoryview | bytes:
        """The next ``n`` bytes without copying when they lie in one buffer.

        Returns a ``memoryview`` of guest memory in that case (it reads what the driver stores there at the
        time it is read: copy it before relying on it twice), else ``bytes`` joined from the buffers.
        Raises :class:`ShortRead` if fewer than ``n`` bytes remain.
        """
        if n < 0 or n > self.remaining:
            raise ShortRead(f"wanted {n} bytes, {self.remaining} readable")
        off = self._off
        end = off + n
        if end <= len(self._cur):  # fast path: within the current buffer
            self._off = end
            self.remaining -= n
            return self._cur[off:end]
        return self._gather(n)

    def take_parts(self, n: int) -> memoryview | bytes | Scattered:
        """:meth:`take`, but bytes that span several buffers come back as :class:`Scattered` views, never joined."""
        if n < 0 or n > self.remaining:
            raise ShortRead(f"wanted {n} bytes, {self.remaining} readable")
        if self._off + n <= len(self._cur):
            return self.take(n)
        parts = []
        while n:
            while self._off == len(self._cur):
                self._idx += 1
                self._cur, self._off = self._bufs[self._idx], 0
            k = min(n, len(self._cur) - self._off)
            parts.append(self._cur[self._off:self._off + k])
            self._off += k
            self.remaining -= k
            n -= k
        return parts[0] if len(parts) == 1 else Scattered(parts)

    def read(self, n: int) -> bytes:
        """Read exactly ``n`` bytes as ``bytes`` (raises :class:`ShortRead` if fewer remain)."""
        return bytes(self.take(n))

    def read_all(self) -> bytes:
        """Read everything that remains."""
        return bytes(self.take(self.remaining))

    def skip(self, n: int) -> None:
        """Skip ``n`` bytes (raises :class:`ShortRead` if fewer remain)."""
        self.take(n)

    def _gather(self, n: int) -> memoryview | bytes:
        """``take`` across buffers: moves past exhausted buffers, then slices one or joins several
        (``0 < n <= remaining``, checked by the caller)."""
        bufs, idx, cur, off = self._bufs, self._idx, self._cur, self._off
        self.remaining -= n
        while off == len(cur):
            idx += 1
            cur, off = bufs[idx], 0
        if off + n <= len(cur):
            self._idx, self._cur, self._off = idx, cur, off + n
            return cur[off:off + n]
        parts = []
        while n:
            k = min(n, len(cur) - off)
            parts.append(cur[off:off + k])
            n -= k
            off += k
            if n:
                idx += 1
                cur, off = bufs[idx], 0
        self._idx, self._cur, self._off = idx, cur, off
        return b"".join(parts)


class ChainWriter:
    """Sequential writer over the device-writable buffers of a chain.

    ``capacity`` is the total writable size in bytes; ``written`` counts bytes written so far and is the
    ``len`` the transport puts in the used element (``write_at`` past ``written`` extends it).
    Writing past the capacity raises :class:`GuestError`-free :class:`OverflowError`; devices check
    ``capacity`` first and answer with their own status code. ``total`` as for :class:`ChainReader`.
    """

    __slots__ = ("_bufs", "capacity", "written")

    def __init__(self, bufs: list[memoryview], total: int | None = None):
        self._bufs = bufs
        self.capacity = sum(map(len, bufs)) if total is None else total
        self.written = 0

    @property
    def remaining(self) -> int:
        return self.capacity - self.written

    def write(self, data) -> None:
        """Append ``data`` (bytes-like) at the current position."""
        self.write_at(self.written, data)

    def view(self, offset: int, n: int) -> memoryview | None:
        """A writable ``memoryview`` of the stream from byte ``offset`` to the end of the buffer holding it,
        if that buffer holds at least ``n`` (>= 1) bytes from ``offset``; else None.

        Writes through the view do not move ``written`` (the caller reports its used length itself).
        """
        if offset < 0 or n < 1:
            return None
        pos = 0
        for buf in self._bufs:
            blen = len(buf)
            if offset < pos + blen:
                start = offset - pos
                return buf[start:] if start + n <= blen else None
            pos += blen
        return None

    def write_at(self, offset: int, data) -> None:
        """Write ``data`` at byte ``offset`` of the writable stream; ``written`` becomes at least its end."""
        if not isinstance(data, (bytes, bytearray)):
            data = memoryview(data).cast("B")
        n = len(data)
        end = offset + n
        if offset < 0 or end > self.capacity:
            raise OverflowError(f"write of {n} bytes at {offset} exceeds writable capacity {self.capacity}")
        if end > self.written:
            self.written = end
        if not n:
            return
        bufs = self._bufs
        first = bufs[0]
        if end <= len(first):  # fast path: all in the first buffer
            first[offset:end] = data
            return
        last = bufs[-1]
        start = self.capacity - len(last)
        if offset >= start:  # fast path: all in the last buffer (the status byte of most layouts)
            last[offset - start:end - start] = data
            return
        pos = 0
        done = 0
        for buf in bufs:
            blen = len(buf)
            if pos + blen <= offset:
                pos += blen
                continue
            start = max(offset - pos, 0)
            take = min(blen - start, n - done)
            buf[start:start + take] = data[done:done + take]
            done += take
            pos += blen
            if done == n:
                break


class DescriptorChain:
    """One available descriptor chain, parsed and bounds-checked, until its used element is published.

    ``id`` goes back in the used element (a split ring's head index, a packed ring's Buffer ID); ``ndescs`` is the
    number of ring descriptors it occupies (a packed ring skips that many when it writes the used element);
    ``readable``/``writable`` are the device-readable and device-writable buffers in chain order
    ("readable-then-writable" is enforced by the ring that built the chain); ``reader``/``writer`` stream over them.
    ``readable_len``/``writable_len`` are their total sizes in bytes when the caller already summed them.

    Completion (decision TD-ASYNC): a device that keeps a chain past its ``handle`` call finishes it later, from any
    thread, with :meth:`complete`; the transport sets ``completer`` before handing the chain over.

    ``failed``: the device sets it when it answers the request with an error status (crypto: a status other than
    OK; RPMB: a result other than OK); the transport counts such requests per queue (``errors`` in the metrics).
    """

    __slots__ = ("id", "ndescs", "readable", "writable", "reader", "writer", "completer", "epoch", "failed")

    def __init__(self, id: int, readable: list[memoryview] | None = None,  # noqa: A002 - the spec's name
                 writable: list[memoryview] | None = None, readable_len: int | None = None,
                 writable_len: int | None = None, ndescs: int = 1):
        self.id = id
        self.ndescs = ndescs
        self.readable = readable = [] if readable is None else readable
        self.writable = writable = [] if writable is None else writable
        self.reader = ChainReader(readable, readable_len)
        self.writer = ChainWriter(writable, writable_len)
        self.completer = None
        self.epoch = 0
        self.failed = False

    def peek(self, n: int) -> bytes:
        """The first ``n`` device-readable bytes (fewer when the chain has fewer), without consuming them."""
        out = bytearray()
        for buf in self.readable:
            if len(out) >= n:
                break
            out += buf[:n - len(out)]
        return bytes(out)

    def complete(self, written: int) -> None:
        """Finish this request: ``written`` bytes of its device-writable part are the used length. Thread-safe;
        the event loop publishes the used element. Call it exactly once, and never touch the buffers after."""
        self.completer(self, written)
