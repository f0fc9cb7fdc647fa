"""virtio-crypto (virtio device id 20), the published virtio standard's "Crypto Device", and its :data:`KIND`.

``constants`` (spec names and numbers), ``codec`` (wire format -> request values), ``services``
(``cryptography``-backed sessions per service), ``sessions`` (session table), ``device``
(:class:`CryptoDevice`: config space, feature bits, request handling).

:data:`KIND` registers it (``vfu_virtio.devices.registry``): ``vfu-virtio crypto`` with ``--queues``,
``--max-sessions`` and ``--max-size``; the store keeps its settings only (no tables of its own).
"""
from __future__ import annotations

from vfu_virtio.devices.registry import DeviceKind, Option
from vfu_virtio.store import Namespace

from .constants import VIRTIO_ID_CRYPTO
from .device import MAX_DATAQUEUES, CryptoDevice

__all__ = ["CryptoDevice", "KIND"]


def _build(ns: Namespace, **settings) -> CryptoDevice:
    """A :class:`CryptoDevice` with ``settings``; sessions are volatile, so ``ns`` holds nothing else."""
    return CryptoDevice(**settings)


KIND = DeviceKind(
    name="crypto",
    virtio_id=VIRTIO_ID_CRYPTO,
    pci_class=(0x00, 0xFF, 0x00),  # class 0x00ff00, as QEMU's virtio-crypto-pci presents it
    summary="virtio-crypto: cipher, hash, MAC, AEAD and akcipher sessions computed with cryptography",
    factory=_build,
    options=(
        Option("--queues", "max_dataqueues", "Number of data queues (max_dataqueues); the controlq comes "
               "after them.", 4, range=(1, MAX_DATAQUEUES), unit="data queues"),
        Option("--max-sessions", "max_sessions", "Cap on live sessions; create-session answers an error when "
               "it is reached.", 1024, range=(1, 1 << 20), unit="sessions"),
        Option("--max-size", "max_size", "max_size: largest request payload in bytes the device accepts.",
               1 << 20, range=(1, 1 << 30), unit="bytes"),
    ),
    client_module="vfu_virtio.devices.crypto.driver",
    guest_attachable=True,
)
