"""The device under test: what the first look found (:class:`Facts`), and the connections a check opens
(:class:`Target`).

:func:`discover` connects once with the project's vfio-user client and reads what every check starts from: the PCI
identity and the whole 256-byte config space (VFIO region 7), then, through the project's virtio-pci driver, the
offered feature bits, ``num_queues``, the MSI-X Table Size and the device-specific configuration -- nothing is
negotiated. A function whose PCI Vendor ID is not 0x1AF4 or whose Device ID is outside 0x1000..0x107F is not a
virtio device ("Virtio Over PCI Bus / PCI Device Discovery"): :class:`NotVirtio`. A socket nobody answers on:
:class:`Unreachable`.

A :class:`Target` gives each check fresh connections (:meth:`Target.client`, :meth:`Target.driver`,
:meth:`Target.ready`), closes them when the check ends (the driver resets the device first), and can abort them from
another thread (:meth:`Target.abort`: a call blocked on the socket fails at once), which is how the runner bounds a
check that hangs. Every reply is awaited at most ``timeout`` seconds.
"""
from __future__ import annotations

import os
import select
import struct
import threading
import time
from dataclasses import dataclass

from ..abi.virtio import VIRTIO_F_RING_PACKED, VIRTIO_PCI_VENDOR_ID, bit
from ..client import vfio_user as vu
from ..client.virtio_pci import DEFAULT_DRIVER_FEATURES, PACKED, FeaturesRejected, VirtioDriverError, VirtioPciDriver
from .catalogue import Skipped

#: Guest memory per connection (rings and request buffers).
GUEST_MEMORY = 8 << 20
#: How long a check waits for something that must not happen (a use of a buffer, an interrupt), after a register
#: read made sure the device has handled everything sent before.
GRACE_S = 0.2
PCI_CONFIG_SIZE = 256


class NotVirtio(Exception):
    """The function is not a virtio device (the message gives its PCI ids)."""


class Unreachable(Exception):
    """Nothing usable answers on the socket (the message says what failed)."""


@dataclass(frozen=True)
class Facts:
    """What :func:`discover` found. ``config``: the 256 bytes of PCI config space; ``virtio_id``: the virtio device
    id the Device ID gives (Subsystem Device ID for a transitional one); ``driver_error``: why the project's driver
    could not discover the function (None when it could); ``features`` (offered, bits 0..63), ``num_queues``,
    ``msix_vectors`` (Table Size + 1, 0 without MSI-X) and ``device_config`` are known only when it could.
    ``crypto_layout``: the crypto configuration layout the user said the device has (``--crypto-layout``:
    :data:`~.devtypes.CRYPTO_LAYOUTS`), not discovered: the drafts' feature bits share the standard's numbers."""

    socket: str
    config: bytes
    vendor_id: int
    device_id: int
    virtio_id: int
    driver_error: str | None = None
    features: int = 0
    num_queues: int = 0
    msix_vectors: int = 0
    device_config: bytes = b""
    crypto_layout: str = "standard"

    @property
    def packed_offered(self) -> bool:
        return bool(self.features & bit(VIRTIO_F_RING_PACKED))


def discover(socket_path: str, timeout: float) -> Facts:
    """The first look at the device on ``socket_path`` (see the module docstring). Raises :class:`Unreachable`,
    :class:`NotVirtio`."""
    try:
        client = vu.VfioUserClient(socket_path, timeout)
    except (OSError, vu.VfioUserError) as e:
        raise Unreachable(f"cannot open a vfio-user connection on {socket_path}: {e}") from None
    try:
        try:
            info = client.region_info(vu.VFIO_PCI_CONFIG_REGION_INDEX)
            if info.size < PCI_CONFIG_SIZE:
                raise Unreachable(f"{socket_path}: PCI configuration region of {info.size} bytes (not a PCI device)")
            config = client.region_read(vu.VFIO_PCI_CONFIG_REGION_INDEX, 0, PCI_CONFIG_SIZE)
        except vu.VfioUserError as e:
            raise Unreachable(f"{socket_path}: cannot read PCI config space: {e}") from None
    finally:
        client.close()
    vendor, device = struct.unpack_from("<HH", config)
    if vendor != VIRTIO_PCI_VENDOR_ID or not 0x1000 <= device <= 0x107F:
        cls = config[0x0B] << 16 | config[0x0A] << 8 | config[0x09]
        raise NotVirtio(f"PCI {vendor:04x}:{device:04x} (class {cls:#08x}) is not a virtio device: virtio-pci "
                        f"functions have Vendor ID 0x1af4 and Device ID 0x1000..0x107f")
    subsystem = struct.unpack_from("<H", config, 0x2E)[0]
    virtio_id = device - 0x1040 if device >= 0x1040 else subsystem
    try:
        drv = VirtioPciDriver.connect(socket_path, GUEST_MEMORY, timeout)
    except VirtioDriverError as e:
        return Facts(socket_path, config, vendor, device, virtio_id, driver_error=str(e))
    except (OSError, vu.VfioUserError) as e:
        raise Unreachable(f"{socket_path}: {e}") from None
    try:
        features = drv.device_features()
        dc = drv.virtio_caps.get(4)
        device_config = drv.region_read(dc.bar, dc.offset, dc.length) if dc else b""
        return Facts(socket_path, config, vendor, device, virtio_id, None, features, drv.num_queues,
                     drv.msix.table_size if drv.msix else 0, device_config)
    except (VirtioDriverError, vu.VfioUserError) as e:
        return Facts(socket_path, config, vendor, device, virtio_id, driver_error=str(e))
    finally:
        drv.close()


class Target:
    """The device under test for one check (see the module docstring). ``ring``: ``split``, ``packed`` or ``auto``
    (packed when offered), the virtqueue format of the checks that work on either. ``rpmb_key``: the RPMB
    device's authentication key, when the user knows one is programmed (32 bytes)."""

    def __init__(self, facts: Facts, timeout: float, ring: str = "auto", rpmb_key: bytes | None = None):
        self.facts = facts
        self.timeout = timeout
        self.ring = ring
        self.rpmb_key = rpmb_key
        self._clients: list[vu.VfioUserClient] = []
        self._drivers: list[VirtioPciDriver] = []
        self._fds: list[int] = []
        self._lock = threading.Lock()
        self._aborted = False

    # ---- connections ---------------------------------------------------------------------------------------
    def client(self) -> vu.VfioUserClient:
        """A fresh raw vfio-user connection, closed when the check ends."""
        c = vu.VfioUserClient(self.facts.socket, self.timeout)
        with self._lock:
            self._clients.append(c)
            aborted = self._aborted
        if aborted:
            c.abort()
        return c

    def driver(self) -> VirtioPciDriver:
        """A fresh driver (guest memory mapped, the function discovered); Skipped if the driver cannot discover it
        (the PCI checks say why)."""
        if self.facts.driver_error:
            raise Skipped(f"the project's driver cannot use this function: {self.facts.driver_error}")
        drv = VirtioPciDriver.connect(self.facts.socket, GUEST_MEMORY, self.timeout)
        with self._lock:
            self._drivers.append(drv)
            self._clients.append(drv.client)
            aborted = self._aborted
        if aborted:
            drv.client.abort()
        return drv

    def format(self, want: str | None = None) -> str:
        """The virtqueue format to drive: ``want`` (split or packed; packed Skipped unless offered), else the
        target's ``ring`` choice."""
        fmt = want or self.ring
        if fmt == "auto":
            return "packed" if self.facts.packed_offered else "split"
        if fmt == "packed" and not self.facts.packed_offered:
            raise Skipped("the device does not offer VIRTIO_F_RING_PACKED")
        return fmt

    def features(self, fmt: str, extra: int = 0, without: int = 0) -> int:
        """The driver features to accept for ring format ``fmt``: the project's defaults, RING_PACKED only for
        packed, plus ``extra``, less ``without`` (the driver intersects them with the offered ones)."""
        wanted = (DEFAULT_DRIVER_FEATURES | extra) & ~without
        return wanted | PACKED if fmt == "packed" else wanted & ~PACKED

    def negotiated(self, fmt: str | None = None) -> VirtioPciDriver:
        """A fresh driver after feature negotiation (FEATURES_OK) for ring format :meth:`format` ``fmt``: the
        project's default features the device offers."""
        drv = self.driver()
        drv.negotiate(self.features(self.format(fmt)) & self.facts.features)
        return drv

    def ready(self, fmt: str | None = None, msix: bool = True, extra: int = 0, without: int = 0,
              queue_size: int | None = None) -> VirtioPciDriver:
        """A fresh driver after the whole "Device Initialization" (every queue, at ``queue_size`` or the maximum;
        MSI-X vector 0 for configuration changes and one per queue unless ``msix`` is False): ring format
        :meth:`format` ``fmt``, features :meth:`features`."""
        fmt = self.format(fmt)
        drv = self.driver()
        try:
            drv.init(features_wanted=self.features(fmt, extra, without), use_msix=msix, queue_size=queue_size)
        except FeaturesRejected as e:
            if fmt == "split" and self.facts.packed_offered:  # a device may require packed virtqueues
                raise Skipped(f"the device refuses split virtqueues: {e}") from None
            raise
        return drv

    def eventfd(self) -> int:
        """A non-blocking eventfd closed when the check ends."""
        fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._fds.append(fd)
        return fd

    def abort(self) -> None:
        """Make every call blocked on this check's connections fail now (any thread)."""
        with self._lock:
            self._aborted = True
            clients = list(self._clients)
        for c in clients:
            c.abort()

    def close(self) -> None:
        """Reset the device through each driver (when it still answers) and close every connection."""
        for drv in self._drivers:
            try:
                drv.close(reset=not self._aborted)
            except Exception:  # noqa: BLE001 - closing after a failed check must not fail the run
                pass
        for c in self._clients:
            c.close()
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()


# ---- waiting without trusting the device ------------------------------------------------------------------------
def fired(fd: int) -> int:
    """How often eventfd ``fd`` was signalled since the last call (0 if not), without waiting."""
    try:
        return struct.unpack("<Q", os.read(fd, 8))[0]
    except BlockingIOError:
        return 0


def wait_fd(fd: int, timeout: float) -> int:
    """Wait up to ``timeout`` seconds for eventfd ``fd``; how often it was signalled (0: it was not)."""
    select.select([fd], [], [], timeout)
    return fired(fd)


def settle(drv: VirtioPciDriver) -> None:
    """Let the device finish what it was sent: one register round trip (the messages before it were handled),
    then :data:`GRACE_S` for a device that works on another thread."""
    drv.read_common("device_status")
    time.sleep(GRACE_S)


def wait_until(predicate, timeout: float, step: float = 0.002) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds passed; its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(step)
    return True
