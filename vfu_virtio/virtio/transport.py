"""The virtio-pci modern transport, device side ("Virtio Over PCI Bus").

Owns the registers of BAR0 (common configuration, ISR status, device-specific configuration,
notifications) and the MSI-X table/PBA of BAR2 (layout: :mod:`vfu_virtio.pci.layout`), the
device_status state machine, feature negotiation, and the split virtqueues of one
:class:`~vfu_virtio.virtio.device.VirtioDevice`. It knows nothing of vfio-user: the server hands it
region accesses and gives it an ``irq`` callable that signals an MSI-X vector.

Rules implemented (virtio v1.4):
- feature words: ``device_feature_select`` >= 2 reads 0; driver feature words >= 2 must be written 0;
- FEATURES_OK is refused (the bit reads back clear) when the driver accepted a feature the device did
  not offer or did not accept VIRTIO_F_VERSION_1 (a modern-only device);
- writing 0 to device_status resets the device; ``config_generation`` changes with device config;
- ``queue_msix_vector``/``msix_config`` read back VIRTIO_MSI_NO_VECTOR for a vector the function lacks;
- a guest error (bad ring address, descriptor loop, ...) logs one line and sets DEVICE_NEEDS_RESET,
  then raises a configuration change interrupt ("Device Status Field").
"""
from __future__ import annotations

import logging
import struct
from typing import Callable

from ..pci import layout
from .chain import GuestError
from .constants import (COMMON_CFG, DEVICE_NEEDS_RESET, DRIVER_OK, FEATURES_OK, VIRTIO_F_EVENT_IDX,
                        VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, VIRTIO_MSI_NO_VECTOR, bit)
from .device import VirtioDevice
from .memory import GuestMemory
from .virtqueue import SplitVirtqueue

log = logging.getLogger("vfu_virtio.virtio.transport")

TRANSPORT_FEATURES = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC) | bit(VIRTIO_F_EVENT_IDX)

_FIELD_AT = sorted((off, w, name) for name, (off, w) in COMMON_CFG.items())
_UINT = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}


class QueueState:
    """Driver-programmed registers of one virtqueue, and the live ring once DRIVER_OK."""

    __slots__ = ("size", "max_size", "msix_vector", "enable", "desc", "driver", "device", "ring")

    def __init__(self, max_size: int):
        self.max_size = max_size
        self.reset()

    def reset(self) -> None:
        self.size = self.max_size
        self.msix_vector = VIRTIO_MSI_NO_VECTOR
        self.enable = 0
        self.desc = self.driver = self.device = 0
        self.ring: SplitVirtqueue | None = None


class VirtioPciTransport:
    """Register-level model of one virtio-pci function.

    ``irq(vector)`` signals an interrupt: the MSI-X ``vector`` when MSI-X is enabled (nothing for
    VIRTIO_MSI_NO_VECTOR), otherwise INTx with the ISR status bits set here ("Used Buffer Notifications").
    Region handlers: :meth:`bar0_access`, :meth:`msix_access`; queue work: :meth:`process_pending`.
    """

    def __init__(self, device: VirtioDevice, memory: GuestMemory, irq: Callable[[int], bool]):
        self.device = device
        self.memory = memory
        self.irq = irq
        self.num_queues = device.num_queues
        self.num_vectors = self.num_queues + 1
        if self.num_vectors > layout.MSIX_MAX_VECTORS:
            raise ValueError(f"{self.num_queues} queues need {self.num_vectors} MSI-X vectors; "
                             f"the layout holds at most {layout.MSIX_MAX_VECTORS}")
        self.device_features = TRANSPORT_FEATURES | device.device_features()
        self.queues = [QueueState(device.queue_size_max) for _ in range(self.num_queues)]
        self.msix_table = bytearray(layout.MSIX_ENTRY_SIZE * self.num_vectors)
        self.pending: set[int] = set()
        self.config_generation = 0
        self._config_snapshot = device.config_space()
        device.notify_config_change = self.config_changed
        self.reset()

    # ---- state ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Device reset: status 0, features cleared, queues disabled, device's volatile state dropped."""
        self.status = 0
        self.isr = 0
        self.device_feature_select = 0
        self.driver_feature_select = 0
        self.driver_features = 0
        self.driver_features_bad = False
        self.msix_config = VIRTIO_MSI_NO_VECTOR
        self.queue_select = 0
        for q in self.queues:
            q.reset()
        self.pending.clear()
        self.device.reset()

    @property
    def negotiated(self) -> int:
        return self.driver_features if self.status & FEATURES_OK else 0

    def config_changed(self) -> None:
        """The device changed its config space: bump config_generation and interrupt the driver."""
        self.config_generation = (self.config_generation + 1) & 0xFF
        self._config_snapshot = self.device.config_space()
        self._config_interrupt()

    def _config_interrupt(self) -> None:
        self.isr |= 2
        self.irq(self.msix_config)

    def needs_reset(self, why: str) -> None:
        """Guest error or failed device: log one line, set DEVICE_NEEDS_RESET, stop the queues, notify the
        driver."""
        log.warning("DEVICE_NEEDS_RESET: %s", why)
        if self.status & DEVICE_NEEDS_RESET:
            return
        self.status |= DEVICE_NEEDS_RESET
        for q in self.queues:
            q.ring = None
        self.pending.clear()
        self._config_interrupt()

    # ---- common configuration ------------------------------------------------------------------
    def _read_field(self, name: str) -> int:
        q = self.queues[self.queue_select] if self.queue_select < self.num_queues else None
        if name == "device_feature_select":
            return self.device_feature_select
        if name == "device_feature":
            sel = self.device_feature_select
            return (self.device_features >> (32 * sel)) & 0xFFFFFFFF if sel < 2 else 0
        if name == "driver_feature_select":
            return self.driver_feature_select
        if name == "driver_feature":
            sel = self.driver_feature_select
            return (self.driver_features >> (32 * sel)) & 0xFFFFFFFF if sel < 2 else 0
        if name == "msix_config":
            return self.msix_config
        if name == "num_queues":
            return self.num_queues
        if name == "device_status":
            return self.status
        if name == "config_generation":
            return self.config_generation
        if name == "queue_select":
            return self.queue_select
        if name == "queue_notify_off":
            return self.queue_select if q else 0
        if q is None:
            return 0
        return {"queue_size": q.size, "queue_msix_vector": q.msix_vector, "queue_enable": q.enable,
                "queue_desc": q.desc, "queue_driver": q.driver, "queue_device": q.device}.get(name, 0)

    def _write_field(self, name: str, value: int) -> None:
        q = self.queues[self.queue_select] if self.queue_select < self.num_queues else None
        if name == "device_feature_select":
            self.device_feature_select = value
        elif name == "driver_feature_select":
            self.driver_feature_select = value
        elif name == "driver_feature":
            sel = self.driver_feature_select
            if sel < 2:
                shift = 32 * sel
                self.driver_features = (self.driver_features & ~(0xFFFFFFFF << shift)) | (value << shift)
            elif value:
                log.warning("driver wrote %#x to driver feature word %d (only words 0-1 exist)", value, sel)
                self.driver_features_bad = True
        elif name == "msix_config":
            self.msix_config = value if value < self.num_vectors else VIRTIO_MSI_NO_VECTOR
        elif name == "device_status":
            self._write_status(value)
        elif name == "queue_select":
            self.queue_select = value
        elif q is None:
            log.debug("write to %s of absent queue %d ignored", name, self.queue_select)
        elif name == "queue_msix_vector":
            q.msix_vector = value if value < self.num_vectors else VIRTIO_MSI_NO_VECTOR
        elif q.enable and name in ("queue_size", "queue_desc", "queue_driver", "queue_device"):
            log.warning("write to %s of enabled queue %d ignored", name, self.queue_select)
        elif name == "queue_size":
            if value == 0 or value & (value - 1) or value > q.max_size:
                log.warning("queue %d: queue_size %d refused (power of 2 up to %d)", self.queue_select,
                            value, q.max_size)
            else:
                q.size = value
        elif name == "queue_enable":
            if value == 1 and not q.enable:
                q.enable = 1
                if self.status & DRIVER_OK:
                    self._start_queue(self.queue_select)
            elif value != 1:
                log.warning("queue %d: driver wrote %d to queue_enable (only 1 is allowed)",
                            self.queue_select, value)
        elif name in ("queue_desc", "queue_driver", "queue_device"):
            setattr(q, name[6:], value)
        else:
            log.debug("write of %#x to read-only %s ignored", value, name)

    def _write_status(self, value: int) -> None:
        if value == 0:
            log.info("device reset by the driver")
            self.reset()
            return
        old = self.status
        if value & FEATURES_OK and not old & FEATURES_OK:
            unknown = self.driver_features & ~self.device_features
            if unknown or self.driver_features_bad:
                log.warning("FEATURES_OK refused: driver accepted feature bits %#x the device did not offer",
                            unknown)
                value &= ~FEATURES_OK
            elif not self.driver_features & bit(VIRTIO_F_VERSION_1):
                log.warning("FEATURES_OK refused: driver did not accept VIRTIO_F_VERSION_1")
                value &= ~FEATURES_OK
            elif why := self.device.refuse_features(self.driver_features):
                log.warning("FEATURES_OK refused by the %s device: %s", self.device.name, why)
                value &= ~FEATURES_OK
        self.status = value | (old & DEVICE_NEEDS_RESET)
        if value & DRIVER_OK and not old & DRIVER_OK:
            if not self.status & FEATURES_OK:
                self.needs_reset("DRIVER_OK set without FEATURES_OK")
                return
            log.info("driver ok: features %#x", self.driver_features)
            self.device.activate(self.driver_features)
            for i, q in enumerate(self.queues):
                if q.enable:
                    self._start_queue(i)

    def _start_queue(self, i: int) -> None:
        q = self.queues[i]
        f = self.driver_features
        try:
            q.ring = SplitVirtqueue(self.memory, i, q.size, q.desc, q.driver, q.device,
                                    bool(f & bit(VIRTIO_F_EVENT_IDX)), bool(f & bit(VIRTIO_F_INDIRECT_DESC)))
        except GuestError as e:
            self.needs_reset(f"queue {i}: {e}")
            return
        if q.ring.pending():
            self.pending.add(i)

    def common_read(self, offset: int, size: int) -> bytes:
        image = bytearray(layout.COMMON_CFG_LENGTH)
        for off, w, name in _FIELD_AT:
            if off < offset + size and off + w > offset:
                struct.pack_into(_UINT[w], image, off, self._read_field(name) & ((1 << (8 * w)) - 1))
        return bytes(image[offset:offset + size])

    def common_write(self, offset: int, data: bytes) -> None:
        end = offset + len(data)
        for off, w, name in _FIELD_AT:
            if off < end and off + w > offset:
                cur = bytearray(struct.pack(_UINT[w], self._read_field(name) & ((1 << (8 * w)) - 1)))
                lo, hi = max(off, offset), min(off + w, end)
                cur[lo - off:hi - off] = data[lo - offset:hi - offset]
                self._write_field(name, struct.unpack(_UINT[w], cur)[0])

    # ---- BAR0 ------------------------------------------------------------------------------------
    def bar0_access(self, offset: int, size: int, data: bytes | None) -> bytes | None:
        """Region access handler of BAR0: reads return ``size`` bytes, writes return None."""
        L = layout
        if L.COMMON_CFG_OFFSET <= offset < L.COMMON_CFG_OFFSET + L.COMMON_CFG_LENGTH:
            rel = offset - L.COMMON_CFG_OFFSET
            inside = min(size, L.COMMON_CFG_LENGTH - rel)
            if data is None:
                return self.common_read(rel, inside).ljust(size, b"\0")
            self.common_write(rel, data[:inside])
            return None
        if L.ISR_OFFSET <= offset < L.ISR_OFFSET + L.ISR_LENGTH:
            if data is None:
                value, self.isr = self.isr, 0  # reading ISR status clears it
                return bytes([value]).ljust(size, b"\0")
            return None
        if L.DEVICE_CFG_OFFSET <= offset < L.DEVICE_CFG_OFFSET + L.DEVICE_CFG_MAX:
            rel = offset - L.DEVICE_CFG_OFFSET
            if data is None:
                return self._config_snapshot[rel:rel + size].ljust(size, b"\0")
            self.device.write_config(rel, data)
            return None
        if L.NOTIFY_OFFSET <= offset < L.NOTIFY_OFFSET + L.NOTIFY_LENGTH:
            if data is None:
                return b"\0" * size
            self.notify((offset - L.NOTIFY_OFFSET) // L.NOTIFY_OFF_MULTIPLIER)
            return None
        if data is None:
            return b"\0" * size
        log.debug("write of %d bytes to unused BAR0 offset %#x ignored", size, offset)
        return None

    def notify(self, queue: int) -> None:
        """Available buffer notification for ``queue`` (processed by :meth:`process_pending`)."""
        if queue >= self.num_queues:
            log.warning("notification for queue %d ignored: the device has %d queues", queue, self.num_queues)
            return
        if self.queues[queue].ring is not None:
            self.pending.add(queue)

    # ---- MSI-X table / PBA (BAR2) -------------------------------------------------------------
    def msix_access(self, offset: int, size: int, data: bytes | None) -> bytes | None:
        """BAR2: the MSI-X table (kept for clients that program it through the BAR) and the PBA.

        The PBA reads as zeros: vectors are delivered through the client's eventfds, never held pending.
        """
        end = len(self.msix_table)
        if offset + size <= end:
            if data is None:
                return bytes(self.msix_table[offset:offset + size])
            self.msix_table[offset:offset + size] = data
            return None
        if data is None:
            return b"\0" * size
        return None

    # ---- queue processing ---------------------------------------------------------------------
    def process_pending(self, budget: int = 32) -> None:
        """Run every notified queue: pop chains, let the device handle them, publish used, interrupt.

        Used elements are published (and the driver interrupted) at least every ``budget`` requests, so a
        driver that keeps the ring full gets completions back while the device works on the rest.

        Each used element is published only after ``device.handle`` returned and ``device.commit`` made
        the run durable (RPMB: one store commit for the run), and the interrupt is sent after used.idx is
        published. If the commit fails, nothing of the run is published and DEVICE_NEEDS_RESET is set.
        """
        while self.pending:
            i = self.pending.pop()
            q = self.queues[i]
            ring = q.ring
            if ring is None:
                continue
            error = None
            try:
                ring.check_memory()
            except GuestError as e:
                self.needs_reset(str(e))
                continue
            done = 0
            try:
                while done < budget:
                    chain = ring.pop()
                    if chain is None:
                        ring.set_avail_event()
                        if not ring.pending():
                            break
                        continue
                    written = self.device.handle(i, chain)
                    ring.push(chain.head, written)
                    done += 1
                else:
                    self.pending.add(i)  # fairness: come back after the other queues
            except GuestError as e:
                error = str(e)
            except Exception as e:  # noqa: BLE001 - a device bug must not take the process down
                log.exception("queue %d: device %s failed on a request", i, self.device.name)
                error = f"internal error in the {self.device.name} device: {e!r}"
            try:
                self.device.commit()  # durable before published: nothing acknowledged is ever lost
            except Exception as e:  # noqa: BLE001 - the run stays unpublished; the driver must reset
                self.needs_reset(f"{self.device.name} device could not make {done} request(s) on queue {i} "
                                 f"durable, none completed: {e}")
                continue
            if ring.flush():  # what was handled before an error is still published
                self.isr |= 1
                self.irq(q.msix_vector)
            if error:
                self.needs_reset(error)
