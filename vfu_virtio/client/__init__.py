"""The project's own vfio-user client and virtio-pci driver (the "guest side" used by tests and tools).

Layers, each usable alone:
- :mod:`.vfio_user` — :class:`VfioUserClient`: the vfio-user messages over a UNIX socket.
- :mod:`.memory` — :class:`GuestMemory`: shared memfd guest memory and its address allocator.
- :mod:`.ring` — :class:`DriverVirtqueue`: the driver side of one virtqueue in that memory, split
  (:mod:`.split`) or packed (:mod:`.packed`).
- :mod:`.virtio_pci` — :class:`VirtioPciDriver`: discovery, feature negotiation, queues, MSI-X.
- :mod:`.rpmb` — ``RpmbClient``: RPMB requests and response checks over a driver queue.
- :mod:`.spawn` — ``Server``/``ServerGroup``: ``vfu-virtio`` server processes with a readiness signal.
- :mod:`.rpmb_soak` — the RPMB kill soak (``scripts/soak-rpmb``) and the write/check helpers the crash test uses.

Imports only the side-neutral :mod:`vfu_virtio.abi`; nothing of the device side.
"""
from .memory import GuestMemory, GuestMemoryError, GuestMemoryFull
from .ring import Completion, DriverVirtqueue, QueueFull, VirtqueueError, make_virtqueue
from .packed import PackedVirtqueue
from .split import SplitVirtqueue
from .vfio_user import (DeviceInfo, IrqInfo, RegionInfo, VfioUserClient, VfioUserDisconnected, VfioUserError,
                        VfioUserProtocolError, VfioUserTimeout)
from .virtio_pci import (DEFAULT_DRIVER_FEATURES, DeviceNeedsReset, DriverQueue, FeaturesRejected, MsixCap,
                         PciCapability, VirtioCap, VirtioDriverError, VirtioPciDriver, VirtioTimeout)

__all__ = [
    "Completion", "DEFAULT_DRIVER_FEATURES", "DeviceInfo", "DeviceNeedsReset", "DriverQueue", "DriverVirtqueue",
    "FeaturesRejected", "GuestMemory", "GuestMemoryError", "GuestMemoryFull", "IrqInfo", "MsixCap",
    "PackedVirtqueue", "PciCapability", "QueueFull", "RegionInfo", "SplitVirtqueue", "VfioUserClient",
    "VfioUserDisconnected", "VfioUserError", "VfioUserProtocolError", "VfioUserTimeout", "VirtioCap",
    "VirtioDriverError", "VirtioPciDriver", "VirtioTimeout", "VirtqueueError", "make_virtqueue",
]
