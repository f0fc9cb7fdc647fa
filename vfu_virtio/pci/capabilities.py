"""Byte images of the PCI capabilities this function carries.

``struct virtio_pci_cap`` (16 bytes, "Virtio Structure PCI Capabilities"):
    0 cap_vndr u8 (0x09)  1 cap_next u8  2 cap_len u8  3 cfg_type u8  4 bar u8  5 id u8
    6 padding[2]          8 offset le32  12 length le32
``struct virtio_pci_notify_cap`` appends notify_off_multiplier le32 (20 bytes);
``struct virtio_pci_cfg_cap`` appends pci_cfg_data u8[4] (20 bytes).
MSI-X capability (12 bytes, PCI Local Bus 6.8.2): id 0x11, next, Message Control le16 (table size - 1),
Table Offset/BIR le32, PBA Offset/BIR le32.
"""
import struct

VIRTIO_PCI_CAP = struct.Struct("<BBBBBB2xII")
VIRTIO_PCI_NOTIFY_CAP = struct.Struct("<BBBBBB2xIII")
VIRTIO_PCI_CFG_CAP = struct.Struct("<BBBBBB2xII4s")
MSIX_CAP = struct.Struct("<BBHII")

PCI_CAP_ID_VNDR = 0x09
PCI_CAP_ID_MSIX = 0x11

# offsets inside struct virtio_pci_cfg_cap
CFG_CAP_BAR = 4
CFG_CAP_OFFSET = 8
CFG_CAP_LENGTH = 12
CFG_CAP_DATA = 16


def virtio_cap(cfg_type: int, bar: int, offset: int, length: int) -> bytes:
    """A 16-byte ``struct virtio_pci_cap`` (cap_next left 0: libvfio-user links the list)."""
    return VIRTIO_PCI_CAP.pack(PCI_CAP_ID_VNDR, 0, VIRTIO_PCI_CAP.size, cfg_type, bar, 0, offset, length)


def notify_cap(bar: int, offset: int, length: int, multiplier: int) -> bytes:
    """A 20-byte ``struct virtio_pci_notify_cap`` (cfg_type 2)."""
    return VIRTIO_PCI_NOTIFY_CAP.pack(PCI_CAP_ID_VNDR, 0, VIRTIO_PCI_NOTIFY_CAP.size, 2, bar, 0,
                                      offset, length, multiplier)


def pci_cfg_cap() -> bytes:
    """A 20-byte ``struct virtio_pci_cfg_cap`` (cfg_type 5), window fields zero."""
    return VIRTIO_PCI_CFG_CAP.pack(PCI_CAP_ID_VNDR, 0, VIRTIO_PCI_CFG_CAP.size, 5, 0, 0, 0, 0, b"\0" * 4)


def msix_cap(vectors: int, table_bar: int, table_offset: int, pba_bar: int, pba_offset: int) -> bytes:
    """A 12-byte MSI-X capability with ``vectors`` entries (Message Control: N-1, disabled, unmasked)."""
    return MSIX_CAP.pack(PCI_CAP_ID_MSIX, 0, vectors - 1, table_offset | table_bar, pba_offset | pba_bar)
