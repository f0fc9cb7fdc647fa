"""Checks of the interrupts: MSI-X vectors, INTx, the ISR status byte and the PCI Status register ("Virtio Over PCI
Bus": "Used Buffer Notifications", "Notification of Device Configuration Changes", "ISR status capability").

MSI-X vectors and INTx reach this tool as eventfds given to the device with VFIO_USER_DEVICE_SET_IRQS (VFIO's MSI-X
index 2 and INTx index 0). The ISR status byte is read at the ISR capability's address; reading it clears it. The
PCI Status register's bit 3 (Interrupt Status) is read in config space, offset 6.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ..client import vfio_user as vu
from ..client.virtio_pci import VirtioPciDriver
from . import devtypes
from .catalogue import Skipped, check, expect
from .checks_rings import exchange
from .checks_transport import provoke_needs_reset
from .target import Target, fired, settle, wait_fd

_PCI = "Virtio Transport Options / Virtio Over PCI Bus"
_USED = f"{_PCI} / PCI-specific Initialization And Device Operation / Used Buffer Notifications"
_CONFIG = f"{_PCI} / PCI-specific Initialization And Device Operation / Notification of Device Configuration Changes"
_ISR = f"{_PCI} / PCI Device Layout / ISR status capability"
PCI_STATUS = 0x06
PCI_STATUS_INTERRUPT = 0x08
ISR_QUEUE = 0x01
ISR_CONFIG = 0x02


def _msix(t: Target) -> None:
    if not t.facts.msix_vectors:
        raise Skipped("the function has no MSI-X capability")


@check("irq.queue-vector", _USED, "With MSI-X enabled, a used buffer notification arrives on the queue's "
       "queue_msix_vector.")
def _queue_vector(t: Target) -> str:
    _msix(t)
    probe = devtypes.probe(t.facts)
    drv = t.ready()
    q = drv.queue(probe.queue)
    if q.eventfd is None:
        raise Skipped("no MSI-X vector could be mapped to the queue")
    for fd in drv.eventfds:
        fired(fd)
    exchange(t, drv, q, [probe.readable], [probe.writable])
    n = wait_fd(q.eventfd, 1.0)
    wrong = [i for i, fd in enumerate(drv.eventfds) if fd != q.eventfd and fired(fd)]
    expect(n >= 1, f"no interrupt on the queue's vector {q.vector}" +
           (f"; vector(s) {wrong} fired instead" if wrong else ""))
    return f"vector {q.vector} signalled"


@check("irq.no-vector-silent", _USED, "With MSI-X enabled and queue_msix_vector NO_VECTOR, the device delivers no "
       "interrupt for that virtqueue.")
def _no_vector_silent(t: Target) -> str:
    _msix(t)
    probe = devtypes.probe(t.facts)
    drv = t.negotiated()
    drv.setup_msix(t.facts.msix_vectors)
    drv.set_config_vector(0)
    q = drv.setup_queue(probe.queue, vector=None)
    drv.driver_ok()
    exchange(t, drv, q, [probe.readable], [probe.writable])
    signalled = _signalled(drv)
    expect(not signalled, f"vector(s) {signalled} fired for a queue mapped to NO_VECTOR")
    return f"no vector of {len(drv.eventfds)} fired"


def _signalled(drv: VirtioPciDriver) -> list[int]:
    """The MSI-X vectors whose eventfd fired, after a register round trip and :data:`~.target.GRACE_S`."""
    settle(drv)
    return [i for i, fd in enumerate(drv.eventfds) if fired(fd)]


@dataclass(frozen=True)
class IntxRound:
    """One used buffer notification with MSI-X disabled: INTx eventfd count, PCI Status before and after reading
    the ISR, the ISR read twice."""

    intx: int
    status_before: int
    isr: int
    isr_again: int
    status_after: int


def _intx(t: Target) -> tuple[VirtioPciDriver, int]:
    drv = t.ready(msix=False)
    fd = t.eventfd()
    try:
        drv.client.set_irqs(vu.VFIO_PCI_INTX_IRQ_INDEX, 0, [fd])
    except vu.VfioUserError as e:
        raise Skipped(f"the device refuses an INTx eventfd: {e}") from None
    drv.read_isr()
    fired(fd)
    return drv, fd


def _status(drv: VirtioPciDriver) -> int:
    return struct.unpack("<H", drv.config_read(PCI_STATUS, 2))[0]


def intx_round(t: Target) -> IntxRound:
    """Send the probe with MSI-X disabled and observe INTx, the ISR and the Status register."""
    probe = devtypes.probe(t.facts)
    drv, fd = _intx(t)
    exchange(t, drv, drv.queue(probe.queue), [probe.readable], [probe.writable])
    n = wait_fd(fd, 1.0)
    before = _status(drv)
    isr = drv.read_isr()
    return IntxRound(n, before, isr, drv.read_isr(), _status(drv))


@check("irq.intx", _USED, "With MSI-X disabled, a used buffer notification is an INTx interrupt.")
def _intx_check(t: Target) -> str:
    r = intx_round(t)
    expect(r.intx >= 1, f"no INTx after a used element (ISR read {r.isr:#04x})", bytes([r.isr]))
    return f"INTx signalled {r.intx} time(s)"


@check("isr.queue-bit", _ISR, "With MSI-X disabled, the device sets the Queue Interrupt bit (0) of the ISR status "
       "before a used buffer notification.")
def _isr_queue_bit(t: Target) -> str:
    r = intx_round(t)
    expect(r.isr & ISR_QUEUE, f"ISR status {r.isr:#04x} after a used element (INTx {r.intx})", bytes([r.isr]))
    return f"ISR {r.isr:#04x}"


@check("isr.read-clears", _ISR, "The device resets the ISR status to 0 when the driver reads it.")
def _isr_read_clears(t: Target) -> str:
    r = intx_round(t)
    if not r.isr:
        raise Skipped("the ISR status read 0 after a used element (isr.queue-bit reports it)")
    expect(r.isr_again == 0, f"ISR status read {r.isr:#04x}, then {r.isr_again:#04x}", bytes([r.isr, r.isr_again]))
    return f"{r.isr:#04x}, then 0"


@check("isr.pci-status", _ISR, "With MSI-X disabled, PCI Status bit 3 (Interrupt Status) is the OR of the ISR "
       "status bits.")
def _isr_pci_status(t: Target) -> str:
    r = intx_round(t)
    before, after = bool(r.status_before & PCI_STATUS_INTERRUPT), bool(r.status_after & PCI_STATUS_INTERRUPT)
    expect(before == bool(r.isr) and not after, f"Status bit 3 read {int(before)} with ISR {r.isr:#04x}, then "
           f"{int(after)} with ISR 0", struct.pack("<HH", r.status_before, r.status_after))
    return f"Status {r.status_before:#06x} with ISR {r.isr:#04x}, {r.status_after:#06x} after"


@check("isr.config-bit", _ISR, "The device sets the Device Configuration Interrupt bit (1) of the ISR status before "
       "a configuration change notification (here, the one DEVICE_NEEDS_RESET brings).")
def _isr_config_bit(t: Target) -> str:
    drv = t.negotiated()
    fd = t.eventfd()
    try:
        drv.client.set_irqs(vu.VFIO_PCI_INTX_IRQ_INDEX, 0, [fd])
    except vu.VfioUserError as e:
        raise Skipped(f"the device refuses an INTx eventfd: {e}") from None
    drv.read_isr()
    status = provoke_needs_reset(t, drv, None)
    n = wait_fd(fd, 1.0)
    isr = drv.read_isr()
    expect(isr & ISR_CONFIG and n >= 1, f"device_status {status:#x}: ISR status {isr:#04x}, INTx {n} time(s)",
           bytes([isr]))
    return f"ISR {isr:#04x}, INTx"


@check("irq.config-no-vector", _CONFIG, "With MSI-X enabled and msix_config NO_VECTOR, the device delivers no "
       "interrupt for a configuration change (here, the one DEVICE_NEEDS_RESET brings).")
def _config_no_vector(t: Target) -> str:
    _msix(t)
    drv = t.negotiated()
    drv.setup_msix(t.facts.msix_vectors)
    drv.set_config_vector(None)
    status = provoke_needs_reset(t, drv, None)
    signalled = _signalled(drv)
    expect(not signalled, f"device_status {status:#x}: vector(s) {signalled} fired with msix_config NO_VECTOR")
    return f"device_status {status:#x}, no vector fired"
