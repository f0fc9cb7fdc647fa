"""The one exception of the crypto device: a request answered with a :class:`~.values.Status`.

Parsing (a profile's codec), session building and execution (``services``, ``sessions``) raise
:class:`CryptoStatus`; the device catches it and the profile's codec writes the status into the request's outcome
("Operation Status"). It never escapes the device: every request is completed in-band (AMB-26).
"""
from __future__ import annotations

from .values import Status


class CryptoStatus(Exception):
    """Answer the current request with ``status`` (any :class:`~.values.Status` but OK) because of ``why``.

    ``driver_check``: the id of the driver requirement the request broke (``vfu_virtio.virtio.audit.DRIVER_CHECKS``),
    when that is why; the device reports it to the driver audit.
    """

    def __init__(self, status: Status, why: str, driver_check: str | None = None):
        super().__init__(f"{status.name}: {why}")
        self.status = status
        self.why = why
        self.driver_check = driver_check
