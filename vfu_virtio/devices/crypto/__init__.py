"""virtio-crypto (virtio device id 20), the published virtio standard's "Crypto Device".

``constants`` (spec names and numbers), ``codec`` (wire format -> request values), ``services``
(``cryptography``-backed sessions per service), ``sessions`` (session table), ``device``
(:class:`CryptoDevice`: config space, feature bits, request handling).
"""
from .device import CryptoDevice

__all__ = ["CryptoDevice"]
