"""The virtio-pci modern transport, device side ("Virtio Over PCI Bus"): the whole PCI function of one device.

Owns the :class:`~vfu_virtio.pci.function.PciFunction` (config space, capability chain, BAR map, PCI
configuration access window, MSI-X table/PBA, INTx; built here from :mod:`vfu_virtio.pci.layout`), the registers
of BAR0 (common configuration, ISR status, device-specific configuration, notifications), the device_status state
machine, feature negotiation, and the virtqueues of one :class:`~vfu_virtio.virtio.device.VirtioDevice`: each
enabled queue is a :class:`~vfu_virtio.virtio.ring.DeviceRing` (split or packed, by the negotiated
VIRTIO_F_RING_PACKED) plus an :class:`~vfu_virtio.virtio.inflight.Inflight` of the requests the device holds. It
knows nothing of vfio-user: the server hands it config space and BAR accesses (:attr:`VirtioPciTransport.function`),
an :class:`~vfu_virtio.pci.function.IrqSink` for interrupts and a ``wake`` callable that brings the event loop round
when a request completes on another thread.

Interrupts ("Used Buffer Notifications", "Notification of Device Configuration Changes"): with MSI-X enabled, the
queue's or the configuration vector; otherwise INTx, asserted while the ISR status byte is non-zero (reading it
clears it and deasserts the line).

Rules implemented (virtio v1.4):
- feature words: ``device_feature_select`` >= 2 reads 0; driver feature words >= 2 must be written 0;
- FEATURES_OK is refused (the bit reads back clear) when the driver accepted a feature the device did
  not offer or did not accept VIRTIO_F_VERSION_1 (a modern-only device), or when the device requires a ring
  format the driver did not take (``rings="packed"``);
- writing 0 to device_status resets the device; ``config_generation`` changes with device config;
- ``queue_msix_vector``/``msix_config`` read back VIRTIO_MSI_NO_VECTOR for a vector the function lacks;
- ``queue_size`` must be a power of 2 for a split ring, any value 1..max for a packed ring;
- VIRTIO_F_RING_RESET: writing 1 to ``queue_reset`` resets the selected queue (it reads 1 until the queue is
  enabled again); 0 written to ``queue_enable`` is ignored and logged once per queue (TD-QUEUE-ENABLE-0);
- a guest error (bad ring address, descriptor loop, ...) logs one line and sets DEVICE_NEEDS_RESET,
  then raises a configuration change interrupt ("Device Status Field").

Driver audit (:mod:`vfu_virtio.virtio.audit`): every driver requirement the driver breaks in what reaches the
transport -- status sequence, feature bits, register writes, notifications -- and in the rings and the device is
recorded by its check id through :meth:`VirtioPciTransport.note`; the answers stay the same, unless ``strict``, which
also sets DEVICE_NEEDS_RESET. Fault injection (:mod:`vfu_virtio.virtio.inject`): ``faults`` wrap the device's
request handling and the interrupts.

Asynchronous completion (decision TD-ASYNC): a device may keep a chain and complete it later from any thread;
only the event-loop thread (:meth:`VirtioPciTransport.process_pending`,
:meth:`VirtioPciTransport.publish_completions`) publishes used elements and interrupts. Device reset, queue reset,
DMA unmap and client disconnect first wait for in-flight requests (:meth:`VirtioPciTransport.quiesce`), so the
device never writes into memory the client has taken back, and never publishes into a reset queue.
"""
from __future__ import annotations

import logging
import struct
import threading
import time
from typing import Callable

from vfu_virtio.abi.virtio import (ACKNOWLEDGE, COMMON_CFG, DEVICE_NEEDS_RESET, DRIVER, DRIVER_OK, FAILED,
                                   FEATURES_OK, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC,
                                   VIRTIO_F_NOTIFICATION_DATA, VIRTIO_F_RING_PACKED, VIRTIO_F_RING_RESET,
                                   VIRTIO_F_VERSION_1, VIRTIO_MSI_NO_VECTOR, VIRTIO_PCI_CAP_COMMON_CFG,
                                   VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_DEVICE_ID_BASE,
                                   VIRTIO_PCI_ISR_CONFIG, VIRTIO_PCI_ISR_QUEUE, VIRTIO_PCI_VENDOR_ID, bit)

from ..pci import capabilities as caps
from ..pci import layout
from ..pci.function import Bar, IrqSink, PciCfgWindow, PciFunction, PciIdentity
from ..pci.msix import MsixLayout
from .audit import Audit
from .chain import GuestError
from .device import VirtioDevice
from .inflight import Inflight
from .inject import Fault, Injector
from .memory import GuestMemory
from .metrics import TransportMetrics
from .packed import PackedRing
from .ring import DeviceRing, full_barrier
from .split import SplitRing
from .stages import StageClock

log = logging.getLogger("vfu_virtio.virtio.transport")

TRANSPORT_FEATURES = (bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC) | bit(VIRTIO_F_EVENT_IDX)
                      | bit(VIRTIO_F_RING_PACKED) | bit(VIRTIO_F_RING_RESET))
#: ``rings`` values: which virtqueue formats the device offers ("any": split, or packed if the driver takes
#: VIRTIO_F_RING_PACKED; "split": RING_PACKED withheld; "packed": RING_PACKED offered and required).
RING_CHOICES = ("any", "split", "packed")
#: How long the event loop polls a virtqueue's ring after it ran dry before it enables available buffer
#: notifications again (``--poll-us``, microseconds; the README's performance section has the measurement).
DEFAULT_POLL_US = 0
#: After this long waiting for in-flight requests, one warning line; the wait goes on (they always finish).
QUIESCE_WARN_S = 2.0
PCI_SUBSYSTEM_ID = 0x1100  # "PCI Device Discovery": non-transitional devices use 0x40 or higher

_FIELD_AT = sorted((off, w, name) for name, (off, w) in COMMON_CFG.items())
_UINT = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}
#: common configuration fields the driver must not write ("Common configuration structure layout")
READ_ONLY_FIELDS = frozenset({"device_feature", "num_queues", "config_generation", "queue_notify_off",
                              "queue_notif_config_data"})
_RING_FIELDS = ("queue_desc", "queue_driver", "queue_device")


class QueueState:
    """Driver-programmed registers of one virtqueue, the live ring once DRIVER_OK, and its in-flight requests."""

    __slots__ = ("index", "size", "max_size", "msix_vector", "enable", "desc", "driver", "device", "ring",
                 "inflight", "reset_done", "enable0_logged", "written")

    def __init__(self, index: int, max_size: int, wake: Callable[[], None]):
        self.index = index
        self.max_size = max_size
        self.inflight = Inflight(index, wake)
        self.enable0_logged = False
        self.reset()

    def reset(self) -> None:
        self.size = self.max_size
        self.msix_vector = VIRTIO_MSI_NO_VECTOR
        self.enable = 0
        self.desc = self.driver = self.device = 0
        self.ring: DeviceRing | None = None
        self.reset_done = 0  # queue_reset reads 1 after a queue reset until the queue is enabled again
        self.written: set[str] = set()  # ring address fields the driver wrote since the queue's last reset


class VirtioPciTransport:
    """Register-level model of one virtio-pci function.

    ``irq`` receives MSI-X vectors and INTx edges from :attr:`function`. ``wake()`` is called from any thread when
    a request completed asynchronously. ``rings``: one of :data:`RING_CHOICES`. ``pci_class``: (base, sub,
    prog-if) of the function. Accesses: ``function.config_access`` for config space and
    ``function.bar_access(bar, ...)`` for BAR0 (these registers) and BAR2 (MSI-X); queue work:
    :meth:`process_pending`, :meth:`publish_completions`. ``audit`` (an :class:`~vfu_virtio.virtio.audit.Audit`,
    in memory by default) records the driver requirements the driver breaks; ``notes`` is its counts (check id ->
    occurrences). ``strict``: a broken driver requirement also sets DEVICE_NEEDS_RESET. ``faults`` (parsed
    ``--inject`` arguments) and ``fault_seed`` make the device misbehave on purpose (:attr:`injector`). ``metrics``
    counts kicks, bytes, errors, interrupts and DEVICE_NEEDS_RESET events (:mod:`vfu_virtio.virtio.metrics`). Raises
    ValueError when the device does not fit the layout (too many queues for the MSI-X table, device config larger
    than its window) or cannot do one of the faults.
    """

    def __init__(self, device: VirtioDevice, memory: GuestMemory, irq: IrqSink,
                 wake: Callable[[], None] = lambda: None, rings: str = "any",
                 pci_class: tuple[int, int, int] = layout.PCI_CLASS_OTHERS, audit: Audit | None = None,
                 strict: bool = False, faults: tuple[Fault, ...] = (), fault_seed: int = 0):
        if rings not in RING_CHOICES:
            raise ValueError(f"rings {rings!r}: expected one of {', '.join(RING_CHOICES)}")
        self.device = device
        self.memory = memory
        self.rings = rings
        self.num_queues = device.num_queues
        self.num_vectors = self.num_queues + 1
        if self.num_vectors > layout.MSIX_MAX_VECTORS:
            raise ValueError(f"{self.num_queues} queues need {self.num_vectors} MSI-X vectors; "
                             f"the layout holds at most {layout.MSIX_MAX_VECTORS}")
        offered = TRANSPORT_FEATURES | device.device_features()
        if rings == "split":
            offered &= ~bit(VIRTIO_F_RING_PACKED)
        self.device_features = offered
        self.queues = [QueueState(i, device.queue_size_max, wake) for i in range(self.num_queues)]
        self.pending: set[int] = set()
        #: queues whose available buffer notifications stay off while the loop polls their rings (``polling``)
        self.hot: set[int] = set()
        #: set by the server when it polls rings after they run dry (``--poll-us`` > 0, or ``--notify mmap``)
        self.polling = False
        #: per-stage timers of the event loop (``--stage-timers``), None when off
        self.clock: StageClock | None = None
        self.audit = audit if audit is not None else Audit(device=device.name)
        self.notes = self.audit.counts
        self.metrics = TransportMetrics(self.num_queues)
        self.strict = strict
        self.injector = Injector(faults, fault_seed, device, self.config_changed, wake) if faults else None
        self._handle = self.injector.handle if self.injector else device.handle
        self._reset_unconfirmed = False  # 0 written to device_status, not read back since
        self.config_generation = 0
        self._config_snapshot = device.config_space()
        if len(self._config_snapshot) > layout.DEVICE_CFG_MAX:
            raise ValueError(f"device config of {len(self._config_snapshot)} bytes exceeds the "
                             f"{layout.DEVICE_CFG_MAX}-byte window")
        self.function = self._build_function(self.injector.irq_sink(irq) if self.injector else irq, pci_class)
        device.notify_config_change = self.config_changed
        device.note = self._ring_note
        self._lock = threading.Lock()  # config_changed may come from a device thread
        self.reset()

    def _build_function(self, irq: IrqSink, pci_class: tuple[int, int, int]) -> PciFunction:
        """The PCI function of :mod:`vfu_virtio.pci.layout`: ids from the virtio device id ("PCI Device
        Discovery"), the virtio structure capabilities, the configuration access window, MSI-X with one vector
        per queue plus one for configuration changes."""
        L = layout
        identity = PciIdentity(VIRTIO_PCI_VENDOR_ID, VIRTIO_PCI_DEVICE_ID_BASE + self.device.device_id,
                               VIRTIO_PCI_VENDOR_ID, PCI_SUBSYSTEM_ID, pci_class, L.PCI_REVISION)
        capabilities = [
            caps.virtio_cap(VIRTIO_PCI_CAP_COMMON_CFG, L.VIRTIO_BAR, L.COMMON_CFG_OFFSET, L.COMMON_CFG_LENGTH),
            caps.notify_cap(L.VIRTIO_BAR, L.NOTIFY_OFFSET, self.num_queues * L.NOTIFY_OFF_MULTIPLIER,
                            L.NOTIFY_OFF_MULTIPLIER),
            caps.virtio_cap(VIRTIO_PCI_CAP_ISR_CFG, L.VIRTIO_BAR, L.ISR_OFFSET, L.ISR_LENGTH),
            caps.virtio_cap(VIRTIO_PCI_CAP_DEVICE_CFG, L.VIRTIO_BAR, L.DEVICE_CFG_OFFSET,
                            max(len(self._config_snapshot), 1)),
            PciCfgWindow(),
        ]
        bars = [Bar(L.VIRTIO_BAR, L.VIRTIO_BAR_SIZE, self.bar0_access), Bar(L.MSIX_BAR, L.MSIX_BAR_SIZE, None)]
        msix = MsixLayout(self.num_vectors, L.MSIX_BAR, L.MSIX_TABLE_OFFSET, L.MSIX_PBA_OFFSET)
        return PciFunction(identity, bars, capabilities, msix, irq, note=self.note)

    def _signal(self, vector: int) -> None:
        """Interrupt the driver: MSI-X ``vector`` if MSI-X is enabled, else INTx (level: the ISR is non-zero)."""
        fn = self.function
        if fn.msix_enabled:
            fn.signal_msix(vector)
        else:
            fn.set_intx(self.isr != 0)

    # ---- state ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Device reset: in-flight requests finish first (never published), then status 0, features cleared,
        queues disabled, the device's volatile state dropped."""
        self.quiesce("device reset")
        for q in self.queues:
            q.inflight.discard()
            q.reset()
        self.status = 0
        self._reset_unconfirmed = False
        self.isr = 0
        self.function.set_intx(False)
        self.device_feature_select = 0
        self.driver_feature_select = 0
        self.driver_features = 0
        self.driver_features_bad = False
        self.msix_config = VIRTIO_MSI_NO_VECTOR
        self.queue_select = 0
        self.pending.clear()
        self.hot.clear()
        self.device.reset()
        with self._lock:
            self._config_snapshot = self.device.config_space()  # a device may reset its config fields too

    def quiesce(self, why: str) -> None:
        """Wait until the device holds no request on any queue (their completions stay queued for publication).

        Called before anything takes memory or a queue away from in-flight work: device and queue reset, DMA
        unmap, client disconnect. Requests always finish (the devices bound their work), so this waits as long
        as it takes, with one warning line if that is longer than :data:`QUIESCE_WARN_S`.
        """
        busy = [q for q in self.queues if q.inflight.outstanding]
        if not busy:
            return
        t0 = time.monotonic()
        for q in busy:
            if not q.inflight.wait_idle(max(0.0, QUIESCE_WARN_S - (time.monotonic() - t0))):
                log.warning("%s: waiting for %d request(s) in flight on queue %d", why, q.inflight.outstanding,
                            q.index)
                q.inflight.wait_idle(None)
        log.debug("%s: in-flight requests finished after %.1f ms", why, (time.monotonic() - t0) * 1000)

    @property
    def negotiated(self) -> int:
        return self.driver_features if self.status & FEATURES_OK else 0

    def note(self, check: str, detail: str) -> None:
        """The driver broke requirement ``check`` (:data:`~vfu_virtio.virtio.audit.DRIVER_CHECKS`), seen in a register
        access: recorded (the first logged); with ``strict`` also DEVICE_NEEDS_RESET."""
        self.audit.record(check, detail)
        if self.strict:
            self.needs_reset(f"strict driver audit: {check}: {detail}")

    def _ring_note(self, check: str, detail: str) -> None:
        """:meth:`note` for the rings and the device, inside a request's walk or handling: with ``strict`` it raises
        GuestError, which the request path answers with DEVICE_NEEDS_RESET."""
        self.audit.record(check, detail)
        if self.strict:
            raise GuestError(f"strict driver audit: {check}: {detail}")

    def config_changed(self) -> None:
        """The device changed its config space: bump config_generation and interrupt the driver."""
        with self._lock:
            self.config_generation = (self.config_generation + 1) & 0xFF
            self._config_snapshot = self.device.config_space()
        self._config_interrupt()

    def _config_interrupt(self) -> None:
        self.metrics.config_interrupts += 1
        self.isr |= VIRTIO_PCI_ISR_CONFIG
        self._signal(self.msix_config)

    def needs_reset(self, why: str) -> None:
        """Guest error or failed device: log one line, set DEVICE_NEEDS_RESET, stop the queues, notify the
        driver. Requests still in flight complete into the void (dropped when they come back)."""
        log.warning("DEVICE_NEEDS_RESET: %s", why)
        self.metrics.needs_reset_event(why)
        if self.status & DEVICE_NEEDS_RESET:
            return
        self.status |= DEVICE_NEEDS_RESET
        for q in self.queues:
            q.ring = None
            q.inflight.discard()
        self.pending.clear()
        self.hot.clear()
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
                "queue_desc": q.desc, "queue_driver": q.driver, "queue_device": q.device,
                "queue_reset": q.reset_done}.get(name, 0)

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
                new = (self.driver_features & ~(0xFFFFFFFF << shift)) | (value << shift)
                if self.status & FEATURES_OK and new & ~self.driver_features:
                    self.note("features-after-features-ok", f"driver feature word {sel} written {value:#x} after "
                              f"FEATURES_OK (new bits {(new & ~self.driver_features) >> shift:#x})")
                self.driver_features = new
            elif value:
                log.warning("driver wrote %#x to driver feature word %d (only words 0-1 exist)", value, sel)
                self.note("feature-not-offered", f"driver feature word {sel} written {value:#x}; the device offers "
                          "no feature beyond bit 63")
                self.driver_features_bad = True
        elif name == "msix_config":
            self._check_vector(name, value)
            self.msix_config = value if value < self.num_vectors else VIRTIO_MSI_NO_VECTOR
        elif name == "device_status":
            self._write_status(value)
        elif name == "queue_select":
            self.queue_select = value
        elif q is None:
            log.debug("write to %s of absent queue %d ignored", name, self.queue_select)
        elif name == "queue_msix_vector":
            self._check_vector(f"queue {q.index}'s queue_msix_vector", value)
            q.msix_vector = value if value < self.num_vectors else VIRTIO_MSI_NO_VECTOR
        elif name == "queue_reset":
            if value == 1 and self.negotiated & bit(VIRTIO_F_RING_RESET):
                self._reset_queue(q)
            else:
                log.debug("write of %d to queue_reset of queue %d ignored (VIRTIO_F_RING_RESET %snegotiated)",
                          value, q.index, "" if self.negotiated & bit(VIRTIO_F_RING_RESET) else "not ")
        elif q.enable and name in ("queue_size", *_RING_FIELDS):
            log.warning("write to %s of enabled queue %d ignored", name, self.queue_select)
            self.note("queue-field-while-enabled", f"queue {q.index}: {name} written while the queue is enabled")
        elif name == "queue_size":
            packed = self.driver_features & bit(VIRTIO_F_RING_PACKED)
            if value == 0 or (not packed and value & (value - 1)):
                self.note("queue-size-invalid", f"queue {q.index}: queue_size {value} written with "
                          f"{'packed' if packed else 'split'} virtqueues")
            if value == 0 or value > q.max_size or (not packed and value & (value - 1)):
                log.warning("queue %d: queue_size %d refused (%s up to %d)", self.queue_select, value,
                            "1" if packed else "a power of 2", q.max_size)
            else:
                q.size = value
        elif name == "queue_enable":
            if value == 1 and not q.enable:
                if len(q.written) < len(_RING_FIELDS):
                    missing = ", ".join(f for f in _RING_FIELDS if f not in q.written)
                    self.note("queue-enable-before-addresses", f"queue {q.index} enabled before {missing} was written")
                q.enable = 1
                q.reset_done = 0
                if self.status & DRIVER_OK:
                    self._start_queue(q)
            elif value != 1:
                self.note("queue-enable-0", f"queue {q.index}: queue_enable written {value}")
                if not q.enable0_logged:
                    q.enable0_logged = True
                    log.warning("queue %d: driver wrote %d to queue_enable (only 1 is allowed; ignored, logged once "
                                "per queue, TD-QUEUE-ENABLE-0)", self.queue_select, value)
        elif name in _RING_FIELDS:
            setattr(q, name[6:], value)
            q.written.add(name)
        else:
            log.debug("write of %#x to read-only %s ignored", value, name)

    def _check_vector(self, what: str, value: int) -> None:
        if value >= self.num_vectors and value != VIRTIO_MSI_NO_VECTOR:
            self.note("msix-vector-outside-table", f"{what} written {value:#x}; the MSI-X Table has "
                      f"{self.num_vectors} entries")

    def _audit_status(self, old: int, value: int) -> None:
        """The driver requirements of a device_status write of ``value`` (non-zero) over ``old``."""
        if self._reset_unconfirmed:
            self._reset_unconfirmed = False
            self.note("reset-not-awaited", f"device_status written {value:#x} after a reset, without reading it "
                      "back as 0 first")
        cleared = old & ~value & ~DEVICE_NEEDS_RESET
        if cleared:
            self.note("status-bit-cleared", f"device_status {old:#x} written {value:#x} (bits {cleared:#x} cleared)")
        new = value & ~old
        if old & FAILED and new & ~FAILED:
            self.note("reinit-after-failed", f"device_status {old:#x} (FAILED) written {value:#x} without a reset")
        if (new & DRIVER and not value & ACKNOWLEDGE) or (new & FEATURES_OK and not value & DRIVER):
            self.note("init-order", f"device_status {old:#x} written {value:#x}: a step's bit before an earlier "
                      "step's (ACKNOWLEDGE, DRIVER, FEATURES_OK)")
        if new & DRIVER_OK and not old & FEATURES_OK:
            self.note("driver-ok-without-features-ok", f"device_status {old:#x} written {value:#x}: DRIVER_OK "
                      "without FEATURES_OK set and read back before")
        if new & FEATURES_OK:
            f = self.driver_features
            if f & ~self.device_features:
                self.note("feature-not-offered", f"FEATURES_OK with driver features {f:#x}: bits "
                          f"{f & ~self.device_features:#x} not offered (device features {self.device_features:#x})")
            if self.device_features & bit(VIRTIO_F_VERSION_1) and not f & bit(VIRTIO_F_VERSION_1):
                self.note("version-1-not-accepted", f"FEATURES_OK with driver features {f:#x}: VIRTIO_F_VERSION_1 "
                          "offered, not accepted")
            why = self.device.refuse_features(f)
            if why:
                self.note("feature-dependency", f"FEATURES_OK with driver features {f:#x}: {why}")

    def _write_status(self, value: int) -> None:
        if value == 0:
            log.info("device reset by the driver")
            self.reset()
            self._reset_unconfirmed = True
            return
        old = self.status
        self._audit_status(old, value)
        if value & FEATURES_OK and not old & FEATURES_OK:
            f = self.driver_features
            unknown = f & ~self.device_features
            if unknown or self.driver_features_bad:
                log.warning("FEATURES_OK refused: driver accepted feature bits %#x the device did not offer",
                            unknown)
                value &= ~FEATURES_OK
            elif not f & bit(VIRTIO_F_VERSION_1):
                log.warning("FEATURES_OK refused: driver did not accept VIRTIO_F_VERSION_1")
                value &= ~FEATURES_OK
            elif self.rings == "packed" and not f & bit(VIRTIO_F_RING_PACKED):
                log.warning("FEATURES_OK refused: this device serves packed virtqueues only (--ring packed) and "
                            "the driver did not accept VIRTIO_F_RING_PACKED")
                value &= ~FEATURES_OK
            elif why := self.device.refuse_features(f):
                log.warning("FEATURES_OK refused by the %s device: %s", self.device.name, why)
                value &= ~FEATURES_OK
        self.status = value | (old & DEVICE_NEEDS_RESET)
        if value & DRIVER_OK and not old & DRIVER_OK:
            if not self.status & FEATURES_OK:
                self.needs_reset("DRIVER_OK set without FEATURES_OK")
                return
            log.info("driver ok: features %#x (%s virtqueues)", self.driver_features,
                     "packed" if self.driver_features & bit(VIRTIO_F_RING_PACKED) else "split")
            self.device.activate(self.driver_features)
            for q in self.queues:
                if q.enable:
                    self._start_queue(q)

    def _start_queue(self, q: QueueState) -> None:
        f = self.driver_features
        packed = f & bit(VIRTIO_F_RING_PACKED)
        ring_class = PackedRing if packed else SplitRing
        if q.desc % 16 or q.driver % (4 if packed else 2) or q.device % 4:
            self.audit.record("ring-misaligned", f"queue {q.index}: ring parts at {q.desc:#x}/{q.driver:#x}/"
                              f"{q.device:#x} (alignment 16/{4 if packed else 2}/4)")
        try:
            q.ring = ring_class(self.memory, q.index, q.size, (q.desc, q.driver, q.device),
                                bool(f & bit(VIRTIO_F_EVENT_IDX)), bool(f & bit(VIRTIO_F_INDIRECT_DESC)),
                                self._ring_note)
        except GuestError as e:
            self.needs_reset(f"queue {q.index}: {e}")
            return
        if q.ring.pending():
            self.pending.add(q.index)

    def _reset_queue(self, q: QueueState) -> None:
        """VIRTIO_F_RING_RESET ("Virtqueue Reset"): wait for the queue's in-flight requests, drop their
        completions, return its registers to their reset values; queue_reset then reads 1."""
        if q.inflight.outstanding:
            log.debug("queue %d reset: waiting for %d request(s) in flight", q.index, q.inflight.outstanding)
            q.inflight.wait_idle(None)
        q.inflight.discard()
        q.reset()
        q.reset_done = 1
        self.pending.discard(q.index)
        self.hot.discard(q.index)
        log.info("queue %d reset by the driver", q.index)

    def common_read(self, offset: int, size: int) -> bytes:
        image = bytearray(layout.COMMON_CFG_LENGTH)
        for off, w, name in _FIELD_AT:
            if off < offset + size and off + w > offset:
                struct.pack_into(_UINT[w], image, off, self._read_field(name) & ((1 << (8 * w)) - 1))
                if name == "device_status":
                    self._reset_unconfirmed = False  # the driver read it back
        return bytes(image[offset:offset + size])

    def common_write(self, offset: int, data: bytes) -> None:
        end = offset + len(data)
        for off, w, name in _FIELD_AT:
            if off < end and off + w > offset:
                if name in READ_ONLY_FIELDS:
                    self.note("read-only-field-written", f"{len(data)}-byte write at common configuration offset "
                              f"{offset:#x} covers {name}")
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
                value, self.isr = self.isr, 0  # reading ISR status clears it (and deasserts INTx)
                self.function.set_intx(False)
                return bytes([value]).ljust(size, b"\0")
            return None
        if L.DEVICE_CFG_OFFSET <= offset < L.DEVICE_CFG_OFFSET + L.DEVICE_CFG_MAX:
            rel = offset - L.DEVICE_CFG_OFFSET
            if data is None:
                return self._config_snapshot[rel:rel + size].ljust(size, b"\0")
            if not self.status & FEATURES_OK:
                self.note("device-config-written-early", f"{size}-byte write at device configuration offset {rel} "
                          f"before FEATURES_OK (device_status {self.status:#x})")
            try:
                self.device.write_config(rel, data)
            except GuestError as e:  # a strict audit refusing the write
                self.needs_reset(str(e))
            return None
        if L.NOTIFY_OFFSET <= offset < L.NOTIFY_OFFSET + L.NOTIFY_LENGTH:
            if data is None:
                return b"\0" * size
            queue = (offset - L.NOTIFY_OFFSET) // L.NOTIFY_OFF_MULTIPLIER
            self._audit_notify(queue, data)
            self.notify(queue)
            return None
        if data is None:
            return b"\0" * size
        log.debug("write of %d bytes to unused BAR0 offset %#x ignored", size, offset)
        return None

    def _audit_notify(self, queue: int, data: bytes) -> None:
        """The driver requirements of an available buffer notification of ``data`` at ``queue``'s notify address."""
        if not self.status & DRIVER_OK:
            self.note("notify-before-driver-ok", f"queue {queue} notified with device_status {self.status:#x}")
        if queue >= self.num_queues or not self.queues[queue].enable:
            self.note("notify-queue-not-enabled", f"queue {queue} notified, which "
                      f"{'the device does not have' if queue >= self.num_queues else 'is not enabled'}")
        width = 4 if self.negotiated & bit(VIRTIO_F_NOTIFICATION_DATA) else 2
        if len(data) != width:
            self.note("notify-width", f"queue {queue} notified with a {8 * len(data)}-bit write ({8 * width} bits "
                      "expected)")
        elif int.from_bytes(data[:2], "little") != queue:
            self.note("notify-value", f"queue {queue}'s notify address written {data.hex()}")

    def notify(self, queue: int) -> None:
        """Available buffer notification for ``queue`` (processed by :meth:`process_pending`)."""
        if queue >= self.num_queues:
            log.warning("notification for queue %d ignored: the device has %d queues", queue, self.num_queues)
            return
        self.metrics.queues[queue].kicks += 1
        if self.clock is not None:
            self.clock.mark("message")
        if self.queues[queue].ring is not None:
            self.pending.add(queue)

    # ---- queue processing ---------------------------------------------------------------------
    def process_pending(self, budget: int = 32) -> None:
        """Run every notified queue: pop chains, hand them to the device, publish what completed, interrupt.

        Available buffer notifications are off while a queue is walked ("Available Buffer Notification
        Suppression": VIRTQ_USED_F_NO_NOTIFY, the packed ring's device event flags DISABLE; with EVENT_IDX a split
        ring's ``avail_event`` simply stays behind). Used elements are published (and the driver interrupted) at
        least every ``budget`` requests, so a driver that keeps the ring full gets completions back while the
        device works on the rest. When a ring runs dry, either notifications are enabled again and the ring
        re-checked (the race-free sequence), or, while the loop polls (:attr:`polling`), the queue joins
        :attr:`hot` with notifications still off, until :meth:`rearm`.
        """
        clock = self.clock
        while self.pending:
            i = self.pending.pop()
            q = self.queues[i]
            ring = q.ring
            if ring is None:
                continue
            try:
                ring.check_memory()
            except GuestError as e:
                self.needs_reset(str(e))
                continue
            error = None
            done = 0
            chain = None
            handle = self._handle
            inflight = q.inflight
            qm = self.metrics.queues[i]
            try:
                ring.disable_notifications()
                while done < budget:
                    chain = ring.pop()
                    if chain is None:
                        if self.polling:
                            self.hot.add(i)
                            break
                        if not self._rearm_ring(ring):
                            break
                        continue
                    if clock is not None:
                        clock.mark("walk")
                    inflight.start(chain)
                    qm.bytes_read += chain.reader.remaining
                    written = handle(i, chain)
                    if clock is not None:
                        clock.mark("device")
                    if written is not None:
                        inflight.finish(chain, written)
                    chain = None
                    done += 1
                else:
                    self.pending.add(i)  # fairness: come back after the other queues
            except GuestError as e:
                error = str(e)
            except Exception as e:  # noqa: BLE001 - a device bug must not take the process down
                log.exception("queue %d: device %s failed on a request", i, self.device.name)
                error = f"internal error in the {self.device.name} device: {e!r}"
            if chain is not None and chain.completer is not None:
                inflight.abandon(chain)  # the device raised on it: it will never complete
            self._publish(q)  # what completed before an error is still published
            if error:
                qm.errors += 1
                self.needs_reset(error)

    @staticmethod
    def _rearm_ring(ring: DeviceRing) -> bool:
        """Enable available buffer notifications, then look at the ring again; True if a chain came meanwhile.

        The full barrier between the store that enables notifications and the load of the ring is what makes the
        sequence race-free: the driver stores its ring index and then loads our flag (with a barrier of its own),
        so at least one of the two sides sees the other's store ("Available Buffer Notification Suppression").
        """
        ring.enable_notifications()
        full_barrier()
        return ring.pending()

    def poll_rings(self) -> bool:
        """The loop polls: every :attr:`hot` queue with a chain available goes to :attr:`pending`; True if any did."""
        for i in self.hot:
            ring = self.queues[i].ring
            if ring is not None and ring.pending():
                self.pending.add(i)
        return bool(self.pending)

    def rearm(self) -> bool:
        """The polling window ended: enable available buffer notifications on every :attr:`hot` queue and re-check
        its ring (:meth:`_rearm_ring`); queues that have a chain go to :attr:`pending` (True if any)."""
        for i in self.hot:
            ring = self.queues[i].ring
            if ring is not None and self._rearm_ring(ring):
                self.pending.add(i)
        self.hot.clear()
        return bool(self.pending)

    def has_completions(self) -> bool:
        """True if a request completed on another thread and waits for :meth:`publish_completions`."""
        return any(q.inflight.has_done() for q in self.queues)

    def publish_completions(self) -> None:
        """Publish what devices completed on other threads since the last call, after the fault injector's due work
        (event-loop thread)."""
        if self.injector:
            self.injector.run_due()
        for q in self.queues:
            if q.inflight.has_done():
                self._publish(q)

    def _publish(self, q: QueueState) -> None:
        """Make the device's staged work durable, then write the used elements of every completed chain of ``q``,
        publish them and interrupt if the driver wants it.

        ``device.commit`` runs before any used element is published (RPMB: one store commit for the run), so
        nothing acknowledged is ever lost; if it fails, none of them is published and DEVICE_NEEDS_RESET is set.
        """
        items = q.inflight.take()
        if not items:
            return
        try:
            self.device.commit()
        except Exception as e:  # noqa: BLE001 - the run stays unpublished; the driver must reset
            q.inflight.dropped += len(items)
            self.needs_reset(f"{self.device.name} device could not make {len(items)} request(s) on queue "
                             f"{q.index} durable, none completed: {e}")
            return
        ring = q.ring
        if ring is None:  # the queue or the device was reset, or DEVICE_NEEDS_RESET: nobody to tell
            q.inflight.dropped += len(items)
            return
        qm = self.metrics.queues[q.index]
        try:
            ring.check_memory()
            for chain, written in items:
                ring.push(chain, written)
                qm.bytes_written += written
                if chain.failed:
                    qm.errors += 1
            notify = ring.flush()
        except GuestError as e:
            self.needs_reset(str(e))
            return
        clock = self.clock
        if clock is not None:
            clock.mark("publish")
        if notify:
            qm.interrupts += 1
            self.isr |= VIRTIO_PCI_ISR_QUEUE
            self._signal(q.msix_vector)
            if clock is not None:
                clock.mark("interrupt")
