"""The v16 crypto patch as a profile: its session mode, and the non-session mode of its NON_SESSION_MODE feature bits.

"virtio-crypto specification", PATCH v16 (January 2017), with the header update its author attached in the review
thread (the padding of every non-session struct). Numbers and layouts: :mod:`vfu_virtio.abi.crypto_v16`; where
v16 and the published standard agree (services CIPHER, HASH, MAC, AEAD, their algorithm numbers and opcodes, the
session-mode structs) the standard's (:mod:`vfu_virtio.abi.crypto`), which grew out of v16. Decisions:
``docs/decisions.md`` (AMB-21 and the entries it links).

What a driver sees:

* Configuration: ``struct virtio_crypto_config``, 56 bytes, ``reserved`` (0) at offset 44 where the standard later
  put ``akcipher_algo``; services CIPHER, HASH, MAC, AEAD (no AKCIPHER: v16 has none).
* Feature bits 0..4: ``VIRTIO_CRYPTO_F_NON_SESSION_MODE`` and the four per-service ``*_NON_SESSION_MODE`` bits;
  FEATURES_OK is refused when any of bits 1..4 comes without bit 0 ("Feature bit requirements", AMB-28).
* Controlq: always the 72-byte head (``virtio_crypto_ctrl_header`` + the union padded to 56 bytes; the header's
  ``queue_id`` is ignored, AMB-10), the 16-byte ``virtio_crypto_session_input`` outcome. Destroy session answers
  v16's ``le32 status`` + ``le32 padding`` (8 bytes, used length 8) when at least 8 bytes are writable, else one
  status byte (used length 1) (AMB-4).
* Dataq without bit 0: ``struct virtio_crypto_op_data_req``, the 72-byte head (the union padded to 48 bytes),
  session mode only, ``flag`` ignored -- byte for byte the standard's requests without REVISION_1, so the Linux
  driver of the time (which negotiates no crypto bit) works.
* Dataq with bit 0: EVERY request is ``struct virtio_crypto_op_data_req_mux``, a 104-byte head (24-byte header +
  the 80-byte union). ``flag`` (AMB-21; AEAD as the others, AMB-23): for a service whose non-session bit is
  negotiated, 1
  (``VIRTIO_CRYPTO_FLAG_SESSION_MODE``) is session mode, 2 (``..._NON_SESSION_MODE``) non-session mode, anything
  else ERR; for any other service 2 is NOTSUPP and anything else session mode. Session-mode members keep their
  offsets (the rest of the union is padding). Non-session members: ``virtio_crypto_cipher_para_non_sess`` or
  ``virtio_crypto_alg_chain_data_para_non_sess`` with ``op_type`` at union offset 72 (request offset 96, where the
  session ``op_type`` is at 64), ``virtio_crypto_hash_para_non_sess``, ``virtio_crypto_mac_para_non_sess``,
  ``virtio_crypto_aead_para_non_sess``; the keys come first in the variable part, then the struct's order: cipher
  key, iv, src_data; cipher key, auth key (AUTH hash mode only), iv, src_data, aad (AMB-20: v16's order, not the
  standard's iv, aad, src_data); src_data; auth key, src_data; key, iv, src_data, aad. ``session_id`` is ignored in
  non-session mode (AMB-35).
* Status codes: v16's five, OK 0, ERR 1, BADMSG 2, NOTSUPP 3, INVSESS 4 (AMB-27). A full session table, which the
  standard answers NOSPC, is ERR; a failed authentication check that the standard would answer KEY_REJECTED is
  BADMSG (no v16 service produces one: v16 has no AKCIPHER).

The dataq outcome (outputs from offset 0, status as the last writable byte, used length the whole writable part;
zeros on failure) and every per-service rule are the standard profile's (AMB-3 and the AMB entries it cites).
"""
from __future__ import annotations

from typing import Mapping

from vfu_virtio.abi import crypto as C
from vfu_virtio.abi import crypto_v16 as V
from vfu_virtio.virtio.chain import ChainReader, ChainWriter

from ..errors import CryptoStatus
from ..profile import ConfigValues, Profile
from ..services import SESSIONS
from ..values import AkcipherParams, CtrlRequest, DataRequest, Limits, Service, Status
from .standard import ALGORITHMS as STANDARD_ALGORITHMS
from .standard import StandardCodec, _read, _take

_SERVICES = {C.VIRTIO_CRYPTO_SERVICE_CIPHER: Service.CIPHER, C.VIRTIO_CRYPTO_SERVICE_HASH: Service.HASH,
             C.VIRTIO_CRYPTO_SERVICE_MAC: Service.MAC, C.VIRTIO_CRYPTO_SERVICE_AEAD: Service.AEAD}
#: crypto_services bit of each service v16 defines.
SERVICE_BITS = {service: bit for bit, service in _SERVICES.items()}
_DATA = {opcode: _SERVICES[s] for opcode, s in V.DATA_OPCODES.items()}
_CTRL = frozenset(V.CREATE_SESSION_OPCODES) | frozenset(V.DESTROY_SESSION_OPCODES)
_DESTROY = frozenset(V.DESTROY_SESSION_OPCODES)
_NON_SESSION_BITS = {_SERVICES[s]: bit for s, bit in V.NON_SESSION_FEATURE.items()}
#: Bits 1..4, each of which requires VIRTIO_CRYPTO_F_NON_SESSION_MODE.
_NON_SESSION_MASK = sum(1 << bit for bit in V.NON_SESSION_FEATURE.values())
#: v16's status byte of each outcome (AMB-27: no NOSPC, no KEY_REJECTED).
_STATUS = {Status.OK: V.VIRTIO_CRYPTO_OK, Status.ERR: V.VIRTIO_CRYPTO_ERR, Status.BADMSG: V.VIRTIO_CRYPTO_BADMSG,
           Status.NOTSUPP: V.VIRTIO_CRYPTO_NOTSUPP, Status.INVSESS: V.VIRTIO_CRYPTO_INVSESS,
           Status.NOSPC: V.VIRTIO_CRYPTO_ERR, Status.KEY_REJECTED: V.VIRTIO_CRYPTO_BADMSG}

#: v16's algorithm numbers: the standard's for CIPHER, HASH, MAC and AEAD (v16 has no AKCIPHER).
ALGORITHMS = {service: table for service, table in STANDARD_ALGORITHMS.items() if service in SERVICE_BITS}
#: The session classes of v16's services.
SYM_SESSIONS = {params: session for params, session in SESSIONS.items() if params is not AkcipherParams}


class V16Codec(StandardCodec):
    """v16's request format for the negotiated crypto feature bits ``features`` (module docstring).

    ``mux``: VIRTIO_CRYPTO_F_NON_SESSION_MODE negotiated (every dataq request is the mux wrapper);
    ``non_session``: the services whose non-session bit is negotiated along with it. The per-service parsers are
    the standard's (v16's structs are the standard's legacy and stateless ones, byte for byte), the framing and
    the status bytes are v16's.
    """

    def __init__(self, features: int, limits: Limits, algorithms):
        super().__init__(0, limits, algorithms)  # the standard without REVISION_1: 72-byte heads, flag ignored
        self.mux = bool(features >> V.VIRTIO_CRYPTO_F_NON_SESSION_MODE & 1)
        self.non_session = frozenset(s for s, bit in _NON_SESSION_BITS.items() if self.mux and features >> bit & 1)
        #: Bytes of the union after the header: 80 with the mux, else 48.
        self.union_size = (V.VIRTIO_CRYPTO_OP_DATA_REQ_MUX_UNION if self.mux
                           else C.VIRTIO_CRYPTO_DATAQ_OP_SPEC_HDR_LEGACY)

    def wire_status(self, status: Status, controlq: bool = False) -> int:
        """v16's status byte of ``status`` (NOSPC -> ERR, KEY_REJECTED -> BADMSG; AMB-27), on either queue
        (``controlq`` changes nothing: v16 has no AKCIPHER session, so no key is refused there, AMB-KEYS)."""
        return _STATUS[status]

    # ---- controlq ------------------------------------------------------------------------------------------
    def parse_ctrl(self, opcode: int, reader: ChainReader, out_capacity: int) -> CtrlRequest:
        """The standard's 72-byte controlq requests, v16's opcodes only (AKCIPHER ones are unknown: NOTSUPP)."""
        if opcode not in _CTRL:
            raise CryptoStatus(Status.NOTSUPP, f"unknown controlq opcode {opcode:#x}")
        return super().parse_ctrl(opcode, reader, out_capacity)

    def ctrl_outcome(self, writer: ChainWriter, opcode: int | None, status: Status, session_id: int) -> int:
        """Destroy session: v16's 8-byte ``le32 status, le32 padding`` when 8 bytes are writable (AMB-4); else as the
        standard (16-byte session input, or one status byte)."""
        if opcode in _DESTROY and writer.capacity >= V.VIRTIO_CRYPTO_DESTROY_SESSION_REQ_INPUT.size:
            writer.write_at(0, V.VIRTIO_CRYPTO_DESTROY_SESSION_REQ_INPUT.pack(self.wire_status(status), 0))
            return V.VIRTIO_CRYPTO_DESTROY_SESSION_REQ_INPUT.size
        return super().ctrl_outcome(writer, opcode if opcode in _CTRL else None, status, session_id)

    # ---- dataq ---------------------------------------------------------------------------------------------
    def parse_data(self, reader: ChainReader, out_capacity: int) -> DataRequest:
        """One dataq request: ``virtio_crypto_op_header`` (24 bytes) + the union (48 bytes, or 80 with the mux) +
        the variable part. Raises :class:`~..errors.CryptoStatus` (ERR, NOTSUPP)."""
        return self._parse_sym(*self._header(reader), reader, out_capacity)

    @staticmethod
    def _header(reader: ChainReader) -> tuple[int, int, int, int]:
        """(opcode, algo, session_id, flag) of ``virtio_crypto_op_header``; ERR when fewer than 24 bytes."""
        opcode, algo, session_id, flag, _pad = C.VIRTIO_CRYPTO_OP_HEADER.unpack_from(
            _take(reader, C.VIRTIO_CRYPTO_OP_HEADER.size, "virtio_crypto_op_header"))
        return opcode, algo, session_id, flag

    def _read_union(self, reader: ChainReader) -> bytes:
        """The union of fixed parameters after the header (:attr:`union_size` bytes); ERR when truncated."""
        return _read(reader, self.union_size, "the request's fixed parameters")

    def _parse_sym(self, opcode: int, algo: int, session_id: int, flag: int, reader: ChainReader,
                   out_capacity: int) -> DataRequest:
        service = _DATA.get(opcode)
        if service is None:
            raise CryptoStatus(Status.NOTSUPP, f"unknown dataq opcode {opcode:#x}")
        non_session = False
        if self.mux:
            if service in self.non_session:
                if flag not in (V.VIRTIO_CRYPTO_FLAG_SESSION_MODE, V.VIRTIO_CRYPTO_FLAG_NON_SESSION_MODE):
                    raise CryptoStatus(Status.ERR, f"flag {flag} is neither SESSION_MODE nor NON_SESSION_MODE")
                non_session = flag == V.VIRTIO_CRYPTO_FLAG_NON_SESSION_MODE
            elif flag == V.VIRTIO_CRYPTO_FLAG_NON_SESSION_MODE:
                raise CryptoStatus(Status.NOTSUPP, f"non-session {service.name} request without the service's "
                                   "NON_SESSION_MODE feature bit")
        union = self._read_union(reader)
        params, op, out_len = self._data_parsers[service](opcode, union, non_session, non_session, reader)
        if out_len + C.VIRTIO_CRYPTO_INHDR.size > out_capacity:
            raise CryptoStatus(Status.ERR, f"declared outputs of {out_len} bytes + status do not fit "
                               f"the {out_capacity}-byte writable stream")
        return DataRequest(service, None if non_session else session_id, params, op)

    @staticmethod
    def _chain_stateless_vlf(reader: ChainReader, iv_len: int, aad_len: int, src_len: int) -> tuple:
        """(iv, aad, src) of a non-session chain request, read in v16's order: iv, src_data, aad (AMB-20)."""
        iv = _read(reader, iv_len, "iv")
        src = _take(reader, src_len, "src_data")
        return iv, _read(reader, aad_len, "aad") if aad_len > 0 else b"", src  # CRY-28


# ---- Configuration and features -----------------------------------------------------------------------------------
def bitmap(numbers) -> int:
    """Algorithm bitmap: bit n set for each number n (never bit 0, the NO_* value; AMB-5)."""
    return sum(1 << n for n in numbers if n)


def config_words(values: ConfigValues, service_bits: Mapping[Service, int]) -> tuple[int, ...]:
    """The nine le32 words every layout of the drafts begins with (offsets 0..32): status (HW_READY),
    max_dataqueues, crypto_services, cipher_algo_l/_h, hash_algo, mac_algo_l/_h, aead_algo."""
    algos = values.algorithms
    cipher, mac = bitmap(algos.get(Service.CIPHER, ())), bitmap(algos.get(Service.MAC, ()))
    return (C.VIRTIO_CRYPTO_S_HW_READY, values.max_dataqueues, sum(1 << service_bits[s] for s in values.services),
            cipher & 0xFFFFFFFF, cipher >> 32, bitmap(algos.get(Service.HASH, ())), mac & 0xFFFFFFFF, mac >> 32,
            bitmap(algos.get(Service.AEAD, ())))


def config_layout(values: ConfigValues) -> bytes:
    """v16's ``struct virtio_crypto_config`` (56 bytes): the nine words, the key limits, ``reserved`` 0, max_size."""
    limits = values.limits
    return V.VIRTIO_CRYPTO_CONFIG.pack(*config_words(values, SERVICE_BITS), limits.max_cipher_key_len,
                                       limits.max_auth_key_len, 0, limits.max_size)


def refuse_features(features: int) -> str | None:
    """Each per-service NON_SESSION_MODE bit (1..4) requires VIRTIO_CRYPTO_F_NON_SESSION_MODE (bit 0)."""
    if features & _NON_SESSION_MASK and not features >> V.VIRTIO_CRYPTO_F_NON_SESSION_MODE & 1:
        return f"non-session feature bits {features & _NON_SESSION_MASK:#x} without VIRTIO_CRYPTO_F_NON_SESSION_MODE"
    return None


PROFILE = Profile(
    name="v16",
    summary="the v16 crypto patch (2017): session mode, and non-session mode with the mux request wrapper",
    features=V.FEATURES,
    refuse_features=refuse_features,
    config_layout=config_layout,
    codec=V16Codec,
    sessions=SYM_SESSIONS,
    algorithms=ALGORITHMS,
)
