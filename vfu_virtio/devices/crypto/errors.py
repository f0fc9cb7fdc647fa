"""The one exception of the crypto device: a request answered with a :class:`~.values.Status`.

Parsing (a profile's codec), session building and execution (``services``, ``sessions``) raise
:class:`CryptoStatus`; the device catches it and the profile's codec writes the status into the request's outcome
("Operation Status"). It never escapes the device: every request is completed in-band (AMB-26).
"""
from __future__ import annotations

from .values import Status


class CryptoStatus(Exception):
    """Answer the current request with ``status`` (any :class:`~.values.Status` but OK) because of ``why``.

    ``request``: what a codec whose status placement depends on the request kind parsed before the fault (a
    :class:`~.values.DataRequest`, possibly with ``params`` and ``op`` None); the device hands it to the codec's
    ``data_outcome`` in place of the request that did not parse. None (the default) when there is nothing.
    ``driver_check``: the id of the driver requirement the request broke (``vfu_virtio.virtio.audit.DRIVER_CHECKS``),
    when that is why; the device reports it to the driver audit.
    """

    def __init__(self, status: Status, why: str, request=None, driver_check: str | None = None):
        super().__init__(f"{status.name}: {why}")
        self.status = status
        self.why = why
        self.request = request
        self.driver_check = driver_check
