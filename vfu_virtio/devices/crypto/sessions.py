"""The device's session table: ids, lookup by service, a configurable cap (AMB-11).

Session ids come from a device-wide 64-bit counter that starts at 1 and never repeats during the
process's lifetime (0 is never issued), so a stale id held by a driver across a device reset can never
name someone else's session. A session belongs to one service; looking it up for another service is the
same as not finding it. The table is used by the event-loop thread only; a data queue's worker thread holds
the session object of its request, never the table.
"""
from __future__ import annotations

from .errors import CryptoStatus
from .values import Service, Status


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

    @property
    def created(self) -> int:
        """Sessions created since the table was made (the id counter; destroyed and reset ones included)."""
        return self._next_id - 1

    def add(self, session) -> int:
        """Store ``session`` and return its new id; :class:`CryptoStatus` NOSPC when the table is full (a profile
        may answer it otherwise: the standard says ERR without VIRTIO_CRYPTO_F_REVISION_1)."""
        if len(self._sessions) >= self.max_sessions:
            raise CryptoStatus(Status.NOSPC, f"all {self.max_sessions} sessions are in use")
        session_id = self._next_id
        self._next_id += 1
        self._sessions[session_id] = session
        return session_id

    def get(self, session_id: int, service: Service):
        """The live session ``session_id`` of ``service``; INVSESS if unknown, destroyed or of another service."""
        session = self._sessions.get(session_id)
        if session is None or session.service != service:
            raise CryptoStatus(Status.INVSESS, f"no live {service.name} session {session_id}",
                               driver_check="crypto-invalid-session")
        return session

    def remove(self, session_id: int, service: Service) -> None:
        """Destroy session ``session_id`` of ``service``; ERR if there is no such live session (AMB-11)."""
        session = self._sessions.get(session_id)
        if session is None or session.service != service:
            raise CryptoStatus(Status.ERR, f"destroy of unknown {service.name} session {session_id}",
                               driver_check="crypto-invalid-session")
        del self._sessions[session_id]

    def clear(self) -> None:
        """Drop every session (device reset, AMB-29); the id counter keeps counting."""
        self._sessions.clear()
