"""A block of device registers as bytes with a per-byte write mask (config space, the MSI-X table).

A write changes only the bits its mask byte allows; the other bits keep their value, so read-only fields
ignore writes of any width at any offset. Side effects (interrupts, forwarded accesses) belong to the owner.
"""
from __future__ import annotations


def overlap(offset: int, size: int, base: int, length: int) -> tuple[int, int] | None:
    """The part ``(start, end)`` (absolute, end exclusive) of ``[offset, offset+size)`` inside
    ``[base, base+length)``, or None when they do not meet."""
    start, end = max(offset, base), min(offset + size, base + length)
    return (start, end) if start < end else None


class MaskedBytes:
    """``len(reset_image)`` bytes starting as ``reset_image``; ``wmask`` (same length) marks the writable bits.

    Offsets are byte offsets into the block; callers check bounds (a slice past the end raises ValueError).
    """

    def __init__(self, reset_image: bytes, wmask: bytes):
        if len(reset_image) != len(wmask):
            raise ValueError(f"reset image of {len(reset_image)} bytes with a write mask of {len(wmask)}")
        self._reset_image = bytes(reset_image)
        self._wmask = bytes(wmask)
        self._bytes = bytearray(reset_image)

    def __len__(self) -> int:
        return len(self._bytes)

    def reset(self) -> None:
        """Back to the reset image."""
        self._bytes[:] = self._reset_image

    def read(self, offset: int, size: int) -> bytes:
        self._check(offset, size)
        return bytes(self._bytes[offset:offset + size])

    def write(self, offset: int, data: bytes) -> None:
        """A driver write: only the writable bits of each byte take ``data``'s value."""
        self._check(offset, len(data))
        end = offset + len(data)
        old = int.from_bytes(self._bytes[offset:end], "little")
        mask = int.from_bytes(self._wmask[offset:end], "little")
        new = (old & ~mask) | (int.from_bytes(data, "little") & mask)
        self._bytes[offset:end] = new.to_bytes(len(data), "little")

    def store(self, offset: int, data: bytes) -> None:
        """A device-side update: ``data`` replaces the bytes, read-only bits included."""
        self._check(offset, len(data))
        self._bytes[offset:offset + len(data)] = data

    def _check(self, offset: int, size: int) -> None:
        if offset < 0 or size < 0 or offset + size > len(self._bytes):
            raise ValueError(f"{size} bytes at {offset:#x} outside a {len(self._bytes)}-byte register block")
