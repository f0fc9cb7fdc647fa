"""Where everything lives: PCI identity, BARs, virtio structures and MSI-X (the one place to look).

BAR0, 32-bit memory BAR, 16 KiB, trap-and-emulate (no mmap areas):

    0x0000  common configuration (struct virtio_pci_common_cfg, 64 bytes used)   cfg_type 1
    0x1000  ISR status (1 byte)                                                  cfg_type 3
    0x2000  device-specific configuration (device's struct, < 4 KiB)             cfg_type 4
    0x3000  notifications: queue q is kicked at 0x3000 + q * NOTIFY_OFF_MULTIPLIER  cfg_type 2

BAR2, 32-bit memory BAR, 4 KiB: the MSI-X table at 0x000 (16 bytes per vector, at most 128 vectors)
and the MSI-X PBA at 0x800. Vector 0 is for configuration changes, vector q+1 for virtqueue q: one
vector per queue plus config ("MSI-X Vector Configuration").

Config space capability chain (offsets chosen by us, in this order): common cfg 0x40, notify 0x50,
ISR 0x64, device cfg 0x74, PCI cfg access 0x84, MSI-X 0x98.
"""

# PCI identity ("PCI Device Discovery"): vendor 0x1AF4, device 0x1040 + virtio device id, revision 1
PCI_REVISION = 0x01
PCI_CLASS_OTHERS = (0x00, 0xFF, 0x00)  # base, sub, prog-if: class 0x00ff00, as QEMU's virtio-crypto-pci

VIRTIO_BAR = 0
VIRTIO_BAR_SIZE = 0x4000
COMMON_CFG_OFFSET = 0x0000
COMMON_CFG_LENGTH = 0x40
ISR_OFFSET = 0x1000
ISR_LENGTH = 0x1
DEVICE_CFG_OFFSET = 0x2000
DEVICE_CFG_MAX = 0x1000
NOTIFY_OFFSET = 0x3000
NOTIFY_OFF_MULTIPLIER = 4
NOTIFY_LENGTH = 0x1000

MSIX_BAR = 2
MSIX_BAR_SIZE = 0x1000
MSIX_TABLE_OFFSET = 0x000
MSIX_PBA_OFFSET = 0x800
MSIX_MAX_VECTORS = 128
MSIX_ENTRY_SIZE = 16

CAP_COMMON = 0x40
CAP_NOTIFY = 0x50
CAP_ISR = 0x64
CAP_DEVICE = 0x74
CAP_PCI_CFG = 0x84
CAP_MSIX = 0x98
