"""The project's own vfio-user client and virtio-pci driver (the "guest side" used by tests and tools).

Layers, each usable alone:
- :mod:`.vfio_user` — :class:`VfioUserClient`: the vfio-user messages over a UNIX socket.
- :mod:`.memory` — :class:`GuestMemory`: shared memfd guest memory and its address allocator.
- :mod:`.virtqueue` — :class:`Virtqueue`: the driver side of a split virtqueue in that memory.
- :mod:`.virtio_pci` — :class:`VirtioPciDriver`: discovery, feature negotiation, queues, MSI-X.
- :mod:`.rpmb` — ``RpmbClient``: RPMB requests and response checks over a driver queue.
- :mod:`.spawn` — ``Server``/``ServerGroup``: ``vfu-virtio`` server processes with a readiness signal.

Imports only shared constants from :mod:`vfu_virtio.virtio.constants` and :mod:`vfu_virtio.abi`; nothing of
the device side.
"""
from .memory import GuestMemory, GuestMemoryError, GuestMemoryFull
from .vfio_user import (DeviceInfo, IrqInfo, RegionInfo, VfioUserClient, VfioUserDisconnected, VfioUserError,
                        VfioUserProtocolError, VfioUserTimeout)
from .virtio_pci import (COMMON_CFG, DEFAULT_DRIVER_FEATURES, DeviceNeedsReset, DriverQueue, FeaturesRejected,
                         MsixCap, PciCapability, VirtioCap, VirtioDriverError, VirtioPciDriver, VirtioTimeout)
from .virtqueue import Completion, QueueFull, RingLayout, Virtqueue, VirtqueueError, vring_need_event

__all__ = [
    "COMMON_CFG", "Completion", "DEFAULT_DRIVER_FEATURES", "DeviceInfo", "DeviceNeedsReset", "DriverQueue",
    "FeaturesRejected", "GuestMemory", "GuestMemoryError", "GuestMemoryFull", "IrqInfo", "MsixCap",
    "PciCapability", "QueueFull", "RegionInfo", "RingLayout", "VfioUserClient", "VfioUserDisconnected",
    "VfioUserError", "VfioUserProtocolError", "VfioUserTimeout", "VirtioCap", "VirtioDriverError",
    "VirtioPciDriver", "VirtioTimeout", "Virtqueue", "VirtqueueError", "vring_need_event",
]
