"""Doorbells without messages (``--notify mmap``): BAR0's notification area in a memfd the client maps.

The virtio notification structure ("Virtio Over PCI Bus / Notification structure layout") lies in its own page of
BAR0 (:data:`vfu_virtio.pci.layout.NOTIFY_OFFSET`, :data:`~vfu_virtio.pci.layout.NOTIFY_LENGTH`). With this option
the server backs BAR0 with a memfd and offers that page as a sparse mmap area of the region
(``VFIO_REGION_INFO_CAP_SPARSE_MMAP``, libvfio-user's ``vfu_setup_region`` with ``mmap_areas`` and the fd): QEMU's
``vfio-user-pci`` maps it into the guest and the project's driver into its own process, so a driver's notify write
is a store into shared memory instead of a ``VFIO_USER_REGION_WRITE`` message. Every other BAR0 access is still
trapped and served by the transport.

Nothing tells the device that a store happened, so the event loop polls :meth:`NotifyArea.take`: each queue's
16-bit slot (at ``queue_notify_off * NOTIFY_OFF_MULTIPLIER``) holds :data:`IDLE` (0xFFFF, never a queue index the
driver writes), and a driver's notification overwrites it with the queue index. ``take`` returns the slots that
changed and stores :data:`IDLE` back, then a full barrier, before the caller looks at the rings: a notification
stored after that is seen by the next ``take``; one stored before is overwritten, but its ring update was made
visible first, so the ring walk that follows finds it. The memfd is sealed against shrinking (so the mapping can
never fault) and is unmapped with the server.
"""
from __future__ import annotations

import fcntl
import mmap
import os

from ..pci import layout
from .ring import full_barrier

#: ``notify`` values of the server: notify writes arrive as vfio-user messages, or land in this mapped area.
NOTIFY_CHOICES = ("message", "mmap")
#: What an untouched slot holds (no queue has this index: the device has at most 128 vectors).
IDLE = 0xFFFF


class NotifyArea:
    """The memfd behind BAR0 and this process's view of its notification page (``num_queues`` slots).

    ``fd`` backs the whole BAR (``layout.VIRTIO_BAR_SIZE`` bytes; region offset 0); :attr:`mmap_areas` is the sparse
    area list for ``vfu_setup_region`` (``[(offset, size)]`` inside BAR0). Raises OSError if the memfd cannot be made.
    """

    def __init__(self, num_queues: int):
        self.num_queues = num_queues
        self.mmap_areas = [(layout.NOTIFY_OFFSET, layout.NOTIFY_LENGTH)]
        self.fd = os.memfd_create("vfu-virtio-notify", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(self.fd, layout.VIRTIO_BAR_SIZE)
            fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
            self._map = mmap.mmap(self.fd, layout.NOTIFY_LENGTH, offset=layout.NOTIFY_OFFSET)
        except BaseException:
            os.close(self.fd)
            raise
        self._slots = memoryview(self._map).cast("H")
        self._stride = layout.NOTIFY_OFF_MULTIPLIER // 2
        self.reset()

    def reset(self) -> None:
        """Every slot back to :data:`IDLE` (device reset, a new client)."""
        for q in range(self.num_queues):
            self._slots[q * self._stride] = IDLE
        full_barrier()

    def take(self) -> list[int]:
        """The queues whose slot a driver wrote since the last call (their slots are :data:`IDLE` again)."""
        slots, stride = self._slots, self._stride
        rung = [q for q in range(self.num_queues) if slots[q * stride] != IDLE]
        if rung:
            for q in rung:
                slots[q * stride] = IDLE
            full_barrier()
        return rung

    def close(self) -> None:
        self._slots.release()
        self._map.close()
        os.close(self.fd)
