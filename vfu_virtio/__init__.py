"""vfu-virtio: a virtio-pci function served over vfio-user by libvfio-user."""
