"""virtio-crypto (virtio device id 20): profiles of the crypto device on one set of ``cryptography`` services.

``values`` (profile-neutral request values), ``profile`` (what a profile is), ``profiles`` (the published standard
and plug-ins), ``services`` (``cryptography``-backed sessions per service), ``sessions`` (session table), ``device``
(:class:`CryptoDevice`: queues, request flow, bulk work on worker threads), ``factory`` (a device on a store namespace).
"""
from .device import CryptoDevice

__all__ = ["CryptoDevice"]
