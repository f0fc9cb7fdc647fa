"""The real client: QEMU's ``vfio-user-pci`` and a Linux guest driving vfu-virtio devices.

``kit`` finds what ``scripts/setup`` provisioned (QEMU, kernel, modules, the guest program) and builds
the initramfs; ``harness`` starts device servers, boots QEMU with them attached, collects the guest's
``VFU-*`` console markers and always cleans up its own processes; ``python -m vfu_virtio.vm demo`` is
the main job.
"""
