"""Test-only device kind ``null`` (virtio id 63): loopback virtqueues and a config-space doorbell
(:mod:`.device`). Servers load it with ``VFU_VIRTIO_DEVICES=devices.null`` and ``tests/`` on the path."""
from __future__ import annotations

from vfu_virtio.devices.registry import DeviceKind, Option
from vfu_virtio.store import Namespace

from .device import MAX_DELAY_MS, MAX_QUEUES, VIRTIO_ID_NULL, NullDevice


def _build(ns: Namespace, **settings) -> NullDevice:
    """A :class:`NullDevice`; it keeps nothing in the store but its settings."""
    return NullDevice(**settings)


KIND = DeviceKind(
    name="null",
    virtio_id=VIRTIO_ID_NULL,
    pci_class=(0xFF, 0x00, 0x00),  # class 0xff0000: "device does not fit any defined class"
    summary="test-only loopback: each request's readable bytes are copied into its writable buffers",
    factory=_build,
    options=(Option("--queues", "queues", "Number of virtqueues, all loopback.", 2, range=(1, MAX_QUEUES),
                    unit="virtqueues"),
             Option("--delay-ms", "delay_ms", "Requests starting with SLOW complete on a worker thread this much "
                    "later (0: every request completes at once).", 0, range=(0, MAX_DELAY_MS), unit="ms"),),
)
