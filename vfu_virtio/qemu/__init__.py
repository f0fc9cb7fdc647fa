"""The real clients: QEMU's ``vfio-user-pci``, Linux guests and DPDK driving vfu-virtio's devices.

- ``kit``: where scripts/setup put QEMU, the guest kernels and their modules, the guest programs, DPDK; the
  accelerator; which kernel a kit boots.
- ``initramfs``: the guest's initramfs images per profile (``linux``: busybox, ``guest/init``, ``guest/linux.sh``,
  ``afalg``, ``pkey``, modules; ``dpdk``: ``guest/dpdk.sh``, DPDK, ``uio_pci_generic``), built in Python and
  cached by content hash; per-boot files appended.
- ``dpdk_image``: which files of the kit's unpacked DPDK packages the ``dpdk`` image holds.
- ``machine``: one QEMU boot (shared memfd RAM, ``vfio-user-pci`` or QEMU's own virtio-crypto-pci; the machine
  shape of each scenario), console capture and time limit.
- ``report``: the guest's ``VFU-*`` console markers, parsed.
- ``scenario``: the ``linux`` scenario's plan and the boot shared by tests, demo and benchmarks; the device
  servers of a boot (every guest-attachable kind of the registry) are ``vfu_virtio.client.spawn`` servers.
- ``dpdk``: the ``dpdk`` scenario's plan (crypto-perf vectors computed with cryptography) and the parsers of
  dpdk-test's and crypto-perf's output.
- ``checks``: the checks of both scenarios, run identically on every device model, and their expected outcomes.
- ``compare`` / ``python -m vfu_virtio.qemu compare``: every scenario on vfu-virtio and QEMU's own device, on every
  kit kernel, printed side by side.
- ``demo`` / ``python -m vfu_virtio.qemu demo``: the main job.
"""
