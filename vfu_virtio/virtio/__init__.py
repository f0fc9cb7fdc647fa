"""The virtio layer: transport registers, feature negotiation, device_status, split virtqueues, guest memory.

Knows nothing of any particular device type (``devices/`` plug in through :class:`VirtioDevice`) and
nothing of vfio-user beyond what :mod:`vfu_virtio.virtio.memory` maps from DMA regions.
"""
