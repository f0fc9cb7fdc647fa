"""The real client: QEMU's ``vfio-user-pci`` and a Linux guest driving vfu-virtio's devices.

- ``kit``: where scripts/setup put QEMU, the guest kernel and modules, the guest program; the accelerator.
- ``initramfs``: the guest's initramfs (busybox, ``guest/init``, ``guest/afalg.c``'s binary, modules),
  built in Python and cached by content hash.
- ``machine``: one QEMU boot (shared memfd RAM, ``vfio-user-pci`` or QEMU's own virtio-crypto-pci),
  console capture and time limit.
- ``report``: the guest's ``VFU-*`` console markers, parsed.
- ``scenario``: the run shared by tests, demo and benchmark, and what the host expects of it; the device
  servers of a boot (every guest-attachable kind of the registry) are ``vfu_virtio.client.spawn`` servers.
- ``demo`` / ``python -m vfu_virtio.qemu demo``: the main job.
"""
