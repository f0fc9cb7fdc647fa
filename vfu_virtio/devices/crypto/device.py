"""The virtio-crypto device personality (virtio device id 20): queues, sessions, the request flow.

Everything wire-specific comes from the profile the device is made with (``profile``, a name from
:mod:`.profiles`; the published standard by default): configuration space, feature bits and their dependency rule,
the codec that parses requests and writes their outcomes (status placement, used lengths), the service table. The
device looks nothing else up by name.

Queues ("Virtqueues"): data queues ``0 .. max_dataqueues-1``, the controlq last (index ``max_dataqueues``).
Sessions are device-wide: any data queue may use any session (AMB-10).

Request flow: the codec parses every request on the event-loop thread, which also looks up (or, stateless, builds)
the session and answers parse and lookup faults at once. A chain without any writable byte cannot carry a status:
it completes with used length 0 and changes nothing (AMB-33).
"""
from __future__ import annotations

from vfu_virtio.abi.crypto import VIRTIO_ID_CRYPTO
from vfu_virtio.virtio.chain import DescriptorChain, ChainWriter
from vfu_virtio.virtio.device import VirtioDevice

from . import profiles
from .errors import CryptoStatus
from .profile import Codec
from .services import Session
from .sessions import SessionTable
from .values import DataRequest, DestroySession, Limits, Status

MAX_DATAQUEUES = 64


class CryptoDevice(VirtioDevice):
    """A virtio-crypto device backed by ``cryptography``.

    ``max_dataqueues`` 1..64 data queues; ``max_sessions`` live sessions at most (create-session answers
    NOSPC, which the standard answers ERR without REVISION_1, when reached); ``max_size`` bytes of variable-length
    fields per request (AMB-13); ``max_cipher_key_len``/``max_auth_key_len`` in bytes (AMB-14); ``profile`` the
    profile name. Raises ValueError for a value out of range or an unknown profile.
    """

    device_id = VIRTIO_ID_CRYPTO
    name = "crypto"

    def __init__(self, max_dataqueues: int = 4, max_sessions: int = 1024, max_size: int = 1 << 20,
                 max_cipher_key_len: int = 64, max_auth_key_len: int = 512, profile: str = profiles.DEFAULT):
        super().__init__()
        if not 1 <= max_dataqueues <= MAX_DATAQUEUES:
            raise ValueError(f"max_dataqueues must be 1..{MAX_DATAQUEUES}, not {max_dataqueues}")
        for name, value in (("max_size", max_size), ("max_cipher_key_len", max_cipher_key_len),
                            ("max_auth_key_len", max_auth_key_len)):
            if not 1 <= value < 1 << 32:
                raise ValueError(f"{name} must be 1..{(1 << 32) - 1} bytes, not {value}")
        self.profile = profiles.get(profile)
        self.max_dataqueues = max_dataqueues
        self.num_queues = max_dataqueues + 1
        self.controlq = max_dataqueues
        self.limits = Limits(max_size, max_cipher_key_len, max_auth_key_len)
        self.sessions = SessionTable(max_sessions)
        self.codec: Codec = self.profile.new_codec(0, self.limits)

    # ---- VirtioDevice contract ----------------------------------------------------------------------------
    def device_features(self) -> int:
        """The profile's feature bits (the standard: REVISION_1 and the five *_STATELESS_MODE bits, 0..5)."""
        return self.profile.features

    def config_space(self) -> bytes:
        """The profile's configuration layout (the standard: ``struct virtio_crypto_config``, 56 bytes)."""
        return self.profile.config_space(self.max_dataqueues, self.limits)

    def refuse_features(self, features: int) -> str | None:
        """The profile's dependency rule (the standard: each *_STATELESS_MODE bit requires REVISION_1)."""
        return self.profile.refuse_features(features)

    def activate(self, features: int) -> None:
        """Pick the wire layout for the negotiated bits (FEATURES_OK already refused illegal sets)."""
        super().activate(features)
        self.codec = self.profile.new_codec(features, self.limits)

    def reset(self) -> None:
        """Destroy every session and forget the negotiated layout (AMB-29)."""
        super().reset()
        self.sessions.clear()
        self.codec = self.profile.new_codec(0, self.limits)

    def handle(self, queue_index: int, chain: DescriptorChain) -> int:
        """Process one request; returns the used length."""
        if queue_index == self.controlq:
            return self._handle_ctrl(chain)
        return self._handle_data(chain)

    # ---- controlq -----------------------------------------------------------------------------------------
    def _handle_ctrl(self, chain: DescriptorChain) -> int:
        writer = chain.writer
        if writer.capacity == 0:
            self.log.warning("controlq request without a writable byte: completed with used length 0")
            return 0
        codec = self.codec
        opcode = None
        session_id = 0
        try:
            opcode = codec.parse_ctrl_header(chain.reader)
            request = codec.parse_ctrl(opcode, chain.reader, writer.capacity)
            if request.service not in self.profile.services:
                raise CryptoStatus(Status.NOTSUPP, f"service {request.service.name} is not offered")
            if isinstance(request, DestroySession):
                self.sessions.remove(request.session_id, request.service)
                self.log.debug("destroyed session %d", request.session_id)
            else:
                session_id = self.sessions.add(self.profile.make_session(request.params))
                self.log.debug("created %s session %d", request.service.name, session_id)
        except CryptoStatus as e:
            self.log.debug("controlq opcode %s: %s", f"{opcode:#x}" if opcode is not None else "?", e)
            return codec.ctrl_outcome(writer, opcode, e.status, 0)
        return codec.ctrl_outcome(writer, opcode, Status.OK, session_id)

    # ---- dataq --------------------------------------------------------------------------------------------
    def _handle_data(self, chain: DescriptorChain) -> int:
        writer = chain.writer
        capacity = writer.capacity
        if capacity == 0:
            self.log.warning("dataq request without a writable byte (no room for the status): "
                             "completed with used length 0")
            return 0
        codec = self.codec
        try:
            request = codec.parse_data(chain.reader, capacity)
            session = self._session_for(request)
        except CryptoStatus as e:
            self.log.debug("dataq request: %s", e)
            return codec.data_outcome(writer, None, e.status, 0)
        return self._run(codec, session, request, writer)

    def _session_for(self, request: DataRequest) -> Session:
        """The live session a session-mode request names, or a new one from a stateless request's parameters."""
        service = request.service
        if service not in self.profile.services:
            raise CryptoStatus(Status.NOTSUPP, f"service {service.name} is not offered")
        if request.session_id is None:
            return self.profile.make_session(request.params)
        session = self.sessions.get(request.session_id, service)
        if not isinstance(request.op, session.op_class):
            raise CryptoStatus(Status.ERR, f"a {type(request.op).__name__} request on a {type(session).__name__} "
                               "(sym op_type differs from the session's, AMB-31)")
        return session

    def _run(self, codec: Codec, session: Session, request: DataRequest, writer: ChainWriter) -> int:
        """Execute ``request`` on ``session``: the outputs (written by the session) and the outcome; the used length.

        Only the result bytes and the status are written: the Linux driver's scatterlists may map the same guest
        page twice, so padding written "in between" would clobber the result.
        """
        try:
            end = session.run(request.op, writer)
        except CryptoStatus as e:
            self.log.debug("dataq request: %s", e)
            return codec.data_outcome(writer, request, e.status, 0)
        return codec.data_outcome(writer, request, Status.OK, end)
