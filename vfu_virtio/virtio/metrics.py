"""Counters of one virtio-pci function for the status endpoint, and its status as plain data.

:class:`TransportMetrics` is owned by the transport (``VirtioPciTransport.metrics``), which counts into it on the
event-loop thread: per virtqueue the available buffer notifications received (``kicks``), the bytes of the
device-readable part of every request handed to the device (``bytes_read``) and the used lengths of every request
published (``bytes_written``), the requests the device answered with an error status or lost to a guest error
(``errors``) and the used buffer notifications sent (``interrupts``); for the function the configuration change
interrupts, every
DEVICE_NEEDS_RESET with its reason (the last :data:`EVENTS_KEPT`, and the total) and free-form named counters
(:meth:`TransportMetrics.count`) that other parts of the device may add (fault injection, ...). Requests handed to
the device, completed, dropped and in flight are the queue's :class:`~vfu_virtio.virtio.inflight.Inflight`
counters. Every counter is cumulative over the process's life (resets and clients do not clear them).

:func:`transport_status` reads a transport into JSON-ready data (ints, strings, lists, dicts), from any thread: the
values are read without a lock, each one consistent on its own. Imports nothing of the transport.
"""
from __future__ import annotations

import time
from collections import deque

from vfu_virtio.abi.virtio import (ACKNOWLEDGE, DEVICE_NEEDS_RESET, DRIVER, DRIVER_OK, FAILED, FEATURES_OK,
                                   VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_EVENT_IDX, VIRTIO_F_IN_ORDER,
                                   VIRTIO_F_INDIRECT_DESC, VIRTIO_F_NOTIF_CONFIG_DATA, VIRTIO_F_NOTIFICATION_DATA,
                                   VIRTIO_F_ORDER_PLATFORM, VIRTIO_F_RING_PACKED, VIRTIO_F_RING_RESET,
                                   VIRTIO_F_SR_IOV, VIRTIO_F_VERSION_1, VIRTIO_MSI_NO_VECTOR)

#: DEVICE_NEEDS_RESET events kept with their reason (the count covers all of them).
EVENTS_KEPT = 16

#: device_status bits by name ("Device Status Field"), in bit order.
STATUS_BITS = (("ACKNOWLEDGE", ACKNOWLEDGE), ("DRIVER", DRIVER), ("DRIVER_OK", DRIVER_OK),
               ("FEATURES_OK", FEATURES_OK), ("DEVICE_NEEDS_RESET", DEVICE_NEEDS_RESET), ("FAILED", FAILED))
#: Names of the reserved feature bits ("Reserved Feature Bits"); a device-type bit is named by its kind.
FEATURE_NAMES = {
    VIRTIO_F_INDIRECT_DESC: "INDIRECT_DESC", VIRTIO_F_EVENT_IDX: "EVENT_IDX", VIRTIO_F_VERSION_1: "VERSION_1",
    VIRTIO_F_ACCESS_PLATFORM: "ACCESS_PLATFORM", VIRTIO_F_RING_PACKED: "RING_PACKED", VIRTIO_F_IN_ORDER: "IN_ORDER",
    VIRTIO_F_ORDER_PLATFORM: "ORDER_PLATFORM", VIRTIO_F_SR_IOV: "SR_IOV",
    VIRTIO_F_NOTIFICATION_DATA: "NOTIFICATION_DATA", VIRTIO_F_NOTIF_CONFIG_DATA: "NOTIF_CONFIG_DATA",
    VIRTIO_F_RING_RESET: "RING_RESET",
}


class QueueMetrics:
    """The counters of one virtqueue (see the module docstring); bytes in bytes."""

    __slots__ = ("kicks", "bytes_read", "bytes_written", "errors", "interrupts")

    def __init__(self) -> None:
        self.kicks = self.bytes_read = self.bytes_written = self.errors = self.interrupts = 0


class TransportMetrics:
    """Counters of one function with ``num_queues`` virtqueues (see the module docstring)."""

    def __init__(self, num_queues: int):
        self.queues = [QueueMetrics() for _ in range(num_queues)]
        self.config_interrupts = 0
        self.needs_reset = 0
        self.needs_reset_events: deque[tuple[float, str]] = deque(maxlen=EVENTS_KEPT)
        self.counters: dict[str, int] = {}

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the named counter ``name`` (created at 0), e.g. ``"inject.delay"``."""
        self.counters[name] = self.counters.get(name, 0) + n

    def needs_reset_event(self, reason: str) -> None:
        """A DEVICE_NEEDS_RESET with its ``reason``, at the current wall-clock time."""
        self.needs_reset += 1
        self.needs_reset_events.append((time.time(), reason))


def bit_names(value: int, names: dict[int, str], prefix: str = "bit ") -> list[str]:
    """The set bits of ``value`` by name (``names``: bit number -> name), unnamed ones as ``prefix + number``."""
    return [names.get(n, f"{prefix}{n}") for n in range(value.bit_length()) if value >> n & 1]


def status_names(status: int) -> list[str]:
    """The device_status bits set in ``status`` by name, in bit order."""
    return [name for name, mask in STATUS_BITS if status & mask]


def transport_status(transport, feature_names: dict[int, str] | None = None) -> dict:
    """The function's state and counters as JSON-ready data.

    ``{"device_status": int, "device_status_names": [str], "device_features": int, "driver_features": int (as
    negotiated: 0 before FEATURES_OK), "features_names": [str], "config_generation": int, "config_interrupts": int,
    "needs_reset": int, "needs_reset_events": [{"time": unix seconds, "reason": str}], "driver_notes": {check: count},
    "counters": {name: int}, "queues": [{"index", "enabled" (bool), "format" ("split"/"packed"/None), "size",
    "msix_vector" (None for VIRTIO_MSI_NO_VECTOR), "requests" (handed to the device), "completed", "dropped",
    "in_flight", "errors", "bytes_read", "bytes_written", "kicks", "interrupts"}]}``. ``feature_names`` names the
    device-type bits (bit number -> name) beside the reserved ones.
    """
    m: TransportMetrics = transport.metrics
    names = {**FEATURE_NAMES, **(feature_names or {})}
    negotiated = transport.negotiated
    queues = []
    for q, qm in zip(transport.queues, m.queues):
        ring = q.ring
        inflight = q.inflight
        queues.append({
            "index": q.index, "enabled": bool(q.enable), "format": getattr(ring, "format", None) if ring else None,
            "size": q.size, "msix_vector": None if q.msix_vector == VIRTIO_MSI_NO_VECTOR else q.msix_vector,
            "requests": inflight.started, "completed": inflight.completed, "dropped": inflight.dropped,
            "in_flight": inflight.outstanding, "errors": qm.errors, "bytes_read": qm.bytes_read,
            "bytes_written": qm.bytes_written, "kicks": qm.kicks, "interrupts": qm.interrupts,
        })
    return {
        "device_status": transport.status, "device_status_names": status_names(transport.status),
        "device_features": transport.device_features, "driver_features": negotiated,
        "features_names": bit_names(negotiated, names), "config_generation": transport.config_generation,
        "config_interrupts": m.config_interrupts, "needs_reset": m.needs_reset,
        "needs_reset_events": [{"time": t, "reason": r} for t, r in list(m.needs_reset_events)],
        "driver_notes": dict(transport.notes), "counters": dict(m.counters), "queues": queues,
    }
