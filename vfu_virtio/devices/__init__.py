"""Device personalities (one folder each: config layout, request codec, handler) and their factories.

``DEVICE_KINDS[name](state=..., instance=..., **options)`` builds a ready
:class:`~vfu_virtio.virtio.device.VirtioDevice`; the CLI and the QEMU harness use these.
"""


def make_crypto(state: str, instance: str = "0", **options):
    """A virtio-crypto device (id 20); ``options`` are CryptoDevice's keyword arguments."""
    from .crypto import CryptoDevice
    return CryptoDevice(**options)


DEVICE_KINDS = {"crypto": make_crypto}
