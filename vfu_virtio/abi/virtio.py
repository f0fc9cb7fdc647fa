"""Numbers of the virtio standard's basic facilities and of its PCI transport, for both sides.

Source: virtio v1.4, "Basic Facilities of a Virtio Device" ("Device Status Field", "Feature Bits"),
"Reserved Feature Bits", and "Virtio Over PCI Bus" ("Virtio Structure PCI Capabilities", "Common configuration
structure layout", "PCI Device Discovery", "MSI-X Vector Configuration").
"""

# device_status bits ("Device Status Field")
ACKNOWLEDGE = 1
DRIVER = 2
DRIVER_OK = 4
FEATURES_OK = 8
DEVICE_NEEDS_RESET = 64
FAILED = 128

# Reserved feature bits ("Reserved Feature Bits"): bit numbers
VIRTIO_F_INDIRECT_DESC = 28
VIRTIO_F_EVENT_IDX = 29
VIRTIO_F_VERSION_1 = 32
VIRTIO_F_ACCESS_PLATFORM = 33
VIRTIO_F_RING_PACKED = 34
VIRTIO_F_IN_ORDER = 35
VIRTIO_F_ORDER_PLATFORM = 36
VIRTIO_F_SR_IOV = 37
VIRTIO_F_NOTIFICATION_DATA = 38
VIRTIO_F_NOTIF_CONFIG_DATA = 39
VIRTIO_F_RING_RESET = 40

# Virtio structure PCI capability cfg_type ("Virtio Structure PCI Capabilities")
VIRTIO_PCI_CAP_COMMON_CFG = 1
VIRTIO_PCI_CAP_NOTIFY_CFG = 2
VIRTIO_PCI_CAP_ISR_CFG = 3
VIRTIO_PCI_CAP_DEVICE_CFG = 4
VIRTIO_PCI_CAP_PCI_CFG = 5

# ISR status bits ("ISR status capability")
VIRTIO_PCI_ISR_QUEUE = 1
VIRTIO_PCI_ISR_CONFIG = 2

VIRTIO_MSI_NO_VECTOR = 0xFFFF

#: struct virtio_pci_common_cfg: field -> (offset, width in bytes) ("Common configuration structure layout")
COMMON_CFG = {
    "device_feature_select": (0, 4), "device_feature": (4, 4),
    "driver_feature_select": (8, 4), "driver_feature": (12, 4),
    "msix_config": (16, 2), "num_queues": (18, 2),
    "device_status": (20, 1), "config_generation": (21, 1),
    "queue_select": (22, 2), "queue_size": (24, 2), "queue_msix_vector": (26, 2),
    "queue_enable": (28, 2), "queue_notify_off": (30, 2),
    "queue_desc": (32, 8), "queue_driver": (40, 8), "queue_device": (48, 8),
    "queue_notif_config_data": (56, 2), "queue_reset": (58, 2),
    "admin_queue_index": (60, 2), "admin_queue_num": (62, 2),
}

# PCI ids ("PCI Device Discovery")
VIRTIO_PCI_VENDOR_ID = 0x1AF4
VIRTIO_PCI_DEVICE_ID_BASE = 0x1040  # + virtio device id, modern-only devices


def bit(n: int) -> int:
    """The feature mask of feature bit number ``n``."""
    return 1 << n
