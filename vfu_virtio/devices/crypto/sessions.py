"""The device's session table: ids, lookup by service, a configurable cap (AMB-11).

Session ids come from a device-wide 64-bit counter that starts at 1 and never repeats during the
process's lifetime (0 is never issued), so a stale id held by a driver across a device reset can never
name someone else's session. A session belongs to one service; looking it up for another service is the
same as not finding it.
"""
from __future__ import annotations

from .constants import (VIRTIO_CRYPTO_ERR, VIRTIO_CRYPTO_INVSESS, VIRTIO_CRYPTO_NOSPC, SERVICE_NAMES)
from .errors import CryptoStatus


class SessionTable:
    """At most ``max_sessions`` live sessions (objects with a ``service`` attribute) keyed by id."""

    def __init__(self, max_sessions: int):
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, not {max_sessions}")
        self.max_sessions = max_sessions
        self._sessions: dict[int, object] = {}
        self._next_id = 1

    def __len__(self) -> int:
        return len(self._sessions)

    def add(self, session, nospc: bool) -> int:
        """Store ``session`` and return its new id.

        When the table is full raises :class:`CryptoStatus` NOSPC if ``nospc`` (VIRTIO_CRYPTO_F_REVISION_1
        negotiated: "no free session ID (only when the VIRTIO_CRYPTO_F_REVISION_1 feature bit is
        negotiated)"), else ERR.
        """
        if len(self._sessions) >= self.max_sessions:
            raise CryptoStatus(VIRTIO_CRYPTO_NOSPC if nospc else VIRTIO_CRYPTO_ERR,
                               f"all {self.max_sessions} sessions are in use")
        session_id = self._next_id
        self._next_id += 1
        self._sessions[session_id] = session
        return session_id

    def get(self, session_id: int, service: int):
        """The live session ``session_id`` of ``service``; INVSESS if unknown, destroyed or of another service."""
        session = self._sessions.get(session_id)
        if session is None or session.service != service:
            raise CryptoStatus(VIRTIO_CRYPTO_INVSESS,
                               f"no live {SERVICE_NAMES.get(service, service)} session {session_id}")
        return session

    def remove(self, session_id: int, service: int) -> None:
        """Destroy session ``session_id`` of ``service``; ERR if there is no such live session (AMB-11)."""
        session = self._sessions.get(session_id)
        if session is None or session.service != service:
            raise CryptoStatus(VIRTIO_CRYPTO_ERR,
                               f"destroy of unknown {SERVICE_NAMES.get(service, service)} session {session_id}")
        del self._sessions[session_id]

    def clear(self) -> None:
        """Drop every session (device reset, AMB-29); the id counter keeps counting."""
        self._sessions.clear()
