"""Checks of the virtio-pci transport registers: the common configuration structure, feature negotiation, device
status and reset, MSI-X vector mapping, the device-specific configuration before FEATURES_OK, and virtqueue reset
("Common configuration structure layout", "Feature Bits", "Reserved Feature Bits", "Device Status Field", "Device
Reset", "Device Configuration Space", "MSI-X Vector Configuration", "Virtqueue Reset").

Each check drives a fresh connection through the project's driver, mostly with its low-level steps (``begin_init``,
``set_features_raw``, ``features_ok``, raw common configuration access), and reads back what the device presents.
"""
from __future__ import annotations

import struct

from ..abi.crypto import VIRTIO_CRYPTO_F_REVISION_1, VIRTIO_ID_CRYPTO
from ..abi.virtio import (COMMON_CFG, DEVICE_NEEDS_RESET, DRIVER_OK, FEATURES_OK, VIRTIO_F_RING_RESET,
                          VIRTIO_F_VERSION_1, VIRTIO_MSI_NO_VECTOR, VIRTIO_PCI_CAP_COMMON_CFG,
                          VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_CAP_NOTIFY_CFG, bit)
from ..client.virtio_pci import FeaturesRejected, VirtioPciDriver
from . import devtypes
from .catalogue import SHOULD, Skipped, check, expect
from .target import Target, fired, settle, wait_fd, wait_until

_COMMON = ("Virtio Transport Options / Virtio Over PCI Bus / PCI Device Layout / Common configuration structure "
           "layout")
_BASIC = "Basic Facilities of a Virtio Device"
_MSIX = ("Virtio Transport Options / Virtio Over PCI Bus / PCI-specific Initialization And Device Operation / "
         "Device Initialization / MSI-X Vector Configuration")
#: feature bits no device offers: reserved for future extensions (44..49), unassigned in the transport range (25,
#: 26, 31), and, for a non-transitional device, the legacy-only ones (24, 27, 30) ("Feature Bits", "Reserved Feature
#: Bits")
RESERVED_BITS = (25, 26, 31, *range(44, 50))
LEGACY_BITS = (24, 27, 30)
#: device-type feature bits each known type defines (crypto: REVISION_1 and the five *_STATELESS_MODE; RPMB: none)
TYPE_BITS = {20: range(0, 6), 28: range(0)}
DEVICE_TYPE_RANGES = (range(0, 24), range(50, 64))
#: crypto: each *_STATELESS_MODE bit (1..5) requires VIRTIO_CRYPTO_F_REVISION_1 ("Crypto Device / Feature bits")
CRYPTO_STATELESS = sum(1 << b for b in range(1, 6))
#: an address no guest memory of this tool ever has (aligned for every ring part)
OUTSIDE_MEMORY = 0x7F00_0000_0000


def _valid(t: Target, fmt: str | None = None) -> int:
    """The driver features this tool accepts for ring format ``fmt``, as the device offers them."""
    return t.features(t.format(fmt)) & t.facts.features


def _status_zero(drv: VirtioPciDriver, t: Target) -> bool:
    return wait_until(lambda: drv.status == 0, min(t.timeout, 2.0))


# ---- common configuration ---------------------------------------------------------------------------------------
@check("common.device-feature-select", _COMMON, "device_feature presents the offered feature bits from bit "
       "device_feature_select * 32: 0 for every select beyond 1.")
def _device_feature_select(t: Target) -> str:
    drv = t.driver()
    for sel in (2, 3, 0x80, 0xFFFFFFFF):
        drv.write_common("device_feature_select", sel)
        word = drv.read_common("device_feature")
        expect(word == 0, f"device_feature reads {word:#010x} for device_feature_select {sel:#x}",
               struct.pack("<I", word))
    return "0 for selects 2, 3, 0x80, 0xffffffff"


@check("common.driver-feature-readback", _COMMON, "driver_feature presents the valid feature bits the driver "
       "wrote, from bit driver_feature_select * 32.")
def _driver_feature_readback(t: Target) -> str:
    drv = t.driver()
    drv.begin_init()
    valid = _valid(t)
    drv.set_features_raw(valid)
    got = drv.driver_features()
    expect(got & t.facts.features == valid, f"driver features {valid:#x} written, {got:#x} read back",
           struct.pack("<Q", got))
    return f"{valid:#x} read back"


@check("common.queue-size-absent", _COMMON, "queue_size reads 0 when queue_select names a virtqueue the device does "
       "not have.")
def _queue_size_absent(t: Target) -> str:
    drv = t.driver()
    for q in (t.facts.num_queues, t.facts.num_queues + 7, 0xFFFF):
        drv.write_common("queue_select", q)
        size = drv.read_common("queue_size")
        expect(size == 0, f"queue_size reads {size} for queue_select {q} (num_queues {t.facts.num_queues})",
               struct.pack("<H", size))
    return f"0 beyond the {t.facts.num_queues} queues"


@check("common.queue-size-pow2", _COMMON, "Without VIRTIO_F_RING_PACKED negotiated, queue_size reads 0 or a power "
       "of 2.")
def _queue_size_pow2(t: Target) -> str:
    drv = t.driver()
    drv.reset()
    sizes = []
    for q in range(t.facts.num_queues):
        drv.write_common("queue_select", q)
        size = drv.read_common("queue_size")
        expect(not size & (size - 1), f"queue {q}: queue_size {size} is not a power of 2", struct.pack("<H", size))
        sizes.append(size)
    return "queue sizes " + ", ".join(map(str, sorted(set(sizes))))


@check("common.queue-address-halves", "Virtio Transport Options / Virtio Over PCI Bus / PCI Device Layout",
       "The driver may access the low and high 32-bit halves of a 64-bit field independently.")
def _queue_address_halves(t: Target) -> str:
    drv = t.driver()
    drv.begin_init()
    drv.write_common("queue_select", 0)
    common = drv.virtio_caps[VIRTIO_PCI_CAP_COMMON_CFG]
    bar = common.bar
    for name, value in (("queue_desc", 0x1234_5678_9ABC_DEF0), ("queue_driver", 0x0FED_CBA9_8765_4320)):
        offset = common.offset + COMMON_CFG[name][0]
        drv.region_write(bar, offset, struct.pack("<I", value & 0xFFFFFFFF))
        drv.region_write(bar, offset + 4, struct.pack("<I", value >> 32))
        whole = drv.read_common(name)
        halves = drv.region_read(bar, offset, 4) + drv.region_read(bar, offset + 4, 4)
        expect(whole == value and halves == struct.pack("<Q", value), f"{name} written as two halves {value:#x} "
               f"reads {whole:#x} whole and {halves.hex()} in halves", halves)
    drv.reset()
    return "queue_desc and queue_driver written and read in 32-bit halves"


@check("common.reset", f"{_BASIC} / Device Reset", "After the driver writes 0 to device_status the device resets and "
       "device_status reads 0.")
def _reset(t: Target) -> str:
    drv = t.negotiated()
    before = drv.status
    drv.set_status(0)
    expect(_status_zero(drv, t), f"device_status reads {drv.status:#x} after 0 was written (it was {before:#x})",
           bytes([drv.status]))
    return f"device_status {before:#x} -> 0"


@check("common.queue-enable-reset", _COMMON, "queue_enable reads 0 for every virtqueue after a device reset.")
def _queue_enable_reset(t: Target) -> str:
    drv = t.ready()
    drv.set_status(0)
    _status_zero(drv, t)
    for q in range(t.facts.num_queues):
        drv.write_common("queue_select", q)
        enable = drv.read_common("queue_enable")
        expect(enable == 0, f"queue {q}: queue_enable reads {enable} after the reset", struct.pack("<H", enable))
    return f"0 on all {t.facts.num_queues} queues"


# ---- MSI-X vectors ----------------------------------------------------------------------------------------------
def _msix_driver(t: Target) -> tuple[VirtioPciDriver, int]:
    if not t.facts.msix_vectors:
        raise Skipped("the function has no MSI-X capability")
    drv = t.negotiated()
    n = drv.setup_msix(t.facts.msix_vectors)
    if n < 2:
        raise Skipped(f"only {n} MSI-X vector(s) could be set up")
    return drv, n


@check("msix.vector-readback", _MSIX, "msix_config and queue_msix_vector read back the vector mapped to them.")
def _vector_readback(t: Target) -> str:
    drv, n = _msix_driver(t)
    drv.write_common("msix_config", n - 1)
    got = drv.read_common("msix_config")
    expect(got == n - 1, f"msix_config written {n - 1} reads {got:#x}", struct.pack("<H", got))
    drv.write_common("queue_select", 0)
    drv.write_common("queue_msix_vector", 1)
    got = drv.read_common("queue_msix_vector")
    expect(got == 1, f"queue 0's queue_msix_vector written 1 reads {got:#x}", struct.pack("<H", got))
    return f"vectors {n - 1} and 1 read back"


@check("msix.vector-failure", _MSIX, "A mapping the device cannot make (a vector outside the MSI-X Table) reads back "
       "as NO_VECTOR.")
def _vector_failure(t: Target) -> str:
    drv, _ = _msix_driver(t)
    size = t.facts.msix_vectors
    drv.write_common("msix_config", size)
    got = drv.read_common("msix_config")
    expect(got == VIRTIO_MSI_NO_VECTOR, f"msix_config written {size} (Table Size {size}) reads {got:#x}",
           struct.pack("<H", got))
    drv.write_common("queue_select", 0)
    drv.write_common("queue_msix_vector", 0x7FF)
    got = drv.read_common("queue_msix_vector")
    expect(size > 0x7FF or got == VIRTIO_MSI_NO_VECTOR, f"queue_msix_vector written 0x7ff reads {got:#x}",
           struct.pack("<H", got))
    return "out-of-table vectors read NO_VECTOR"


@check("msix.unmapped-on-reset", _MSIX, "After a reset every queue and configuration event is unmapped: msix_config "
       "and each queue_msix_vector read NO_VECTOR.")
def _unmapped_on_reset(t: Target) -> str:
    drv, _ = _msix_driver(t)
    drv.write_common("msix_config", 0)
    for q in range(t.facts.num_queues):
        drv.write_common("queue_select", q)
        drv.write_common("queue_msix_vector", 1)
    drv.set_status(0)
    _status_zero(drv, t)
    got = drv.read_common("msix_config")
    expect(got == VIRTIO_MSI_NO_VECTOR, f"msix_config reads {got:#x} after the reset", struct.pack("<H", got))
    for q in range(t.facts.num_queues):
        drv.write_common("queue_select", q)
        got = drv.read_common("queue_msix_vector")
        expect(got == VIRTIO_MSI_NO_VECTOR, f"queue {q}: queue_msix_vector reads {got:#x} after the reset",
               struct.pack("<H", got))
    return "all NO_VECTOR"


# ---- features ---------------------------------------------------------------------------------------------------
@check("features.version-1", "Reserved Feature Bits", "The device offers VIRTIO_F_VERSION_1.")
def _version_1(t: Target) -> str:
    expect(bool(t.facts.features & bit(VIRTIO_F_VERSION_1)), f"device features {t.facts.features:#x} lack bit 32",
           struct.pack("<Q", t.facts.features))
    return f"device features {t.facts.features:#x}"


@check("features.reserved-bits", f"{_BASIC} / Feature Bits", "The device offers no feature bit that is reserved, "
       "legacy-only for a non-transitional device, or undefined for its device type.")
def _reserved_bits(t: Target) -> str:
    f = t.facts
    bad = list(RESERVED_BITS) + (list(LEGACY_BITS) if f.device_id >= 0x1040 else [])
    defined = TYPE_BITS.get(f.virtio_id)
    if defined is not None:
        bad += [b for r in DEVICE_TYPE_RANGES for b in r if b not in defined]
    offered = [b for b in bad if f.features >> b & 1]
    expect(not offered, f"offered feature bits {offered} are reserved or undefined for virtio device "
           f"{f.virtio_id}", struct.pack("<Q", f.features))
    return f"device features {f.features:#x}" + ("" if defined is not None else " (device-type bits not judged)")


@check("features.dependencies", f"{_BASIC} / Feature Bits", "The device offers no feature that requires another "
       "feature it does not offer (crypto: a *_STATELESS_MODE bit requires VIRTIO_CRYPTO_F_REVISION_1).")
def _dependencies(t: Target) -> str:
    f = t.facts.features
    if t.facts.virtio_id == VIRTIO_ID_CRYPTO:
        expect(not f & CRYPTO_STATELESS or f & bit(VIRTIO_CRYPTO_F_REVISION_1), f"stateless bits "
               f"{f & CRYPTO_STATELESS:#x} offered without VIRTIO_CRYPTO_F_REVISION_1", struct.pack("<Q", f))
    return f"device features {f:#x}"


@check("features.unoffered-refused", f"{_BASIC} / Feature Bits", "The device does not keep FEATURES_OK when the "
       "driver accepted a feature bit it did not offer.")
def _unoffered_refused(t: Target) -> str:
    unoffered = next(b for b in (49, 63, 44, 23, 1) if not t.facts.features >> b & 1)
    drv = t.driver()
    drv.begin_init()
    features = _valid(t) | bit(unoffered)
    drv.set_features_raw(features)
    status = drv.add_status(FEATURES_OK)
    expect(not status & FEATURES_OK, f"FEATURES_OK kept with driver features {features:#x} (bit {unoffered} not "
           "offered)", bytes([status]))
    return f"FEATURES_OK refused with unoffered bit {unoffered}"


@check("features.renegotiate", f"{_BASIC} / Feature Bits", "A feature set accepted once is accepted again after a "
       "device reset.", SHOULD)
def _renegotiate(t: Target) -> str:
    drv = t.driver()
    features = _valid(t)
    for attempt in ("first", "second"):
        try:
            drv.negotiate(features)
        except FeaturesRejected as e:
            expect(False, f"the {attempt} negotiation of {features:#x} was refused (device_status {e.status:#x})",
                   bytes([e.status]))
        drv.reset()
    return f"{features:#x} accepted twice"


@check("config.readable-before-features-ok", f"{_BASIC} / Device Configuration Space", "The device-specific "
       "configuration reads the same before FEATURES_OK as after.")
def _config_before_features_ok(t: Target) -> str:
    drv = t.driver()
    if VIRTIO_PCI_CAP_DEVICE_CFG not in drv.virtio_caps:
        raise Skipped("the function has no device-specific configuration")
    drv.begin_init()
    before = drv.device_config()
    drv.set_features_raw(_valid(t))
    drv.features_ok()
    after = drv.device_config()
    expect(before == after, f"{len(before)} bytes read {before.hex()} before FEATURES_OK, {after.hex()} after",
           before)
    return f"{len(before)} bytes"


# ---- device status ----------------------------------------------------------------------------------------------
@check("status.no-use-before-driver-ok", f"{_BASIC} / Device Status Field", "The device consumes no buffer and "
       "sends no used buffer notification before DRIVER_OK.")
def _no_use_before_driver_ok(t: Target) -> str:
    probe = devtypes.probe(t.facts)
    drv = t.negotiated()
    vector = 1 if drv.setup_msix(2) == 2 else None
    q = drv.setup_queue(probe.queue, vector=vector)
    q.submit([probe.readable], [probe.writable])
    q.kick(force=True)
    settle(drv)
    used = q.vq.used_pending()
    irq = fired(q.eventfd) if q.eventfd is not None else 0
    expect(used == 0 and irq == 0, f"before DRIVER_OK the device used {used} buffer(s) and interrupted {irq} time(s)",
           q.vq.describe().encode())
    drv.driver_ok()
    q.notify()
    done = q.wait(t.timeout)
    return f"nothing before DRIVER_OK, {len(done)} used after it"


def provoke_needs_reset(t: Target, drv: VirtioPciDriver, queue_vector: int | None) -> int:
    """Enable a virtqueue whose rings lie outside guest memory, set DRIVER_OK and notify it; device_status once it
    shows DEVICE_NEEDS_RESET. Skipped when the device does not set it (the standard lets a device choose how to
    meet the error)."""
    q = 0
    drv.write_common("queue_select", q)
    drv.write_common("queue_msix_vector", VIRTIO_MSI_NO_VECTOR if queue_vector is None else queue_vector)
    for name in ("queue_desc", "queue_driver", "queue_device"):
        drv.write_common(name, OUTSIDE_MEMORY)
    drv.write_common("queue_enable", 1)
    drv.set_status(drv.status | DRIVER_OK)
    n = drv.virtio_caps[VIRTIO_PCI_CAP_NOTIFY_CFG]
    drv.region_write(n.bar, n.offset + drv.read_common("queue_notify_off") * n.notify_off_multiplier,
                     struct.pack("<H", q))
    if not wait_until(lambda: drv.status & DEVICE_NEEDS_RESET, 1.0):
        raise Skipped("the device did not set DEVICE_NEEDS_RESET for a virtqueue outside guest memory")
    return drv.status


@check("status.needs-reset-notifies", f"{_BASIC} / Device Status Field", "After setting DEVICE_NEEDS_RESET with "
       "DRIVER_OK set, the device sends a configuration change notification.")
def _needs_reset_notifies(t: Target) -> str:
    drv = t.negotiated()
    if drv.setup_msix(2) < 1 or drv.set_config_vector(0) is None:
        raise Skipped("MSI-X vector 0 could not be mapped to configuration changes")
    status = provoke_needs_reset(t, drv, None)
    n = wait_fd(drv.config_eventfd, 1.0)
    expect(n >= 1, f"device_status {status:#x} and no interrupt on the configuration vector", bytes([status]))
    return f"device_status {status:#x}, configuration vector signalled"


@check("status.reset-quiets-queues", f"{_BASIC} / Device Reset", "Once device_status reads 0 after a reset, the "
       "device no longer uses the virtqueues.")
def _reset_quiets_queues(t: Target) -> str:
    probe = devtypes.probe(t.facts)
    drv = t.ready()
    q = drv.queue(probe.queue)
    drv.set_status(0)
    _status_zero(drv, t)
    q.submit([probe.readable], [probe.writable])
    q.kick(force=True)
    settle(drv)
    used = q.vq.used_pending()
    expect(used == 0, f"after the reset the device used {used} buffer(s) of the old virtqueue",
           q.vq.describe().encode())
    return "the old virtqueue stayed untouched"


# ---- virtqueue reset --------------------------------------------------------------------------------------------
@check("queue.reset", f"{_BASIC} / Virtqueues / Virtqueue Reset", "With VIRTIO_F_RING_RESET, writing 1 to "
       "queue_reset resets the queue: queue_enable reads 0 once done, and the queue works again after it is "
       "re-enabled, with queue_reset reading 0.")
def _queue_reset(t: Target) -> str:
    if not t.facts.features & bit(VIRTIO_F_RING_RESET):
        raise Skipped("the device does not offer VIRTIO_F_RING_RESET")
    probe = devtypes.probe(t.facts)
    drv = t.ready(extra=bit(VIRTIO_F_RING_RESET))
    q = drv.queue(probe.queue)
    drv.write_common("queue_select", probe.queue)
    drv.write_common("queue_reset", 1)
    done = wait_until(lambda: drv.read_common("queue_enable") == 0, min(t.timeout, 2.0))
    expect(done, f"queue {probe.queue}: queue_enable still reads {drv.read_common('queue_enable')} and "
           f"queue_reset {drv.read_common('queue_reset')} after writing 1 to queue_reset")
    drv.queues.pop(probe.queue)
    q.vq.detach_all()
    q.vq.close()
    q = drv.setup_queue(probe.queue, vector=q.vector)
    used_len, data = q.request([probe.readable], [probe.writable], t.timeout)
    problem = probe.problem(used_len, b"".join(data))
    expect(problem is None, f"the re-enabled queue answered: {problem}", b"".join(data))
    drv.write_common("queue_select", probe.queue)
    after = drv.read_common("queue_reset")
    expect(after == 0, f"queue_reset reads {after} after the queue was enabled again")
    return "reset, re-enabled, answered"

