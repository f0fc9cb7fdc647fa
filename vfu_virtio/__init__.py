"""vfu-virtio: a virtio-pci function served over vfio-user by libvfio-user.

``__version__`` is the package version (``pyproject.toml`` reads it from here; ``vfu-virtio --version`` prints it).
"""

__version__ = "0.2.0"
