"""Checks of the PCI function itself: identity, the capability list, the virtio structure capabilities, the PCI
configuration access window and the MSI-X capability ("Virtio Over PCI Bus": "PCI Device Discovery", "Virtio Structure
PCI Capabilities", "PCI Device Layout", "MSI-X Vector Configuration").

They read the 256 bytes of config space the first look took (:class:`~.target.Facts`) with their own tolerant parser
(:func:`capabilities`): a malformed list is itself a finding, not a reason to stop. Layouts ("Virtio Structure PCI
Capabilities")::

    struct virtio_pci_cap (16 bytes): u8 cap_vndr 0x09, u8 cap_next, u8 cap_len, u8 cfg_type, u8 bar, u8 id,
                                      u8 padding[2], le32 offset @8, le32 length @12
    struct virtio_pci_notify_cap: virtio_pci_cap + le32 notify_off_multiplier @16 (20 bytes)
    struct virtio_pci_cfg_cap:    virtio_pci_cap + u8 pci_cfg_data[4] @16 (20 bytes)
    MSI-X capability (PCI): u8 id 0x11, u8 next, le16 Message Control (bits 10..0: Table Size - 1), ...
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from ..abi.virtio import (VIRTIO_F_NOTIFICATION_DATA, VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_CAP_DEVICE_CFG,
                          VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_CAP_PCI_CFG, bit)
from ..client import vfio_user as vu
from .catalogue import SHOULD, Failed, Skipped, check, expect
from .target import Facts, Target

_DISCOVERY = "Virtio Transport Options / Virtio Over PCI Bus / PCI Device Discovery"
_CAPS = "Virtio Transport Options / Virtio Over PCI Bus / Virtio Structure PCI Capabilities"
_LAYOUT = "Virtio Transport Options / Virtio Over PCI Bus / PCI Device Layout"
_MSIX = ("Virtio Transport Options / Virtio Over PCI Bus / PCI-specific Initialization And Device Operation / "
         "Device Initialization / MSI-X Vector Configuration")

PCI_STATUS = 0x06
PCI_STATUS_CAP_LIST = 0x10
PCI_CAPABILITY_LIST = 0x34
PCI_CAP_ID_VNDR = 0x09
PCI_CAP_ID_MSIX = 0x11
VIRTIO_PCI_CAP = struct.Struct("<BBBBBB2xII")
#: Transitional PCI Device IDs and their virtio device ids ("PCI Device Discovery")
TRANSITIONAL = {0x1000: 1, 0x1001: 2, 0x1002: 5, 0x1003: 3, 0x1004: 8, 0x1005: 4, 0x1009: 9}
#: device types with a device-specific configuration this tool knows (crypto, RPMB)
TYPES_WITH_CONFIG = {20: "crypto", 28: "RPMB"}
#: struct virtio_pci_common_cfg up to queue_device (what every driver needs)
COMMON_CFG_MIN = 0x38


class Cap(NamedTuple):
    """One capability: config space ``offset``, ``cap_id`` and its bytes (``cap_len`` for vendor caps, else 16)."""

    offset: int
    cap_id: int
    data: bytes


class VirtioCap(NamedTuple):
    """A ``struct virtio_pci_cap`` and where it is."""

    at: int
    cap_len: int
    cfg_type: int
    bar: int
    offset: int
    length: int
    data: bytes


def capabilities(config: bytes) -> tuple[list[Cap], str | None]:
    """The capability list of ``config``, and what is wrong with it (None if nothing): Status bit 4 clear, a pointer
    below 0x40, not dword aligned or past the end, a loop, more than 48 entries."""
    if not struct.unpack_from("<H", config, PCI_STATUS)[0] & PCI_STATUS_CAP_LIST:
        return [], "Status bit 4 (Capabilities List) is clear"
    caps, seen, ptr = [], set(), config[PCI_CAPABILITY_LIST]
    while ptr:
        if ptr < 0x40 or ptr & 3 or ptr > len(config) - 2:
            return caps, f"capability pointer {ptr:#04x} is below 0x40, not dword aligned or past config space"
        if ptr in seen or len(caps) == 48:
            return caps, f"the capability list loops back to {ptr:#04x}"
        seen.add(ptr)
        cap_id = config[ptr]
        length = config[ptr + 2] if cap_id == PCI_CAP_ID_VNDR else 16
        caps.append(Cap(ptr, cap_id, bytes(config[ptr:ptr + max(length, 2)])))
        ptr = config[ptr + 1]
    return caps, None


def virtio_caps(config: bytes, cfg_type: int | None = None) -> list[VirtioCap]:
    """The virtio structure capabilities (vendor capabilities of 16 bytes or more), of ``cfg_type`` if given."""
    out = []
    for cap in capabilities(config)[0]:
        if cap.cap_id == PCI_CAP_ID_VNDR and len(cap.data) >= VIRTIO_PCI_CAP.size:
            _v, _n, cap_len, kind, bar, _id, offset, length = VIRTIO_PCI_CAP.unpack_from(cap.data)
            if cfg_type is None or kind == cfg_type:
                out.append(VirtioCap(cap.offset, cap_len, kind, bar, offset, length, cap.data))
    return out


def first_cap(facts: Facts, cfg_type: int, name: str) -> VirtioCap:
    caps = virtio_caps(facts.config, cfg_type)
    if not caps:
        raise Skipped(f"no {name} capability (cap.* presence checks report it)")
    return caps[0]


def _present(facts: Facts, cfg_type: int, name: str) -> str:
    caps = virtio_caps(facts.config, cfg_type)
    expect(bool(caps), f"no virtio structure capability of cfg_type {cfg_type} ({name}) in the capability list",
           facts.config[0x34:0x35] + b"".join(c.data for c in virtio_caps(facts.config)))
    return f"{len(caps)} at {', '.join(f'{c.at:#04x}' for c in caps)}"


#: (check id, cfg_type, structure, section under "PCI Device Layout"): "The device MUST present at least one ..."
PRESENT = (("cap.common-present", VIRTIO_PCI_CAP_COMMON_CFG, "common configuration",
            "Common configuration structure layout"),
           ("cap.notify-present", VIRTIO_PCI_CAP_NOTIFY_CFG, "notification", "Notification capability"),
           ("cap.isr-present", VIRTIO_PCI_CAP_ISR_CFG, "ISR status", "ISR status capability"),
           ("cap.pci-cfg-present", VIRTIO_PCI_CAP_PCI_CFG, "PCI configuration access",
            "PCI configuration access capability"))
for _id, _type, _name, _section in PRESENT:
    check(_id, f"{_LAYOUT} / {_section}", f"The device presents at least one {_name} capability (cfg_type "
          f"{_type}).")(lambda t, cfg_type=_type, name=_name: _present(t.facts, cfg_type, name))


# ---- identity ---------------------------------------------------------------------------------------------------
@check("pci.device-id", _DISCOVERY, "The PCI Device ID is 0x1040 plus the virtio device id, or the Transitional "
       "Device ID of the device type (with the Subsystem Device ID giving the type).")
def _device_id(t: Target) -> str:
    f = t.facts
    if f.device_id >= 0x1040:
        return f"{f.device_id:#06x} = 0x1040 + {f.virtio_id}"
    expect(TRANSITIONAL.get(f.device_id) == f.virtio_id,
           f"Device ID {f.device_id:#06x} is below 0x1040 but not the Transitional Device ID of virtio device "
           f"{f.virtio_id} (the table lists {', '.join(f'{k:#06x}' for k in TRANSITIONAL)})", f.config[0:4])
    return f"transitional {f.device_id:#06x} for virtio device {f.virtio_id}"


@check("pci.revision", _DISCOVERY, "A non-transitional device has a PCI Revision ID of 1 or higher (a transitional "
       "one has 0).", SHOULD)
def _revision(t: Target) -> str:
    f = t.facts
    revision = f.config[0x08]
    if f.device_id < 0x1040:
        expect(revision == 0, f"transitional Device ID {f.device_id:#06x} with Revision ID {revision}", f.config[8:9])
    else:
        expect(revision >= 1, f"non-transitional Device ID {f.device_id:#06x} with Revision ID {revision}",
               f.config[8:9])
    return f"Revision ID {revision}"


@check("pci.subsystem-id", _DISCOVERY, "A non-transitional device has a PCI Subsystem Device ID of 0x40 or higher (a "
       "transitional one, the virtio device id).", SHOULD)
def _subsystem_id(t: Target) -> str:
    f = t.facts
    subsystem = struct.unpack_from("<H", f.config, 0x2E)[0]
    if f.device_id < 0x1040:
        expect(subsystem == f.virtio_id, f"transitional device with Subsystem Device ID {subsystem:#06x}",
               f.config[0x2E:0x30])
    else:
        expect(subsystem >= 0x40, f"Subsystem Device ID {subsystem:#06x} is below 0x40", f.config[0x2E:0x30])
    return f"Subsystem Device ID {subsystem:#06x}"


@check("pci.capability-list", "Virtio Transport Options / Virtio Over PCI Bus", "The function meets the PCI "
       "specification's capability list rules: Status bit 4 set, each pointer dword aligned at 0x40 or above, no "
       "loop.")
def _capability_list(t: Target) -> str:
    caps, problem = capabilities(t.facts.config)
    expect(problem is None, problem or "", t.facts.config[PCI_STATUS:PCI_STATUS + 2] +
           t.facts.config[PCI_CAPABILITY_LIST:PCI_CAPABILITY_LIST + 1] + b"".join(c.data[:2] for c in caps))
    return " ".join(f"{c.offset:#04x}:{c.cap_id:#04x}" for c in caps)


# ---- virtio structure capabilities ------------------------------------------------------------------------------
@check("cap.cap-len", _CAPS, "Each virtio structure capability's cap_len covers its extra fields: 16 bytes, 20 for "
       "the notification and PCI configuration access capabilities.")
def _cap_len(t: Target) -> str:
    for c in virtio_caps(t.facts.config):
        need = 20 if c.cfg_type in (VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_CAP_PCI_CFG) else 16
        expect(c.cap_len >= need, f"the cfg_type {c.cfg_type} capability at {c.at:#04x} has cap_len {c.cap_len}, "
               f"less than {need}", c.data)
    return f"{len(virtio_caps(t.facts.config))} capabilities"


@check("cap.common-layout", f"{_LAYOUT} / Common configuration structure layout",
       "The common configuration structure's offset is 4-byte aligned and its length holds the structure up to "
       "queue_device (56 bytes).")
def _common_layout(t: Target) -> str:
    c = first_cap(t.facts, VIRTIO_PCI_CAP_COMMON_CFG, "common configuration")
    expect(c.offset % 4 == 0, f"offset {c.offset:#x} is not 4-byte aligned", c.data)
    expect(c.length >= COMMON_CFG_MIN, f"length {c.length} is less than {COMMON_CFG_MIN}", c.data)
    return f"BAR {c.bar} offset {c.offset:#x} length {c.length}"


def _notify(t: Target) -> tuple[VirtioCap, int, bool]:
    c = first_cap(t.facts, VIRTIO_PCI_CAP_NOTIFY_CFG, "notification")
    if len(c.data) < 20:
        raise Skipped("the notification capability is shorter than 20 bytes (cap.cap-len reports it)")
    return c, struct.unpack_from("<I", c.data, 16)[0], bool(t.facts.features & bit(VIRTIO_F_NOTIFICATION_DATA))


@check("cap.notify-multiplier", f"{_LAYOUT} / Notification capability",
       "notify_off_multiplier is 0 or a power of 2 of at least 2 (a multiple of 4 when VIRTIO_F_NOTIFICATION_DATA "
       "is offered), and cap.offset is 2-byte aligned (4-byte with VIRTIO_F_NOTIFICATION_DATA).")
def _notify_multiplier(t: Target) -> str:
    c, mult, data = _notify(t)
    step = 4 if data else 2
    expect(mult == 0 or (mult >= step and not mult & (mult - 1)),
           f"notify_off_multiplier {mult} is neither 0 nor a power of 2 of at least {step}", c.data)
    expect(c.offset % step == 0, f"cap.offset {c.offset:#x} is not {step}-byte aligned", c.data)
    return f"multiplier {mult}, offset {c.offset:#x}"


@check("cap.notify-length", f"{_LAYOUT} / Notification capability",
       "cap.length is at least queue_notify_off * notify_off_multiplier + 2 (+ 4 with VIRTIO_F_NOTIFICATION_DATA) "
       "for every queue.")
def _notify_length(t: Target) -> str:
    c, mult, data = _notify(t)
    width = 4 if data else 2
    drv = t.driver()
    worst = 0
    for q in range(drv.num_queues):
        drv.write_common("queue_select", q)
        worst = max(worst, drv.read_common("queue_notify_off") * mult + width)
    expect(c.length >= worst, f"cap.length {c.length} is less than {worst}, the end of the last queue's notify "
           f"address", c.data)
    return f"length {c.length} >= {worst} for {drv.num_queues} queues"


@check("cap.device-cfg", f"{_LAYOUT} / Device-specific configuration",
       "A device type with a device-specific configuration presents a device-specific configuration capability "
       "(cfg_type 4), whose offset is 4-byte aligned.")
def _device_cfg(t: Target) -> str:
    caps = virtio_caps(t.facts.config, VIRTIO_PCI_CAP_DEVICE_CFG)
    kind = TYPES_WITH_CONFIG.get(t.facts.virtio_id)
    if not caps:
        expect(kind is None, f"the {kind} device presents no device-specific configuration capability")
        return f"none (virtio device type {t.facts.virtio_id})"
    c = caps[0]
    expect(c.offset % 4 == 0, f"offset {c.offset:#x} is not 4-byte aligned", c.data)
    return f"BAR {c.bar} offset {c.offset:#x} length {c.length}"


def _window(t: Target) -> tuple[vu.VfioUserClient, VirtioCap, VirtioCap]:
    win = first_cap(t.facts, VIRTIO_PCI_CAP_PCI_CFG, "PCI configuration access")
    common = first_cap(t.facts, VIRTIO_PCI_CAP_COMMON_CFG, "common configuration")
    if len(win.data) < 20:
        raise Skipped("the PCI configuration access capability is shorter than 20 bytes (cap.cap-len reports it)")
    return t.client(), win, common


def _point(client: vu.VfioUserClient, win: VirtioCap, bar: int, offset: int, length: int) -> None:
    cfg = vu.VFIO_PCI_CONFIG_REGION_INDEX
    client.region_write(cfg, win.at + 4, bytes([bar]))
    client.region_write(cfg, win.at + 8, struct.pack("<II", offset, length))


@check("cap.pci-cfg-read", f"{_LAYOUT} / PCI configuration access capability",
       "A read of pci_cfg_data reads cap.length bytes at cap.offset of BAR cap.bar into it.")
def _pci_cfg_read(t: Target) -> str:
    client, win, common = _window(t)
    cfg = vu.VFIO_PCI_CONFIG_REGION_INDEX
    seen = []
    for field, width in ((0x12, 2), (0x04, 4)):  # num_queues; device_feature (device_feature_select 0)
        client.region_write(common.bar, common.offset, struct.pack("<I", 0))
        direct = client.region_read(common.bar, common.offset + field, width)
        _point(client, win, common.bar, common.offset + field, width)
        through = client.region_read(cfg, win.at + 16, 4)[:width]
        expect(through == direct, f"{width} bytes at BAR {common.bar} offset {common.offset + field:#x} read "
               f"{direct.hex()} directly and {through.hex()} through pci_cfg_data", through)
        seen.append(direct.hex())
    return "num_queues and device_feature read the same through the window: " + ", ".join(seen)


@check("cap.pci-cfg-write", f"{_LAYOUT} / PCI configuration access capability",
       "A write of pci_cfg_data writes its first cap.length bytes at cap.offset of BAR cap.bar.")
def _pci_cfg_write(t: Target) -> str:
    client, win, common = _window(t)
    cfg = vu.VFIO_PCI_CONFIG_REGION_INDEX
    for value in (1, 0):  # device_feature_select, through the window, read back directly
        _point(client, win, common.bar, common.offset, 4)
        client.region_write(cfg, win.at + 16, struct.pack("<I", value))
        got = client.region_read(common.bar, common.offset, 4)
        expect(got == struct.pack("<I", value), f"device_feature_select written {value} through pci_cfg_data reads "
               f"{got.hex()} directly", got)
    return "device_feature_select written through the window reads back directly"


@check("msix.table-size", _MSIX, "A device with an MSI-X capability supports at least 2 and at most 0x800 vectors "
       "(Table Size).", SHOULD)
def _msix_table_size(t: Target) -> str:
    msix = [c for c in capabilities(t.facts.config)[0] if c.cap_id == PCI_CAP_ID_MSIX]
    if not msix:
        raise Skipped("the function has no MSI-X capability")
    size = (struct.unpack_from("<H", msix[0].data, 2)[0] & 0x7FF) + 1
    if not 2 <= size <= 0x800:
        raise Failed(f"MSI-X Table Size {size}", msix[0].data[:4])
    return f"{size} vectors"
