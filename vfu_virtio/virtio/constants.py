"""Constants of the virtio standard shared by the device side and the driver side.

Source: virtio v1.4, "Basic Facilities of a Virtio Device" (device_status, feature bits) and
"Reserved Feature Bits"; "Virtio Over PCI Bus" (capability cfg_type values, VIRTIO_MSI_NO_VECTOR).
"""

# device_status bits ("Device Status Field")
ACKNOWLEDGE = 1
DRIVER = 2
DRIVER_OK = 4
FEATURES_OK = 8
DEVICE_NEEDS_RESET = 64
FAILED = 128

# Reserved feature bits ("Reserved Feature Bits")
VIRTIO_F_INDIRECT_DESC = 28
VIRTIO_F_EVENT_IDX = 29
VIRTIO_F_VERSION_1 = 32
VIRTIO_F_ACCESS_PLATFORM = 33
VIRTIO_F_RING_PACKED = 34

# Virtio structure PCI capability cfg_type ("Virtio Structure PCI Capabilities")
VIRTIO_PCI_CAP_COMMON_CFG = 1
VIRTIO_PCI_CAP_NOTIFY_CFG = 2
VIRTIO_PCI_CAP_ISR_CFG = 3
VIRTIO_PCI_CAP_DEVICE_CFG = 4
VIRTIO_PCI_CAP_PCI_CFG = 5

VIRTIO_MSI_NO_VECTOR = 0xFFFF

# Split virtqueue descriptor flags ("The Virtqueue Descriptor Table")
VIRTQ_DESC_F_NEXT = 1
VIRTQ_DESC_F_WRITE = 2
VIRTQ_DESC_F_INDIRECT = 4
# avail.flags / used.flags
VIRTQ_AVAIL_F_NO_INTERRUPT = 1
VIRTQ_USED_F_NO_NOTIFY = 1

# PCI ids ("PCI Device Discovery")
VIRTIO_PCI_VENDOR_ID = 0x1AF4
VIRTIO_PCI_DEVICE_ID_BASE = 0x1040  # + virtio device id, modern-only devices


def bit(n: int) -> int:
    """The feature mask of feature bit number ``n``."""
    return 1 << n
