"""Driver-side guest memory: one shared memfd, mapped here and handed to the device with DMA_MAP.

:class:`GuestMemory` owns the memfd (``os.memfd_create``), our ``mmap`` of it and the allocator of guest
addresses (IOVAs) inside it. The device server maps the same fd (VFIO_USER_DMA_MAP with the fd passed by
SCM_RIGHTS), so a byte written through :meth:`GuestMemory.write` is what the device reads at that IOVA,
with no message on the socket. The memfd is sealed against shrinking and growing (F_SEAL_SHRINK |
F_SEAL_GROW | F_SEAL_SEAL, as QEMU's ``memory-backend-memfd`` does): the device maps only sealed fds
(decision TD-DMA-FD).

Guest addresses span ``[iova_base, iova_base + size)``. ``iova_base`` defaults to 1 MiB so that 0 (and
small values) are never valid addresses: a driver or device bug that uses address 0 hits unmapped space.

The allocator is first-fit over a sorted free list with coalescing on free, fronted by a small cache of
recently freed blocks by exact size: a driver that sends requests of a few recurring sizes (every
benchmark, most tests) gets O(1) allocations, and the cache is merged back into the free list whenever
a first-fit search fails, so it never makes an allocation fail. Every access is bounds-checked and
raises :class:`GuestMemoryError` naming the range.
"""
from __future__ import annotations

import bisect
import fcntl
import mmap
import os

DEFAULT_IOVA_BASE = 0x100000  # 1 MiB
PAGE_SIZE = mmap.PAGESIZE
FREE_CACHE_ENTRIES = 1024  # freed blocks kept by size before they are merged into the free list


def memfd(size: int, name: str = "vfu-virtio-guest", seal: bool = True) -> int:
    """A close-on-exec memfd of ``size`` bytes, sealed with F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL unless ``seal``
    is False (the device maps only sealed files: decision TD-DMA-FD). Raises OSError; closes the fd on failure."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, size)
        if seal:
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    except BaseException:
        os.close(fd)
        raise
    return fd


class GuestMemoryError(ValueError):
    """An access or free outside what was allocated/mapped (names the address and length)."""


class GuestMemoryFull(MemoryError):
    """No free range of the requested size and alignment is left."""


class GuestMemory:
    """``size`` bytes of shared guest memory at guest addresses ``iova_base .. iova_base + size``.

    ``size`` is rounded up to whole pages; ``iova_base`` must be page-aligned and non-zero. Use as a
    context manager or call :meth:`close`. Attributes: ``fd`` (the memfd, to pass to DMA_MAP),
    ``size``, ``iova_base``, ``iova_end``.
    """

    def __init__(self, size: int, iova_base: int = DEFAULT_IOVA_BASE, name: str = "vfu-virtio-guest"):
        if size <= 0:
            raise ValueError(f"guest memory size must be positive, got {size}")
        if iova_base <= 0 or iova_base % PAGE_SIZE:
            raise ValueError(f"iova_base {iova_base:#x} must be a non-zero multiple of the page size {PAGE_SIZE}")
        size = -(-size // PAGE_SIZE) * PAGE_SIZE
        self.size = size
        self.iova_base = iova_base
        self.iova_end = iova_base + size
        self.fd = memfd(size, name)
        try:
            self._mmap = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(self.fd)
            raise
        self.buf = memoryview(self._mmap)
        # free list: parallel sorted lists of range starts and ends (IOVAs, end exclusive)
        self._free_start = [iova_base]
        self._free_end = [self.iova_end]
        self._allocated: dict[int, int] = {}  # iova -> size
        self._cache: dict[int, list[int]] = {}  # size -> freed blocks of exactly that size
        self._cached = 0

    # ---- allocator ----------------------------------------------------------------------------
    def alloc(self, size: int, align: int = 16) -> int:
        """Reserve ``size`` bytes aligned to ``align`` (a power of 2); returns the guest address.

        Raises ``ValueError`` for size <= 0 or a bad alignment and :class:`GuestMemoryFull` when no free
        range fits. The bytes are not cleared (use :meth:`zero`).
        """
        if size <= 0:
            raise ValueError(f"allocation size must be positive, got {size}")
        if align <= 0 or align & (align - 1):
            raise ValueError(f"alignment {align} is not a power of 2")
        mask = align - 1
        cached = self._cache.get(size)
        if cached and not cached[-1] & mask:
            a = cached.pop()
            self._cached -= 1
            self._allocated[a] = size
            return a
        a = self._first_fit(size, mask)
        if a is None and self._cached:
            self._flush_cache()
            a = self._first_fit(size, mask)
        if a is None:
            raise GuestMemoryFull(f"no free guest range of {size} bytes aligned to {align} "
                                  f"({self.free_bytes} of {self.size} bytes free, fragmented in "
                                  f"{len(self._free_start)})")
        self._allocated[a] = size
        return a

    def _first_fit(self, size: int, mask: int) -> int | None:
        starts, ends = self._free_start, self._free_end
        for i in range(len(starts)):
            s = starts[i]
            a = (s + mask) & ~mask
            end = a + size
            e = ends[i]
            if end <= e:
                # carve [a, end) out of [s, e)
                if a == s and end == e:
                    del starts[i], ends[i]
                elif a == s:
                    starts[i] = end
                elif end == e:
                    ends[i] = a
                else:
                    ends[i] = a
                    starts.insert(i + 1, end)
                    ends.insert(i + 1, e)
                return a
        return None

    def _flush_cache(self) -> None:
        cache = self._cache
        self._cache = {}
        self._cached = 0
        for size, blocks in cache.items():
            for iova in blocks:
                self._release(iova, size)

    def free(self, iova: int) -> None:
        """Return an allocation made by :meth:`alloc` (``GuestMemoryError`` if ``iova`` is not one)."""
        size = self._allocated.pop(iova, None)
        if size is None:
            raise GuestMemoryError(f"free of guest address {iova:#x}, which is not an allocation")
        if self._cached >= FREE_CACHE_ENTRIES:
            # full of blocks of sizes no longer asked for: merge them all back, or every later
            # allocation would first-fit through a free list shredded into ~FREE_CACHE_ENTRIES ranges
            self._flush_cache()
        self._cache.setdefault(size, []).append(iova)
        self._cached += 1

    def _release(self, iova: int, size: int) -> None:
        end = iova + size
        starts, ends = self._free_start, self._free_end
        i = bisect.bisect_left(starts, iova)
        merge_prev = i > 0 and ends[i - 1] == iova
        merge_next = i < len(starts) and starts[i] == end
        if merge_prev and merge_next:
            ends[i - 1] = ends[i]
            del starts[i], ends[i]
        elif merge_prev:
            ends[i - 1] = end
        elif merge_next:
            starts[i] = iova
        else:
            starts.insert(i, iova)
            ends.insert(i, end)

    def allocation_size(self, iova: int) -> int:
        """Size in bytes of the allocation at ``iova`` (``GuestMemoryError`` if none starts there)."""
        try:
            return self._allocated[iova]
        except KeyError:
            raise GuestMemoryError(f"guest address {iova:#x} is not an allocation") from None

    @property
    def free_bytes(self) -> int:
        """Bytes not currently allocated (possibly fragmented)."""
        return sum(e - s for s, e in zip(self._free_start, self._free_end)) + \
            sum(size * len(blocks) for size, blocks in self._cache.items())

    @property
    def allocations(self) -> int:
        """Number of live allocations."""
        return len(self._allocated)

    # ---- access -------------------------------------------------------------------------------
    def offset(self, iova: int, n: int) -> int:
        """Offset into the memfd of guest range ``[iova, iova+n)``; ``GuestMemoryError`` if outside."""
        off = iova - self.iova_base
        if off < 0 or n < 0 or off + n > self.size:
            raise GuestMemoryError(f"guest range {iova:#x}+{n:#x} is outside guest memory "
                                   f"{self.iova_base:#x}-{self.iova_end:#x}")
        return off

    def view(self, iova: int, n: int) -> memoryview:
        """A zero-copy writable view of ``n`` bytes at ``iova`` (release it before :meth:`close`)."""
        off = self.offset(iova, n)
        return self.buf[off:off + n]

    def read(self, iova: int, n: int) -> bytes:
        """A copy of ``n`` bytes at ``iova``."""
        off = self.offset(iova, n)
        return self.buf[off:off + n].tobytes()

    def write(self, iova: int, data) -> None:
        """Copy the bytes-like ``data`` to ``iova``."""
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        off = self.offset(iova, n)
        self.buf[off:off + n] = data

    def zero(self, iova: int, n: int) -> None:
        """Clear ``n`` bytes at ``iova``."""
        off = self.offset(iova, n)
        self.buf[off:off + n] = bytes(n)

    # ---- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        """Unmap and close the memfd (a view from :meth:`view` still alive keeps the mapping until it dies)."""
        if self.fd < 0:
            return
        self.buf.release()
        try:
            self._mmap.close()
        except BufferError:
            pass  # a view is still alive somewhere: the mapping goes when the last one does
        self._mmap = None
        os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> "GuestMemory":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"GuestMemory({self.iova_base:#x}-{self.iova_end:#x}, {self.allocations} allocations, "
                f"{self.free_bytes} bytes free)")
