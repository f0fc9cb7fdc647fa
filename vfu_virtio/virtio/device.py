"""The contract between the virtio transport and a device personality (crypto, rpmb).

A device knows nothing of PCI or vfio-user: the transport calls it with descriptor chains and reads its
device configuration bytes ("Device Configuration Space").
"""
from __future__ import annotations

import logging
from typing import Callable

from .chain import DescriptorChain


class VirtioDevice:
    """Base class of a device personality.

    Subclasses set ``device_id`` (virtio device id: 20 crypto, 28 rpmb), ``name`` and ``num_queues``,
    and implement :meth:`config_space` and :meth:`handle`.
    """

    device_id: int = 0
    name: str = "virtio"
    num_queues: int = 1
    queue_size_max: int = 256
    #: what :meth:`request_type` can answer (fault injection's ``op=`` filter, :mod:`vfu_virtio.virtio.inject`)
    request_types: tuple[str, ...] = ()
    #: the status names :meth:`answer_error` knows, the default first (empty: the device cannot answer an error)
    error_statuses: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.log = logging.getLogger(f"vfu_virtio.devices.{self.name}")
        self.driver_features = 0
        #: set by the transport: call after changing config space to raise a configuration change
        #: notification ("Notification of Device Configuration Changes").
        self.notify_config_change: Callable[[], None] = lambda: None
        #: set by the transport: ``note(check, detail)`` records a driver requirement the driver broke, by its id in
        #: :data:`vfu_virtio.virtio.audit.DRIVER_CHECKS` (the driver audit); the device answers as it would anyway.
        #: Called from ``handle`` it may raise GuestError (``--strict``).
        self.note: Callable[[str, str], None] = lambda check, detail: None

    def device_features(self) -> int:
        """Device-type feature bits offered (bits 0..23 and any others); the transport adds its own."""
        return 0

    def refuse_features(self, features: int) -> str | None:
        """Why the device cannot work with the driver's ``features`` (FEATURES_OK is then refused,
        "Feature Bits"), or None to accept them. The transport already refuses unoffered bits."""
        return None

    def config_space(self) -> bytes:
        """The device-specific configuration structure, little-endian, as the driver reads it."""
        return b""

    def write_config(self, offset: int, data: bytes) -> None:
        """A driver write to device configuration space; the default ignores it (read-only fields)."""
        self.log.debug("ignored write of %d bytes at device config offset %d", len(data), offset)

    def activate(self, features: int) -> None:
        """Called once the driver set DRIVER_OK, with the negotiated feature bits."""
        self.driver_features = features

    def reset(self) -> None:
        """Device reset (device_status written 0, vfio-user reset, client gone): drop volatile state."""
        self.driver_features = 0

    def handle(self, queue_index: int, chain: DescriptorChain) -> int | None:
        """Process one request chain from virtqueue ``queue_index``; called on the event-loop thread.

        Returns the number of bytes written into the chain's writable part (the used element's ``len``), or None to
        keep the chain and finish it later (decision TD-ASYNC). A kept chain is completed by exactly one call of
        ``chain.complete(written)``, from any thread, after which the device never touches the chain's buffers
        again; the event-loop thread then publishes the used element (after :meth:`commit`) and interrupts. Until
        that call the chain is in flight: the transport waits for every in-flight chain before a device reset, a
        queue reset, a DMA unmap or a client disconnect (``VirtioPciTransport.quiesce``), so guest memory stays
        mapped while the device works on it, and a completion of a chain whose queue or device was reset (or set
        DEVICE_NEEDS_RESET) meanwhile is dropped, never published. Chains of one queue may complete in any order:
        the used element carries the chain's ``id``. A kept chain must complete in bounded time (the waits above
        have no deadline) and ``handle`` must not block waiting for it.

        Raise :class:`vfu_virtio.virtio.chain.GuestError` only for transport-level faults that the device
        specification answers with DEVICE_NEEDS_RESET; request-level faults are answered in-band with the device's
        status code. Any other exception is a device bug: the transport logs it, sets DEVICE_NEEDS_RESET and
        forgets the chain, which must then never be completed.
        """
        raise NotImplementedError

    def request_type(self, queue_index: int, chain: DescriptorChain) -> str | None:
        """The name of the request ``chain`` carries (one of :attr:`request_types`), read without consuming the chain;
        None when the device cannot tell. Used by fault injection's ``op=`` filter."""
        return None

    def answer_error(self, queue_index: int, chain: DescriptorChain, status: str) -> int:
        """Answer ``chain`` with the error ``status`` (one of :attr:`error_statuses`) without executing it and without
        changing any state; returns the used length. Fault injection's ``error`` fault."""
        raise NotImplementedError(f"the {self.name} device cannot answer an error status")

    def commit(self) -> None:
        """Make the effects of the requests handled since the last call durable.

        The transport calls it after each run of :meth:`handle` calls on a queue and before it publishes
        their used elements, so a device may stage durable work per request and finish it once per run
        (group commit). Raising keeps the whole run unpublished and sets DEVICE_NEEDS_RESET. The default
        has nothing to do.
        """

    def stats(self) -> dict[str, int | str]:
        """The device's own figures for the status endpoint (``vfu-virtio status``): a flat dict of numbers and
        short strings (crypto: sessions; RPMB: write counter and writes). Called from another thread than the event
        loop: read, never change. Never a secret (no key). The default has none."""
        return {}

    def feature_names(self) -> dict[int, str]:
        """The device-type feature bits by name (bit number -> name, without the ``VIRTIO_<TYPE>_F_`` prefix), for
        status listings. The default names none."""
        return {}

    def close(self) -> None:
        """Process shutdown: release persistent resources (store handles)."""
