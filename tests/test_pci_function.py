"""The PCI function as a vfio-user client sees it: config space bytes, capability chain, BARs, IRQs.

Source: virtio v1.4 "PCI Device Discovery", "Virtio Structure PCI Capabilities", "MSI-X Vector
Configuration"; the layout promised in vfu_virtio/pci/layout.py. Driven over the real socket with the
project's vfio-user client against a real `vfu-virtio crypto` process.
"""
import struct

import pytest

from vfu_virtio.client.vfio_user import VfioUserClient
from vfu_virtio.pci import layout

CFG = 7  # VFU_PCI_DEV_CFG_REGION_IDX
VFIO_PCI_MSIX_IRQ_INDEX = 2
VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE, VFIO_REGION_INFO_FLAG_MMAP = 1, 2, 4


@pytest.fixture
def client(serve):
    server = serve("crypto", "--queues", "3")
    c = VfioUserClient(server.socket)
    yield c
    c.close()


def walk_caps(cfg: bytes) -> list[tuple[int, int]]:
    """(offset, cap id) along the capability list, bounded by the 48 slots config space can hold."""
    out, pos = [], cfg[0x34]
    for _ in range(48):
        if not pos:
            break
        out.append((pos, cfg[pos]))
        pos = cfg[pos + 1]
    return out


@pytest.mark.ring_neutral
def test_identity(client):
    cfg = client.region_read(CFG, 0, 256)
    vendor, device, _cmd, status, rev = struct.unpack_from("<HHHHB", cfg, 0)
    assert (vendor, device) == (0x1AF4, 0x1040 + 20)
    assert rev >= 1  # modern-only device ("PCI Device Discovery")
    assert status & 0x10  # capability list present
    assert cfg[0x09:0x0C] == bytes([0x00, 0xFF, 0x00])  # prog-if, sub-class, base class: 0x00ff00 as QEMU
    ssvid, ssid = struct.unpack_from("<HH", cfg, 0x2C)
    assert ssvid == 0x1AF4 and ssid >= 0x40


@pytest.mark.ring_neutral
def test_capability_chain(client):
    cfg = client.region_read(CFG, 0, 256)
    chain = walk_caps(cfg)
    vendor = [off for off, cid in chain if cid == 0x09]
    assert [off for off, cid in chain if cid == 0x11] == [layout.CAP_MSIX]
    found = {}
    for off in vendor:
        cap_len, cfg_type, bar = cfg[off + 2], cfg[off + 3], cfg[off + 4]
        offset, length = struct.unpack_from("<II", cfg, off + 8)
        found[cfg_type] = (off, cap_len, bar, offset, length)
    assert found[1] == (layout.CAP_COMMON, 16, 0, 0x0000, 0x40)
    assert found[2][:4] == (layout.CAP_NOTIFY, 20, 0, 0x3000)
    assert found[2][4] == 4 * layout.NOTIFY_OFF_MULTIPLIER  # 3 data queues + controlq
    assert struct.unpack_from("<I", cfg, layout.CAP_NOTIFY + 16)[0] == layout.NOTIFY_OFF_MULTIPLIER
    assert found[3] == (layout.CAP_ISR, 16, 0, 0x1000, 1)
    assert found[4][:4] == (layout.CAP_DEVICE, 16, 0, 0x2000) and found[4][4] >= 56
    assert found[5][:2] == (layout.CAP_PCI_CFG, 20)
    # MSI-X: one vector per queue plus config; table and PBA in BAR2
    ctrl, table, pba = struct.unpack_from("<HII", cfg, layout.CAP_MSIX + 2)
    assert (ctrl & 0x7FF) + 1 == 4 + 1
    assert (table & 7, table & ~7) == (layout.MSIX_BAR, layout.MSIX_TABLE_OFFSET)
    assert (pba & 7, pba & ~7) == (layout.MSIX_BAR, layout.MSIX_PBA_OFFSET)


@pytest.mark.ring_neutral
def test_bars_are_memory_bars(client):
    cfg = client.region_read(CFG, 0, 256)
    for bar, size in ((layout.VIRTIO_BAR, layout.VIRTIO_BAR_SIZE), (layout.MSIX_BAR, layout.MSIX_BAR_SIZE)):
        reg = struct.unpack_from("<I", cfg, 0x10 + 4 * bar)[0]
        assert reg & 1 == 0, f"BAR{bar} must be a memory BAR"
        info = client.region_info(bar)
        assert info.size == size
        assert info.flags & VFIO_REGION_INFO_FLAG_READ and info.flags & VFIO_REGION_INFO_FLAG_WRITE
        assert not info.flags & VFIO_REGION_INFO_FLAG_MMAP  # trap-and-emulate
    for unused in (1, 3, 4, 5):
        assert client.region_info(unused).size == 0
    # BAR sizing as a BIOS does it: write all ones, read back the size mask
    client.region_write(CFG, 0x10, b"\xff\xff\xff\xff")
    mask = struct.unpack("<I", client.region_read(CFG, 0x10, 4))[0]
    assert mask & 0xFFFFFFF0 == (~(layout.VIRTIO_BAR_SIZE - 1)) & 0xFFFFFFFF


@pytest.mark.ring_neutral
def test_msix_irq_count_and_pba(client):
    assert client.irq_info(VFIO_PCI_MSIX_IRQ_INDEX).count == 5
    assert client.region_read(layout.MSIX_BAR, layout.MSIX_PBA_OFFSET, 8) == bytes(8)
    # the table keeps what a client programs into it
    entry = struct.pack("<QII", 0xFEE00000, 0x4021, 0)
    client.region_write(layout.MSIX_BAR, 16, entry)
    assert client.region_read(layout.MSIX_BAR, 16, 16) == entry


@pytest.mark.ring_neutral
def test_pci_cfg_access_window(client):
    """"PCI configuration access capability": bar/offset/length select a BAR0 window read through
    pci_cfg_data. Reading num_queues (common cfg offset 18, 2 bytes) through it."""
    base = layout.CAP_PCI_CFG
    client.region_write(CFG, base + 4, bytes([0]))
    client.region_write(CFG, base + 8, struct.pack("<II", 18, 2))
    assert struct.unpack("<H", client.region_read(CFG, base + 16, 2))[0] == 4
    # device_feature through the window: select word 1, VERSION_1 is bit 32
    client.region_write(CFG, base + 8, struct.pack("<II", 0, 4))
    client.region_write(CFG, base + 16, struct.pack("<I", 1))
    client.region_write(CFG, base + 8, struct.pack("<II", 4, 4))
    assert struct.unpack("<I", client.region_read(CFG, base + 16, 4))[0] & 1
