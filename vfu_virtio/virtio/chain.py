"""Descriptor chains as two byte streams: what the device reads and what it writes.

A device never reasons about "descriptor 2 is the IV": the driver may split or merge buffers as it likes
("Message Framing" in the virtio standard). A :class:`DescriptorChain` therefore exposes
a :class:`ChainReader` over the device-readable buffers and a :class:`ChainWriter` over the
device-writable ones, each as one continuous stream. The buffers are zero-copy ``memoryview`` slices of
guest memory, already bounds-checked by the virtqueue that built the chain.
"""
from __future__ import annotations

from dataclasses import dataclass, field


class GuestError(Exception):
    """The driver broke the transport rules (bad address, descriptor loop, oversized chain, ...).

    The transport logs one line and sets DEVICE_NEEDS_RESET ("Device Status Field"); it never crashes.
    """


class ShortRead(Exception):
    """The readable part of a chain ended before ``n`` bytes could be read (a truncated request)."""


class ChainReader:
    """Sequential reader over the device-readable buffers of a chain.

    ``read(n)`` returns exactly ``n`` bytes or raises :class:`ShortRead`; ``remaining`` is in bytes.
    """

    __slots__ = ("_bufs", "_idx", "_off", "remaining")

    def __init__(self, bufs: list[memoryview]):
        self._bufs = bufs
        self._idx = 0
        self._off = 0
        self.remaining = sum(len(b) for b in bufs)

    def read(self, n: int) -> bytes:
        """Read exactly ``n`` bytes (raises :class:`ShortRead` if fewer remain)."""
        if n < 0 or n > self.remaining:
            raise ShortRead(f"wanted {n} bytes, {self.remaining} readable")
        if n == 0:
            return b""
        buf = self._bufs[self._idx]
        if self._off + n <= len(buf):  # fast path: one descriptor
            out = bytes(buf[self._off:self._off + n])
            self._advance(n)
            return out
        parts = []
        need = n
        while need:
            buf = self._bufs[self._idx]
            take = min(need, len(buf) - self._off)
            parts.append(buf[self._off:self._off + take])
            self._advance(take)
            need -= take
        return b"".join(parts)

    def read_all(self) -> bytes:
        """Read everything that remains."""
        return self.read(self.remaining)

    def skip(self, n: int) -> None:
        """Skip ``n`` bytes (raises :class:`ShortRead` if fewer remain)."""
        self.read(n)

    def _advance(self, n: int) -> None:
        self.remaining -= n
        self._off += n
        while self._idx < len(self._bufs) and self._off >= len(self._bufs[self._idx]):
            self._off -= len(self._bufs[self._idx])
            self._idx += 1


class ChainWriter:
    """Sequential writer over the device-writable buffers of a chain.

    ``capacity`` is the total writable size in bytes; ``written`` counts bytes written so far and is the
    ``len`` the transport puts in the used element (``write_at`` past ``written`` extends it).
    Writing past the capacity raises :class:`GuestError`-free :class:`OverflowError`; devices check
    ``capacity`` first and answer with their own status code.
    """

    __slots__ = ("_bufs", "capacity", "written")

    def __init__(self, bufs: list[memoryview]):
        self._bufs = bufs
        self.capacity = sum(len(b) for b in bufs)
        self.written = 0

    @property
    def remaining(self) -> int:
        return self.capacity - self.written

    def write(self, data) -> None:
        """Append ``data`` (bytes-like) at the current position."""
        self.write_at(self.written, data)

    def write_at(self, offset: int, data) -> None:
        """Write ``data`` at byte ``offset`` of the writable stream; ``written`` becomes at least its end."""
        n = len(data)
        end = offset + n
        if offset < 0 or end > self.capacity:
            raise OverflowError(f"write of {n} bytes at {offset} exceeds writable capacity {self.capacity}")
        src = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else data
        pos = 0
        done = 0
        for buf in self._bufs:
            blen = len(buf)
            if pos + blen <= offset:
                pos += blen
                continue
            start = max(offset - pos, 0)
            take = min(blen - start, n - done)
            buf[start:start + take] = src[done:done + take]
            done += take
            pos += blen
            if done == n:
                break
        if end > self.written:
            self.written = end


@dataclass
class DescriptorChain:
    """One available descriptor chain, parsed and bounds-checked.

    ``head`` is the descriptor index that goes back in the used element; ``readable``/``writable`` are
    the device-readable and device-writable buffers in chain order ("readable-then-writable" is enforced
    by the virtqueue when it builds the chain).
    """

    head: int
    readable: list[memoryview] = field(default_factory=list)
    writable: list[memoryview] = field(default_factory=list)

    def __post_init__(self):
        self.reader = ChainReader(self.readable)
        self.writer = ChainWriter(self.writable)
