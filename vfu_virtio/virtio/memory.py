"""Guest memory as the device sees it: the DMA regions libvfio-user mapped into this process.

Each DMA region the client registers (VFIO_USER_DMA_MAP with an fd) is mapped by libvfio-user; we wrap
its ``vaddr`` in a zero-copy ``memoryview`` and translate guest addresses (IOVAs) with bounds checks.
Guest memory is never read through ``vfu_sgl_read``/``vfu_sgl_write`` (the pinned revision's
message-based path has an address bug).

No access can fault (decision TD-DMA-FD): the project's patch to libvfio-user maps an fd only if its file backs
the whole region and is sealed against shrinking, and this module never touches a region it cannot use: one
mapped without PROT_READ is not accessible, one without PROT_WRITE is readable only (a device-writable buffer
there is a guest error, not a SIGSEGV), one without an fd (QEMU's guest RAM without ``share=on``) is not
mappable, and the error says how to start QEMU.
"""
from __future__ import annotations

import bisect
import ctypes as C
import mmap

from .chain import GuestError


#: What a device access to a DMA region without an fd says: the device cannot reach that memory.
NO_FD_HINT = ("the client gave no fd for it, so the device cannot reach that memory: start QEMU with shared guest "
              "RAM, -object memory-backend-memfd,id=mem,size=<RAM size>,share=on -machine memory-backend=mem")


class _Region:
    __slots__ = ("iova", "end", "view", "writable", "unusable")

    def __init__(self, iova: int, length: int, view: memoryview | None, writable: bool, unusable: str):
        self.iova = iova
        self.end = iova + length
        self.view = view  # None when ``unusable`` says why
        self.writable = writable
        self.unusable = unusable


class GuestMemory:
    """The set of DMA regions, sorted by IOVA.

    :meth:`translate` returns a ``memoryview`` of exactly ``length`` bytes at guest address ``addr`` or
    raises :class:`GuestError` naming the address, the length and the reason (not mapped, crosses a
    region end, not mappable by us, read-only).
    """

    def __init__(self) -> None:
        self._regions: list[_Region] = []
        self._starts: list[int] = []
        self._hit: _Region | None = None  # the region of the last translation (most chains use one region)
        self.generation = 0  # bumped on every unmap: views taken before may be stale

    def add(self, iova: int, length: int, vaddr: int | None, prot: int) -> None:
        """Register a DMA region of ``length`` bytes at guest address ``iova``, mapped at ``vaddr`` with ``prot``
        (``mmap.PROT_*``); ``vaddr`` None means libvfio-user could not map it (the client gave no fd)."""
        view = None
        if not vaddr:
            unusable = NO_FD_HINT
        elif not prot & mmap.PROT_READ:
            unusable = "the client mapped it without read permission"
        else:
            unusable = ""
            view = memoryview((C.c_char * length).from_address(vaddr)).cast("B")
        region = _Region(iova, length, view, bool(prot & mmap.PROT_WRITE), unusable)
        i = bisect.bisect(self._starts, iova)
        self._regions.insert(i, region)
        self._starts.insert(i, iova)

    def remove(self, iova: int, length: int) -> None:
        """Forget the region at ``iova`` (must be called before libvfio-user unmaps it)."""
        for i, r in enumerate(self._regions):
            if r.iova == iova and r.end == iova + length:
                if r.view is not None:
                    r.view.release()
                del self._regions[i]
                del self._starts[i]
                self._hit = None
                self.generation += 1
                return

    def clear(self) -> None:
        for r in self._regions:
            if r.view is not None:
                r.view.release()
        self._regions.clear()
        self._starts.clear()
        self._hit = None
        self.generation += 1

    def __len__(self) -> int:
        return len(self._regions)

    def translate(self, addr: int, length: int, write: bool = False) -> memoryview:
        """A view of guest bytes ``[addr, addr+length)``; raises :class:`GuestError` when not fully mapped."""
        r = self._hit
        if r is None or addr < r.iova or addr + length > r.end:
            r = self._hit = self._region(addr, length)
        if r.view is None:
            raise GuestError(f"guest address {addr:#x} is in DMA region {r.iova:#x}-{r.end:#x}: {r.unusable}")
        if write and not r.writable:
            raise GuestError(f"guest address {addr:#x}+{length} is device-writable but mapped read-only")
        off = addr - r.iova
        return r.view[off:off + length]

    def _region(self, addr: int, length: int) -> _Region:
        """The region holding all of ``[addr, addr+length)``; :class:`GuestError` if there is none."""
        i = bisect.bisect(self._starts, addr) - 1
        if i >= 0 and addr < self._regions[i].end:
            r = self._regions[i]
            if addr + length <= r.end:
                return r
            raise GuestError(f"guest buffer {addr:#x}+{length:#x} crosses the end of DMA region "
                             f"{r.iova:#x}-{r.end:#x}")
        raise GuestError(f"guest address {addr:#x}+{length:#x} is outside every DMA region")
