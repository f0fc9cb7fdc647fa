"""A virtio-pci (modern) driver over vfio-user: discovery, initialization, queues, interrupts.

Owns what a guest's virtio-pci driver does ("Virtio Over PCI Bus", "Device Initialization"): reading
PCI configuration space (vfio region 7) and walking its capability list to find the virtio structures
(cfg_type 1..5) and MSI-X; feature negotiation; device_status; MSI-X vectors backed by eventfds given to
the server with DEVICE_SET_IRQS; split or packed virtqueues in shared guest memory; notifications by writing the
queue's notify address. Everything goes through a :class:`~vfu_virtio.client.vfio_user.VfioUserClient`;
nothing here knows a device type (crypto, rpmb): callers build request buffers.

Typical use::

    with VirtioPciDriver.connect("/tmp/crypto.sock") as drv:
        drv.init()                                   # transport features, every queue, DRIVER_OK
        used_len, (dst, status) = drv.queue(0).request([hdr, src], [len(src), 1])

Lower-level steps (:meth:`~VirtioPciDriver.begin_init`, :meth:`~VirtioPciDriver.set_features_raw`,
:meth:`~VirtioPciDriver.features_ok`, :meth:`~VirtioPciDriver.setup_queue`,
:meth:`~VirtioPciDriver.driver_ok`, raw region and common-config access) let conformance tests play
illegal sequences. The driver is strict: device faults raise (:class:`FeaturesRejected`,
:class:`DeviceNeedsReset`, :class:`~vfu_virtio.client.virtqueue.VirtqueueError`) rather than being
papered over.

Waiting: a queue with an MSI-X vector sleeps in ``poll`` on its eventfd (and the config vector's,
through which DEVICE_NEEDS_RESET arrives); without one it polls the used ring. The vfio-user client is
thread-safe; each :class:`DriverQueue` must be driven by one thread at a time.
"""
from __future__ import annotations

import mmap
import os
import select
import struct
import time
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from ..abi.virtio import (ACKNOWLEDGE, COMMON_CFG, DEVICE_NEEDS_RESET, DRIVER, DRIVER_OK, FAILED, FEATURES_OK,
                          VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_NOTIF_CONFIG_DATA,
                          VIRTIO_F_NOTIFICATION_DATA, VIRTIO_F_RING_PACKED, VIRTIO_F_RING_RESET, VIRTIO_F_VERSION_1,
                          VIRTIO_MSI_NO_VECTOR, VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_CAP_DEVICE_CFG,
                          VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_CAP_PCI_CFG,
                          VIRTIO_PCI_VENDOR_ID, bit)
from . import vfio_user as vu
from .memory import GuestMemory
from .ring import Completion, DriverVirtqueue, QueueFull, VirtqueueError, make_virtqueue

#: add to the wanted features to drive packed virtqueues ("Packed Virtqueues") when the device offers them
PACKED = bit(VIRTIO_F_RING_PACKED)
#: features :meth:`VirtioPciDriver.init` accepts by default (when the device offers them), as Linux does: a
#: device that offers VIRTIO_F_RING_PACKED gets packed virtqueues
DEFAULT_DRIVER_FEATURES = (bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC) | bit(VIRTIO_F_EVENT_IDX)
                           | bit(VIRTIO_F_RING_RESET) | PACKED)
#: transport features this driver implements (anything else is the caller's business)
SUPPORTED_TRANSPORT_FEATURES = DEFAULT_DRIVER_FEATURES | PACKED | bit(VIRTIO_F_RING_RESET) | \
    bit(VIRTIO_F_NOTIFICATION_DATA) | bit(VIRTIO_F_NOTIF_CONFIG_DATA)

# ---- PCI configuration space ("PCI Local Bus" type 0 header) --------------------------------------
PCI_CFG_REGION = vu.VFIO_PCI_CONFIG_REGION_INDEX
PCI_VENDOR_ID = 0x00
PCI_DEVICE_ID = 0x02
PCI_COMMAND = 0x04
PCI_STATUS = 0x06
PCI_REVISION_ID = 0x08
PCI_SUBSYSTEM_VENDOR_ID = 0x2C
PCI_SUBSYSTEM_ID = 0x2E
PCI_CAPABILITY_LIST = 0x34
PCI_STATUS_CAP_LIST = 0x10
PCI_COMMAND_MEMORY = 0x2
PCI_COMMAND_MASTER = 0x4
PCI_CAP_ID_VNDR = 0x09
PCI_CAP_ID_MSIX = 0x11
PCI_MSIX_FLAGS_ENABLE = 0x8000
PCI_MSIX_FLAGS_MASKALL = 0x4000
PCI_MSIX_FLAGS_QSIZE = 0x07FF

# struct virtio_pci_cap (16 bytes): cap_vndr, cap_next, cap_len, cfg_type, bar, id, pad[2], offset, length
VIRTIO_PCI_CAP = struct.Struct("<BBBBBB2xII")
VIRTIO_PCI_NOTIFY_MULT = struct.Struct("<I")       # at byte 16 of struct virtio_pci_notify_cap
MSIX_CAP = struct.Struct("<BBHII")                  # id, next, Message Control, Table off|BIR, PBA off|BIR

_UINT = {1: struct.Struct("<B"), 2: struct.Struct("<H"), 4: struct.Struct("<I"), 8: struct.Struct("<Q")}
_U16 = _UINT[2]
_U32 = _UINT[4]
_U64 = _UINT[8]

MAX_CAPS = 48  # a 256-byte config space holds at most 48 capabilities past the header


# ---- errors -------------------------------------------------------------------------------------------
class VirtioDriverError(Exception):
    """The device cannot be driven as asked (missing capability, bad layout, timeout, refused setup)."""


class FeaturesRejected(VirtioDriverError):
    """FEATURES_OK did not stick: the device refused the feature set ``features`` (hex in the message)."""

    def __init__(self, features: int, status: int):
        super().__init__(f"device cleared FEATURES_OK for driver features {features:#x} "
                         f"(device_status now {status:#x})")
        self.features = features
        self.status = status


class DeviceNeedsReset(VirtioDriverError):
    """device_status has DEVICE_NEEDS_RESET: the device hit an error and must be reset."""

    def __init__(self, status: int, where: str = ""):
        super().__init__(f"device set DEVICE_NEEDS_RESET (device_status {status:#x}){' ' + where if where else ''}")
        self.status = status


class VirtioTimeout(VirtioDriverError, TimeoutError):
    """No completion arrived in time (the message says which queue and how many were outstanding)."""


# ---- discovered structure ---------------------------------------------------------------------------
class PciCapability(NamedTuple):
    """One entry of the PCI capability list: ``cap_id``, its config space ``offset``, ``next`` pointer and
    ``data`` (bytes from the capability's start, up to cap_len for vendor caps, else 16 bytes)."""

    cap_id: int
    offset: int
    next: int
    data: bytes


class VirtioCap(NamedTuple):
    """A ``struct virtio_pci_cap`` ("Virtio Structure PCI Capabilities"); ``notify_off_multiplier`` is
    only meaningful for cfg_type 2."""

    cfg_type: int
    bar: int
    id: int
    offset: int
    length: int
    cap_offset: int
    cap_len: int
    notify_off_multiplier: int = 0


class MsixCap(NamedTuple):
    """MSI-X capability: ``table_size`` entries; table/PBA as (BAR, offset); ``control`` Message Control."""

    cap_offset: int
    table_size: int
    table_bar: int
    table_offset: int
    pba_bar: int
    pba_offset: int
    control: int


# ---- queues ---------------------------------------------------------------------------------------
class DriverQueue:
    """One enabled virtqueue of a :class:`VirtioPciDriver`: submit, kick, wait.

    ``index``, ``size``, ``vector`` (MSI-X vector or None when polling), ``notify_offset`` (byte offset
    in BAR ``notify_bar``), ``vq`` (the :class:`~vfu_virtio.client.ring.DriverVirtqueue`, split or packed).
    Counters: ``kicks`` (notifications sent), ``interrupts`` (eventfd wake-ups), ``completed``.
    """

    def __init__(self, driver: "VirtioPciDriver", index: int, vq: DriverVirtqueue, notify_bar: int,
                 notify_offset: int, notify_value: int, vector: int | None, eventfd: int | None,
                 shared_vector: bool):
        self.driver = driver
        self.index = index
        self.vq = vq
        self.size = vq.size
        self.notify_bar = notify_bar
        self.notify_offset = notify_offset
        self.notify_value = notify_value
        self.vector = vector
        self.eventfd = eventfd
        self.shared_vector = shared_vector
        self._notification_data = bool(driver.negotiated & bit(VIRTIO_F_NOTIFICATION_DATA))
        self._ready: list[Completion] = []
        self._seq = 0
        self._poll_obj = None
        self._poll_key: tuple | None = None
        self.kicks = 0
        self.interrupts = 0
        self.completed = 0

    def __repr__(self) -> str:
        return (f"DriverQueue({self.index}, size={self.size}, vector={self.vector}, "
                f"in_flight={self.vq.in_flight})")

    # ---- submit / kick ------------------------------------------------------------------------
    def submit(self, out_bufs: Sequence, in_sizes: Sequence[int], token: Any = None,
               indirect: bool | None = None) -> int:
        """Add one chain (device-readable ``out_bufs``, then writable buffers of ``in_sizes`` bytes)
        without publishing it; returns the head index. Raises :class:`QueueFull` when it does not fit."""
        return self.vq.add(out_bufs, in_sizes, token, indirect)

    def kick(self, force: bool = False) -> bool:
        """Publish avail.idx, then notify the device if it asked for it (or ``force``); True if notified.

        The notification writes the queue's notify address ("Available Buffer Notifications"): the
        16-bit queue index (or queue_notif_config_data), or the 32-bit {vqn, next avail idx} with
        VIRTIO_F_NOTIFICATION_DATA. Posted (no reply) unless the driver was made with ``posted_kicks=False``.
        """
        vq = self.vq
        vq.publish()
        if not vq.kick_needed() and not force:
            return False
        self.notify()
        return True

    def notify(self) -> None:
        """Write the notify address unconditionally: a store into the mapped notification area when the device
        offered one (``--notify mmap``; :attr:`VirtioPciDriver.notify_mapped`), else a region write message."""
        if self._notification_data:
            value = self.notify_value | (self.vq.notification_data() << 16)
            data = _U32.pack(value)
        else:
            value = self.notify_value
            data = _U16.pack(value)
        area = self.driver._notify_area
        if area is not None:
            view, start = area
            rel = self.notify_offset - start
            # one aligned 16- or 32-bit store, as a CPU's MMIO write would be
            view.cast("I" if len(data) == 4 else "H")[rel // len(data)] = value
        else:
            self.driver.client.region_write(self.notify_bar, self.notify_offset, data,
                                            posted=self.driver.posted_kicks)
        self.kicks += 1

    # ---- completions --------------------------------------------------------------------------
    def poll(self) -> list[Completion]:
        """Completions available now, without waiting (also returns any held back by :meth:`request`)."""
        out = self._ready
        self._ready = []
        if self.vq.has_used():
            out.extend(self.vq.get_used())
        self.completed += len(out)
        return out

    def wait(self, timeout: float = 5.0, min_completions: int = 1) -> list[Completion]:
        """Wait until at least ``min_completions`` completions are collected (or none are in flight);
        returns every completion collected, oldest first.

        Raises :class:`DeviceNeedsReset` when device_status shows it and :class:`VirtioTimeout` after
        ``timeout`` seconds with fewer completions (those collected stay queued for the next call).
        """
        out = self.poll()
        if len(out) >= min_completions:
            return out
        drv = self.driver
        vq = self.vq
        deadline = time.monotonic() + timeout
        poller = self._poller()
        # with a private vector, sleep until it fires (re-checking now and then, cheap insurance
        # against a lost wake-up); with a shared vector or none, look at the ring often
        slice_s = 0.25 if (self.eventfd is not None and not self.shared_vector) else 0.005
        next_status = time.monotonic() + 0.25
        spins = 0
        while True:
            if drv._needs_reset:
                self._ready = out + self._ready
                raise DeviceNeedsReset(drv._needs_reset, f"while waiting on queue {self.index}")
            # get_used re-arms used_event; an element the device published before that store raised no
            # interrupt, so look again before sleeping ("Used Buffer Notifications": re-check after enabling)
            while vq.has_used():
                out.extend(vq.get_used())
            if len(out) >= min_completions or vq.in_flight == 0:
                self.completed += len(out)
                return out
            now = time.monotonic()
            if now >= deadline:
                drv._check_status(f"while waiting on queue {self.index}")
                if vq.has_used():
                    continue
                self._ready = out + self._ready
                raise VirtioTimeout(f"queue {self.index}: {len(out)} of {min_completions} completions after "
                                    f"{timeout} s ({vq.in_flight} requests in flight, {vq.describe()})")
            if poller is not None:
                ready = poller.poll(max(0.0, min(deadline - now, slice_s)) * 1000)
                for fd, _ev in ready:
                    _drain(fd)
                    if fd == self.eventfd:
                        self.interrupts += 1
                    elif fd == drv.config_eventfd:
                        drv._config_interrupt()
            else:
                spins += 1
                if spins > 50:
                    time.sleep(0.0001)
            if time.monotonic() >= next_status and (poller is None or not out):
                # without a config vector (or when idle) DEVICE_NEEDS_RESET is only seen by asking
                if drv.config_eventfd is None:
                    drv._check_status(f"while waiting on queue {self.index}")
                next_status = time.monotonic() + 0.25

    def _poller(self):
        """A poll object over this queue's eventfd and the config vector's (None when polling the ring)."""
        if self.eventfd is None:
            return None
        key = (self.eventfd, self.driver.config_eventfd)
        if self._poll_key != key:
            p = select.poll()
            for fd in key:
                if fd is not None:
                    p.register(fd, select.POLLIN)
            self._poll_obj, self._poll_key = p, key
        return self._poll_obj

    def request(self, out_bufs: Sequence, in_sizes: Sequence[int], timeout: float = 5.0,
                indirect: bool | None = None) -> tuple[int, list[bytes]]:
        """Submit one chain, kick, wait for it: returns ``(used_len, in_buffers)``.

        Other completions that arrive meanwhile are kept for :meth:`wait`/:meth:`poll`.
        """
        self._seq += 1
        token = ("request", self._seq)
        self.vq.add(out_bufs, in_sizes, token, indirect)
        self.kick()
        deadline = time.monotonic() + timeout
        held: list[Completion] = []
        try:
            while True:
                for c in self.wait(max(0.0, deadline - time.monotonic())):
                    if c.token == token:
                        self.completed -= len(held)  # counted again when handed out
                        return c.used_len, c.data
                    held.append(c)
        finally:
            self._ready = held + self._ready

    def run(self, requests: Iterable[tuple[Sequence, Sequence[int]]], timeout: float = 30.0,
            batch: int | None = None) -> list[tuple[int, list[bytes]]]:
        """Run many requests with few kicks: fill the ring (up to ``batch`` at a time), kick once, collect,
        repeat. Returns ``(used_len, in_buffers)`` per request, in the order given."""
        pending = list(requests)
        results: list[tuple[int, list[bytes]] | None] = [None] * len(pending)
        deadline = time.monotonic() + timeout
        nxt = 0
        outstanding = 0
        base = self._seq + 1
        self._seq += len(pending)
        limit = batch or self.size
        while nxt < len(pending) or outstanding:
            added = 0
            while nxt < len(pending) and added < limit:
                out_bufs, in_sizes = pending[nxt]
                try:
                    self.vq.add(out_bufs, in_sizes, ("run", base + nxt))
                except QueueFull:
                    if outstanding == 0 and added == 0:
                        raise
                    break
                nxt += 1
                added += 1
                outstanding += 1
            if added:
                self.kick()
            for c in self.wait(max(0.0, deadline - time.monotonic())):
                tok = c.token
                if isinstance(tok, tuple) and tok[0] == "run" and base <= tok[1] < base + len(pending):
                    results[tok[1] - base] = (c.used_len, c.data)
                    outstanding -= 1
                else:
                    self._ready.append(c)
        return results  # type: ignore[return-value]


def _drain(fd: int) -> None:
    try:
        os.read(fd, 8)
    except BlockingIOError:
        pass


# ---- the driver ---------------------------------------------------------------------------------
class VirtioPciDriver:
    """A virtio-pci function reached through ``client`` with guest memory ``memory`` (already DMA-mapped).

    Use :meth:`connect`. After construction the function is discovered: ``vendor_id``, ``device_id``,
    ``virtio_device_id``, ``config`` (256 bytes of PCI config space as read), ``capabilities``,
    ``virtio_caps`` (cfg_type -> first usable :class:`VirtioCap`), ``msix`` (:class:`MsixCap` or None),
    ``regions`` (index -> :class:`~vfu_virtio.client.vfio_user.RegionInfo`).
    Raises :class:`VirtioDriverError` if it is not a modern virtio-pci function.
    """

    def __init__(self, client: vu.VfioUserClient, memory: GuestMemory, posted_kicks: bool = True,
                 map_notify: bool = True):
        self.client = client
        self.memory = memory
        self.posted_kicks = posted_kicks
        self._notify_area: tuple[memoryview, int] | None = None
        self._notify_mmap: mmap.mmap | None = None
        self.negotiated = 0
        self.queues: dict[int, DriverQueue] = {}
        self.eventfds: list[int] = []
        self.config_vector: int | None = None
        self.config_eventfd: int | None = None
        self.config_interrupts = 0
        self._needs_reset = 0
        self._closed = False
        self._discover()
        if map_notify:
            self._map_notify_area()

    @classmethod
    def connect(cls, socket_path: str, mem_size: int = 64 << 20, timeout: float = 5.0,
                iova_base: int | None = None, posted_kicks: bool = True,
                map_notify: bool = True) -> "VirtioPciDriver":
        """Connect to the vfio-user server at ``socket_path``, create ``mem_size`` bytes of guest memory,
        DMA_MAP it (fd by SCM_RIGHTS, read/write) and discover the function. ``map_notify``: map the notification
        area when the device offers it as a sparse mmap area (else every notification is a region write)."""
        client = vu.VfioUserClient(socket_path, timeout)
        memory = None
        try:
            memory = GuestMemory(mem_size) if iova_base is None else GuestMemory(mem_size, iova_base)
            client.dma_map(memory.fd, 0, memory.iova_base, memory.size)
            return cls(client, memory, posted_kicks, map_notify)
        except BaseException:
            client.close()
            if memory is not None:
                memory.close()
            raise

    # ---- discovery ----------------------------------------------------------------------------
    def _discover(self) -> None:
        c = self.client
        self.device_info = c.device_info()
        self.regions: dict[int, vu.RegionInfo] = {}
        for idx in range(min(self.device_info.num_regions, vu.VFIO_PCI_CONFIG_REGION_INDEX + 1)):
            try:
                self.regions[idx] = c.region_info(idx)
            except vu.VfioUserError:
                continue
        cfg_info = self.regions.get(PCI_CFG_REGION)
        if cfg_info is None or cfg_info.size < 256:
            raise VirtioDriverError("the function has no 256-byte PCI configuration region (index 7)")
        self.config = c.region_read(PCI_CFG_REGION, 0, 256)
        cfg = self.config
        self.vendor_id, self.device_id = struct.unpack_from("<HH", cfg, PCI_VENDOR_ID)
        self.revision = cfg[PCI_REVISION_ID]
        self.subsystem_vendor_id, self.subsystem_id = struct.unpack_from("<HH", cfg, PCI_SUBSYSTEM_VENDOR_ID)
        if self.vendor_id != VIRTIO_PCI_VENDOR_ID or not 0x1000 <= self.device_id <= 0x107F:
            raise VirtioDriverError(f"PCI {self.vendor_id:04x}:{self.device_id:04x} is not a virtio device")
        self.virtio_device_id = self.device_id - 0x1040 if self.device_id >= 0x1040 else self.subsystem_id
        self.capabilities = self._walk_capabilities(cfg)
        self.virtio_caps: dict[int, VirtioCap] = {}
        self.msix: MsixCap | None = None
        for cap in self.capabilities:
            if cap.cap_id == PCI_CAP_ID_VNDR and len(cap.data) >= VIRTIO_PCI_CAP.size:
                vc = self._parse_virtio_cap(cap)
                if vc is not None and vc.cfg_type not in self.virtio_caps:
                    self.virtio_caps[vc.cfg_type] = vc
            elif cap.cap_id == PCI_CAP_ID_MSIX and self.msix is None and len(cap.data) >= MSIX_CAP.size:
                _id, _n, ctl, table, pba = MSIX_CAP.unpack_from(cap.data)
                self.msix = MsixCap(cap.offset, (ctl & PCI_MSIX_FLAGS_QSIZE) + 1, table & 7, table & ~7,
                                    pba & 7, pba & ~7, ctl)
        for need, name in ((VIRTIO_PCI_CAP_COMMON_CFG, "common configuration"),
                           (VIRTIO_PCI_CAP_NOTIFY_CFG, "notification"), (VIRTIO_PCI_CAP_ISR_CFG, "ISR status")):
            if need not in self.virtio_caps:
                raise VirtioDriverError(f"no usable virtio {name} capability (cfg_type {need}) in the "
                                        f"capability list (a legacy device?)")
        common = self.virtio_caps[VIRTIO_PCI_CAP_COMMON_CFG]
        if common.length < 0x38:
            raise VirtioDriverError(f"common configuration capability length {common.length} < 56 bytes")
        self._common = (common.bar, common.offset)
        self._common_len = common.length
        self._notify = self.virtio_caps[VIRTIO_PCI_CAP_NOTIFY_CFG]
        self._isr = self.virtio_caps[VIRTIO_PCI_CAP_ISR_CFG]
        self._devcfg = self.virtio_caps.get(VIRTIO_PCI_CAP_DEVICE_CFG)

    def _map_notify_area(self) -> None:
        """Map the notification structure when its BAR offers a sparse mmap area (with an fd) covering it all:
        notifications then are stores into that memory, as QEMU's ``vfio-user-pci`` makes a guest's."""
        n = self._notify
        info = self.regions.get(n.bar)
        if info is None or not info.flags & vu.VFIO_REGION_INFO_FLAG_MMAP or not info.sparse_mmap:
            return
        area = next(((off, size) for off, size in info.sparse_mmap
                     if off <= n.offset and n.offset + n.length <= off + size), None)
        if area is None:
            return
        info = self.client.region_info(n.bar, keep_fds=True)
        try:
            if not info.fds:
                return
            self._notify_mmap = mmap.mmap(info.fds[0], area[1], offset=info.offset + area[0])
        finally:
            for fd in info.fds:
                os.close(fd)
        self._notify_area = (memoryview(self._notify_mmap), area[0])

    @property
    def notify_mapped(self) -> bool:
        """True when notifications are stores into the mapped notification area (no message each)."""
        return self._notify_area is not None

    @staticmethod
    def _walk_capabilities(cfg: bytes) -> list[PciCapability]:
        """The capability list from config space, bounded (at most MAX_CAPS, no revisits, pointers >= 0x40)."""
        caps: list[PciCapability] = []
        status = struct.unpack_from("<H", cfg, PCI_STATUS)[0]
        if not status & PCI_STATUS_CAP_LIST:
            return caps
        ptr = cfg[PCI_CAPABILITY_LIST] & ~3
        seen = set()
        while ptr and len(caps) < MAX_CAPS:
            if ptr < 0x40 or ptr > len(cfg) - 2 or ptr in seen:
                raise VirtioDriverError(f"PCI capability pointer {ptr:#x} is invalid or loops")
            seen.add(ptr)
            cap_id, nxt = cfg[ptr], cfg[ptr + 1] & ~3
            length = cfg[ptr + 2] if cap_id == PCI_CAP_ID_VNDR else 16
            caps.append(PciCapability(cap_id, ptr, nxt, bytes(cfg[ptr:min(len(cfg), ptr + max(length, 2))])))
            ptr = nxt
        return caps

    def _parse_virtio_cap(self, cap: PciCapability) -> VirtioCap | None:
        _v, _n, cap_len, cfg_type, bar, ident, offset, length = VIRTIO_PCI_CAP.unpack_from(cap.data)
        if not 1 <= cfg_type <= VIRTIO_PCI_CAP_PCI_CFG or cap_len < VIRTIO_PCI_CAP.size:
            return None  # reserved cfg_type: ignored ("Virtio Structure PCI Capabilities")
        mult = 0
        if cfg_type == VIRTIO_PCI_CAP_NOTIFY_CFG:
            if cap_len < 20 or len(cap.data) < 20:
                return None
            mult = VIRTIO_PCI_NOTIFY_MULT.unpack_from(cap.data, 16)[0]
        if cfg_type != VIRTIO_PCI_CAP_PCI_CFG:
            region = self.regions.get(bar)
            if bar > 5 or region is None or region.size < offset + length:
                return None  # reserved BAR or a structure outside the BAR: ignored
        return VirtioCap(cfg_type, bar, ident, offset, length, cap.offset, cap_len, mult)

    # ---- raw access ---------------------------------------------------------------------------
    def region_read(self, index: int, offset: int, size: int) -> bytes:
        """Raw VFIO_USER_REGION_READ (for conformance tests)."""
        return self.client.region_read(index, offset, size)

    def region_write(self, index: int, offset: int, data: bytes) -> None:
        """Raw VFIO_USER_REGION_WRITE, acknowledged (for conformance tests)."""
        self.client.region_write(index, offset, data)

    def config_read(self, offset: int, size: int) -> bytes:
        """Read PCI configuration space (region 7) now."""
        return self.client.region_read(PCI_CFG_REGION, offset, size)

    def config_write(self, offset: int, data: bytes) -> None:
        """Write PCI configuration space (region 7)."""
        self.client.region_write(PCI_CFG_REGION, offset, data)

    def config_space(self) -> bytes:
        """All 256 bytes of PCI configuration space, read now."""
        return self.config_read(0, 256)

    # ---- common configuration -----------------------------------------------------------------
    def read_common(self, field: str) -> int:
        """Read a ``struct virtio_pci_common_cfg`` field by name with its own width (KeyError if unknown)."""
        off, w = COMMON_CFG[field]
        bar, base = self._common
        return _UINT[w].unpack(self.client.region_read(bar, base + off, w))[0]

    def write_common(self, field: str, value: int) -> None:
        """Write a common configuration field by name with its own width (value masked to the width)."""
        off, w = COMMON_CFG[field]
        bar, base = self._common
        self.client.region_write(bar, base + off, _UINT[w].pack(value & ((1 << (8 * w)) - 1)))

    @property
    def status(self) -> int:
        """device_status, read now."""
        return self.read_common("device_status")

    def set_status(self, value: int) -> None:
        """Write device_status exactly (0 resets the device; see :meth:`reset`)."""
        self.write_common("device_status", value)

    def add_status(self, bits: int) -> int:
        """OR ``bits`` into device_status; returns the value read back afterwards."""
        self.set_status(self.status | bits)
        return self.status

    def _check_status(self, where: str = "") -> int:
        st = self.status
        if st & DEVICE_NEEDS_RESET:
            self._needs_reset = st
            raise DeviceNeedsReset(st, where)
        return st

    def _config_interrupt(self) -> None:
        """The config vector fired: count it and look for DEVICE_NEEDS_RESET."""
        self.config_interrupts += 1
        st = self.status
        if st & DEVICE_NEEDS_RESET:
            self._needs_reset = st

    def reset(self, timeout: float = 5.0) -> None:
        """Write 0 to device_status and wait until it reads back 0 ("Device Status Field");
        forgets the driver's queues (their memory is freed) and the negotiated features."""
        self.set_status(0)
        deadline = time.monotonic() + timeout
        while self.status != 0:
            if time.monotonic() > deadline:
                raise VirtioDriverError(f"device_status still {self.status:#x} {timeout} s after reset")
            time.sleep(0.001)
        self._drop_queues()
        self.negotiated = 0
        self._needs_reset = 0
        self.config_vector = self.config_eventfd = None  # reset unmapped every event ("MSI-X Vector Configuration")

    def _drop_queues(self) -> None:
        for q in self.queues.values():
            q.vq.close()
        self.queues.clear()

    # ---- feature negotiation ------------------------------------------------------------------
    def device_features(self, words: int = 2) -> int:
        """The device's feature bits, read 32 at a time through device_feature_select 0..words-1."""
        value = 0
        for sel in range(words):
            self.write_common("device_feature_select", sel)
            value |= self.read_common("device_feature") << (32 * sel)
        return value

    def driver_features(self, words: int = 2) -> int:
        """The driver feature bits as the device reads them back."""
        value = 0
        for sel in range(words):
            self.write_common("driver_feature_select", sel)
            value |= self.read_common("driver_feature") << (32 * sel)
        return value

    def set_features_raw(self, features: int, words: int = 2) -> None:
        """Write ``features`` to driver_feature words 0..words-1 as given: no check against what the
        device offers (conformance tests use it to accept unoffered bits)."""
        for sel in range(words):
            self.write_common("driver_feature_select", sel)
            self.write_common("driver_feature", (features >> (32 * sel)) & 0xFFFFFFFF)

    def begin_init(self) -> None:
        """Reset, then ACKNOWLEDGE and DRIVER ("Device Initialization" steps 1-3)."""
        self.reset()
        self.set_status(ACKNOWLEDGE)
        self.set_status(ACKNOWLEDGE | DRIVER)

    def features_ok(self) -> bool:
        """Set FEATURES_OK and re-read device_status: True if the device kept it (steps 5-6)."""
        return bool(self.add_status(FEATURES_OK) & FEATURES_OK)

    def negotiate(self, features_wanted: int | None = None) -> int:
        """Steps 1-6: reset, ACKNOWLEDGE, DRIVER, read device features, write
        ``features_wanted & device_features`` (default :data:`DEFAULT_DRIVER_FEATURES`), FEATURES_OK.

        Returns the negotiated bits. Raises :class:`VirtioDriverError` if the device lacks
        VIRTIO_F_VERSION_1 and :class:`FeaturesRejected` (after setting FAILED) if FEATURES_OK is refused.
        """
        self.begin_init()
        offered = self.device_features()
        self.offered_features = offered
        if not offered & bit(VIRTIO_F_VERSION_1):
            self.add_status(FAILED)
            raise VirtioDriverError(f"device features {offered:#x} lack VIRTIO_F_VERSION_1 (legacy device)")
        wanted = DEFAULT_DRIVER_FEATURES if features_wanted is None else features_wanted
        features = wanted & offered
        self.set_features_raw(features)
        if not self.features_ok():
            st = self.status
            self.add_status(FAILED)
            raise FeaturesRejected(features, st)
        self.negotiated = features
        return features

    # ---- interrupts ---------------------------------------------------------------------------
    def setup_msix(self, vectors: int) -> int:
        """Enable MSI-X in config space and give the server ``vectors`` eventfds (DEVICE_SET_IRQS, index
        VFIO_PCI_MSIX_IRQ_INDEX). Returns how many vectors were set up (limited by the table size and
        the server's IRQ count); 0 if the function has no MSI-X."""
        self._teardown_irqs()
        if self.msix is None:
            return 0
        try:
            count = self.client.irq_info(vu.VFIO_PCI_MSIX_IRQ_INDEX).count
        except vu.VfioUserError:
            return 0
        vectors = min(vectors, self.msix.table_size, count)
        if vectors <= 0:
            return 0
        ctl = struct.unpack("<H", self.config_read(self.msix.cap_offset + 2, 2))[0]
        self.config_write(self.msix.cap_offset + 2,
                          struct.pack("<H", (ctl | PCI_MSIX_FLAGS_ENABLE) & ~PCI_MSIX_FLAGS_MASKALL))
        fds = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(vectors)]
        try:
            self.client.set_irqs(vu.VFIO_PCI_MSIX_IRQ_INDEX, 0, fds)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        self.eventfds = fds
        return vectors

    def _teardown_irqs(self) -> None:
        if self.eventfds and self.client.connected:
            try:
                self.client.disable_irqs(vu.VFIO_PCI_MSIX_IRQ_INDEX)
            except vu.VfioUserError:
                pass
        for fd in self.eventfds:
            os.close(fd)
        self.eventfds = []
        self.config_vector = self.config_eventfd = None

    def set_config_vector(self, vector: int | None) -> int | None:
        """Map configuration change events to MSI-X ``vector`` (None: NO_VECTOR) and read back; returns
        the vector in effect (None if the device answered NO_VECTOR)."""
        self.write_common("msix_config", VIRTIO_MSI_NO_VECTOR if vector is None else vector)
        got = self.read_common("msix_config")
        self.config_vector = None if got == VIRTIO_MSI_NO_VECTOR else got
        self.config_eventfd = self.eventfds[got] if self.config_vector is not None and got < len(self.eventfds) \
            else None
        return self.config_vector

    def wait_config_change(self, timeout: float = 5.0) -> bool:
        """Wait for a configuration change interrupt on the config vector; False on timeout (or no vector)."""
        if self.config_eventfd is None:
            return False
        r, _, _ = select.select([self.config_eventfd], [], [], timeout)
        if r:
            _drain(self.config_eventfd)
            self._config_interrupt()
        return bool(r)

    def read_isr(self) -> int:
        """Read (and so clear) the ISR status byte: bit 0 queue interrupt, bit 1 configuration change."""
        return self.client.region_read(self._isr.bar, self._isr.offset, 1)[0]

    # ---- queues -------------------------------------------------------------------------------
    @property
    def num_queues(self) -> int:
        return self.read_common("num_queues")

    def setup_queue(self, index: int, size: int | None = None, vector: int | None = None,
                    shared_vector: bool = False, indirect_threshold: int | None = None) -> DriverQueue | None:
        """Configure and enable virtqueue ``index`` ("Virtqueue Configuration"): select it, read its
        maximum size (None if 0: the queue does not exist), write ``size`` if smaller, allocate and zero
        the rings, map it to MSI-X ``vector`` and read back (NO_VECTOR: the queue is polled), write the
        ring addresses, read queue_notify_off, write queue_enable = 1."""
        self.write_common("queue_select", index)
        max_size = self.read_common("queue_size")
        if max_size == 0:
            return None
        qsize = max_size if size is None else min(size, max_size)
        if qsize != max_size:
            self.write_common("queue_size", qsize)
            got = self.read_common("queue_size")
            if got != qsize:
                raise VirtioDriverError(f"queue {index}: device kept queue_size {got} after we wrote {qsize}")
        kw = {} if indirect_threshold is None else {"indirect_threshold": indirect_threshold}
        vq = make_virtqueue(self.memory, qsize, bool(self.negotiated & PACKED),
                            event_idx=bool(self.negotiated & bit(VIRTIO_F_EVENT_IDX)),
                            indirect=bool(self.negotiated & bit(VIRTIO_F_INDIRECT_DESC)), index=index, **kw)
        try:
            eventfd = None
            if vector is not None:
                self.write_common("queue_msix_vector", vector)
                got = self.read_common("queue_msix_vector")
                if got == VIRTIO_MSI_NO_VECTOR or got >= len(self.eventfds):
                    vector = None
                else:
                    vector = got
                    eventfd = self.eventfds[got]
            else:
                self.write_common("queue_msix_vector", VIRTIO_MSI_NO_VECTOR)
            self.write_common("queue_desc", vq.desc_iova)
            self.write_common("queue_driver", vq.driver_iova)
            self.write_common("queue_device", vq.device_iova)
            notify_off = self.read_common("queue_notify_off")
            notify_value = index
            if self.negotiated & bit(VIRTIO_F_NOTIF_CONFIG_DATA):
                notify_value = self.read_common("queue_notif_config_data")
            n = self._notify
            width = 4 if self.negotiated & bit(VIRTIO_F_NOTIFICATION_DATA) else 2
            rel = notify_off * n.notify_off_multiplier
            if rel + width > n.length:
                raise VirtioDriverError(f"queue {index}: notify address {n.offset:#x}+{rel:#x} is outside the "
                                        f"notification structure ({n.length} bytes)")
            self.write_common("queue_enable", 1)
        except BaseException:
            vq.close()
            raise
        q = DriverQueue(self, index, vq, n.bar, n.offset + rel, notify_value, vector, eventfd, shared_vector)
        old = self.queues.pop(index, None)
        if old is not None:
            old.vq.close()
        self.queues[index] = q
        return q

    def reset_queue(self, index: int, timeout: float = 5.0) -> list[Any]:
        """VIRTIO_F_RING_RESET ("Virtqueue Reset"): write 1 to queue_reset of queue ``index``, wait until it reads
        back 1, and forget the queue (its in-flight requests are dropped: their tokens are returned). Set it up
        again with :meth:`setup_queue`. Raises :class:`VirtioDriverError` if RING_RESET was not negotiated or the
        device does not acknowledge the reset in ``timeout`` seconds."""
        if not self.negotiated & bit(VIRTIO_F_RING_RESET):
            raise VirtioDriverError("queue reset needs VIRTIO_F_RING_RESET, which was not negotiated")
        self.write_common("queue_select", index)
        self.write_common("queue_reset", 1)
        deadline = time.monotonic() + timeout
        while self.read_common("queue_reset") != 1:
            if time.monotonic() > deadline:
                raise VirtioDriverError(f"queue {index}: queue_reset still 0 {timeout} s after writing 1")
            time.sleep(0.001)
        q = self.queues.pop(index, None)
        if q is None:
            return []
        tokens = q.vq.detach_all()
        q.vq.close()
        return tokens

    def driver_ok(self) -> None:
        """Set DRIVER_OK (step 8); raises :class:`DeviceNeedsReset` if the device flags an error."""
        self.add_status(DRIVER_OK)
        self._check_status("after DRIVER_OK")

    def init(self, features_wanted: int | None = None, queue_size: int | None = None,
             queues: Iterable[int] | None = None, use_msix: bool = True,
             before_driver_ok: Callable[["VirtioPciDriver"], None] | None = None,
             indirect_threshold: int | None = None) -> int:
        """Full initialization ("Device Initialization"); returns the negotiated feature bits.

        :meth:`negotiate` with ``features_wanted`` (default :data:`DEFAULT_DRIVER_FEATURES`, always
        intersected with the offered bits), then MSI-X (vector 0 = configuration changes, vector i+1 =
        queue i, shared when the table is smaller, polling when absent or ``use_msix`` is False), then
        every queue in ``queues`` (default: all ``num_queues``) at ``queue_size`` (default: the device's
        maximum), then ``before_driver_ok(self)`` for device-specific setup, then DRIVER_OK.
        """
        negotiated = self.negotiate(features_wanted)
        nq = self.num_queues
        wanted = list(range(nq)) if queues is None else list(queues)
        nvec = self.setup_msix(len(wanted) + 1) if use_msix else 0
        if nvec == 0:
            self._teardown_irqs()
        if nvec >= 1:
            self.set_config_vector(0)
        for n, qi in enumerate(wanted):
            vector = None
            shared = False
            if nvec >= 2:
                if nvec >= len(wanted) + 1:
                    vector = n + 1
                else:
                    vector = 1 + n % (nvec - 1)
                    shared = True
            if self.setup_queue(qi, queue_size, vector, shared, indirect_threshold) is None:
                raise VirtioDriverError(f"queue {qi} does not exist (queue_size reads 0; num_queues {nq})")
        if before_driver_ok is not None:
            before_driver_ok(self)
        self.driver_ok()
        return negotiated

    def queue(self, index: int) -> DriverQueue:
        """The enabled :class:`DriverQueue` ``index`` (KeyError naming the enabled ones otherwise)."""
        try:
            return self.queues[index]
        except KeyError:
            raise KeyError(f"queue {index} is not set up (set up: {sorted(self.queues)})") from None

    # ---- device configuration -----------------------------------------------------------------
    def device_config(self, offset: int = 0, size: int | None = None, retries: int = 100) -> bytes:
        """Read ``size`` bytes (default: the whole structure) of device-specific configuration at
        ``offset``, retried until config_generation is the same before and after ("Device Configuration
        Space"). Raises :class:`VirtioDriverError` without a device cfg capability, for a range outside it,
        or if the generation keeps changing."""
        dc = self._devcfg
        if dc is None:
            raise VirtioDriverError("the function has no device-specific configuration capability")
        if size is None:
            size = dc.length - offset
        if offset < 0 or size < 0 or offset + size > dc.length:
            raise VirtioDriverError(f"device config range {offset}+{size} is outside its {dc.length} bytes")
        for _ in range(retries):
            before = self.read_common("config_generation")
            data = self.client.region_read(dc.bar, dc.offset + offset, size)
            if self.read_common("config_generation") == before:
                return data
        raise VirtioDriverError(f"config_generation kept changing over {retries} reads")

    def write_device_config(self, offset: int, data: bytes) -> None:
        """Write device-specific configuration bytes at ``offset`` (writable fields only, per device)."""
        dc = self._devcfg
        if dc is None or offset < 0 or offset + len(data) > dc.length:
            raise VirtioDriverError(f"device config write {offset}+{len(data)} is outside the structure")
        self.client.region_write(dc.bar, dc.offset + offset, data)

    # ---- lifetime -----------------------------------------------------------------------------
    def close(self, reset: bool = True) -> None:
        """Reset the device (unless ``reset`` is False), drop interrupts, unmap and free guest memory and
        close the connection. Errors from a server that is already gone are ignored."""
        if self._closed:
            return
        self._closed = True
        c = self.client
        if c.connected:
            try:
                if reset:
                    self.set_status(0)
                    self.status  # a read: every posted write before it has been processed
            except vu.VfioUserError:
                pass
        self._teardown_irqs()
        self._drop_queues()
        if self._notify_area is not None:
            self._notify_area[0].release()
            self._notify_mmap.close()
            self._notify_area = self._notify_mmap = None
        if c.connected:
            try:
                c.dma_unmap(self.memory.iova_base, self.memory.size)
            except vu.VfioUserError:
                pass
        c.close()
        self.memory.close()

    def __enter__(self) -> "VirtioPciDriver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"VirtioPciDriver({self.client.socket_path}, virtio id {self.virtio_device_id}, "
                f"queues {sorted(self.queues)}, features {self.negotiated:#x})")


__all__ = ["VirtioPciDriver", "DriverQueue", "VirtioDriverError", "FeaturesRejected", "DeviceNeedsReset",
           "VirtioTimeout", "VirtioCap", "MsixCap", "PciCapability", "COMMON_CFG", "DEFAULT_DRIVER_FEATURES",
           "QueueFull", "VirtqueueError", "Completion"]
