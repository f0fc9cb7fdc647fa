"""The one exception of the crypto device: a request answered with a VIRTIO_CRYPTO_STATUS value.

Parsing (``codec``), session building and execution (``services``, ``sessions``) raise
:class:`CryptoStatus`; the device catches it and writes ``status`` into the request's outcome ("Operation
Status"). It never escapes the device: every request is completed in-band (AMB-26).
"""
from __future__ import annotations

from .constants import STATUS_NAMES


class CryptoStatus(Exception):
    """Answer the current request with ``status`` (a ``VIRTIO_CRYPTO_*`` status code, 1..6) because of ``why``."""

    def __init__(self, status: int, why: str):
        super().__init__(f"{STATUS_NAMES.get(status, status)}: {why}")
        self.status = status
        self.why = why
